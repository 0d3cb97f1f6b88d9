// The operations pages' arithmetic and the jobs pages' redaction, without a database: the points of
// a window, percentiles read from a latency histogram, and the secrets hidden in a job's data.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { quantileMs, stepFor } from '../../src/modules/operations/panels.ts';
import { latencyBucketsMs } from '../../src/platform/metrics.ts';
import { redactedJobData } from '../../src/modules/operations/job-data.ts';

// Moved from test/operations-overview.test.ts.
it('chooses points of 10 s for 15 minutes and never more than 150 per window; reads percentiles from the histogram', () => {
  assert.equal(stepFor(900), 10);
  for (const w of [60, 300, 900, 3600, 6 * 3600, 86_400]) assert.ok(w / stepFor(w) <= 150, `window ${w}`);
  assert.equal(quantileMs([], 0.5), null);
  // 10 requests under 1 ms, 10 between 1 and 2 ms: the median is 1 ms, p95 inside the second bucket.
  assert.equal(quantileMs([10, 10], 0.5), 1);
  assert.equal(quantileMs([10, 10], 0.95), 1.9);
  // Everything in the open-ended bucket: at least its lower bound.
  assert.equal(quantileMs([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5], 0.99), 10_000);
});

it('a percentile lies in the bucket that holds its rank, and grows with q', () => {
  const histogram = fc
    .array(fc.nat(50), { minLength: 1, maxLength: latencyBucketsMs.length + 1 })
    .filter((h) => h.some((n) => n > 0));
  fc.assert(
    fc.property(
      histogram,
      fc.double({ min: 0.01, max: 1, noNaN: true }),
      fc.double({ min: 0.01, max: 1, noNaN: true }),
      (h, q1, q2) => {
        const [lo, hi] = q1 <= q2 ? [q1, q2] : [q2, q1];
        const a = quantileMs(h, lo)!;
        const b = quantileMs(h, hi)!;
        assert.ok(a <= b, `p${lo} = ${a} > p${hi} = ${b}`);
        // Within the bounds of the bucket where the rank falls.
        const rank = lo * h.reduce((x, y) => x + y, 0);
        let seen = 0;
        const i = h.findIndex((n) => n > 0 && (seen += n) >= rank);
        const lower = i === 0 ? 0 : latencyBucketsMs[i - 1]!;
        const upper = i >= latencyBucketsMs.length ? lower : latencyBucketsMs[i]!;
        assert.ok(a >= lower && a <= upper, `p${lo} = ${a} outside bucket ${i} [${lower}, ${upper}]`);
      },
    ),
  );
});

// Moved from test/console-support-api.test.ts.
it('job data is redacted by name at any depth, and stays bounded however deep', () => {
  assert.deepEqual(
    redactedJobData({ paymentId: 'pay_1', items: [{ apiKey: 'k', ok: 1 }], Authorization: 'Bearer x' }),
    { paymentId: 'pay_1', items: [{ apiKey: '[redacted]', ok: 1 }], Authorization: '[redacted]' },
  );
  let deep: unknown = 'bottom';
  for (let i = 0; i < 1000; i++) deep = { next: deep };
  assert.match(JSON.stringify(redactedJobData(deep)), /too deep/);
});

it('redaction: no value under a secret-like name survives, and everything else is kept as it was', () => {
  const secretNames = [
    'token',
    'accessToken',
    'secret',
    'password',
    'passwd',
    'api_key',
    'apiKey',
    'private-key',
    'Authorization',
    'cookie',
    'card',
    'cvc',
    'CVV',
    'signature',
  ];
  const plainName = fc.constantFrom('id', 'paymentId', 'amount', 'items', 'traceparent', 'endpointId', 'note');
  const leaf = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null));
  const { tree } = fc.letrec<{ tree: unknown }>((tie) => ({
    tree: fc.oneof(
      { depthSize: 'small' },
      leaf,
      fc.array(tie('tree'), { maxLength: 3 }),
      fc.dictionary(fc.oneof(plainName, fc.constantFrom(...secretNames)), tie('tree'), { maxKeys: 4 }),
    ),
  }));
  const check = (input: unknown, output: unknown): void => {
    if (input === null || typeof input !== 'object') return assert.equal(output, input);
    if (Array.isArray(input)) {
      assert.ok(Array.isArray(output));
      assert.equal(output.length, input.length);
      return input.forEach((item, i) => check(item, output[i]));
    }
    const out = output as Record<string, unknown>;
    assert.deepEqual(Object.keys(out), Object.keys(input));
    for (const [name, value] of Object.entries(input)) {
      if (secretNames.includes(name)) assert.equal(out[name], '[redacted]', name);
      else check(value, out[name]);
    }
  };
  fc.assert(fc.property(tree, (t) => check(t, redactedJobData(t))));
});
