// What the bench reads from /proc (Linux): resident memory and CPU time of given processes, and the
// whole machine's CPU time, so a run can say who used the cores (server, database, load generator,
// or someone else on the machine). Elsewhere these answer nothing and the figures read "n/a".
import { readFileSync } from 'node:fs';

const ticksPerSecond = 100; // USER_HZ; 100 on every Linux we run on

/** Resident memory of a process in bytes, or undefined when it is gone (or not Linux). */
export function residentBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far, or undefined when it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; the fields after its closing parenthesis do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return undefined;
  }
}

/**
 * Seconds the process's main thread (the JavaScript thread) has spent on a CPU, and runnable but
 * waiting for one (Linux schedstat), so far.
 */
export function schedSeconds(pid: number): { onCpu: number; waiting: number } | undefined {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { onCpu: run! / 1e9, waiting: wait! / 1e9 };
  } catch {
    return undefined;
  }
}

/** Busy and total CPU seconds of the whole machine (all cores) since boot. */
export function machineCpu(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: (total - idle) / ticksPerSecond, total: total / ticksPerSecond };
  } catch {
    return undefined;
  }
}

export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

/**
 * Accumulates the CPU time of groups of processes whose members may change (a pool opens a new
 * backend, a process is restarted): every sample() adds, per pid seen in both samples, what it used
 * since the previous one.
 */
export function cpuMeter(groups: Record<string, () => number[] | Promise<number[]>>) {
  const last = new Map<string, Map<number, number>>();
  const used: Record<string, number> = {};
  let machineStart = machineCpu();
  let machineLast = machineStart;
  let startedAt = Date.now();
  for (const name of Object.keys(groups)) used[name] = 0;

  async function sample(): Promise<void> {
    for (const [name, pidsOf] of Object.entries(groups)) {
      let pids: number[] = [];
      try {
        pids = await pidsOf();
      } catch {
        /* a group that cannot be listed this time is skipped */
      }
      const before = last.get(name) ?? new Map<number, number>();
      const now = new Map<number, number>();
      for (const pid of pids) {
        const s = cpuSeconds(pid);
        if (s === undefined) continue;
        now.set(pid, s);
        const prev = before.get(pid);
        if (prev !== undefined) used[name]! += Math.max(0, s - prev);
      }
      last.set(name, now);
    }
    machineLast = machineCpu();
  }

  return {
    sample,
    /** Restarts the accounting from now (the pids known stay known). */
    reset(): void {
      for (const name of Object.keys(used)) used[name] = 0;
      machineStart = machineCpu();
      machineLast = machineStart;
      startedAt = Date.now();
    },
    /** CPU seconds per group, the machine's busy seconds and the wall time covered. */
    report(): { groups: Record<string, number>; machineBusy: number | null; wallSeconds: number } {
      const machineBusy = machineStart && machineLast ? machineLast.busy - machineStart.busy : null;
      return { groups: { ...used }, machineBusy, wallSeconds: (Date.now() - startedAt) / 1000 };
    },
  };
}

/** Samples the resident memory of some processes and keeps the peak of each label. */
export function memorySampler(pidsByLabel: () => { label: string; pid: number }[], everyMs = 250) {
  const peaks = new Map<string, number>();
  const tick = () => {
    for (const { label, pid } of pidsByLabel()) {
      const rss = residentBytes(pid);
      if (rss !== undefined && rss > (peaks.get(label) ?? 0)) peaks.set(label, rss);
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return {
    /** Peak resident bytes per label since the last reset. */
    peaks: (): Record<string, number> => Object.fromEntries(peaks),
    reset: () => {
      peaks.clear();
      tick();
    },
    stop: () => clearInterval(timer),
  };
}
