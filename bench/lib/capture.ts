// The pgbench reference must be the transaction the server runs today, and the order path keeps
// changing. (The server writes orders in batches; one order alone is a batch of one, and that is
// what pgbench repeats: its figure is the database's for one order per transaction.) So the bench does not trust a hand-written copy: it places one order through the real
// app (buildApp, in this process, on the pgbench database) with a Db that records every statement
// and its parameters, and writes the pgbench script from that record: the same SQL text, each
// parameter as a literal of the type PostgreSQL infers for it (as an untyped parameter would get),
// with the values that must differ per transaction (ids, the Idempotency-Key, the customer, the
// SKUs) replaced by pgbench expressions. bench/pgbench/order*.sql are this output, committed; the
// bench regenerates them at every run and says when the committed copy has drifted.
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { openPostgres, type Db, type Tx } from '../../src/platform/db.ts';
import { customerId, hotSku, sessionToken, skuName } from './seed.ts';

const require = createRequire(import.meta.url);
const { prepareValue } = require('pg/lib/utils.js') as { prepareValue(v: unknown): unknown };

export interface Statement {
  text: string;
  params: unknown[];
}

/**
 * Wraps a Db so that every statement goes into `log`: one unit per statement outside a
 * transaction, and one per transaction (BEGIN, its statements, COMMIT), added when it commits, so
 * that transactions running at once do not interleave in the log.
 */
function recording(db: Db, log: Statement[][], on: () => boolean): Db {
  const rec = <Q extends Db['query']>(query: Q, into: (s: Statement) => void): Q =>
    (async (text: string, params?: readonly unknown[]) => {
      if (on()) into({ text, params: [...(params ?? [])] });
      return query(text, params);
    }) as Q;
  return {
    ...db,
    query: rec(db.query, (s) => log.push([s])),
    transaction: (fn) =>
      db.transaction(async (tx: Tx) => {
        const unit: Statement[] = [{ text: 'BEGIN', params: [] }];
        const result = await fn({ ...tx, query: rec(tx.query, (s) => unit.push(s)) });
        if (on()) log.push([...unit, { text: 'COMMIT', params: [] }]);
        return result;
      }),
  };
}

/** The statements of one POST /v1/orders: the authentication lookup, then BEGIN ... COMMIT. */
export async function captureOrder(
  url: string,
  salt: string,
  lines: { sku: string; quantity: number }[],
  key: string,
): Promise<Statement[]> {
  const log: Statement[][] = [];
  let on = false;
  const db = openPostgres(url, 2);
  const app = await buildApp(
    loadConfig({
      DATABASE_URL: url,
      LOG_LEVEL: 'silent',
      WORKERS: 'off',
      RATE_LIMITS: 'off',
      SHED_TARGET_WAIT_MS: '0',
      SHED_EVENT_LOOP_DELAY_MS: '0',
      SHED_SLOW_UPLOADS_PER_CLIENT: '0',
    }),
    recording(db, log, () => on),
    { logStream: { write: () => {} } },
  );
  try {
    on = true;
    const res = await app.inject({
      method: 'POST',
      url: '/v1/orders',
      headers: {
        authorization: `Bearer ${sessionToken(0, salt)}`,
        'idempotency-key': key,
        'content-type': 'application/json',
      },
      payload: JSON.stringify({ lines, payment: { method: 'card', token: 'tok_ok' } }),
    });
    on = false;
    if (res.statusCode !== 201)
      throw new Error(`capturing the order transaction: POST /v1/orders answered ${res.statusCode} ${res.body}`);
  } finally {
    on = false;
    await app.close();
    await db.close();
  }
  // The app's own timer may write meanwhile (the operations figures, a transaction on ops_ tables
  // of its own): that is not the order's work.
  const order = log.filter((unit) => !unit.some((s) => /\bops_\w+/.test(s.text))).flat();
  const commit = order.findIndex((s) => s.text === 'COMMIT');
  if (commit < 0) throw new Error('capturing the order transaction: no transaction was recorded');
  return order.slice(0, commit + 1);
}

// ---------------------------------------------------------------------------------------------

interface Token {
  value: string;
  expr: string;
}

const idPattern = /\b([a-z]{3})_[0-9a-hjkmnp-tv-z]{26}\b/g;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A literal pgbench leaves alone: quotes doubled, and no ":name" inside (pgbench would take it for a variable). */
function literal(s: string): string {
  return `'${s.replace(/'/g, "''").replace(/:(?=[A-Za-z_])/g, ":' || '")}'`;
}

function paramText(value: unknown): string | null {
  const v = prepareValue(value);
  if (v === null) return null;
  if (Buffer.isBuffer(v)) return `\\x${v.toString('hex')}`;
  return String(v);
}

/** The parameter types PostgreSQL infers for each statement (PREPARE, then pg_prepared_statements). */
async function parameterTypes(url: string, statements: Statement[]): Promise<string[][]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const out: string[][] = [];
    for (const [i, s] of statements.entries()) {
      if (s.params.length === 0) {
        out.push([]);
        continue;
      }
      await c.query(`PREPARE bench_capture_${i} AS ${s.text}`);
      const { rows } = await c.query<{ t: string[] }>(
        'SELECT parameter_types::text[] AS t FROM pg_prepared_statements WHERE name = $1',
        [`bench_capture_${i}`],
      );
      out.push(rows[0]!.t);
      await c.query(`DEALLOCATE bench_capture_${i}`);
    }
    return out;
  } finally {
    await c.end();
  }
}

/** The statement with each $n written as an expression of its value (cast to its inferred type). */
const timestamp = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/g;

function inline(s: Statement, types: string[], tokens: Token[], uuidExpr: () => string): string {
  const exprs = s.params.map((value, i) => {
    const type = types[i] ?? 'text';
    // Timestamps (createdAt in the stored answer and the event) as a constant, so the output is stable.
    const text = paramText(value)?.replace(timestamp, '2025-01-01T00:00:00.000Z') ?? null;
    if (text === null) return `NULL::${type}`;
    const whole = tokens.find((t) => t.value === text);
    if (whole) return `(${whole.expr})::${type}`;
    if (type === 'uuid' && uuidPattern.test(text)) return `(${uuidExpr()})`;
    const found = tokens.filter((t) => text.includes(t.value)).sort((a, b) => b.value.length - a.value.length);
    if (found.length === 0) return `${literal(text)}::${type}`;
    const re = new RegExp(found.map((t) => t.value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
    const parts: string[] = [];
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (m.index! > last) parts.push(literal(text.slice(last, m.index)));
      parts.push(`(${found.find((t) => t.value === m[0])!.expr})`);
      last = m.index! + m[0].length;
    }
    if (last < text.length) parts.push(literal(text.slice(last)));
    return `(${parts.join(' || ')})::${type}`;
  });
  return s.text
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\$(\d+)\b/g, (_, n: string) => exprs[Number(n) - 1]!);
}

export interface GeneratedScripts {
  /** Two lines on SKUs spread over the catalog (steady, retry-storm). */
  steady: string;
  /** One unit of the hot SKU, in the server's own statement order. */
  hot: string;
  /** The same with every statement that writes stock moved to just before COMMIT. */
  hotStockLast: string;
  /** How many statements the server sends for one order (the authentication lookup included). */
  statements: number;
}

const header = (
  what: string,
  vars: string,
) => `-- GENERATED by \`npm run bench -- --write-pgbench\` from the statements the server sends for one
-- POST /v1/orders (bench/lib/capture.ts): ${what}.
-- The same SQL text; each parameter is written as a literal of the type PostgreSQL infers for it;
-- ids, the Idempotency-Key, the customer and the SKUs become pgbench expressions, unique per
-- transaction. Edit the order path, not this file; the bench says when this copy is out of date.
-- Needs a database seeded like the bench's (bench/lib/seed.ts):
--   pgbench -n -M prepared -c <clients> -j 2 -T <seconds> ${vars}-D salt=<salt> -f <this file> <url>
`;

export async function generateScripts(url: string, salt: string): Promise<GeneratedScripts> {
  const skus = [skuName(1), skuName(2)];
  // One order first, not recorded: what a process does once (checking that a queue exists, say)
  // is not part of every order.
  await captureOrder(url, salt, [{ sku: skus[0]!, quantity: 1 }], 'pgbench-capture-warm-up');
  const steady = await captureOrder(
    url,
    salt,
    skus.map((sku) => ({ sku, quantity: 1 })),
    'pgbench-capture-steady',
  );
  const hot = await captureOrder(url, salt, [{ sku: hotSku, quantity: 1 }], 'pgbench-capture-hot');
  const render = async (statements: Statement[], key: string, extraTokens: Token[]) => {
    const types = await parameterTypes(url, statements);
    const tokenHash = `\\x${createHash('sha256').update(sessionToken(0, salt)).digest('hex')}`;
    const hashExpr = "sha256(convert_to('ers_bench_' || :client_id || '_' || :salt, 'UTF8'))";
    const tokens: Token[] = [
      { value: tokenHash, expr: hashExpr },
      // The session lookup takes an array of hashes (lookups coalesce): as pg writes a bytea[] of one.
      { value: `{\\${tokenHash}}`, expr: `ARRAY[${hashExpr}]` },
      { value: key, expr: "'pgb-' || :n" },
      // Idempotency keys are stored as their SHA-256 (a bytea[] of one, as the session hashes).
      {
        value: `{\\\\x${createHash('sha256').update(key).digest('hex')}}`,
        expr: "ARRAY[sha256(convert_to('pgb-' || :n, 'UTF8'))]",
      },
      { value: customerId(0), expr: "'usr_bench_' || :client_id" },
      ...extraTokens,
    ];
    // A sealed idempotent answer is random bytes (a fresh IV each time): zeros of its length, so the
    // script is stable (storeOutcomes' fourth parameter).
    for (const s of statements) {
      const sealed = /^UPDATE idempotency_keys/.test(s.text.trim()) ? paramText(s.params[3]) : null;
      if (sealed)
        tokens.push({ value: sealed, expr: `ARRAY[decode(repeat('00', ${(sealed.length - 5) / 2}), 'hex')]` });
    }
    // Every generated id (ord_..., pay_..., evt_...) becomes one unique per transaction.
    const ids = new Map<string, string>();
    for (const s of statements) {
      for (const p of s.params) {
        for (const m of (paramText(p) ?? '').matchAll(idPattern)) {
          if (!ids.has(m[0])) ids.set(m[0], `'${m[1]}_pgb${ids.size}_' || :n`);
        }
      }
    }
    for (const [value, expr] of ids) tokens.push({ value, expr });
    // UUIDs inside a text (a job id derived from a payment id, within the JSON of a batch insert)
    // differ per transaction too; left constant, every pgbench job after the first would be a
    // conflict that inserts nothing.
    const uuidsInText = new Map<string, string>();
    for (const s of statements) {
      for (const p of s.params) {
        for (const m of (paramText(p) ?? '').matchAll(
          /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi,
        )) {
          if (!uuidsInText.has(m[0])) uuidsInText.set(m[0], `md5(:n::text || '-t${uuidsInText.size}')::uuid::text`);
        }
      }
    }
    for (const [value, expr] of uuidsInText) tokens.push({ value, expr });
    let uuids = 0;
    return statements.map((s, i) => inline(s, types[i]!, tokens, () => `md5(:n::text || '-${uuids++}')::uuid`) + ';');
  };
  const steadySql = await render(steady, 'pgbench-capture-steady', [
    { value: skus[0]!, expr: "'B' || lpad(:s1::text, 5, '0')" },
    { value: skus[1]!, expr: "'B' || lpad(:s2::text, 5, '0')" },
  ]);
  const hotSql = await render(hot, 'pgbench-capture-hot', []);
  const writesStock = (sql: string) => /stock_levels|stock_movements/.test(sql) && /\bUPDATE\b|\bINSERT\b/.test(sql);
  const commit = hotSql.length - 1;
  const hotLast = [
    ...hotSql.slice(0, commit).filter((s) => !writesStock(s)),
    ...hotSql.slice(0, commit).filter(writesStock),
    hotSql[commit]!,
  ];
  const n = '\\set n random(1, 9000000000000000000)\n';
  return {
    steady:
      header('two lines on distinct SKUs spread over the catalog', '-D nskus=<SKUs> ') +
      '\\set s1 random(1, :nskus - 8)\n\\set s2 :s1 + random(1, 8)\n' +
      n +
      steadySql.join('\n') +
      '\n',
    hot: header("one unit of the hot SKU, in the server's statement order", '') + n + hotSql.join('\n') + '\n',
    hotStockLast:
      header(
        'one unit of the hot SKU, every statement that writes stock moved to just before COMMIT (the\n-- best ordering for a hot row: its lock is held the shortest)',
        '',
      ) +
      n +
      hotLast.join('\n') +
      '\n',
    statements: steady.length,
  };
}
