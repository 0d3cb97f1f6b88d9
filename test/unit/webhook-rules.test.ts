// Webhook signing and the delivery retry schedule, without a database or a receiver:
// the Standard Webhooks headers verified by the `standardwebhooks` package (what receivers are told
// to use), the deprecated Engine-Room-Signature alongside, both secrets during a rotation, and the
// queue settings that make the documented retry schedule. test/webhook-signing.test.ts checks the
// same headers on real deliveries.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import {
  deliveryHeaders,
  legacySignatureHeader,
  standardKey,
  standardSignatureHeader,
} from '../../src/modules/webhooks/signing.ts';
import { webhookDefaults, webhookQueuesFor } from '../../src/modules/webhooks/delivery.ts';
import { drillRetryBudget } from '../../src/modules/payments/providers/sandbox.ts';

const secret = () => `whsec_${randomBytes(32).toString('base64')}`;
const at = new Date('2026-12-01T10:00:00.500Z');

it('a delivery verifies with the standardwebhooks package under its secret, and not under another or after a change of body', () => {
  fc.assert(
    fc.property(fc.json(), fc.stringMatching(/^evt_[0-9a-z]{26}$/), (body, eventId) => {
      const s = secret();
      const headers = deliveryHeaders({ current: s, previous: null }, eventId, body, at);
      assert.equal(headers['webhook-id'], eventId);
      assert.equal(headers['engine-room-event-id'], eventId);
      assert.equal(headers['webhook-timestamp'], String(Math.floor(at.getTime() / 1000)));
      assert.match(headers['webhook-signature']!, /^v1,[A-Za-z0-9+/]{43}=$/);
      const verifier = new Webhook(s);
      // The package refuses timestamps more than 5 minutes from now: verify as of the delivery's time.
      const sign = (b: string) => verifier.sign(eventId, at, b);
      assert.equal(headers['webhook-signature'], sign(body));
      assert.notEqual(sign(`${body} `), headers['webhook-signature']);
      assert.notEqual(new Webhook(secret()).sign(eventId, at, body), headers['webhook-signature']);
    }),
    { numRuns: 50 },
  );
  // And the package's own verify, with a timestamp of now.
  const s = secret();
  const now = new Date();
  const headers = deliveryHeaders({ current: s, previous: null }, 'evt_1', '{"a":1}', now);
  assert.deepEqual(new Webhook(s).verify('{"a":1}', headers), { a: 1 });
  assert.throws(() => new Webhook(secret()).verify('{"a":1}', headers));
  assert.throws(() => new Webhook(s).verify('{"a":2}', headers));
});

it('the legacy header is t=<seconds>,v1=<hex HMAC of "t.body"> keyed by the whole secret string', () => {
  const s = secret();
  const header = legacySignatureHeader([s], 1_700_000_000, '{"x":1}');
  assert.equal(header, `t=1700000000,v1=${createHmac('sha256', s).update('1700000000.{"x":1}').digest('hex')}`);
});

it('during a rotation both secrets sign: the new one first, the old one last, in both headers', () => {
  const [current, previous] = [secret(), secret()];
  const headers = deliveryHeaders({ current, previous }, 'evt_2', '{}', at);
  const t = Math.floor(at.getTime() / 1000);
  assert.equal(
    headers['webhook-signature'],
    `${standardSignatureHeader([current], 'evt_2', t, '{}')} ${standardSignatureHeader([previous], 'evt_2', t, '{}')}`,
  );
  const legacy = headers['engine-room-signature']!.split(',');
  assert.deepEqual(legacy, [
    `t=${t}`,
    legacySignatureHeader([current], t, '{}').split(',')[1],
    legacySignatureHeader([previous], t, '{}').split(',')[1],
  ]);
  // Each secret verifies alone (the package accepts any matching entry).
  const now = new Date();
  const live = deliveryHeaders({ current, previous }, 'evt_3', '{}', now);
  for (const s of [current, previous]) assert.deepEqual(new Webhook(s).verify('{}', live), {});
});

it('a secret from before the Standard Webhooks scheme (base64url) has the same key as its standard base64 spelling', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
      const b = Buffer.from(bytes);
      const old = `whsec_${b.toString('base64url')}`;
      const standard = `whsec_${b.toString('base64')}`;
      assert.deepEqual(standardKey(old), b);
      assert.deepEqual(standardKey(standard), b);
      assert.equal(
        standardSignatureHeader([old], 'evt_4', 1, 'b'),
        standardSignatureHeader([standard], 'evt_4', 1, 'b'),
      );
    }),
  );
  // Not whsec_: the key is the string's bytes.
  assert.deepEqual(standardKey('plain'), Buffer.from('plain'));
});

it('the delivery retry schedule: 11 retries from 60 s with backoff end between 34 h and 68 h, inside the 3 days before an endpoint is disabled', () => {
  const [spec] = webhookQueuesFor();
  assert.deepEqual(spec, { name: 'webhooks.deliver', retryLimit: 11, retryDelaySeconds: 60, leaseSeconds: 70 });
  // pg-boss waits between d * 2^(n-1) and d * 2^n before retry n (src/platform/queue.ts).
  const earliest = Array.from({ length: spec!.retryLimit }, (_, i) => spec!.retryDelaySeconds * 2 ** i).reduce(
    (a, b) => a + b,
    0,
  );
  const latest = Array.from({ length: spec!.retryLimit }, (_, i) => spec!.retryDelaySeconds * 2 ** (i + 1)).reduce(
    (a, b) => a + b,
    0,
  );
  assert.ok(earliest > 24 * 3600, `the last attempt comes after more than a day (${earliest} s)`);
  assert.ok(
    latest <= 68 * 3600 + 3600 && latest < webhookDefaults.disableAfterSeconds,
    `one event's retries end before the endpoint could be disabled (${latest} s)`,
  );
  // The lease outlasts the request's timeout.
  assert.ok(spec!.leaseSeconds * 1000 > webhookDefaults.timeoutMs);
  assert.deepEqual(webhookQueuesFor({ retryDelaySeconds: 1, retryLimit: 3, timeoutMs: 2_500 }), [
    { name: 'webhooks.deliver', retryLimit: 3, retryDelaySeconds: 1, leaseSeconds: 63 },
  ]);
  // Options left undefined keep the defaults.
  assert.deepEqual(webhookQueuesFor({ retryLimit: undefined }), webhookQueuesFor());
});

it("a drill card's charge has a short retry budget; every other token the queue's", () => {
  assert.deepEqual(drillRetryBudget('tok_drill'), { retryLimit: 2, retryDelaySeconds: 1 });
  for (const token of ['tok_ok', 'tok_declined', undefined, 'tok_drill '])
    assert.deepEqual(drillRetryBudget(token), {});
});
