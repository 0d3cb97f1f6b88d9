// How long a message takes from being posted to one API process to arriving on a live event stream
// held open on another process (PostgreSQL LISTEN/NOTIFY between them). A benchmark, not a test:
// it asserts nothing.
//
//   node bench/message-latency.ts [--messages 200] [--warmup 20] [--database-url postgres://...]
//
// It creates a scratch database next to the given one, starts `engine-room start` on it twice as
// child processes (WORKERS=off in both: message events need no job worker, they come straight from
// NOTIFY and the outbox), opens the customer's stream on process B, and has staff post messages one
// at a time to process A, timing each from the start of the POST to the frame's arrival on B.
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { once } from 'node:events';
import { createClient, endpoints, fetchTransport } from '../src/client.ts';
import { openEventStream } from '../test/support/event-source.ts';
import { createScratch, defaultDatabaseUrl } from './lib/engine.ts';
import { join } from 'node:path';
import { packageRoot } from '../src/platform/paths.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '20' },
    'database-url': { type: 'string', default: process.env.DATABASE_URL ?? defaultDatabaseUrl },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('usage: node bench/message-latency.ts [--messages 200] [--warmup 20] [--database-url URL]\n');
  process.exit(0);
}
const messages = Number(values.messages);
const warmup = Number(values.warmup);
const baseUrl = values['database-url']!;
const adminEmail = 'bench-admin@example.com';
const adminPassword = 'bench-admin-password';

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function startProcess(databaseUrl: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(packageRoot, 'src', 'cli.ts'), 'start'], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      WORKERS: 'off',
      ADMIN_EMAIL: adminEmail,
      ADMIN_PASSWORD: adminPassword,
      MESSAGE_RATE_LIMIT: '1000000',
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let banner = '';
  child.stderr!.on('data', (d: Buffer) => {
    banner += d.toString();
  });
  for (let i = 0; !banner.includes('listening on'); i++) {
    if (i > 300 || child.exitCode !== null) throw new Error(`process on port ${port} did not start:\n${banner}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return child;
}

async function main() {
  const scratch = await createScratch(baseUrl, 'bench_msg');
  const portA = 3900 + Math.floor(Math.random() * 40);
  const portB = portA + 50;
  const children: ChildProcess[] = [];
  try {
    // One after the other: the first applies the migrations.
    children.push(await startProcess(scratch.url, portA));
    children.push(await startProcess(scratch.url, portB));
    const a = createClient(fetchTransport(`http://127.0.0.1:${portA}`));
    const { token: staffToken } = await a.ok(endpoints.login, { body: { email: adminEmail, password: adminPassword } });
    const { token: customerToken } = await a.ok(endpoints.signup, {
      body: { email: 'bench-customer@example.com', password: 'bench password 123', name: 'Bench Customer' },
    });
    const conversation = await a.ok(endpoints.openConversation, {
      token: customerToken,
      body: { subject: 'Latency', body: 'hello' },
    });

    const stream = await openEventStream(`http://127.0.0.1:${portB}/v1/events`, {
      authorization: `Bearer ${customerToken}`,
    });
    await stream.next((e) => e.event === 'ready');

    const total: number[] = [];
    const afterResponse: number[] = [];
    const post: number[] = [];
    for (let i = 0; i < warmup + messages; i++) {
      const body = `latency probe ${i}`;
      const arrived = stream.next((e) => e.event === 'message.created' && e.data.includes(`"body":"${body}"`), 10_000);
      const t0 = performance.now();
      await a.ok(endpoints.postMessage, { token: staffToken, params: { id: conversation.id }, body: { body } });
      const t1 = performance.now();
      await arrived;
      const t2 = performance.now();
      if (i < warmup) continue;
      total.push(t2 - t0);
      post.push(t1 - t0);
      afterResponse.push(t2 - t1);
    }
    stream.close();

    const row = (name: string, xs: number[]) => {
      const s = [...xs].sort((x, y) => x - y);
      return `${name.padEnd(34)} ${percentile(s, 50).toFixed(1).padStart(8)} ${percentile(s, 90).toFixed(1).padStart(8)} ${percentile(s, 99).toFixed(1).padStart(8)} ${s[s.length - 1]!.toFixed(1).padStart(8)}`;
    };
    process.stdout.write(
      `\n${messages} messages (after ${warmup} warm-up), posted one at a time to process A, received on process B\n\n`,
    );
    process.stdout.write(
      `${'ms'.padEnd(34)} ${'median'.padStart(8)} ${'p90'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)}\n`,
    );
    process.stdout.write(`${row('post -> arrival on B', total)}\n`);
    process.stdout.write(`${row('  of which the POST on A', post)}\n`);
    process.stdout.write(`${row('  response on A -> arrival on B', afterResponse)}\n`);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((child) => (child.exitCode === null ? once(child, 'exit') : undefined)));
    await scratch.drop();
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
