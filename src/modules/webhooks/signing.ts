// How a delivery is signed. Two schemes, both HMAC-SHA256 over the raw body, from one secret:
//
// - Standard Webhooks (https://www.standardwebhooks.com), what receivers should verify:
//   `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (unix seconds), and
//   `webhook-signature: v1,<base64 HMAC of "<id>.<timestamp>.<body>">`. The key is the secret's
//   bytes: the part after `whsec_`, base64-decoded. Secrets made since the scheme was added are
//   `whsec_` + standard base64 of 32 random bytes, which every Standard Webhooks library reads.
//   Older secrets are `whsec_` + base64url: the same 32 bytes in the URL-safe alphabet, which
//   Node's decoder (used here) reads as well, so an existing endpoint's Standard Webhooks key is
//   the bytes its secret always stood for. Libraries that want standard base64 are given the same
//   secret with `-` → `+`, `_` → `/` and `=` padding (docs/WEBHOOKS.md): nothing to rotate.
// - Engine-Room-Signature: `t=<unix seconds>,v1=<hex HMAC of "<t>.<body>">`, keyed by the whole
//   secret string (as it always was). Deprecated; kept so existing receivers go on working.
//
// During a rotation's grace period a delivery is signed by both secrets: the new one first, then
// the old one, as two space-separated `v1,` entries (the specification's way) and two `v1=`
// entries in the legacy header (Stripe's way). The legacy header's old signature comes last, so a
// receiver that kept the documented first version of our verifier (which read the last `v1`) and
// the old secret goes on verifying until the grace period ends.
import { createHmac } from 'node:crypto';

const secretPrefix = 'whsec_';

/** The Standard Webhooks key of a secret: the bytes after `whsec_` (base64 or base64url). */
export function standardKey(secret: string): Buffer {
  return secret.startsWith(secretPrefix)
    ? Buffer.from(secret.slice(secretPrefix.length), 'base64')
    : Buffer.from(secret, 'utf8');
}

/** The secrets that sign a delivery: the current one, and the previous one while its grace period runs. */
export interface SigningSecrets {
  current: string;
  previous: string | null;
}

/** `t=<unix seconds>,v1=<hex>[,v1=<hex>]`: the deprecated Engine-Room-Signature, keyed by each whole secret string. */
export function legacySignatureHeader(secrets: readonly string[], timestamp: number, rawBody: string): string {
  const v1 = secrets.map(
    (secret) => `v1=${createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex')}`,
  );
  return [`t=${timestamp}`, ...v1].join(',');
}

/** `v1,<base64>[ v1,<base64>]`: the Standard Webhooks webhook-signature, one entry per secret. */
export function standardSignatureHeader(
  secrets: readonly string[],
  id: string,
  timestamp: number,
  rawBody: string,
): string {
  return secrets
    .map(
      (secret) =>
        `v1,${createHmac('sha256', standardKey(secret)).update(`${id}.${timestamp}.${rawBody}`).digest('base64')}`,
    )
    .join(' ');
}

/** The headers of one delivery attempt: who it is from, which event, and its signatures. */
export function deliveryHeaders(
  secrets: SigningSecrets,
  eventId: string,
  rawBody: string,
  now: Date = new Date(),
): Record<string, string> {
  const timestamp = Math.floor(now.getTime() / 1000);
  const keys = secrets.previous === null ? [secrets.current] : [secrets.current, secrets.previous];
  return {
    'content-type': 'application/json',
    'user-agent': 'Engine-Room-Webhooks/1',
    'webhook-id': eventId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': standardSignatureHeader(keys, eventId, timestamp, rawBody),
    'engine-room-event-id': eventId,
    'engine-room-signature': legacySignatureHeader(keys, timestamp, rawBody),
  };
}
