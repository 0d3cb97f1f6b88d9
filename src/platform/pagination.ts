// Keyset pagination over ids, which sort by creation time: a page never repeats or skips an item
// while newer items are being added, unlike OFFSET. The cursor is opaque to clients.
import { AppError } from '../errors.ts';

export function decodeCursor(cursor: string | undefined): string | null {
  if (cursor === undefined) return null;
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^[a-z]{3}_[0-9a-z]{26}$/.test(id)) {
    throw new AppError('validation_failed', 'The cursor is not one this API gave out', {
      errors: [{ path: '/query/cursor', message: 'is invalid' }],
    });
  }
  return id;
}

/** Rows were fetched with LIMIT limit + 1: the extra row tells whether another page exists. */
export function pageOf<T>(
  rows: T[],
  limit: number,
  idOf: (row: T) => string,
): { data: T[]; nextCursor: string | null } {
  const data = rows.slice(0, limit);
  const last = data[data.length - 1];
  return { data, nextCursor: rows.length > limit && last ? Buffer.from(idOf(last)).toString('base64url') : null };
}
