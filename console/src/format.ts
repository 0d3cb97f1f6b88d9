// How figures read on the page: one place, so every page says "1.2 k", "3.4 MB" and "2 min ago" alike.

const integer = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });

export function count(n: number): string {
  return Math.abs(n) >= 10_000 ? compact.format(n) : integer.format(n);
}

export function rate(n: number): string {
  if (n === 0) return '0';
  if (n < 0.1) return n.toFixed(3);
  if (n < 10) return n.toFixed(2);
  return count(n);
}

export function percent(fraction: number): string {
  if (fraction === 0) return '0%';
  if (fraction < 0.001) return '<0.1%';
  return `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)}%`;
}

export function ms(n: number | null): string {
  if (n === null) return '–';
  if (n >= 1000) return `${(n / 1000).toFixed(n >= 10_000 ? 0 : 1)} s`;
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`;
}

export function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

export function seconds(s: number): string {
  if (s < 1) return s === 0 ? '0 s' : '<1 s';
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86_400)} d`;
}

export function ago(iso: string, now = Date.now()): string {
  return `${seconds(Math.max(0, (now - Date.parse(iso)) / 1000))} ago`;
}

export function time(iso: string): string {
  return new Date(iso).toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'medium' });
}

function decimalsOf(currency: string): number {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

/** A price typed as "19.99" in its currency, in minor units (1999); null when it is not one. */
export function minorUnits(text: string, currency: string): number | null {
  const digits = decimalsOf(currency);
  const match = new RegExp(`^\\s*(\\d{1,12})(?:[.,](\\d{0,${digits}}))?\\s*$`).exec(text);
  if (!match) return null;
  return Number(match[1]) * 10 ** digits + Number((match[2] ?? '').padEnd(digits, '0') || 0);
}

/** Minor units as the number typed in a price field ("19.99"), without the currency sign. */
export function majorUnits(amount: number, currency: string): string {
  const digits = decimalsOf(currency);
  return digits === 0 ? String(amount) : (amount / 10 ** digits).toFixed(digits);
}

/** Money in minor units, shown in its currency (ISO 4217 knows how many decimals each has). */
export function money(amount: number, currency: string): string {
  try {
    const f = new Intl.NumberFormat('en', { style: 'currency', currency });
    const digits = f.resolvedOptions().maximumFractionDigits ?? 2;
    return f.format(amount / 10 ** digits);
  } catch {
    return `${amount} ${currency} (minor units)`;
  }
}
