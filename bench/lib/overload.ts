// The two load-shedding scenarios of issue 31, run by the load generator (loadgen.ts):
// - flash-burst: every buyer (one per client, each signed in) orders one unit of a fresh SKU of
//   --burst-stock units at the same moment; a few rounds, each on its own SKU. What a flash sale
//   asks: exactly the stock placed, the rest out_of_stock, nothing shed while the wait stays under
//   the target, and how long the last buyer waited.
// - overload: first the best rate this machine places orders at (closed loop, --clients), then
//   arrivals at twice that rate (open loop: an arrival does not wait for an earlier answer, as
//   buyers do not) for --seconds. What it asks: the p99 of accepted orders, the excess refused with
//   503 and Retry-After, and the rate placed against the best.
import { httpClient, jsonOf, type HttpClient, type Reply } from './http.ts';
import { latencyRecorder, type Percentiles } from './stats.ts';
import type { Customer } from './seed.ts';

export interface BurstRound {
  buyers: number;
  sku: string;
  placed: number;
  outOfStock: number;
  shed: number;
  /** 503s without Retry-After (must be 0). */
  shedWithoutRetryAfter: number;
  other: Record<string, number>;
  latency: Percentiles;
  /** From the first request sent to the last answer. */
  allAnsweredMs: number;
  /** Distinct order ids in the 201 answers (a doubled order would show as fewer ids than 201s). */
  distinctOrders: number;
  /** The server's refusals in this round by reason (engine_room_requests_shed_total, first API process). */
  shedReasons: Record<string, number>;
  /** Latency of the answers that were not 503 (placed or out_of_stock): the wait of those served. */
  served: Percentiles;
  /** Latency of the 503s: at once (predicted) or after waiting (wait). */
  refused: Percentiles;
}

/** engine_room_requests_shed_total by reason, from a process's /metrics. */
async function shedCounts(http: HttpClient, token: string): Promise<Record<string, number>> {
  const reply = await http.request('GET', '/metrics', { token, timeoutMs: 30_000 });
  const counts: Record<string, number> = {};
  for (const m of reply.body.matchAll(/^engine_room_requests_shed_total\{reason="(\w+)",priority="(\w+)"\} (\d+)/gm)) {
    const key = `${m[1]}/${m[2]}`;
    counts[key] = (counts[key] ?? 0) + Number(m[3]);
  }
  return counts;
}

export interface OverloadFigures {
  calibrationSeconds: number;
  /** Orders per second the closed loop placed: the machine's best. */
  bestRate: number;
  offeredRate: number;
  seconds: number;
  arrivals: number;
  placed: number;
  placedRate: number;
  shed: number;
  shedWithoutRetryAfter: number;
  other: Record<string, number>;
  accepted: Percentiles;
  shedAnswer: Percentiles;
  /** Idempotency keys of the arrivals answered 201, for the database check. */
  acceptedKeys: string[];
  /** Keys of the arrivals answered 503: none may have placed an order. */
  shedKeys: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const orderBody = (sku: string, paymentToken: string) => ({
  lines: [{ sku, quantity: 1 }],
  payment: { method: 'card', token: paymentToken },
});

function statusOf(reply: Reply): string {
  if (reply.status === 0) return reply.error ?? 'network error';
  const code = reply.status >= 400 ? jsonOf<{ code?: string }>(reply)?.code : undefined;
  return code ? `${reply.status} ${code}` : String(reply.status);
}

/** One client per buyer (its own sockets, as separate browsers), all of them ordering at once. */
export async function flashBurst(o: {
  targets: string[];
  customers: Customer[];
  adminToken: string;
  stock: number;
  rounds: number;
  tag: string;
  paymentToken: string;
  timeoutMs: number;
  log: (line: string) => void;
}): Promise<BurstRound[]> {
  const admin = httpClient(o.targets[0]!);
  const clients: HttpClient[] = o.targets.map((t) => httpClient(t));
  const rounds: BurstRound[] = [];
  try {
    // An unmeasured round of a tenth of the buyers on its own SKU first: a flash sale meets a
    // server that has been serving (code compiled, pools open), not one just started. The other
    // nine tenths still connect for the first time in round 1.
    const warmSku = `BURST-${o.tag}-warm`;
    await admin.request('POST', '/v1/products', {
      token: o.adminToken,
      timeoutMs: 30_000,
      body: {
        name: 'Flash burst warm-up',
        variants: [{ sku: warmSku, price: { amount: 2500, currency: 'EUR' }, stock: o.stock }],
      },
    });
    await Promise.all(
      o.customers.slice(0, Math.ceil(o.customers.length / 10)).map((c, i) =>
        clients[i % clients.length]!.request('POST', '/v1/orders', {
          token: c.token,
          idempotencyKey: `${o.tag}-warm-${i}`,
          timeoutMs: o.timeoutMs,
          body: orderBody(warmSku, o.paymentToken),
        }),
      ),
    );
    for (let round = 1; round <= o.rounds; round++) {
      const sku = `BURST-${o.tag}-${round}`;
      let created = await admin.request('POST', '/v1/products', {
        token: o.adminToken,
        timeoutMs: 30_000,
        body: {
          name: `Flash burst ${round}`,
          variants: [{ sku, price: { amount: 2500, currency: 'EUR' }, stock: o.stock }],
        },
      });
      // Shed while the previous round's payments run (the embedded database shares the event loop): back after Retry-After.
      for (let tries = 0; created.status === 503 && tries < 30; tries++) {
        await sleep(1000);
        created = await admin.request('POST', '/v1/products', {
          token: o.adminToken,
          timeoutMs: 30_000,
          body: {
            name: `Flash burst ${round}`,
            variants: [{ sku, price: { amount: 2500, currency: 'EUR' }, stock: o.stock }],
          },
        });
      }
      if (created.status !== 201) throw new Error(`creating the burst SKU: ${created.status} ${created.body}`);
      await sleep(1000); // the previous round's payments and the product's creation settle
      const latency = latencyRecorder();
      const served = latencyRecorder();
      const refused = latencyRecorder();
      const shedBefore = await shedCounts(admin, o.adminToken);
      const statuses: Record<string, number> = {};
      const ids = new Set<string>();
      let shedWithoutRetryAfter = 0;
      const started = performance.now();
      await Promise.all(
        o.customers.map(async (c, i) => {
          const reply = await clients[i % clients.length]!.request('POST', '/v1/orders', {
            token: c.token,
            idempotencyKey: `${o.tag}-r${round}-${i}`,
            timeoutMs: o.timeoutMs,
            body: orderBody(sku, o.paymentToken),
          });
          latency.add(reply.ms);
          (reply.status === 503 ? refused : served).add(reply.ms);
          const key = statusOf(reply);
          statuses[key] = (statuses[key] ?? 0) + 1;
          if (reply.status === 201) ids.add(jsonOf<{ id: string }>(reply)!.id);
          if (reply.status === 503 && !reply.retryAfter) shedWithoutRetryAfter++;
        }),
      );
      const allAnsweredMs = performance.now() - started;
      const { '201': placed = 0, '409 out_of_stock': outOfStock = 0, '503 unavailable': shed = 0, ...other } = statuses;
      const shedAfter = await shedCounts(admin, o.adminToken);
      const shedReasons = Object.fromEntries(
        Object.entries(shedAfter)
          .map(([k, n]) => [k, n - (shedBefore[k] ?? 0)])
          .filter(([, n]) => Number(n) > 0),
      );
      const r: BurstRound = {
        buyers: o.customers.length,
        sku,
        placed,
        outOfStock,
        shed,
        shedWithoutRetryAfter,
        other,
        latency: latency.summary(),
        allAnsweredMs,
        distinctOrders: ids.size,
        shedReasons,
        served: served.summary(),
        refused: refused.summary(),
      };
      rounds.push(r);
      o.log(
        `flash-burst round ${round}: ${placed} placed, ${outOfStock} out_of_stock, ${shed} x 503 ${JSON.stringify(shedReasons)}, other ${JSON.stringify(other)}; p50 ${r.latency.p50.toFixed(0)} ms, p99 ${r.latency.p99.toFixed(0)} ms, all answered in ${allAnsweredMs.toFixed(0)} ms; served max ${r.served.max.toFixed(0)} ms, 503 p50 ${r.refused.p50.toFixed(0)} ms`,
      );
    }
  } finally {
    admin.close();
    for (const c of clients) c.close();
  }
  return rounds;
}

/** Places orders in a closed loop (each client orders again once answered), then at twice that rate open loop. */
export async function overload(o: {
  targets: string[];
  customers: Customer[];
  clients: number;
  skus: string[];
  calibrationSeconds: number;
  seconds: number;
  factor: number;
  tag: string;
  paymentToken: string;
  timeoutMs: number;
  log: (line: string) => void;
}): Promise<OverloadFigures> {
  const clients: HttpClient[] = o.targets.map((t) => httpClient(t));
  const sku = (n: number) => o.skus[n % o.skus.length]!;
  try {
    // 1. The best rate: a closed loop, 2 s of warm-up, then counted.
    let counting = false;
    let placedInCalibration = 0;
    let n = 0;
    const calibrateUntil = Date.now() + 2000 + o.calibrationSeconds * 1000;
    setTimeout(() => {
      counting = true;
    }, 2000);
    await Promise.all(
      Array.from({ length: o.clients }, async (_, c) => {
        const http = clients[c % clients.length]!;
        const customer = o.customers[c % o.customers.length]!;
        while (Date.now() < calibrateUntil) {
          const reply = await http.request('POST', '/v1/orders', {
            token: customer.token,
            idempotencyKey: `${o.tag}-cal-${n++}`,
            timeoutMs: o.timeoutMs,
            body: orderBody(sku(n), o.paymentToken),
          });
          if (reply.status === 201 && counting && Date.now() < calibrateUntil) placedInCalibration++;
          if (reply.status === 503) await sleep(1000);
        }
      }),
    );
    const bestRate = placedInCalibration / o.calibrationSeconds;
    const offeredRate = bestRate * o.factor;
    o.log(
      `overload: best rate ${bestRate.toFixed(0)} orders/s (closed loop, ${o.clients} clients); now ${offeredRate.toFixed(0)} arrivals/s for ${o.seconds} s`,
    );
    await sleep(3000); // the calibration's payments drain a little

    // 2. Arrivals at factor x the best rate, each its own request, for o.seconds.
    const accepted = latencyRecorder();
    const shedAnswer = latencyRecorder();
    const other: Record<string, number> = {};
    const acceptedKeys: string[] = [];
    const shedKeys: string[] = [];
    let shedWithoutRetryAfter = 0;
    const pending: Promise<void>[] = [];
    const started = Date.now();
    const total = Math.round(offeredRate * o.seconds);
    // Every 5 ms, the arrivals due by then: the loop yields between ticks, so answers are read as
    // they come (a loop that only slept when early would, once late, send the rest in one go).
    let yielded = Date.now();
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / offeredRate;
      if (due > Date.now()) {
        await sleep(Math.max(5, due - Date.now()));
        yielded = Date.now();
      } else if (Date.now() - yielded >= 5) {
        await new Promise((r) => setImmediate(r));
        yielded = Date.now();
      }
      const key = `${o.tag}-ovl-${i}`;
      const customer = o.customers[i % o.customers.length]!;
      pending.push(
        clients[i % clients.length]!.request('POST', '/v1/orders', {
          token: customer.token,
          idempotencyKey: key,
          timeoutMs: o.timeoutMs,
          body: orderBody(sku(i), o.paymentToken),
        }).then((reply) => {
          if (reply.status === 201) {
            accepted.add(reply.ms);
            acceptedKeys.push(key);
          } else if (reply.status === 503) {
            shedAnswer.add(reply.ms);
            shedKeys.push(key);
            if (!reply.retryAfter) shedWithoutRetryAfter++;
          } else {
            const s = statusOf(reply);
            other[s] = (other[s] ?? 0) + 1;
          }
        }),
      );
    }
    await Promise.all(pending);
    const placed = acceptedKeys.length;
    return {
      calibrationSeconds: o.calibrationSeconds,
      bestRate,
      offeredRate,
      seconds: o.seconds,
      arrivals: total,
      placed,
      placedRate: placed / o.seconds,
      shed: shedKeys.length,
      shedWithoutRetryAfter,
      other,
      accepted: accepted.summary(),
      shedAnswer: shedAnswer.summary(),
      acceptedKeys,
      shedKeys,
    };
  } finally {
    for (const c of clients) c.close();
  }
}
