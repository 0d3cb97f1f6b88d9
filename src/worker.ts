// The job workers: every queue the engine uses, and the handler of each, wired explicitly. They
// run inside `start` by default (WORKERS=inline) and in `engine-room worker` processes, as many as
// you like against one PostgreSQL.
import type { pino } from 'pino';
import type { Config } from './config.ts';
import type { Db } from './platform/db.ts';
import {
  declareQueues,
  onStop,
  schedule,
  startQueue,
  unschedule,
  work,
  workInBatches,
  type Queue,
  type QueueSpec,
} from './platform/queue.ts';
import { createCounters, type Counters } from './platform/metrics.ts';
import { startUpkeep } from './platform/upkeep.ts';
import { createPaymentProvider } from './modules/payments/providers/select.ts';
import { chargeQueue, refundQueue } from './modules/payments/outbox.ts';
import type { ChargeHooks } from './modules/payments/service.ts';
import { chargeMany, expireUnpaidOrders, refundOnce } from './modules/orders/lifecycle.ts';
import { registerWebhookWorkers, webhookQueuesFor, type WebhookOptions } from './modules/webhooks/delivery.ts';
import { messagingQueues, registerMessagingWorkers } from './modules/messaging/notifications.ts';
import { accountMailQueues, registerAccountMailWorkers } from './modules/messaging/account-mail.ts';
import { createMailer } from './modules/messaging/mailer.ts';
import type { PaymentProvider } from './modules/payments/providers/provider.ts';
import { startTelemetry } from './modules/operations/telemetry.ts';
import { startOrderStats } from './modules/operations/order-stats.ts';
import { runAndRecordAudit } from './modules/operations/service.ts';
import { version } from './app.ts';
import { pruneOldRows } from './modules/retention/service.ts';

const expireQueue = 'orders.expire-unpaid';
const retentionQueue = 'maintenance.retention';
// Its hourly purge of idempotency keys is now one of the retention rules.
const retiredPurgeQueue = 'maintenance.purge-idempotency-keys';
const auditQueue = 'operations.audit';

function webhookOptions(config: Readonly<Config>): WebhookOptions {
  return {
    timeoutMs: config.webhookTimeoutMs,
    disableAfterSeconds: config.webhookDisableAfterSeconds,
    retryDelaySeconds: config.webhookRetryBaseSeconds,
    allowPrivateUrls: config.webhookAllowPrivateUrls,
  };
}

export function queueSpecs(config: Readonly<Config>): QueueSpec[] {
  // The lease should outlast the slowest processor call, or a running charge would be retried
  // while still in flight (harmless, the key dedupes it, but wasteful).
  const paymentLease = config.paymentJobLeaseSeconds;
  return [
    // About 10 retries from 1 s doubling: a processor outage of up to ~30 minutes is ridden out.
    { name: chargeQueue, retryLimit: 10, retryDelaySeconds: 1, leaseSeconds: paymentLease },
    { name: refundQueue, retryLimit: 12, retryDelaySeconds: 2, leaseSeconds: paymentLease },
    { name: expireQueue, retryLimit: 2, retryDelaySeconds: 5, leaseSeconds: 300 },
    { name: retentionQueue, retryLimit: 2, retryDelaySeconds: 5, leaseSeconds: 300 },
    { name: auditQueue, retryLimit: 1, retryDelaySeconds: 30, leaseSeconds: 900 },
    ...webhookQueuesFor(webhookOptions(config)),
    ...messagingQueues,
    ...accountMailQueues,
  ];
}

/** Every process that enqueues must declare the queues first; safe from many processes at once. */
export function declareAllQueues(db: Db, config: Readonly<Config>): Promise<void> {
  return declareQueues(db, queueSpecs(config));
}

/**
 * Test-only fault injection: at the named point the process says so on stderr and waits, so a
 * crash test can SIGKILL it exactly there (see test/worker-crash.test.ts).
 */
function failpointHooks(failpoint: string | undefined, log: pino.Logger): ChargeHooks {
  if (!failpoint) return {};
  const stopHere = (name: string) => async () => {
    if (failpoint !== name) return;
    log.warn({ failpoint: name }, 'failpoint reached; waiting to be killed');
    process.stderr.write(`failpoint reached: ${name}\n`);
    await new Promise(() => {});
  };
  return { beforeCharge: stopHere('charge:before-provider'), afterCharge: stopHere('charge:after-provider') };
}

/**
 * The processor, counting its answers (by outcome and currency, with the amounts) for the
 * operations page: what the processor said is what the page shows as charge outcomes.
 */
function countingProvider(provider: PaymentProvider, counters: Counters): PaymentProvider {
  const counted = (
    kind: 'charges' | 'refunds',
    amount: { amount: number; currency: string },
    call: Promise<{ status: string }>,
  ) =>
    call.then(
      (result) => {
        counters.add(kind, `${result.status}\t${amount.currency}`, 1, amount.amount);
        return result;
      },
      (err: unknown) => {
        counters.add(kind, `error\t${amount.currency}`, 1, amount.amount);
        throw err;
      },
    );
  return {
    name: provider.name,
    charge: (request) =>
      counted('charges', request.amount, provider.charge(request)) as ReturnType<PaymentProvider['charge']>,
    refund: (request) =>
      counted('refunds', request.amount, provider.refund(request)) as ReturnType<PaymentProvider['refund']>,
  };
}

export async function startWorkers(db: Db, config: Readonly<Config>, log: pino.Logger): Promise<Queue> {
  const counters = createCounters();
  const queue = await startQueue(db, {
    pollingIntervalSeconds: config.workerPollIntervalMs / 1000,
    maintenanceIntervalSeconds: config.queueMaintenanceIntervalSeconds,
    stopTimeoutSeconds: config.shutdownTimeoutSeconds,
    onError: (err) => log.error({ err }, 'job queue error'),
    onOutcome: (name, outcome) => counters.add('jobs', `${name}\t${outcome}`),
    finishedJobRetentionDays: config.jobRetentionDays,
  });
  if (db.engine === 'postgres') startUpkeep(queue, db);
  const provider = countingProvider(createPaymentProvider(config, db), counters);
  const concurrency = config.workerConcurrency;

  const hooks = failpointHooks(config.failpoint, log);
  // Charges in batches: the processor calls of a batch run side by side and one transaction
  // records all their outcomes (a flash sale's hot SKU row is then written once per batch).
  workInBatches<{ paymentId: string }>(
    queue,
    chargeQueue,
    async (jobs) => {
      const retry = await chargeMany(
        db,
        provider,
        jobs.map((job) => job.data.paymentId),
        { ...hooks, log },
      );
      return new Map(
        jobs.flatMap((job) => {
          const err = retry.get(job.data.paymentId);
          return err ? [[job.id, err] as const] : [];
        }),
      );
    },
    { batchSize: config.chargeBatchSize, concurrency: 2 },
  );
  work<{ refundId: string }>(queue, refundQueue, (job) => refundOnce(db, provider, job.data.refundId, { log }), {
    concurrency,
  });
  work(queue, expireQueue, async () => {
    const n = await expireUnpaidOrders(db, config.orderPaymentTimeoutSeconds, { log });
    if (n > 0) log.info({ cancelled: n }, 'cancelled unpaid orders past their payment timeout');
  });
  // Within the lease (300 s): a run that has more to do leaves it to the next one.
  work(queue, retentionQueue, async (job) => {
    const removed = await pruneOldRows(db, config, {
      batchSize: config.retentionBatchSize,
      budgetMs: 240_000,
      signal: job.signal,
    });
    if (Object.keys(removed).length > 0) log.info({ removed }, 'removed rows past their retention');
  });
  registerWebhookWorkers(queue, db, webhookOptions(config));
  registerMessagingWorkers(queue, db, config);
  registerAccountMailWorkers(queue, db, createMailer(config), Math.min(4, config.workerConcurrency));
  work(queue, auditQueue, async () => {
    const run = await runAndRecordAudit(db, { paymentProvider: config.paymentProvider });
    if (!run.ok)
      log.error({ checks: run.checks.filter((c) => !c.ok).map((c) => c.name) }, 'the scheduled audit found violations');
  });

  // What the operations page shows of the whole system: this process's counters and heartbeat,
  // and the order figures read from the outbox.
  const telemetry = startTelemetry({
    db,
    version,
    role: 'worker',
    counters,
    runningJobs: () => queue.runningJobs(),
    onError: (err) => log.warn({ err }, 'could not write the operations figures'),
  });
  const orderStats = startOrderStats(db, {
    intervalMs: 2_000,
    onError: (err) => log.warn({ err }, 'could not add up the order events'),
  });
  onStop(queue, async () => {
    await orderStats.stop();
    await telemetry.stop();
  });

  await schedule(queue, expireQueue, '* * * * *');
  await schedule(queue, retentionQueue, '*/10 * * * *');
  await unschedule(queue, retiredPurgeQueue);
  await schedule(queue, auditQueue, '*/10 * * * *');
  return queue;
}
