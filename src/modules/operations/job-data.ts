// What the jobs pages show of a job's data. Jobs here carry ids (a payment, a refund, an event, an
// endpoint) and a trace context, never a secret; but the data is whatever a module enqueued, so
// anything under a name that suggests a secret is hidden before it leaves the API, at any depth.
const secretName =
  /token|secret|password|passwd|api[-_]?key|private[-_]?key|authorization|cookie|card|cvc|cvv|signature/i;
const maxDepth = 20;

export function redactedJobData(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= maxDepth) return '[too deep]';
  if (Array.isArray(value)) return value.map((item) => redactedJobData(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [name, item] of Object.entries(value))
    out[name] = secretName.test(name) ? '[redacted]' : redactedJobData(item, depth + 1);
  return out;
}
