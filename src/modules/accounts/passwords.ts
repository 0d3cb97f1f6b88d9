// Password hashing with Argon2id (@node-rs/argon2, OWASP's recommended parameters by default), and
// the refusal of passwords that every credential-stuffing list starts with.
import { hash, verify } from '@node-rs/argon2';
import { randomBytes } from 'node:crypto';
import { commonPasswords } from './common-passwords.ts';

// Algorithm 2 is Argon2id; the const enum of the package can't be imported under isolated modules.
const options = { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return hash(password, options);
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}

// Verified against when the email is unknown, so that answer costs the same time as a wrong password.
let decoy: Promise<string> | undefined;
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(16).toString('hex'));
  return decoy;
}

export function isCommonPassword(password: string): boolean {
  return commonPasswords.has(password.toLowerCase());
}

/** What a new password must be, in words: the schemas' description and the problem's detail. */
export const passwordRule =
  'Passwords are 8 to 256 characters, not only white space (or other invisible characters), and not one of the most common passwords';

/** Only white space, separators, control and format (zero-width) characters: nothing a reader sees. */
export function nothingVisible(text: string): boolean {
  return /^[\s\p{Z}\p{Cc}\p{Cf}]*$/u.test(text);
}
