// Configuration is read from the environment once, validated, and frozen. Nothing else in the code
// reads process.env (a lint rule holds the line), so every knob is listed here and in the README.
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { TracingSettings } from './platform/tracing.ts';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  port: number;
  host: string;
  /** NODE_ENV=production: the start warns when it runs on the embedded database (which never fsyncs) and refuses productionRefusals. */
  production: boolean;
  /** Real PostgreSQL when set; the embedded PGlite database under dataDir otherwise. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** Connections in the pg pool of one process (ignored on the embedded database). */
  databasePoolSize: number;
  adminEmail: string | undefined;
  adminPassword: string | undefined;
  logLevel: LogLevel;
  /** Allowed CORS origins; empty means CORS is off. */
  corsOrigins: string[];
  sessionTtlSeconds: number;
  /**
   * Failed logins allowed within loginWindowSeconds: for one account from one client address
   * (tight), for one account from anywhere (a ceiling for distributed guessing), and from one
   * client address over all accounts.
   */
  loginMaxFailuresPerAccountAndClient: number;
  loginMaxFailuresPerAccount: number;
  loginMaxFailuresPerClient: number;
  loginWindowSeconds: number;
  /** Signups allowed from one client address within signupWindowSeconds (slows email probing). */
  signupMaxPerClient: number;
  signupWindowSeconds: number;
  /** EMAIL_VERIFICATION: signup mails a verification link, and unverified users may not place orders (off by default). */
  emailVerification: boolean;
  /** Password reset mails asked for one email address, and from one client address, within passwordResetWindowSeconds. */
  passwordResetMaxPerEmail: number;
  passwordResetMaxPerClient: number;
  passwordResetWindowSeconds: number;
  /** The API-wide rate limits (src/platform/api-rate-limit.ts); off only for a bench that measures their cost. */
  rateLimits: RateLimitSettings;
  /**
   * Load shedding (src/platform/load-shedding.ts, admission.ts), in time: the longest the highest
   * priority class should wait for its turn once a queue stands (a burst may wait twice it); 0: no
   * admission queue nor concurrency limit.
   */
  shedTargetWaitMs: number;
  /** The normal and low classes are refused while the event loop's delay (p99) is above this; 0: off. */
  shedEventLoopDelayMs: number;
  /** Safety cap on requests admitted at once (the adaptive limit's ceiling; the queue's is 5 times it). */
  shedMaxInFlight: number;
  /** Request bodies one client address may have arriving for more than a second; 0: no cap. */
  shedSlowUploadsPerClient: number;
  /**
   * Whose X-Forwarded-For to believe, to find the real client address (login throttling needs it):
   * false (nobody's: the peer is the client) or the addresses and CIDR ranges of the proxies.
   */
  trustProxy: false | string[];
  /** A request (headers and body) not received in full within this is answered 408 and its connection closed. */
  requestTimeoutSeconds: number;
  /** An idle keep-alive connection is closed after this (keep it above a load balancer's idle timeout). */
  keepAliveTimeoutSeconds: number;
  /** Seconds to let in-flight requests finish on SIGTERM before closing anyway. */
  shutdownTimeoutSeconds: number;
  /** METRICS=off: no /metrics and /metrics/system at all (404). */
  metrics: boolean;
  /**
   * METRICS_TOKEN: the bearer token /metrics and /metrics/system ask for (what Prometheus sends);
   * unset, they answer only requests from loopback that no proxy forwarded (src/platform/metrics-access.ts).
   */
  metricsToken: string | undefined;
  /** Cookie "Secure" flag; off only for plain-http local development. */
  secureCookies: boolean;
  /** Run the job workers inside `start` (the default), or leave them to `engine-room worker` processes. */
  inlineWorkers: boolean;
  /** Jobs of each queue one process handles at once. */
  workerConcurrency: number;
  chargeBatchSize: number;
  /** Order batches one process writes at once (orders/place.ts). */
  orderBatchConcurrency: number;
  /** How often an idle worker looks for jobs. */
  workerPollIntervalMs: number;
  paymentProvider: 'sandbox' | 'stripe';
  stripeSecretKey: string | undefined;
  /** Only to point the Stripe adapter at a local fake or stripe-mock. */
  stripeApiBase: string | undefined;
  stripeTimeoutMs: number;
  /** How long the sandbox's tok_slow takes (the contract says 2 s). */
  sandboxSlowDelayMs: number;
  /** An order still pending_payment after this long is cancelled and its stock released. */
  orderPaymentTimeoutSeconds: number;
  /** Idempotency keys are kept this long (at least 24 hours). */
  idempotencyRetentionHours: number;
  webhookTimeoutMs: number;
  /** An endpoint whose deliveries keep failing this long is disabled. */
  webhookDisableAfterSeconds: number;
  /** Base of the exponential backoff between webhook delivery attempts. */
  webhookRetryBaseSeconds: number;
  /** Lets webhook URLs point at private, loopback and link-local addresses (local development only). */
  webhookAllowPrivateUrls: boolean;
  /** Messages one user may post per messageRateWindowSeconds (opening a conversation counts as one). */
  messageRateLimit: number;
  messageRateWindowSeconds: number;
  /** Mail goes out over SMTP when set (smtp:// or smtps://); otherwise into the dev mailbox when it is on, else nowhere (kept undelivered). */
  smtpUrl: string | undefined;
  /**
   * DEV_MAILBOX: the dev mailbox, for development only (GET /v1/dev/mailbox, admins; account tokens
   * never shown). On by default outside production, off under NODE_ENV=production, where turning it
   * on is refused (productionRefusals).
   */
  devMailbox: boolean;
  mailFrom: string;
  /** An idle live event stream gets a ": ping" comment this often (keeps proxies from closing it). */
  eventStreamHeartbeatSeconds: number;
  /** How far back a stream that reconnects with Last-Event-ID is replayed. */
  eventStreamRetentionHours: number;
  /** Live event streams one process holds open at most: each costs a file descriptor for as long as it lasts. */
  eventStreamMaxPerProcess: number;
  /** Live event streams one user may hold open in one process. */
  eventStreamMaxPerUser: number;
  /** How long a payment job may run before it is presumed dead and retried (default: Stripe timeout + 30 s, at least 60). */
  paymentJobLeaseSeconds: number;
  /** How often jobs whose lease ran out are failed over for retry (in whichever process gets there first). */
  queueMaintenanceIntervalSeconds: number;
  /** Events (the outbox) are kept this long, and longer while a reader or a delivery still needs them. */
  eventRetentionDays: number;
  /** Webhook delivery attempts (the delivery log) are kept this long. */
  webhookAttemptRetentionDays: number;
  /** Emails (sent mail and the dev mailbox) are kept this long. */
  emailRetentionDays: number;
  /** Sessions are kept this long after they expire. */
  sessionRetentionDays: number;
  /** Finished jobs (pg-boss's archive) are kept this long. */
  jobRetentionDays: number;
  /** Rows one statement of the retention job deletes at most (each its own short transaction). */
  retentionBatchSize: number;
  /** The operations figures (per-flush counters, order figures by 10 s) are kept this long: at least the console's longest window, 24 h. */
  opsFiguresRetentionHours: number;
  /** Audit runs (scheduled, from the console, from the command line) are kept this long. */
  auditRunRetentionDays: number;
  /** OpenTelemetry traces, exported over OTLP/HTTP; undefined (off) unless an OTLP endpoint is set. */
  tracing: TracingSettings | undefined;
  /**
   * Test-only: a named point where the process stops and waits to be killed (ENGINE_ROOM_FAILPOINT),
   * so crash tests can SIGKILL it exactly there. Unset in production.
   */
  failpoint: string | undefined;
}

export interface RateLimitSettings {
  enabled: boolean;
  windowSeconds: number;
  /** Requests per window: reads (GET, HEAD) and writes per API key, user or anonymous client address; auth (signup, login, password reset) per client address. */
  readMax: number;
  writeMax: number;
  authMax: number;
  /** How often a process adds its local counts to the shared ones in the database. */
  syncMs: number;
  /** The share of a limit (percent) one process may admit before it must hear the shared count again: bounds the overshoot. */
  localSharePercent: number;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim()))
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
  const value = Number(raw.trim());
  if (value < min || value > max)
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
  return value;
}

function boolVar(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false (got "${raw}")`);
}

const proxyNames = new Set(['loopback', 'linklocal', 'uniquelocal']);

function isAddressOrRange(entry: string): boolean {
  if (proxyNames.has(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  // Both Node's parser and ipaddr.js's (the one Fastify's proxy-addr uses at start) must accept it.
  if (family === 0 || rest.length > 0 || !ipaddr.isValid(address)) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

// Only proxies named by address are believed. Fastify's trustProxy=true takes the left-most
// X-Forwarded-For entry, which any client writes when the proxy appends to the header (nginx's
// $proxy_add_x_forwarded_for, most load balancers); a hop count (Fastify 5.12 disabled it) trusts
// whoever connects, so a client that reaches the service directly picks its own address. With
// addresses, the client is the right-most entry that is not a listed proxy, whatever it sent.
function parseTrustProxy(env: Env): false | string[] {
  const raw = env.TRUST_PROXY?.trim() ?? '';
  if (raw === '' || /^(0|false|no|off)$/i.test(raw)) return false;
  if (/^(true|yes|on|\d+)$/i.test(raw)) {
    throw new ConfigError(
      `TRUST_PROXY=${raw} would believe an X-Forwarded-For that a client wrote; list the addresses or ranges your proxies connect from instead (e.g. TRUST_PROXY=10.0.0.0/8, or loopback,uniquelocal)`,
    );
  }
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = entries.find((entry) => !isAddressOrRange(entry));
  if (bad !== undefined || entries.length === 0) {
    throw new ConfigError(
      `TRUST_PROXY must be false or the addresses and CIDR ranges of your proxies, like 10.0.0.0/8,127.0.0.1 (got "${bad ?? raw}")`,
    );
  }
  const everyone = trustsEveryone(entries);
  if (everyone) {
    throw new ConfigError(
      `TRUST_PROXY=${raw} trusts ${everyone}, so any client could write its own X-Forwarded-For; list only the addresses or ranges your proxies connect from (e.g. 10.0.0.0/8)`,
    );
  }
  return entries;
}

// Whether a list of proxies trusts (effectively) every client. Fastify's proxy-addr would throw at
// start on a /0 (a stack trace, not a config error), and several ranges can add up to everything
// (0.0.0.0/1,128.0.0.0/1). Addresses that are never a public client's (private, loopback,
// link-local, documentation, multicast, reserved) count as covered: a list that trusts every
// public address trusts every client that matters. An IPv6 range over ::ffff:0:0/96 covers IPv4.
interface Span {
  from: bigint;
  to: bigint;
}

const notPublicV4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4',
  '240.0.0.0/4',
];
/** Every IPv6 address outside 2000::/3 (global unicast) is not a public client's. */
const notPublicV6 = ['::/3', '4000::/2', '8000::/1'];

function spanOf(address: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): Span {
  const bits = address.kind() === 'ipv4' ? 32 : 128;
  const value = address.toByteArray().reduce((n, byte) => (n << 8n) | BigInt(byte), 0n);
  const size = 1n << BigInt(bits - prefix);
  const from = (value / size) * size;
  return { from, to: from + size - 1n };
}

function spanOfCidr(cidr: string): Span {
  const [address, prefix] = ipaddr.parseCIDR(cidr);
  return spanOf(address, prefix);
}

/** Whether the spans together cover all of target. */
function covers(spans: Span[], target: Span): boolean {
  let next = target.from;
  for (const s of [...spans].sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0))) {
    if (s.from > next) return false;
    if (s.to >= next) next = s.to + 1n;
    if (next > target.to) return true;
  }
  return next > target.to;
}

/** What the entries trust that they must not ('every IPv4 address', ...), or undefined. */
function trustsEveryone(entries: string[]): string | undefined {
  const v4: Span[] = [];
  const v6: Span[] = [];
  const mappedV4 = spanOfCidr('::ffff:0.0.0.0/96');
  for (const entry of entries) {
    if (proxyNames.has(entry)) continue;
    const [text = '', prefixText] = entry.split('/');
    const address = ipaddr.parse(text.replace(/%.*$/, ''));
    const prefix = prefixText === undefined ? (address.kind() === 'ipv4' ? 32 : 128) : Number(prefixText);
    if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96) {
      v4.push(spanOf((address as ipaddr.IPv6).toIPv4Address(), prefix - 96));
      continue;
    }
    const span = spanOf(address, prefix);
    (address.kind() === 'ipv4' ? v4 : v6).push(span);
    if (address.kind() === 'ipv6' && span.from <= mappedV4.from && span.to >= mappedV4.to)
      v4.push({ from: 0n, to: (1n << 32n) - 1n });
  }
  if (covers([...v4, ...notPublicV4.map(spanOfCidr)], { from: 0n, to: (1n << 32n) - 1n }))
    return 'every public IPv4 address';
  if (covers([...v6, ...notPublicV6.map(spanOfCidr)], { from: 0n, to: (1n << 128n) - 1n }))
    return 'every public IPv6 address';
  return undefined;
}

function parseWorkers(env: Env): boolean {
  const raw = env.WORKERS?.trim() || 'inline';
  if (raw !== 'inline' && raw !== 'off') throw new ConfigError(`WORKERS must be inline or off (got "${raw}")`);
  return raw === 'inline';
}

function retentionSettings(env: Env) {
  const eventRetentionDays = intVar(env, 'EVENT_RETENTION_DAYS', 30, 1, 3650);
  const replayHours = intVar(env, 'EVENT_STREAM_RETENTION_HOURS', 24, 1, 24 * 365);
  // A stream that reconnects is replayed from the outbox: the events must still be there.
  if (eventRetentionDays * 24 < replayHours)
    throw new ConfigError(
      `EVENT_RETENTION_DAYS (${eventRetentionDays}) must cover EVENT_STREAM_RETENTION_HOURS (${replayHours} h)`,
    );
  return {
    eventRetentionDays,
    webhookAttemptRetentionDays: intVar(env, 'WEBHOOK_ATTEMPT_RETENTION_DAYS', 30, 1, 3650),
    // At least the notification jobs' retry window (18-36 h): a row stops a second send.
    emailRetentionDays: intVar(env, 'EMAIL_RETENTION_DAYS', 30, 3, 3650),
    sessionRetentionDays: intVar(env, 'SESSION_RETENTION_DAYS', 30, 0, 3650),
    jobRetentionDays: intVar(env, 'JOB_RETENTION_DAYS', 7, 1, 365),
    retentionBatchSize: intVar(env, 'RETENTION_BATCH_SIZE', 1000, 10, 100_000),
    // The console's window goes up to 24 hours, so its figures are kept at least that long.
    opsFiguresRetentionHours: intVar(env, 'OPS_FIGURES_RETENTION_HOURS', 25, 24, 24 * 365),
    auditRunRetentionDays: intVar(env, 'AUDIT_RUN_RETENTION_DAYS', 30, 1, 3650),
  };
}

// The standard OpenTelemetry variables (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/)
// that Engine Room honours, read here like every other setting and handed to the SDK.
const samplers = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

function tracingSettings(env: Env): TracingSettings | undefined {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || undefined;
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || undefined;
  if (boolVar(env, 'OTEL_SDK_DISABLED', false) || (!base && !traces)) return undefined;
  for (const [name, url] of [
    ['OTEL_EXPORTER_OTLP_ENDPOINT', base],
    ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', traces],
  ] as const) {
    if (url !== undefined && !/^https?:\/\/[^\s]+$/.test(url))
      throw new ConfigError(`${name} must be an http:// or https:// URL (got "${url}")`);
  }
  const protocol = env.OTEL_EXPORTER_OTLP_PROTOCOL?.trim() || 'http/protobuf';
  if (protocol !== 'http/protobuf')
    throw new ConfigError(
      `OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf, the one protocol Engine Room exports (got "${protocol}")`,
    );
  const headers: Record<string, string> = {};
  for (const pair of (env.OTEL_EXPORTER_OTLP_HEADERS ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new ConfigError('OTEL_EXPORTER_OTLP_HEADERS must be name=value pairs separated by commas');
    try {
      headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      throw new ConfigError('OTEL_EXPORTER_OTLP_HEADERS must be name=value pairs separated by commas, percent-encoded');
    }
  }
  const sampler = env.OTEL_TRACES_SAMPLER?.trim() || 'parentbased_always_on';
  if (!samplers.includes(sampler))
    throw new ConfigError(`OTEL_TRACES_SAMPLER must be one of ${samplers.join(', ')} (got "${sampler}")`);
  const ratioText = env.OTEL_TRACES_SAMPLER_ARG?.trim() || '1';
  const samplerRatio = Number(ratioText);
  if (!/^\d*\.?\d+$/.test(ratioText) || samplerRatio > 1)
    throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1 (got "${ratioText}")`);
  return {
    // The base endpoint gets the signal's path; the traces endpoint is used as it is (the specification's rule).
    tracesUrl: traces ?? `${base!.replace(/\/+$/, '')}/v1/traces`,
    headers,
    serviceName: env.OTEL_SERVICE_NAME?.trim() || 'engine-room',
    sampler,
    samplerRatio,
  };
}

const logLevels: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: Env = process.env): Readonly<Config> {
  const databaseUrl = env.DATABASE_URL?.trim() || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  const logLevel = (env.LOG_LEVEL?.trim() || 'info') as LogLevel;
  if (!logLevels.includes(logLevel))
    throw new ConfigError(`LOG_LEVEL must be one of ${logLevels.join(', ')} (got "${env.LOG_LEVEL}")`);
  const adminEmail = env.ADMIN_EMAIL?.trim() || undefined;
  if (adminEmail !== undefined && !/^[^@\s]+@[^@\s]+$/.test(adminEmail))
    throw new ConfigError(`ADMIN_EMAIL must be an email address (got "${adminEmail}")`);
  const adminPassword = env.ADMIN_PASSWORD || undefined;
  if (adminPassword !== undefined && (adminPassword.length < 8 || adminPassword.length > 256)) {
    throw new ConfigError('ADMIN_PASSWORD must be 8 to 256 characters long');
  }
  const corsOrigins = (env.CORS_ORIGINS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const origin of corsOrigins) {
    if (origin !== '*' && !/^https?:\/\/[^/]+$/.test(origin))
      throw new ConfigError(`CORS_ORIGINS must list origins like https://shop.example.com (got "${origin}")`);
  }
  const paymentProvider = (env.PAYMENT_PROVIDER?.trim() || 'sandbox') as Config['paymentProvider'];
  if (paymentProvider !== 'sandbox' && paymentProvider !== 'stripe')
    throw new ConfigError(`PAYMENT_PROVIDER must be sandbox or stripe (got "${env.PAYMENT_PROVIDER}")`);
  const stripeSecretKey = env.STRIPE_SECRET_KEY?.trim() || undefined;
  if (paymentProvider === 'stripe' && !stripeSecretKey)
    throw new ConfigError('STRIPE_SECRET_KEY must be set when PAYMENT_PROVIDER is stripe');
  const smtpUrl = env.SMTP_URL?.trim() || undefined;
  if (smtpUrl !== undefined && !/^smtps?:\/\/[^\s]+$/.test(smtpUrl))
    throw new ConfigError('SMTP_URL must be an smtp:// or smtps:// URL');
  const metricsToken = env.METRICS_TOKEN?.trim() || undefined;
  // Not echoed: it is a secret. Long enough that guessing it is hopeless (openssl rand -hex 32).
  if (metricsToken !== undefined && !/^[\x21-\x7e]{16,256}$/.test(metricsToken))
    throw new ConfigError(
      'METRICS_TOKEN must be 16 to 256 printable characters without spaces (e.g. openssl rand -hex 32)',
    );
  const mailFrom = env.MAIL_FROM?.trim() || 'Engine Room <no-reply@engine-room.local>';
  const production = env.NODE_ENV?.trim() === 'production';
  if (/[\r\n]/.test(mailFrom) || !/@/.test(mailFrom))
    throw new ConfigError('MAIL_FROM must be one email address, like "Shop <no-reply@shop.example>"');
  return Object.freeze({
    port: intVar(env, 'PORT', 3000, 0, 65535),
    host: env.HOST?.trim() || '127.0.0.1',
    production,
    databaseUrl,
    dataDir: env.DATA_DIR?.trim() || './.engine-room',
    databasePoolSize: intVar(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    adminEmail,
    adminPassword,
    logLevel,
    corsOrigins,
    sessionTtlSeconds: intVar(env, 'SESSION_TTL_SECONDS', 7 * 24 * 3600, 60, 365 * 24 * 3600),
    loginMaxFailuresPerAccountAndClient: intVar(env, 'LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT', 10, 1, 1_000_000),
    loginMaxFailuresPerAccount: intVar(env, 'LOGIN_MAX_FAILURES_PER_ACCOUNT', 100, 1, 1_000_000),
    loginMaxFailuresPerClient: intVar(env, 'LOGIN_MAX_FAILURES_PER_CLIENT', 50, 1, 1_000_000),
    loginWindowSeconds: intVar(env, 'LOGIN_WINDOW_SECONDS', 15 * 60, 1, 24 * 3600),
    signupMaxPerClient: intVar(env, 'SIGNUP_MAX_PER_CLIENT', 20, 1, 1_000_000),
    signupWindowSeconds: intVar(env, 'SIGNUP_WINDOW_SECONDS', 3600, 1, 24 * 3600),
    emailVerification: boolVar(env, 'EMAIL_VERIFICATION', false),
    passwordResetMaxPerEmail: intVar(env, 'PASSWORD_RESET_MAX_PER_EMAIL', 5, 1, 1_000_000),
    passwordResetMaxPerClient: intVar(env, 'PASSWORD_RESET_MAX_PER_CLIENT', 20, 1, 1_000_000),
    passwordResetWindowSeconds: intVar(env, 'PASSWORD_RESET_WINDOW_SECONDS', 3600, 1, 24 * 3600),
    rateLimits: {
      enabled: boolVar(env, 'RATE_LIMITS', true),
      windowSeconds: intVar(env, 'RATE_LIMIT_WINDOW_SECONDS', 60, 1, 3600),
      readMax: intVar(env, 'RATE_LIMIT_READ_MAX', 1200, 1, 100_000_000),
      writeMax: intVar(env, 'RATE_LIMIT_WRITE_MAX', 300, 1, 100_000_000),
      authMax: intVar(env, 'RATE_LIMIT_AUTH_MAX', 30, 1, 100_000_000),
      syncMs: intVar(env, 'RATE_LIMIT_SYNC_MS', 200, 10, 10_000),
      localSharePercent: intVar(env, 'RATE_LIMIT_LOCAL_SHARE_PERCENT', 10, 1, 100),
    },
    shedTargetWaitMs: intVar(env, 'SHED_TARGET_WAIT_MS', 500, 0, 60_000),
    shedEventLoopDelayMs: intVar(env, 'SHED_EVENT_LOOP_DELAY_MS', 500, 0, 60_000),
    shedMaxInFlight: intVar(env, 'SHED_MAX_IN_FLIGHT', 2000, 1, 1_000_000),
    shedSlowUploadsPerClient: intVar(env, 'SHED_SLOW_UPLOADS_PER_CLIENT', 32, 0, 1_000_000),
    trustProxy: parseTrustProxy(env),
    requestTimeoutSeconds: intVar(env, 'REQUEST_TIMEOUT_SECONDS', 30, 1, 3600),
    keepAliveTimeoutSeconds: intVar(env, 'KEEP_ALIVE_TIMEOUT_SECONDS', 72, 1, 3600),
    shutdownTimeoutSeconds: intVar(env, 'SHUTDOWN_TIMEOUT_SECONDS', 10, 0, 600),
    secureCookies: boolVar(env, 'SECURE_COOKIES', true),
    metrics: boolVar(env, 'METRICS', true),
    metricsToken,
    inlineWorkers: parseWorkers(env),
    workerConcurrency: intVar(env, 'WORKER_CONCURRENCY', 8, 1, 1000),
    chargeBatchSize: intVar(env, 'CHARGE_BATCH_SIZE', 32, 1, 500),
    orderBatchConcurrency: intVar(env, 'ORDER_BATCH_CONCURRENCY', 1, 1, 64),
    workerPollIntervalMs: intVar(env, 'WORKER_POLL_INTERVAL_MS', 500, 50, 60_000),
    paymentProvider,
    stripeSecretKey,
    stripeApiBase: env.STRIPE_API_BASE?.trim() || undefined,
    stripeTimeoutMs: intVar(env, 'STRIPE_TIMEOUT_MS', 30_000, 100, 600_000),
    sandboxSlowDelayMs: intVar(env, 'SANDBOX_SLOW_DELAY_MS', 2000, 0, 600_000),
    orderPaymentTimeoutSeconds: intVar(env, 'ORDER_PAYMENT_TIMEOUT_SECONDS', 1800, 10, 30 * 24 * 3600),
    idempotencyRetentionHours: intVar(env, 'IDEMPOTENCY_RETENTION_HOURS', 24, 24, 24 * 365),
    webhookTimeoutMs: intVar(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
    webhookDisableAfterSeconds: intVar(env, 'WEBHOOK_DISABLE_AFTER_SECONDS', 3 * 24 * 3600, 1, 365 * 24 * 3600),
    webhookRetryBaseSeconds: intVar(env, 'WEBHOOK_RETRY_DELAY_SECONDS', 60, 1, 3600),
    webhookAllowPrivateUrls: boolVar(env, 'WEBHOOK_ALLOW_PRIVATE_URLS', false),
    messageRateLimit: intVar(env, 'MESSAGE_RATE_LIMIT', 30, 1, 1_000_000),
    messageRateWindowSeconds: intVar(env, 'MESSAGE_RATE_WINDOW_SECONDS', 60, 1, 24 * 3600),
    smtpUrl,
    mailFrom,
    devMailbox: boolVar(env, 'DEV_MAILBOX', !production),
    eventStreamHeartbeatSeconds: intVar(env, 'EVENT_STREAM_HEARTBEAT_SECONDS', 15, 1, 3600),
    eventStreamRetentionHours: intVar(env, 'EVENT_STREAM_RETENTION_HOURS', 24, 1, 24 * 365),
    eventStreamMaxPerProcess: intVar(env, 'EVENT_STREAM_MAX_PER_PROCESS', 500, 1, 1_000_000),
    eventStreamMaxPerUser: intVar(env, 'EVENT_STREAM_MAX_PER_USER', 10, 1, 1_000_000),
    paymentJobLeaseSeconds: intVar(
      env,
      'PAYMENT_JOB_LEASE_SECONDS',
      Math.max(60, Math.ceil(intVar(env, 'STRIPE_TIMEOUT_MS', 30_000, 100, 600_000) / 1000) + 30),
      1,
      3600,
    ),
    queueMaintenanceIntervalSeconds: intVar(env, 'QUEUE_MAINTENANCE_INTERVAL_SECONDS', 30, 1, 3600),
    failpoint: env.ENGINE_ROOM_FAILPOINT?.trim() || undefined,
    ...retentionSettings(env),
    tracing: tracingSettings(env),
  });
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || (ipaddr.isValid(host) && ipaddr.process(host).range() === 'loopback');
}

/**
 * Why `engine-room start` with NODE_ENV=production must not serve with this configuration, one
 * line each (empty: it may). Pure, so each check is tested without starting anything. Checked at
 * start, not in loadConfig, so that `migrate`, `audit` and the tests can still load such a
 * configuration. Only what is unsafe in any production is refused; what may be right in some (a
 * service reached without a proxy) is in productionWarnings. One line per rule: add new ones here.
 */
export function productionRefusals(config: Readonly<Config>): string[] {
  if (!config.production) return [];
  const refusals: string[] = [];
  // The shop's revenue, queue sizes and per-route error counts, to whoever asks.
  if (config.metrics && config.metricsToken === undefined)
    refusals.push(
      'METRICS_TOKEN is not set: in production /metrics and /metrics/system need a bearer token for Prometheus to send (or METRICS=off)',
    );
  // Without it, password resets and order confirmations never reach customers.
  if (config.smtpUrl === undefined)
    refusals.push(
      'SMTP_URL is not set: in production mail (password resets, order confirmations) would never reach customers; set SMTP_URL',
    );
  if (config.devMailbox)
    refusals.push(
      'DEV_MAILBOX=true is refused under NODE_ENV=production: the dev mailbox keeps mail in the database for admins to read instead of sending it; unset DEV_MAILBOX and set SMTP_URL',
    );
  if (config.webhookAllowPrivateUrls)
    refusals.push(
      "WEBHOOK_ALLOW_PRIVATE_URLS is true: in production an admin's webhook could reach the internal network; unset it",
    );
  return refusals;
}

/** What a production start says on standard error and in the log, and then serves anyway. */
export function productionWarnings(config: Readonly<Config>): string[] {
  if (!config.production) return [];
  const warnings: string[] = [];
  if (config.trustProxy === false && !isLoopbackHost(config.host))
    warnings.push(
      `HOST is ${config.host} and TRUST_PROXY is not set: right when clients connect directly; behind a proxy or load balancer every client counts as the proxy's address (login throttling, rate limits), so set TRUST_PROXY to its addresses`,
    );
  if (!config.secureCookies)
    warnings.push('SECURE_COOKIES is false: the session cookie is also sent over plain http; keep it true behind TLS');
  return warnings;
}
