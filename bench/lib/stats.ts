// Numbers and their presentation: latency percentiles, tables, and the live progress line.

export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Latencies in milliseconds, kept whole (a run holds at most a few hundred thousand). */
export function latencyRecorder() {
  let values = new Float64Array(1 << 16);
  let n = 0;
  return {
    add(ms: number): void {
      if (n === values.length) {
        const bigger = new Float64Array(values.length * 2);
        bigger.set(values);
        values = bigger;
      }
      values[n++] = ms;
    },
    get count(): number {
      return n;
    },
    summary(): Percentiles {
      return percentiles(values.subarray(0, n));
    },
  };
}

export function percentiles(input: ArrayLike<number>): Percentiles {
  const sorted = Float64Array.from(input).sort();
  const at = (p: number) =>
    sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    mean: sorted.length ? sum / sorted.length : 0,
    p50: at(50),
    p95: at(95),
    p99: at(99),
    max: sorted.length ? sorted[sorted.length - 1]! : 0,
  };
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

export function fmtSeconds(s: number): string {
  return s >= 10 ? `${s.toFixed(1)} s` : `${s.toFixed(2)} s`;
}

export function fmtMb(bytes: number | undefined): string {
  return bytes === undefined ? 'n/a' : `${Math.round(bytes / (1024 * 1024))} MB`;
}

export function fmtPct(share: number | null | undefined): string {
  return share === null || share === undefined || !Number.isFinite(share) ? 'n/a' : `${Math.round(share * 100)}%`;
}

/** A plain text table: the first row is the header; numbers-looking cells are right-aligned. */
export function table(rows: string[][], align: 'auto' | 'left' = 'auto'): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  const numeric = (cell: string) => align === 'auto' && /^[-+]?[\d,.]+( ?(%|ms|s|MB|x))?$/.test(cell);
  const line = (row: string[]) =>
    row
      .map((cell, i) => (numeric(cell) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n') + '\n';
}

/**
 * Progress while a run goes: on a terminal one line rewritten in place; otherwise (CI logs, a
 * pipe) a plain line every few seconds, so logs stay readable.
 */
export function progressLine(stream: NodeJS.WriteStream = process.stderr, plainEveryMs = 5000) {
  const tty = Boolean(stream.isTTY);
  let lastPlain = 0;
  let shown = false;
  return {
    update(text: string): void {
      if (tty) {
        stream.write(`\r${text}\x1b[K`);
        shown = true;
      } else if (Date.now() - lastPlain >= plainEveryMs) {
        lastPlain = Date.now();
        stream.write(text + '\n');
      }
    },
    done(): void {
      if (tty && shown) stream.write('\n');
      shown = false;
      lastPlain = 0;
    },
  };
}
