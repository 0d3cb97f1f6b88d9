import { randomBytes } from 'node:crypto';

// IDs are a type prefix and a 26-character ULID-style body: 10 characters of millisecond time and
// 16 of randomness in Crockford base32, so they sort by creation time as plain strings (and so
// keyset pagination can use the id alone). Within one millisecond the random part counts up, so
// ids made by one process never sort out of creation order.
const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';

let lastTime = 0;
let lastRandom = 0n;

function encode(value: bigint, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    out = alphabet[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}

export type IdPrefix =
  | 'usr'
  | 'ses'
  | 'key'
  | 'prd'
  | 'var'
  | 'ord'
  | 'pay'
  | 'whe'
  | 'evt'
  | 'cnv'
  | 'msg'
  | 'whd'
  | 'ref'
  | 'txn'
  | 'mov'
  | 'eml'
  | 'tok';

export function newId(prefix: IdPrefix, now = Date.now()): string {
  let random: bigint;
  if (now <= lastTime) {
    now = lastTime;
    random = lastRandom + 1n;
  } else {
    random = BigInt('0x' + randomBytes(10).toString('hex'));
  }
  lastTime = now;
  lastRandom = random;
  return `${prefix}_${encode(BigInt(now), 10)}${encode(random, 16)}`;
}

/**
 * The lowest id of this prefix that a process could make at time `ms`: every id made earlier sorts
 * below it. So "made before t" is a range of the primary key (`id < firstIdAt(prefix, t)`), with no
 * index on a time column (the retention job prunes by it).
 */
export function firstIdAt(prefix: IdPrefix, ms: number): string {
  return `${prefix}_${encode(BigInt(Math.max(0, Math.floor(ms))), 10)}${'0'.repeat(16)}`;
}
