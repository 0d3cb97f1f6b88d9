import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Fastify, { type FastifyInstance } from 'fastify';
import { engines, freshDatabase, type TestDatabase } from './support/database.ts';
import { startFakeStripe, type FakeStripe } from './support/fake-stripe.ts';
import { createSandboxProvider } from '../src/modules/payments/providers/sandbox.ts';
import { createStripeProvider, maxResponseBytes } from '../src/modules/payments/providers/stripe.ts';
import type { ChargeRequest, PaymentProvider, ProviderResult } from '../src/modules/payments/providers/provider.ts';
import { sandboxRoutes } from '../src/modules/payments/sandbox-routes.ts';
import { registerHttpPlatform } from '../src/platform/http.ts';
import { registerAuth, type Principal } from '../src/platform/auth.ts';
import type { Db } from '../src/platform/db.ts';
import { endOutage, startOutage } from '../src/modules/payments/providers/outage.ts';

let counter = 0;
/** A key no other test uses: every test works on its own charges in the shared database. */
const newKey = (label: string) => `test-${label}-${++counter}-${process.pid}`;

function chargeOf(token: string, idempotencyKey = newKey(token), amount = 1999): ChargeRequest {
  return { idempotencyKey, token, amount: { amount, currency: 'EUR' }, orderId: `ord_for_${idempotencyKey}` };
}

function refOf(result: ProviderResult): string {
  assert.equal(result.status, 'succeeded', `expected succeeded, got ${JSON.stringify(result)}`);
  return (result as { providerRef: string }).providerRef;
}

for (const engine of engines('parity')) {
  describe(`sandbox processor [${engine}]`, () => {
    let database: TestDatabase;
    let sandbox: PaymentProvider;
    const slowDelayMs = 150;

    before(async () => {
      database = await freshDatabase(engine);
      sandbox = createSandboxProvider(database.db, { slowDelayMs });
    });
    after(async () => {
      await database.drop();
    });

    /** The processor's own rows for one key: what it charged, whatever it answered. */
    async function rowsFor(key: string) {
      return database.db.query<{
        id: string;
        status: string;
        attempts: number;
        amount: number;
        currency: string;
        order_id: string;
        refunded_amount: number;
      }>(
        'SELECT id, status, attempts, amount, currency, order_id, refunded_amount FROM sandbox_charges WHERE idempotency_key = $1',
        [key],
      );
    }
    async function chargedCount(key: string): Promise<number> {
      return (await rowsFor(key)).filter((r) => r.status === 'succeeded').length;
    }

    /**
     * A sandbox of its own on a database that counts the charge rows' INSERT statements: `count`,
     * those that record first requests; `slowPath`, those of the transaction a request takes when
     * it did not create its row (a key seen before), which answers the same, one request at a time.
     */
    function countingSandbox() {
      const inserts = { count: 0, slowPath: 0 };
      const counted = (text: string) => {
        if (text.includes('INSERT INTO sandbox_charges')) {
          if (text.includes('DO NOTHING')) inserts.count++;
          else inserts.slowPath++;
        }
      };
      const db: Db = {
        ...database.db,
        query: <T>(text: string, params?: readonly unknown[]) => {
          counted(text);
          return database.db.query<T>(text, params);
        },
        transaction: (fn) =>
          database.db.transaction((tx) =>
            fn({
              ...tx,
              query: <T>(text: string, params?: readonly unknown[]) => {
                counted(text);
                return tx.query<T>(text, params);
              },
            }),
          ),
      };
      return { sandbox: createSandboxProvider(db, { slowDelayMs }), inserts };
    }

    it('tok_ok succeeds and records exactly one charge of that amount, whose id is the providerRef', async () => {
      const request = chargeOf('tok_ok');
      const result = await sandbox.charge(request);
      const ref = refOf(result);
      assert.deepEqual(
        result,
        { status: 'succeeded', providerRef: ref, charged: request.amount, orderId: request.orderId },
        'it says what it charged, for which order',
      );
      const rows = await rowsFor(request.idempotencyKey);
      assert.equal(rows.length, 1);
      assert.deepEqual(
        { ...rows[0] },
        {
          id: ref,
          status: 'succeeded',
          attempts: 1,
          amount: 1999,
          currency: 'EUR',
          order_id: request.orderId,
          refunded_amount: 0,
        },
      );
      assert.match(ref, /^sch_[0-9a-z]{26}$/);
    });

    it('tok_declined is declined for good: again with the same key it is declined, and nothing is charged', async () => {
      const request = chargeOf('tok_declined');
      const first = await sandbox.charge(request);
      assert.equal(first.status, 'declined');
      assert.deepEqual(await sandbox.charge(request), first);
      assert.equal(await chargedCount(request.idempotencyKey), 0);
      assert.deepEqual(
        (await rowsFor(request.idempotencyKey)).map((r) => [r.status, r.attempts]),
        [['declined', 2]],
      );
    });

    it('an unknown token is declined and charges nothing', async () => {
      const request = chargeOf('tok_nobody_knows');
      const result = await sandbox.charge(request);
      assert.equal(result.status, 'declined');
      assert.match((result as { reason: string }).reason, /unknown_token/);
      assert.equal(await chargedCount(request.idempotencyKey), 0);
    });

    it('tok_flaky fails transiently twice for a key, then succeeds, charged once', async () => {
      const request = chargeOf('tok_flaky');
      assert.equal((await sandbox.charge(request)).status, 'retryable');
      assert.equal(await chargedCount(request.idempotencyKey), 0);
      assert.equal((await sandbox.charge(request)).status, 'retryable');
      const ref = refOf(await sandbox.charge(request));
      assert.equal(refOf(await sandbox.charge(request)), ref, 'a later request replays the success');
      assert.equal(await chargedCount(request.idempotencyKey), 1);
      assert.equal((await rowsFor(request.idempotencyKey))[0]?.attempts, 4);
    });

    it('tok_lost_response charges on the first try but answers retryable; the retry with the key answers succeeded without charging again', async () => {
      const request = chargeOf('tok_lost_response');
      const first = await sandbox.charge(request);
      assert.equal(first.status, 'retryable');
      assert.match((first as { reason: string }).reason, /timeout/);
      const [charged] = await rowsFor(request.idempotencyKey);
      assert.equal(charged?.status, 'succeeded', 'the money moved although the caller heard nothing');
      assert.equal(refOf(await sandbox.charge(request)), charged.id);
      assert.equal(refOf(await sandbox.charge(request)), charged.id);
      assert.equal(await chargedCount(request.idempotencyKey), 1);
    });

    it('tok_slow succeeds after the configured delay', async (t) => {
      const request = chargeOf('tok_slow');
      const started = performance.now();
      refOf(await sandbox.charge(request));
      t.diagnostic(
        `tok_slow answered in ${Math.round(performance.now() - started)} ms with slowDelayMs ${slowDelayMs}`,
      );
      assert.equal(await chargedCount(request.idempotencyKey), 1);
    });

    it('the same key twice in a row: one charge, the same answer', async () => {
      const request = chargeOf('tok_ok');
      const first = await sandbox.charge(request);
      assert.deepEqual(await sandbox.charge(request), first);
      const rows = await rowsFor(request.idempotencyKey);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.attempts, 2);
    });

    it('10 concurrent requests with one key: one charge, every success names it', async () => {
      const request = chargeOf('tok_ok');
      const results = await Promise.all(Array.from({ length: 10 }, () => sandbox.charge(request)));
      const refs = new Set(results.map(refOf));
      assert.equal(refs.size, 1);
      const rows = await rowsFor(request.idempotencyKey);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.attempts, 10);
      assert.equal(await chargedCount(request.idempotencyKey), 1);
    });

    it('10 concurrent tok_lost_response requests with one key: one charge, exactly one answer lost', async () => {
      const request = chargeOf('tok_lost_response');
      const results = await Promise.all(Array.from({ length: 10 }, () => sandbox.charge(request)));
      assert.equal(results.filter((r) => r.status === 'retryable').length, 1);
      assert.equal(new Set(results.filter((r) => r.status === 'succeeded').map(refOf)).size, 1);
      assert.equal(await chargedCount(request.idempotencyKey), 1);
    });

    it('10 concurrent tok_flaky requests with one key: two transient failures, then one charge', async () => {
      const request = chargeOf('tok_flaky');
      const results = await Promise.all(Array.from({ length: 10 }, () => sandbox.charge(request)));
      assert.equal(results.filter((r) => r.status === 'retryable').length, 2);
      assert.equal(new Set(results.filter((r) => r.status === 'succeeded').map(refOf)).size, 1);
      assert.equal(await chargedCount(request.idempotencyKey), 1);
    });

    describe("charges asked side by side (a worker's batch)", () => {
      it('are recorded together: 20 new keys, each its own charge and answer, in at most two statements', async () => {
        const { sandbox: batched, inserts } = countingSandbox();
        const requests = Array.from({ length: 20 }, (_, i) =>
          chargeOf(i === 3 ? 'tok_declined' : i === 7 ? 'tok_flaky' : 'tok_ok', newKey('side'), 100 + i),
        );
        const results = await Promise.all(requests.map((r) => batched.charge(r)));
        // A lone first request goes at once; all that came meanwhile share the next statement.
        assert.ok(inserts.count <= 2, `${inserts.count} INSERT statements for 20 requests`);
        assert.equal(inserts.slowPath, 0, 'each new key is decided by the batched statement');
        for (const [i, request] of requests.entries()) {
          const rows = await rowsFor(request.idempotencyKey);
          assert.equal(rows.length, 1, `one row for request ${i}`);
          const [{ decline_reason: reason } = {}] = await database.db.query<{ decline_reason: string | null }>(
            'SELECT decline_reason FROM sandbox_charges WHERE idempotency_key = $1',
            [request.idempotencyKey],
          );
          if (i === 3)
            assert.deepEqual([results[i], reason], [{ status: 'declined', reason: 'card_declined' }, 'card_declined']);
          else if (i === 7)
            assert.deepEqual([results[i]!.status, rows[0]!.status, reason], ['retryable', 'pending', null]);
          else {
            assert.deepEqual(results[i], {
              status: 'succeeded',
              providerRef: rows[0]!.id,
              charged: request.amount,
              orderId: request.orderId,
            });
            assert.deepEqual([rows[0]!.status, rows[0]!.amount], ['succeeded', 100 + i]);
          }
        }
      });

      it('one key twice in the same statement: one charge, both answers name it', async () => {
        const { sandbox: batched, inserts } = countingSandbox();
        const twice = chargeOf('tok_ok');
        // The first request goes alone; the two with one key then share the second statement.
        const [, a, b] = await Promise.all([
          batched.charge(chargeOf('tok_ok')),
          batched.charge(twice),
          batched.charge(twice),
        ]);
        assert.equal(inserts.count, 2);
        assert.equal(refOf(a!), refOf(b!));
        const rows = await rowsFor(twice.idempotencyKey);
        assert.deepEqual(
          rows.map((r) => [r.id, r.attempts]),
          [[refOf(a!), 2]],
        );
      });

      it('a request the sandbox cannot record fails alone; the rest of its statement is charged', async () => {
        const { sandbox: batched, inserts } = countingSandbox();
        const requests = Array.from({ length: 6 }, () => chargeOf('tok_ok'));
        // A NUL character cannot be stored in text: that row's INSERT fails, on both engines.
        requests[4] = { ...requests[4]!, description: 'bad \u0000 text' };
        const results = await Promise.allSettled(requests.map((r) => batched.charge(r)));
        assert.equal(results[4]!.status, 'rejected');
        assert.equal(
          inserts.slowPath,
          0,
          'the rest of the failed statement is recorded row by row, not by the path for known keys',
        );
        assert.equal((await rowsFor(requests[4]!.idempotencyKey)).length, 0);
        for (const i of [0, 1, 2, 3, 5]) {
          const result = results[i]!;
          assert.equal(result.status, 'fulfilled', `request ${i}`);
          assert.equal(refOf(result.value), (await rowsFor(requests[i]!.idempotencyKey))[0]?.id);
        }
      });
    });

    it('a lone request it cannot record fails after one statement, and records nothing', async () => {
      const { sandbox: alone, inserts } = countingSandbox();
      const request = { ...chargeOf('tok_ok'), description: 'bad \u0000 text' };
      await assert.rejects(alone.charge(request));
      assert.deepEqual(inserts, { count: 1, slowPath: 0 }, 'not tried again row by row: it was alone');
      assert.equal((await rowsFor(request.idempotencyKey)).length, 0);
    });

    it('an empty key, or one over 255 characters, is a fault of the caller: it throws and records nothing', async () => {
      for (const key of ['', 'k'.repeat(256)]) {
        await assert.rejects(sandbox.charge(chargeOf('tok_ok', key)), /1 to 255 characters/);
        assert.equal((await rowsFor(key)).length, 0);
      }
    });

    it('during an outage every charge answers retryable and records nothing; after it, the same key charges', async () => {
      const request = chargeOf('tok_ok');
      await startOutage(database.db, 60, 'usr_test');
      try {
        assert.deepEqual(await sandbox.charge(request), {
          status: 'retryable',
          reason: 'processor_unavailable: the sandbox processor is in an outage (a drill)',
        });
        assert.equal((await rowsFor(request.idempotencyKey)).length, 0);
      } finally {
        await endOutage(database.db);
      }
      refOf(await sandbox.charge(request));
      assert.equal(await chargedCount(request.idempotencyKey), 1);
    });

    it('refuses a key reused for a different charge, and charges nothing more', async () => {
      const request = chargeOf('tok_ok');
      const ref = refOf(await sandbox.charge(request));
      await assert.rejects(
        sandbox.charge({ ...request, amount: { amount: 5000, currency: 'EUR' } }),
        /different request/,
      );
      await assert.rejects(sandbox.charge({ ...request, token: 'tok_declined' }), /different request/);
      const rows = await rowsFor(request.idempotencyKey);
      assert.deepEqual(
        rows.map((r) => [r.id, r.amount, r.attempts]),
        [[ref, 1999, 1]],
      );
    });

    it('declines a zero amount before recording anything', async () => {
      const request = chargeOf('tok_ok', newKey('zero'), 0);
      assert.equal((await sandbox.charge(request)).status, 'declined');
      assert.equal((await rowsFor(request.idempotencyKey)).length, 0);
    });

    describe('refunds', () => {
      async function paid(amount = 1000) {
        const request = chargeOf('tok_ok', newKey('paid'), amount);
        return { request, ref: refOf(await sandbox.charge(request)) };
      }
      const eur = (amount: number) => ({ amount, currency: 'EUR' });
      async function refundRows(chargeId: string) {
        return database.db.query<{ id: string; status: string; amount: number }>(
          'SELECT id, status, amount FROM sandbox_refunds WHERE charge_id = $1 ORDER BY id',
          [chargeId],
        );
      }

      it('refunds in full once per key: a repeat answers the same refund and refunds nothing more', async () => {
        const { request, ref } = await paid();
        const refund = { idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(1000) };
        const refundRef = refOf(await sandbox.refund(refund));
        assert.match(refundRef, /^srf_[0-9a-z]{26}$/);
        assert.equal(refOf(await sandbox.refund(refund)), refundRef);
        assert.equal((await rowsFor(request.idempotencyKey))[0]?.refunded_amount, 1000);
        assert.deepEqual(
          (await refundRows(ref)).map((r) => [r.id, r.status, r.amount]),
          [[refundRef, 'succeeded', 1000]],
        );
      });

      it('10 concurrent refunds with one key refund once', async () => {
        const { request, ref } = await paid();
        const refund = { idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(1000) };
        const results = await Promise.all(Array.from({ length: 10 }, () => sandbox.refund(refund)));
        assert.equal(new Set(results.map(refOf)).size, 1);
        assert.equal((await refundRows(ref)).length, 1);
        assert.equal((await rowsFor(request.idempotencyKey))[0]?.refunded_amount, 1000);
      });

      it('never refunds more than the charge: partial refunds add up, the one that would pass it is declined', async () => {
        const { request, ref } = await paid(1000);
        refOf(await sandbox.refund({ idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(600) }));
        const over = await sandbox.refund({ idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(500) });
        assert.equal(over.status, 'declined');
        assert.match((over as { reason: string }).reason, /amount_too_large/);
        refOf(await sandbox.refund({ idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(400) }));
        assert.equal(
          (await sandbox.refund({ idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(1) })).status,
          'declined',
        );
        assert.equal((await rowsFor(request.idempotencyKey))[0]?.refunded_amount, 1000);
      });

      it('10 concurrent refunds with different keys, each of 30%: at most three succeed', async () => {
        const { request, ref } = await paid(1000);
        const results = await Promise.all(
          Array.from({ length: 10 }, () =>
            sandbox.refund({ idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(300) }),
          ),
        );
        assert.equal(results.filter((r) => r.status === 'succeeded').length, 3);
        assert.equal((await rowsFor(request.idempotencyKey))[0]?.refunded_amount, 900);
      });

      it('declines a refund of a charge it never made, of a declined charge, and in another currency', async () => {
        const unknown = await sandbox.refund({
          idempotencyKey: newKey('refund'),
          providerRef: 'sch_00000000000000000000000000',
          amount: eur(100),
        });
        assert.equal(unknown.status, 'declined');
        assert.match((unknown as { reason: string }).reason, /no_such_charge/);

        const declinedCharge = chargeOf('tok_declined');
        await sandbox.charge(declinedCharge);
        const [row] = await rowsFor(declinedCharge.idempotencyKey);
        assert.equal(
          (await sandbox.refund({ idempotencyKey: newKey('refund'), providerRef: row!.id, amount: eur(100) })).status,
          'declined',
        );

        const { ref } = await paid();
        const usd = await sandbox.refund({
          idempotencyKey: newKey('refund'),
          providerRef: ref,
          amount: { amount: 100, currency: 'USD' },
        });
        assert.equal(usd.status, 'declined');
        assert.match((usd as { reason: string }).reason, /currency_mismatch/);
      });

      it('refuses a refund key reused for a different refund', async () => {
        const { ref } = await paid();
        const refund = { idempotencyKey: newKey('refund'), providerRef: ref, amount: eur(100) };
        refOf(await sandbox.refund(refund));
        await assert.rejects(sandbox.refund({ ...refund, amount: eur(200) }), /different request/);
        assert.equal((await refundRows(ref)).length, 1);
      });
    });

    describe('GET /v1/sandbox/charges', () => {
      let app: FastifyInstance;
      const principals: Record<string, Principal> = {
        'admin-token': { userId: 'usr_admin', role: 'admin', via: 'session', credentialId: 'ses_admin' },
        'staff-token': { userId: 'usr_staff', role: 'staff', via: 'session', credentialId: 'ses_staff' },
      };

      before(async () => {
        // The route alone, on the real platform plugins (validation, problem+json, access).
        app = Fastify();
        await registerHttpPlatform(app, { corsOrigins: [] });
        registerAuth(app, async (token) => principals[token] ?? null);
        sandboxRoutes(app, { db: database.db });
        await app.ready();
      });
      after(async () => {
        await app.close();
      });

      const list = (query: string, token = 'admin-token') =>
        app.inject({
          method: 'GET',
          url: `/v1/sandbox/charges${query}`,
          headers: { authorization: `Bearer ${token}` },
        });

      it('is for admins only', async () => {
        assert.equal((await list('', 'staff-token')).statusCode, 403);
        assert.equal((await app.inject({ method: 'GET', url: '/v1/sandbox/charges' })).statusCode, 401);
      });

      it('lists what was charged and refunded, newest first, as Money', async () => {
        const request = chargeOf('tok_ok', newKey('listed'), 2500);
        const ref = refOf(await sandbox.charge(request));
        const refundKey = newKey('listed-refund');
        const refundRef = refOf(
          await sandbox.refund({
            idempotencyKey: refundKey,
            providerRef: ref,
            amount: { amount: 700, currency: 'EUR' },
          }),
        );
        const res = await list('?limit=1');
        assert.equal(res.statusCode, 200);
        const { data, nextCursor } = res.json();
        assert.equal(data.length, 1);
        assert.ok(nextCursor);
        const [item] = data;
        assert.equal(item.id, ref);
        assert.equal(item.idempotencyKey, request.idempotencyKey);
        assert.equal(item.orderId, request.orderId);
        assert.equal(item.status, 'succeeded');
        assert.deepEqual(item.amount, { amount: 2500, currency: 'EUR' });
        assert.deepEqual(item.refunded, { amount: 700, currency: 'EUR' });
        assert.equal(item.refunds.length, 1);
        assert.equal(item.refunds[0].id, refundRef);
        assert.equal(item.refunds[0].idempotencyKey, refundKey);
        assert.ok(!Number.isNaN(Date.parse(item.createdAt)));
      });

      it('walks every charge page by page without repeating or skipping one, and filters by status', async () => {
        const [total] = await database.db.query<{ count: number }>(
          'SELECT count(*)::int AS count FROM sandbox_charges',
        );
        const count = total?.count ?? -1;
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const res = await list(`?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
          assert.equal(res.statusCode, 200);
          const page: { data: { id: string }[]; nextCursor: string | null } = res.json();
          seen.push(...page.data.map((c) => c.id));
          cursor = page.nextCursor;
        } while (cursor);
        assert.equal(seen.length, count);
        assert.equal(new Set(seen).size, count);
        assert.deepEqual(seen, [...seen].sort().reverse(), 'newest first');

        const declined = (await list('?status=declined&limit=100')).json().data as { status: string }[];
        assert.ok(declined.length > 0);
        assert.ok(declined.every((c) => c.status === 'declined'));
        assert.equal((await list('?cursor=not-a-cursor')).statusCode, 400);
      });
    });
  });
}

describe('Stripe adapter against a local fake of Stripe', () => {
  let fake: FakeStripe;
  let stripe: PaymentProvider;
  /** Only for an answer the fake holds back for good (hangNext): it times out however fast the machine. */
  let impatient: PaymentProvider;
  // Generous: an answer that a busy machine is slow to give must not count as a timeout (300 ms did).
  const timeoutMs = 30_000;

  before(async () => {
    fake = await startFakeStripe();
    stripe = createStripeProvider({ secretKey: fake.secretKey, apiBase: fake.url, timeoutMs });
    impatient = createStripeProvider({ secretKey: fake.secretKey, apiBase: fake.url, timeoutMs: 300 });
  });
  after(async () => {
    await fake.close();
  });

  const posts = (key: string) => fake.received.filter((r) => r.method === 'POST' && r.idempotencyKey === key);
  const intentsFor = (orderId: string) => [...fake.intents.values()].filter((i) => i.metadata.orderId === orderId);

  it('charges with a confirmed PaymentIntent: the amount, the currency in lower case, the token, the order id and our Idempotency-Key reach Stripe', async () => {
    const request = { ...chargeOf('pm_card_visa'), description: 'Order at Engine Room' };
    const ref = refOf(await stripe.charge(request));
    assert.match(ref, /^pi_fake_/);
    const [sent] = posts(request.idempotencyKey);
    assert.equal(sent?.path, '/v1/payment_intents');
    assert.equal(sent?.authorization, `Bearer ${fake.secretKey}`);
    assert.deepEqual(sent?.body, {
      amount: '1999',
      currency: 'eur',
      payment_method: 'pm_card_visa',
      confirm: 'true',
      automatic_payment_methods: { enabled: 'true', allow_redirects: 'never' },
      error_on_requires_action: 'true',
      metadata: { orderId: request.orderId },
      description: 'Order at Engine Room',
    });
  });

  it("a repeat with the same key is answered from Stripe's idempotency store: the same intent, no second one", async () => {
    const request = chargeOf('pm_card_visa');
    const ref = refOf(await stripe.charge(request));
    assert.equal(refOf(await stripe.charge(request)), ref);
    assert.equal(intentsFor(request.orderId).length, 1);
    assert.deepEqual(
      posts(request.idempotencyKey).map((r) => r.replayed),
      [false, true],
    );
  });

  it('a card decline (402 card_error) is declined, and stays declined for that key', async () => {
    const request = chargeOf('pm_card_visa');
    fake.declineNext();
    const result = await stripe.charge(request);
    assert.deepEqual(result, {
      status: 'declined',
      reason: 'insufficient_funds',
      detail: 'Your card has insufficient funds.',
    });
    assert.deepEqual(await stripe.charge(request), result);
    assert.equal(intentsFor(request.orderId).filter((i) => i.status === 'succeeded').length, 0);
  });

  it('a success says what Stripe reports it charged and for which order, even when that is not what was asked', async () => {
    const request = chargeOf('pm_card_visa', newKey('stripe-told'), 4999);
    const told = await stripe.charge(request);
    assert.deepEqual(told, {
      status: 'succeeded',
      providerRef: refOf(told),
      charged: { amount: 4999, currency: 'EUR' },
      orderId: request.orderId,
    });
    fake.tamperNext({ amount: 1, currency: 'usd', metadata: {} });
    const tampered = chargeOf('pm_card_visa', newKey('stripe-tampered'), 4999);
    const result = await stripe.charge(tampered);
    assert.equal(result.status, 'succeeded');
    assert.deepEqual(
      { charged: (result as { charged: unknown }).charged, orderId: (result as { orderId: unknown }).orderId },
      { charged: { amount: 1, currency: 'USD' }, orderId: null },
    );
  });

  it(`refuses to read an answer over ${maxResponseBytes} bytes: the outcome is unknown (retryable), and the retry with the key reads the stored one`, async () => {
    const request = chargeOf('pm_card_visa');
    fake.hugeNext(maxResponseBytes);
    const first = await stripe.charge(request);
    assert.equal(first.status, 'retryable');
    assert.match((first as { reason: string }).reason, /larger than/);
    refOf(await stripe.charge(request));
    assert.equal(intentsFor(request.orderId).length, 1);
  });

  it("keeps Stripe's words out of a decline's reason (they go in its detail): a code passes only when it is a plain identifier", async () => {
    fake.errorNext(402, {
      type: 'card_error',
      code: 'card_declined',
      decline_code: '<b>no</b>',
      message: '<script>x</script>',
    });
    assert.deepEqual(await stripe.charge(chargeOf('pm_card_visa')), {
      status: 'declined',
      reason: 'card_declined',
      detail: '<script>x</script>',
    });
    fake.errorNext(400, {
      type: 'invalid_request_error',
      code: 'amount_too_small',
      message: 'Amount must be at least <i>50</i> cents',
    });
    assert.deepEqual(await stripe.charge(chargeOf('pm_card_visa')), {
      status: 'declined',
      reason: 'refused_by_processor: amount_too_small',
      detail: 'Amount must be at least <i>50</i> cents',
    });
  });

  it('a 500 is retryable, is not retried by the package, and the retry with the key charges once', async () => {
    const request = chargeOf('pm_card_visa');
    fake.failNext();
    const first = await stripe.charge(request);
    assert.equal(first.status, 'retryable');
    assert.equal(posts(request.idempotencyKey).length, 1, 'maxNetworkRetries is 0: our queue retries, not the package');
    refOf(await stripe.charge(request));
    assert.equal(intentsFor(request.orderId).length, 1);
  });

  it('a timeout after Stripe charged is retryable; the retry with the key finds that charge and creates no other', async () => {
    const request = chargeOf('pm_card_visa');
    fake.hangNext();
    const first = await impatient.charge(request);
    assert.equal(first.status, 'retryable');
    assert.match((first as { reason: string }).reason, /timeout/i);
    const [charged] = intentsFor(request.orderId);
    assert.equal(charged?.status, 'succeeded', 'Stripe did the work; only the answer was lost');
    assert.equal(refOf(await stripe.charge(request)), charged.id);
    assert.equal(intentsFor(request.orderId).length, 1);
  });

  it('an intent still processing is retryable; once settled, the retry reports it succeeded although Stripe replays the first answer', async () => {
    const request = chargeOf('pm_card_visa');
    fake.processingNext();
    assert.equal((await stripe.charge(request)).status, 'retryable');
    const [intent] = intentsFor(request.orderId);
    fake.settle(intent!.id);
    assert.equal(refOf(await stripe.charge(request)), intent!.id);
    assert.equal(intentsFor(request.orderId).length, 1);
  });

  it('refunds through the PaymentIntent, once per key; more than what is left is declined', async () => {
    const charge = chargeOf('pm_card_visa', newKey('stripe-paid'), 1000);
    const intentId = refOf(await stripe.charge(charge));
    const refund = {
      idempotencyKey: newKey('stripe-refund'),
      providerRef: intentId,
      amount: { amount: 600, currency: 'EUR' },
    };
    const refundRef = refOf(await stripe.refund(refund));
    assert.match(refundRef, /^re_fake_/);
    assert.equal(refOf(await stripe.refund(refund)), refundRef);
    const [sent] = posts(refund.idempotencyKey);
    assert.deepEqual(sent?.body, { payment_intent: intentId, amount: '600' });
    assert.equal([...fake.refunds.values()].filter((r) => r.payment_intent === intentId).length, 1);
    const over = await stripe.refund({
      idempotencyKey: newKey('stripe-refund'),
      providerRef: intentId,
      amount: { amount: 500, currency: 'EUR' },
    });
    assert.equal(over.status, 'declined');
    const unknown = await stripe.refund({
      idempotencyKey: newKey('stripe-refund'),
      providerRef: 'pi_missing',
      amount: { amount: 1, currency: 'EUR' },
    });
    assert.equal(unknown.status, 'declined');
  });

  it('throws rather than answers when the key is reused for another request or the secret key is wrong', async () => {
    const request = chargeOf('pm_card_visa');
    refOf(await stripe.charge(request));
    await assert.rejects(stripe.charge({ ...request, amount: { amount: 1, currency: 'EUR' } }), /different request/);
    const wrongKey = createStripeProvider({ secretKey: 'sk_test_wrong', apiBase: fake.url, timeoutMs });
    await assert.rejects(wrongKey.charge(chargeOf('pm_card_visa')), /Stripe refused our request/);
  });
});
