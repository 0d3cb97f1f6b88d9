// The retention job on both engines: rows past their retention go and recent ones stay, in every
// table it prunes; an event that an outbox reader has not passed, or that a delivery or an email
// still needs, stays however old; no transaction is left open between two batches; and, on real
// PostgreSQL, orders are placed while a large prune runs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { engines } from './support/database.ts';
import { startTestEnv, type TestEnv } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { endpoints } from '../src/client.ts';
import type { Queryable } from '../src/platform/db.ts';
import { firstIdAt } from '../src/platform/ids.ts';
import { publishEvent } from '../src/platform/events.ts';
import { pruneOldRows } from '../src/modules/retention/service.ts';
import { outboxReaderPositions } from '../src/modules/retention/rules.ts';

const day = 24 * 3600 * 1000;
const settings = {
  eventRetentionDays: 30,
  webhookAttemptRetentionDays: 30,
  emailRetentionDays: 30,
  sessionRetentionDays: 30,
  idempotencyRetentionHours: 24,
  opsFiguresRetentionHours: 25,
  auditRunRetentionDays: 30,
};

/** Moves every outbox reader (the webhook dispatcher, the operations figures, the email reader), or those given, to the event. */
async function readersPassed(
  db: Queryable,
  eventId: string,
  readers: readonly string[] = outboxReaderPositions,
): Promise<void> {
  for (const table of readers) {
    await db.query(`UPDATE ${table} SET tx = e.tx, id = e.id FROM events e WHERE e.id = $1`, [eventId]);
  }
}

/** An id of this prefix made `ago` ms ago. */
function idMadeAgo(prefix: 'eml' | 'whd', ago: number): string {
  return firstIdAt(prefix, Date.now() - ago).slice(0, -16) + randomBytes(8).toString('hex');
}

async function ids(db: Queryable, sql: string): Promise<string[]> {
  return (await db.query<{ id: string }>(sql)).map((r) => r.id).sort();
}

for (const engine of engines('one')) {
  describe(`retention [${engine}]`, () => {
    let env: TestEnv;
    before(async () => {
      env = await startTestEnv(engine);
    });
    after(async () => {
      await env?.close();
    });

    it('knows every outbox reader with a position: an event goes only once each has passed it', async () => {
      assert.deepEqual([...outboxReaderPositions].sort(), [
        'email_outbox_cursor',
        'ops_outbox_cursor',
        'webhook_dispatch_cursor',
      ]);
      const tables = await env.database.db.query<{ name: string }>(
        "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE '%cursor' ORDER BY 1",
      );
      assert.deepEqual(
        tables.map((t) => t.name),
        [...outboxReaderPositions].sort(),
        'a cursor table retention does not know of',
      );
    });

    it('removes what is past its retention from every table and keeps the rest', async () => {
      const db = env.database.db;
      const user = await env.customer();
      const ev = async (type: string) => (await db.transaction((tx) => publishEvent(tx, type, {}, []))).id;
      // Events: old and read, old and read but with a pending delivery, old and read but with an
      // email, recent, and old but not yet read by the dispatcher.
      const [oldRead, oldPending, oldMailed, recent] = [
        await ev('order.created'),
        await ev('order.paid'),
        await ev('order.paid'),
        await ev('order.created'),
      ];
      await readersPassed(db, recent);
      const unread = await ev('order.created');
      await db.query("UPDATE events SET created_at = now() - interval '31 days' WHERE id = ANY($1)", [
        [oldRead, oldPending, oldMailed, unread],
      ]);
      await db.query(
        "INSERT INTO webhook_endpoints (id, url, events, secret) VALUES ('whe_ret', 'https://hooks.example/x', '{*}', 's')",
      );
      await db.query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, status) VALUES ('whe_ret', $1, 'succeeded'), ('whe_ret', $2, 'pending')",
        [oldRead, oldPending],
      );
      // Attempts of the delivery of `recent` (their own retention; the event stays).
      await db.query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, status) VALUES ('whe_ret', $1, 'succeeded')",
        [recent],
      );
      const oldAttempt = idMadeAgo('whd', 31 * day);
      const newAttempt = idMadeAgo('whd', 29 * day);
      for (const id of [oldAttempt, newAttempt]) {
        await db.query(
          `INSERT INTO webhook_delivery_attempts (id, endpoint_id, event_id, event_type, attempt, succeeded, status_code, duration_ms, started_at, finished_at)
           VALUES ($1, 'whe_ret', $2, 'order.created', 1, true, 200, 5, now(), now())`,
          [id, recent],
        );
      }
      // Emails: one old (on a recent event), one recent (on an old event, which it keeps).
      const oldEmail = idMadeAgo('eml', 31 * day);
      const newEmail = idMadeAgo('eml', 1 * day);
      for (const [id, eventId] of [
        [oldEmail, recent],
        [newEmail, oldMailed],
      ] as const) {
        await db.query(
          `INSERT INTO emails (id, event_id, recipient_id, kind, to_address, subject, text_body, html_body, status, transport)
           VALUES ($1, $2, $3, 'paid', 'a@example.com', 's', 't', 'h', 'sent', 'mailbox')`,
          [id, eventId, user.id],
        );
      }
      // Idempotency keys, sessions, rate-limit counters, stream presence, webhook secrets.
      await db.query(
        `INSERT INTO idempotency_keys (principal_id, key_hash, request_hash, created_at)
         VALUES ($1, sha256('ret-old'), '\\x00', now() - interval '25 hours'), ($1, sha256('ret-new'), '\\x00', now() - interval '23 hours')`,
        [user.id],
      );
      await db.query(
        `INSERT INTO sessions (id, user_id, token_hash, expires_at)
         VALUES ('ses_ret_old', $1, '\\x01', now() - interval '31 days'), ('ses_ret_expired', $1, '\\x02', now() - interval '29 days')`,
        [user.id],
      );
      await db.query(
        `INSERT INTO rate_limit_hits (bucket, window_start, hits)
         VALUES ('ret:old', now() - interval '26 hours', 3), ('ret:new', now() - interval '1 hour', 3)`,
      );
      await db.query(
        `INSERT INTO event_stream_connections (id, user_id, seen_at)
         VALUES ('esc_ret_old', $1, now() - interval '2 hours'), ('esc_ret_new', $1, now())`,
        [user.id],
      );
      await db.query(
        `INSERT INTO webhook_endpoints (id, url, events, secret, previous_secret, previous_secret_expires_at)
         VALUES ('whe_ret_expired', 'https://hooks.example/y', '{*}', 's', 'old', now() - interval '1 second'),
                ('whe_ret_grace', 'https://hooks.example/z', '{*}', 's', 'old', now() + interval '1 hour')`,
      );
      // The operations figures: per-flush rollups, order figures, process heartbeats, audit runs.
      await db.query(
        `INSERT INTO ops_rollups (at, process_id, counters, latency) VALUES (now() - interval '26 hours', 'p-ret', '{}', '{}'), (now() - interval '23 hours', 'p-ret', '{}', '{}')`,
      );
      await db.query(
        `INSERT INTO ops_order_stats (bucket, type, currency, count, amount) VALUES (now() - interval '26 hours', 'ret.old', 'EUR', 1, 1), (now() - interval '23 hours', 'ret.new', 'EUR', 1, 1)`,
      );
      await db.query(
        `INSERT INTO ops_processes (id, host, pid, version, started_at, seen_at) VALUES ('p-ret-gone', 'h', 1, 'v', now() - interval '3 days', now() - interval '25 hours'), ('p-ret-alive', 'h', 2, 'v', now(), now())`,
      );
      await db.query(
        `INSERT INTO ops_audit_runs (ran_at, ok, checks, duration_ms) VALUES (now() - interval '31 days', true, '[]', 1), (now() - interval '29 days', true, '[]', 1)`,
      );

      const removed = await pruneOldRows(db, settings, { batchSize: 1 });
      assert.deepEqual(removed, {
        emails: 1,
        webhook_delivery_attempts: 1,
        events: 1,
        idempotency_keys: 1,
        sessions: 1,
        rate_limit_hits: 1,
        event_stream_connections: 1,
        'webhook_endpoints (expired previous secrets)': 1,
        ops_rollups: 1,
        ops_order_stats: 1,
        ops_processes: 1,
        ops_audit_runs: 1,
      });
      assert.equal(
        (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ops_rollups WHERE process_id = 'p-ret'"))[0]!.n,
        1,
      );
      assert.deepEqual(await ids(db, "SELECT type AS id FROM ops_order_stats WHERE type LIKE 'ret.%'"), ['ret.new']);
      assert.deepEqual(await ids(db, "SELECT id FROM ops_processes WHERE id LIKE 'p-ret-%'"), ['p-ret-alive']);
      assert.equal(
        (
          await db.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM ops_audit_runs WHERE ran_at < now() - interval '20 days'",
          )
        )[0]!.n,
        1,
      );

      assert.deepEqual(
        await ids(
          db,
          `SELECT id FROM events WHERE id IN ('${[oldRead, oldPending, oldMailed, recent, unread].join("','")}')`,
        ),
        [oldPending, oldMailed, recent, unread].sort(),
        'only the old event that was read and needed by nothing went',
      );
      assert.deepEqual(
        await ids(db, "SELECT event_id AS id FROM webhook_deliveries WHERE endpoint_id = 'whe_ret'"),
        [oldPending, recent].sort(),
        'its delivery went with it',
      );
      assert.deepEqual(await ids(db, "SELECT id FROM webhook_delivery_attempts WHERE endpoint_id = 'whe_ret'"), [
        newAttempt,
      ]);
      assert.deepEqual(await ids(db, `SELECT id FROM emails WHERE id IN ('${oldEmail}', '${newEmail}')`), [newEmail]);
      assert.deepEqual(
        await ids(
          db,
          "SELECT 'ret-new' AS id FROM idempotency_keys WHERE key_hash = sha256('ret-new') UNION ALL SELECT 'ret-old' FROM idempotency_keys WHERE key_hash = sha256('ret-old')",
        ),
        ['ret-new'],
      );
      assert.deepEqual(await ids(db, "SELECT id FROM sessions WHERE id LIKE 'ses_ret_%'"), ['ses_ret_expired']);
      assert.deepEqual(await ids(db, "SELECT bucket AS id FROM rate_limit_hits WHERE bucket LIKE 'ret:%'"), [
        'ret:new',
      ]);
      assert.deepEqual(await ids(db, "SELECT id FROM event_stream_connections WHERE id LIKE 'esc_ret_%'"), [
        'esc_ret_new',
      ]);
      assert.deepEqual(await ids(db, 'SELECT id FROM webhook_endpoints WHERE previous_secret IS NOT NULL'), [
        'whe_ret_grace',
      ]);

      // Once every reader has passed it and its email is gone, the unread event goes too; the
      // event whose delivery is still pending stays until that delivery ends. The webhook
      // dispatcher alone having passed it is not enough: the operations figures count it too, and
      // the email reader has yet to enqueue its email.
      await readersPassed(db, unread, ['webhook_dispatch_cursor']);
      await db.query('DELETE FROM emails WHERE id = $1', [newEmail]);
      assert.deepEqual(
        await pruneOldRows(db, settings, { batchSize: 100 }),
        { events: 1 },
        'only the mailed event: the operations and email readers have not passed the unread one',
      );
      await readersPassed(db, unread, ['webhook_dispatch_cursor', 'ops_outbox_cursor']);
      assert.deepEqual(
        await pruneOldRows(db, settings, { batchSize: 100 }),
        {},
        'the email reader has not passed the unread event',
      );
      await readersPassed(db, unread);
      assert.deepEqual(await pruneOldRows(db, settings, { batchSize: 100 }), { events: 1 });
      await db.query("UPDATE webhook_deliveries SET status = 'failed' WHERE event_id = $1", [oldPending]);
      assert.deepEqual(await pruneOldRows(db, settings, { batchSize: 100 }), { events: 1 });
      await db.query("DELETE FROM webhook_endpoints WHERE id LIKE 'whe_ret%'");
    });

    it('leaves no transaction open between batches: an order placed meanwhile is placed and its event passes the outbox horizon', async () => {
      const db = env.database.db;
      const sku = `RET-${engine}`;
      await env.product([{ sku, stock: 10 }]);
      const buyer = await env.customer();
      await db.query(
        `INSERT INTO idempotency_keys (principal_id, key_hash, request_hash, created_at)
         SELECT $1, sha256(convert_to('ret-batch-' || g, 'UTF8')), '\\x00', now() - interval '2 days' FROM generate_series(1, 5) g`,
        [buyer.id],
      );
      let placed = 0;
      const removed = await pruneOldRows(db, settings, {
        batchSize: 2,
        between: async () => {
          if (placed++ > 0) return;
          const order = await env.client.ok(endpoints.placeOrder, {
            token: buyer.token,
            idempotencyKey: `ret-${engine}`,
            body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
          });
          // Below the horizon every transaction is over: a reader of the outbox can pass this event.
          await waitFor(
            'the order event below the outbox horizon',
            async () => {
              const [row] = await db.query<{ below: boolean }>(
                `SELECT e.tx < pg_snapshot_xmin(pg_current_snapshot()) AS below FROM events e WHERE e.type = 'order.created' AND e.data->'order'->>'id' = $1`,
                [order.id],
              );
              return row?.below ? true : undefined;
            },
            10_000,
          );
        },
      });
      assert.ok(placed >= 2, 'the prune ran several batches');
      assert.equal(removed.idempotency_keys, 5);
    });

    if (engine === 'postgres') {
      it('orders are placed while a prune of many rows runs (real concurrency on PostgreSQL)', async () => {
        const db = env.database.db;
        const sku = 'RET-CONCURRENT';
        await env.product([{ sku, stock: 1000 }]);
        const buyers = await env.customers(10);
        // 20,000 old events read by the dispatcher, and 20,000 old idempotency keys.
        await db.transaction(async (tx) => {
          await tx.query(
            `INSERT INTO events (id, type, data, created_at)
             SELECT 'evt_0000old' || lpad(g::text, 8, '0'), 'order.created', '{}', now() - interval '40 days' FROM generate_series(1, 20000) g`,
          );
          await tx.query(
            `INSERT INTO idempotency_keys (principal_id, key_hash, request_hash, created_at)
             SELECT $1, sha256(convert_to('ret-many-' || g, 'UTF8')), '\\x00', now() - interval '2 days' FROM generate_series(1, 20000) g`,
            [buyers[0]!.id],
          );
        });
        for (const table of outboxReaderPositions) {
          await db.query(
            `UPDATE ${table} SET (tx, id) = (SELECT tx, id FROM events ORDER BY tx DESC, id DESC LIMIT 1)`,
          );
        }
        const before = await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM events WHERE created_at > now() - interval '1 day'",
        );

        let pruneDone = false;
        const prune = pruneOldRows(db, settings, { batchSize: 200 }).finally(() => {
          pruneDone = true;
        });
        const orders: { status: number; whilePruning: boolean }[] = [];
        await Promise.all(
          buyers.map(async (buyer, b) => {
            for (let i = 0; i < 5; i++) {
              const res = await env.client.call(endpoints.placeOrder, {
                token: buyer.token,
                idempotencyKey: `ret-c-${b}-${i}`,
                body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
              });
              orders.push({ status: res.status, whilePruning: !pruneDone });
            }
          }),
        );
        const removed = await prune;
        assert.deepEqual(
          orders.map((o) => o.status),
          Array(50).fill(201),
        );
        assert.ok(
          orders.some((o) => o.whilePruning),
          'some orders were placed while the prune ran',
        );
        assert.equal(removed.events, 20000);
        assert.equal(removed.idempotency_keys, 20000);
        const [left] = await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM events WHERE id LIKE 'evt_0000old%'",
        );
        assert.equal(left!.n, 0);
        const after = await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM events WHERE created_at > now() - interval '1 day'",
        );
        assert.equal(after[0]!.n, before[0]!.n + 50, "every recent event stays: the new orders' ones too");
        const [stock] = await db.query<{ reserved: number }>('SELECT reserved FROM stock_levels WHERE sku = $1', [sku]);
        assert.equal(stock!.reserved, 50);
      });
    }
  });
}
