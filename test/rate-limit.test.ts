// The rate-limit counters on their own (src/platform/rate-limit.ts): the key a client address is
// counted under, and what an attempt adds, refuses and takes back. The login and signup throttles
// built on them are tested through the API in test/login-throttling.test.ts.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../src/errors.ts';
import { addHit, clearHits, clientKey, removeHit, takeAttempt } from '../src/platform/rate-limit.ts';
import { engines, freshDatabase, type TestDatabase } from './support/database.ts';

describe('the key a client address is counted under', () => {
  it('an IPv4 address is itself, an IPv4 address mapped into IPv6 is that IPv4 address', () => {
    assert.equal(clientKey('203.0.113.5'), '203.0.113.5');
    assert.equal(clientKey('::ffff:203.0.113.5'), '203.0.113.5');
    assert.equal(clientKey('::FFFF:203.0.113.5'), '203.0.113.5');
    assert.equal(clientKey('::ffff:198.51.100.25'), '198.51.100.25', 'octets of one, two and three digits');
    // A zone (of any length) is not part of the address.
    assert.equal(clientKey('::ffff:203.0.113.5%eth0'), '203.0.113.5');
    // Not an IPv4 address after all: kept as it came (and no /64 of it either).
    assert.equal(clientKey('::ffff:999.0.113.5'), '::ffff:999.0.113.5');
    assert.equal(clientKey('::ffff:203.0.113.5x'), '::ffff:203.0.113.5x');
    // ::ffff: inside a longer IPv6 address is not the mapped range: that address is its /64.
    assert.equal(clientKey('64:ff9b::ffff:192.0.2.1'), '64:ff9b:0:0::/64');
  });

  it('an IPv6 address is its /64, whichever way it is written', () => {
    const key = '2001:db8:5:6::/64';
    for (const address of [
      '2001:db8:5:6::1',
      '2001:DB8:5:6:0:0:0:2',
      '2001:0db8:0005:0006:ffff:ffff:ffff:ffff',
      '2001:db8:5:6:1::',
      '2001:db8:5:6::1%eth0',
      '2001:db8:5:6:1:2:192.0.2.1',
    ]) {
      assert.equal(clientKey(address), key, address);
    }
    assert.notEqual(clientKey('2001:db8:5:7::1'), key);
  });

  it('"::" is expanded to as many zero groups as it stands for, before or after the /64 boundary', () => {
    assert.equal(clientKey('::1'), '0:0:0:0::/64');
    assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(clientKey('1::2:3:4:5'), '1:0:0:0::/64');
    assert.equal(clientKey('1:2::3:4:5:6'), '1:2:0:0::/64');
    assert.equal(clientKey('1:2:3::4:5'), '1:2:3:0::/64');
    assert.equal(clientKey('1:2:3:4:5::6'), '1:2:3:4::/64');
    // A trailing dotted IPv4 address is two groups.
    assert.equal(clientKey('1::2:3:4:192.0.2.1'), '1:0:0:2::/64');
    assert.equal(clientKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64');
  });

  it('anything else is counted as it came', () => {
    assert.equal(clientKey('unix-socket'), 'unix-socket');
    assert.equal(clientKey(''), '');
  });
});

for (const engine of engines('one')) {
  describe(`rate-limit counters [${engine}]`, () => {
    let database: TestDatabase;
    before(async () => {
      database = await freshDatabase(engine, 4);
    });
    after(async () => {
      await database?.drop();
    });
    beforeEach(async () => {
      await database.db.query('DELETE FROM rate_limit_hits');
    });

    const hits = async () =>
      Object.fromEntries(
        (
          await database.db.query<{ bucket: string; hits: number }>(
            'SELECT bucket, hits FROM rate_limit_hits ORDER BY bucket',
          )
        ).map((r) => [r.bucket, r.hits]),
      );
    const refusal = async (attempt: Promise<void>): Promise<AppError> => {
      const err = await attempt.then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof AppError, `refused with an AppError, not ${String(err)}`);
      return err;
    };

    it('each hit counts in the current window, and the answer says how long the window still runs', async () => {
      const first = await addHit(database.db, 'b', 60);
      const second = await addHit(database.db, 'b', 60);
      assert.equal(first.hits, 1);
      assert.equal(second.hits, 2);
      assert.ok(second.retryAfterSeconds > 0 && second.retryAfterSeconds <= 60, `${second.retryAfterSeconds} s left`);
    });

    it('a hit in a new window starts the count again', async () => {
      await addHit(database.db, 'b', 60);
      await addHit(database.db, 'b', 60);
      await database.db.query("UPDATE rate_limit_hits SET window_start = window_start - interval '1 hour'");
      assert.equal((await addHit(database.db, 'b', 60)).hits, 1);
    });

    it('taking a hit back lowers the count, and the last hit takes the row with it; only the current window is touched', async () => {
      await addHit(database.db, 'b', 60);
      await addHit(database.db, 'b', 60);
      await addHit(database.db, 'c', 60);
      await removeHit(database.db, 'b', 60);
      assert.deepEqual(await hits(), { b: 1, c: 1 });
      await removeHit(database.db, 'b', 60);
      assert.deepEqual(await hits(), { c: 1 });
      await database.db.query("UPDATE rate_limit_hits SET window_start = window_start - interval '1 hour'");
      await removeHit(database.db, 'c', 60);
      assert.deepEqual(await hits(), { c: 1 }, 'a hit of a past window is not taken back');
    });

    it('clearing forgets the named buckets only', async () => {
      for (const b of ['a', 'b', 'c']) await addHit(database.db, b, 60);
      await clearHits(database.db, ['a', 'c']);
      assert.deepEqual(await hits(), { b: 1 });
    });

    it('an attempt counts against every limit; the first one over any limit is refused 429 with the longest Retry-After, and takes back its own hits', async () => {
      const limits = [
        { bucket: 'account', max: 2 },
        { bucket: 'client', max: 3 },
      ];
      await takeAttempt(database.db, limits, 60, 'slow down');
      await takeAttempt(database.db, limits, 60, 'slow down');
      assert.deepEqual(await hits(), { account: 2, client: 2 });
      const err = await refusal(takeAttempt(database.db, limits, 60, 'slow down'));
      assert.equal(err.code, 'rate_limited');
      assert.equal(err.status, 429);
      assert.equal(err.message, 'slow down');
      assert.ok(
        err.extra.retryAfterSeconds! > 0 && err.extra.retryAfterSeconds! <= 60,
        `retry after ${err.extra.retryAfterSeconds} s`,
      );
      assert.deepEqual(await hits(), { account: 2, client: 2 }, 'the refused attempt is not counted');
      // Another account from the same client still has the client's third attempt.
      await takeAttempt(
        database.db,
        [
          { bucket: 'other', max: 2 },
          { bucket: 'client', max: 3 },
        ],
        60,
        'slow down',
      );
      assert.deepEqual(await hits(), { account: 2, client: 3, other: 1 });
      await refusal(
        takeAttempt(
          database.db,
          [
            { bucket: 'other', max: 2 },
            { bucket: 'client', max: 3 },
          ],
          60,
          'slow down',
        ),
      );
      assert.deepEqual(await hits(), { account: 2, client: 3, other: 1 });
    });

    it('exactly max attempts pass, the next is refused', async () => {
      const limits = [{ bucket: 'only', max: 1 }];
      await takeAttempt(database.db, limits, 60, 'x');
      await refusal(takeAttempt(database.db, limits, 60, 'x'));
      assert.deepEqual(await hits(), { only: 1 });
    });
  });
}
