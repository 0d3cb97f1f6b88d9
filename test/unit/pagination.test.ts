// The cursor of keyset pagination, without a database: a page's cursor reads back as its last id,
// a cursor this API did not give out is refused, and pages neither repeat nor skip.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeCursor, pageOf } from '../../src/platform/pagination.ts';
import { AppError } from '../../src/errors.ts';

const idChars = '0123456789abcdefghijklmnopqrstuvwxyz'.split('');
const id = fc
  .tuple(
    fc.constantFrom('ord', 'usr', 'pay', 'evt'),
    fc.array(fc.constantFrom(...idChars), { minLength: 26, maxLength: 26 }),
  )
  .map(([prefix, chars]) => `${prefix}_${chars.join('')}`);

it('the cursor of a page decodes to the id of its last item; no cursor means the first page', () => {
  assert.equal(decodeCursor(undefined), null);
  fc.assert(
    fc.property(fc.uniqueArray(id, { maxLength: 30 }), fc.integer({ min: 1, max: 10 }), (ids, limit) => {
      const rows = ids.slice(0, limit + 1); // fetched with LIMIT limit + 1
      const { data, nextCursor } = pageOf(rows, limit, (r) => r);
      assert.deepEqual(data, ids.slice(0, limit));
      if (ids.length > limit) assert.equal(decodeCursor(nextCursor!), ids[limit - 1]);
      else assert.equal(nextCursor, null);
    }),
  );
});

it('walking pages with the cursor visits every item once, in order', () => {
  fc.assert(
    fc.property(fc.uniqueArray(id, { maxLength: 40 }), fc.integer({ min: 1, max: 7 }), (unsorted, limit) => {
      const ids = [...unsorted].sort();
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages <= ids.length + 1; pages++) {
        const after = decodeCursor(cursor);
        const { data, nextCursor } = pageOf(
          ids.filter((x) => after === null || x > after).slice(0, limit + 1),
          limit,
          (r) => r,
        );
        seen.push(...data);
        if (nextCursor === null) break;
        cursor = nextCursor;
      }
      assert.deepEqual(seen, ids);
    }),
  );
});

it('a cursor that is not one the API gave out is a validation error naming the query parameter', () => {
  for (const bad of [
    '',
    'x',
    Buffer.from('ord_short').toString('base64url'),
    Buffer.from("ord_00000000000000000000000000' OR 1=1").toString('base64url'),
    Buffer.from('ORD_00000000000000000000000000').toString('base64url'),
  ]) {
    assert.throws(
      () => decodeCursor(bad),
      (err: unknown) =>
        err instanceof AppError &&
        err.code === 'validation_failed' &&
        JSON.stringify(err.extra.errors) === JSON.stringify([{ path: '/query/cursor', message: 'is invalid' }]),
      bad,
    );
  }
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        const decoded = decodeCursor(s);
        assert.match(decoded!, /^[a-z]{3}_[0-9a-z]{26}$/);
      } catch (err) {
        assert.ok(err instanceof AppError);
      }
    }),
  );
});
