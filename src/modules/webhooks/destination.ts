// Where a webhook may be sent: only to public addresses, unless WEBHOOK_ALLOW_PRIVATE_URLS is on.
//
// An admin (or whoever steals an admin's session) chooses the URL, and the delivery log shows what
// each request got back: without this, a webhook would reach the database port on localhost, the
// cloud's metadata service at 169.254.169.254, or anything on the internal network, and the log
// would serve as a port scanner. Checked twice:
// - at creation and update, the URL as the WHATWG parser reads it (which is also how it is sent):
//   every spelling of an address (2130706433, 0x7f.0.0.1, [::ffff:127.0.0.1]) arrives normalised,
//   and names under .localhost are loopback by definition (RFC 6761). Other names are not resolved
//   there: their addresses can change at any time after the check, so that check would prove nothing.
// - at delivery, on the address the socket connects to: the lookup handed to the connection
//   resolves the name, refuses it if any of its addresses is not public (a name that answers a
//   public and a private address is a rebinding attempt, or a mistake), and gives the connection the
//   very addresses it checked, so the name cannot change between the check and the connect.
//
// Public means global unicast: IPv4 outside every special-purpose range (private, loopback,
// link-local, CGNAT, multicast, broadcast, reserved, documentation, benchmarking), IPv6 within
// 2000::/3 outside its special ranges (so no unique-local fc00::/7, link-local, multicast, 6to4,
// Teredo or IPv4-compatible ::a.b.c.d); an IPv4-mapped IPv6 address is judged as the IPv4 address
// it maps, and a NAT64 address (64:ff9b::/96, what DNS64 answers on an IPv6-only network) as the
// IPv4 address it embeds. Classification is ipaddr.js's (the library Fastify's own proxy-addr uses).
//
// Any port is allowed: receivers do listen on 8443 or 3000, and once the address is public, a port
// is only a port of someone else's public host, which anyone on the internet can reach anyway.
// Redirects are never followed (delivery.ts), so a public URL cannot bounce a request inside.
import dns from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

/** Resolves a name as dns.lookup does with { all: true }; tests pass their own. */
export type Resolve = (
  hostname: string,
  options: { family?: number; hints?: number },
) => Promise<{ address: string; family: number }[]>;

export const systemResolve: Resolve = (hostname, options) =>
  dns.promises.lookup(hostname, { family: options.family ?? 0, hints: options.hints ?? 0, all: true });

const globalUnicast = ipaddr.parseCIDR('2000::/3');
const nat64 = ipaddr.parseCIDR('64:ff9b::/96');

/** Why this address may not receive webhooks ("loopback", "private", ...), or null when it may. */
export function refusalOf(address: string): string | null {
  let ip = ipaddr.process(address); // an IPv4-mapped IPv6 address becomes the IPv4 address
  if (ip.kind() === 'ipv6' && ip.match(nat64)) {
    ip = ipaddr.fromByteArray((ip as ipaddr.IPv6).toByteArray().slice(12));
  }
  const range = ip.range();
  if (range !== 'unicast') return range;
  if (ip.kind() === 'ipv6' && !ip.match(globalUnicast)) return 'reserved';
  return null;
}

/** The URL's host without IPv6 brackets or a final dot: what a connection would look up. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

/**
 * Why the URL may not be a webhook's destination, as a sentence for the admin, or null. Without
 * allowPrivate, an address in the URL must be public and the name must not be localhost. Names are
 * checked again, resolved, at every delivery.
 */
export function urlProblem(raw: string, allowPrivate: boolean): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute http:// or https:// URL';
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '')
    return 'must be an absolute http:// or https:// URL';
  if (allowPrivate) return null;
  const host = hostOf(url).toLowerCase();
  if (isIP(host)) {
    const refusal = refusalOf(host);
    return refusal ? `must not point at a ${refusal} address (${host}); webhooks go to public addresses only` : null;
  }
  if (host === 'localhost' || host.endsWith('.localhost'))
    return `must not point at ${host}, a loopback name; webhooks go to public addresses only`;
  return null;
}

/** Thrown (as a connection error) when a destination is refused: the attempt fails without connecting. */
export class RefusedDestination extends Error {
  readonly code = 'EREFUSEDDESTINATION';
}

/** Why the delivery must not connect to this URL's host when it is an address; names are checked by the lookup. */
export function literalRefusal(url: URL): RefusedDestination | null {
  const host = hostOf(url);
  if (!isIP(host)) return null;
  const refusal = refusalOf(host);
  return refusal
    ? new RefusedDestination(`refused: ${host} is a ${refusal} address (WEBHOOK_ALLOW_PRIVATE_URLS is off)`)
    : null;
}

/**
 * The lookup a delivery's connection uses. Unless allowPrivate, it refuses the name when any of its
 * addresses is not public, and answers only the addresses it checked: the connection goes to one of
 * them and nowhere else (one resolution per connection, so nothing can change in between).
 */
export function destinationLookup(resolve: Resolve, allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { family: typeof options.family === 'number' ? options.family : 0, hints: options.hints ?? 0 })
      .then((found) => {
        if (found.length === 0) throw Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' });
        for (const { address } of allowPrivate ? [] : found) {
          const refusal = refusalOf(address);
          if (refusal)
            throw new RefusedDestination(
              `refused: ${hostname} resolves to ${address}, a ${refusal} address (WEBHOOK_ALLOW_PRIVATE_URLS is off)`,
            );
        }
        if (options.all) callback(null, found);
        else callback(null, found[0]!.address, found[0]!.family);
      })
      .catch((err: NodeJS.ErrnoException) => callback(err, '', 0));
  };
}
