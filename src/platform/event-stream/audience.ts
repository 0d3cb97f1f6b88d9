// Audience routing: a stream receives the events whose `audience` shares a key with the stream's
// keys (the user's id, and `role:<role>` groups). The hub knows no event types.
import type { Stream } from './stream.ts';

/** The audience key of every staff and admin user (a module adds it to an event staff should see). */
export const staffAudience = 'role:staff';

/** The keys a user's stream matches against an event's audience. */
export function audienceKeysOf(principal: { userId: string; role: string }): string[] {
  const keys = [principal.userId, `role:${principal.role}`];
  if (principal.role === 'admin') keys.push(staffAudience);
  return keys;
}

/** The joined streams, by audience key. */
export interface AudienceRoutes {
  join(s: Stream): void;
  /** Answers whether the stream was joined. */
  leave(s: Stream): boolean;
  /** The joined streams an event of this audience goes to. */
  targetsOf(audience: readonly string[]): Set<Stream>;
  /** Streams joined, and the audience keys they are routed by. */
  readonly joined: number;
  readonly keys: number;
}

export function createAudienceRoutes(): AudienceRoutes {
  const streams = new Set<Stream>();
  const byKey = new Map<string, Set<Stream>>();
  return {
    join(s) {
      streams.add(s);
      for (const key of s.keys) {
        const set = byKey.get(key) ?? new Set<Stream>();
        set.add(s);
        byKey.set(key, set);
      }
    },
    leave(s) {
      if (!streams.delete(s)) return false;
      for (const key of s.keys) {
        const set = byKey.get(key);
        set?.delete(s);
        if (set?.size === 0) byKey.delete(key);
      }
      return true;
    },
    targetsOf(audience) {
      const targets = new Set<Stream>();
      for (const key of audience) for (const s of byKey.get(key) ?? []) targets.add(s);
      return targets;
    },
    get joined() {
      return streams.size;
    },
    get keys() {
      return byKey.size;
    },
  };
}
