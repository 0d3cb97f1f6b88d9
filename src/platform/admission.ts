// Admission by waiting time: how many requests this process works on at once, who waits for a
// turn, and who is refused (503) because their wait would be too long. Pure: no timers, no I/O;
// the clock is a parameter, so tests drive it (test/admission.test.ts). load-shedding.ts puts it
// in front of the routes.
//
// Three parts, each answering one question:
// - How much at once? An adaptive concurrency limit (a gradient on latency, as in Netflix's
//   concurrency-limits): every window, when the limit was reached, it moves by the ratio of a
//   service-time target (a quarter of the wait target) to the average time admitted requests took,
//   clamped to [0.5, 1.25]. A process that answers quickly at its limit is given more; one whose
//   admitted requests queue inside it (for the event loop, for a database connection) is given
//   less, so the waiting happens here, where it is measured and ordered. No count is tuned per
//   machine: the limit settles near target x throughput (Little's law), whatever the machine.
// - Who goes next? A queue per priority class; the highest class with anyone waiting goes first.
// - Who is refused? By time, never by count (the count caps are safety nets far above what a
//   machine serves). Per class, CoDel's rule (Nichols and Jacobson): a queue that drains is a
//   burst and is served, a queue that stands is an overload. A request may wait up to twice its
//   class's target while the queue drains (a burst); once the waits of those leaving the queue
//   have stayed above the target for half a target's time, the class is "dropping" (until the
//   queue empties, or its waits stay at half the target for a whole target): requests at
//   the head that waited longer than the target are refused, and so are new arrivals whose
//   predicted wait (those ahead / the rate the queue drains at) passes the target, at once,
//   before any work. (Half, not a whole target: the first second of an overload looks like a
//   burst, and those let in meanwhile wait up to twice the target; the sooner it is told apart,
//   the fewer.)
//   The drain rate is measured only over windows when the queue never emptied (then it is what the
//   process can do, not what it was asked); until one is known, arrivals are never refused for a
//   prediction, only for their wait.
// Lower classes have lower targets (a half, a quarter): under overload they are refused first,
// and they wait only while no higher class does.

export const priorities = ['critical', 'normal', 'low'] as const;
export type Priority = (typeof priorities)[number];

/**
 * Why a request was refused: `wait` (it waited past its class's allowance in the queue),
 * `predicted` (on arrival, the queue ahead would take longer than the allowance), `queue_full`
 * (the safety cap on queued requests: a request of a higher class takes the place of the newest of
 * the lowest class queued), `event_loop` (set by the caller: the event loop is late).
 */
export type ShedReason = 'wait' | 'predicted' | 'queue_full' | 'event_loop';

export interface AdmissionOptions {
  /** Milliseconds, monotonic. */
  now: () => number;
  /** The highest class's wait target (ms): a standing queue is held to it; a burst may wait twice it. */
  targetWaitMs: number;
  /** Safety cap on the adaptive limit (requests admitted at once). */
  maxInFlight: number;
  /** Safety cap on requests queued (all classes). */
  maxQueued: number;
  /** Where the adaptive limit starts (default 64, at most maxInFlight). */
  initialLimit?: number;
  /** The adaptive limit never goes below this (default 16: orders are written in batches, which need company). */
  minLimit?: number;
  /** Adaptation window, ms (default 100). */
  windowMs?: number;
}

export interface Entry {
  readonly priority: Priority;
  readonly arrivedAt: number;
  state: 'queued' | 'admitted' | 'refused' | 'left';
  reason?: ShedReason;
  admittedAt?: number;
  /** Called when a queued entry is admitted or refused later (not for a decision made in enter()). */
  notify?: (entry: Entry) => void;
}

export interface AdmissionState {
  limit: number;
  inFlight: number;
  queued: Record<Priority, number>;
  dropping: Record<Priority, boolean>;
  /** Requests per second the queue drained at when it last stood a whole window; null: not known. */
  drainRate: number | null;
}

/** Share of the highest class's target each class gets. */
const targetShare: Record<Priority, number> = { critical: 1, normal: 0.5, low: 0.25 };
/** A drain rate this old no longer predicts anything. */
const rateTtlMs = 30_000;

interface ClassState {
  queue: Entry[];
  head: number;
  /** Live entries in the queue (those left by their client are skipped lazily). */
  count: number;
  targetMs: number;
  /** When waits at this class's head first went above its target (null: they are below). */
  firstAboveAt: number | null;
  /** While dropping: when waits first fell to half the target (null: they are above). */
  firstBelowAt: number | null;
  dropping: boolean;
}

export interface Admission {
  /** A request arrives: admitted at once, queued (entry.notify is called on the decision), or refused. */
  enter(priority: Priority): Entry;
  /** The request is done (admitted: its answer started), or its client left while it was queued. */
  leave(entry: Entry): void;
  /** Refuses queued entries past their allowance and adapts the limit; call it every few ms. */
  tick(): void;
  /** Whether a request of this class arriving now would be refused at once (checked before reading a body). */
  wouldRefuse(priority: Priority): ShedReason | undefined;
  state(): AdmissionState;
}

export function createAdmission(options: AdmissionOptions): Admission {
  const { now, targetWaitMs, maxInFlight, maxQueued } = options;
  const minLimit = Math.min(options.minLimit ?? 16, maxInFlight);
  const windowMs = options.windowMs ?? 100;
  const serviceTargetMs = targetWaitMs / 4;
  const classes = new Map<Priority, ClassState>(
    priorities.map((p) => [
      p,
      {
        queue: [],
        head: 0,
        count: 0,
        targetMs: targetWaitMs * targetShare[p],
        firstAboveAt: null,
        firstBelowAt: null,
        dropping: false,
      },
    ]),
  );
  let limit = Math.max(minLimit, Math.min(options.initialLimit ?? 64, maxInFlight));
  let inFlight = 0;
  let queuedTotal = 0;
  // The current window: completions, their summed service time, whether the limit was reached,
  // and whether the queue stood (never emptied) all along.
  let windowStart = now();
  let completions = 0;
  let serviceSum = 0;
  let reachedLimit = false;
  let queueStood = false;
  let dequeued = 0;
  let drainRate: number | null = null;
  let drainRateAt = 0;

  const classOf = (p: Priority) => classes.get(p)!;
  /** Entries queued in this class and every class that goes before it. */
  const aheadOf = (p: Priority) => {
    let n = 0;
    for (const q of priorities) {
      n += classOf(q).count;
      if (q === p) break;
    }
    return n;
  };
  const knownRate = () => (drainRate !== null && now() - drainRateAt <= rateTtlMs ? drainRate : null);

  function refuse(entry: Entry, reason: ShedReason): Entry {
    entry.state = 'refused';
    entry.reason = reason;
    return entry;
  }

  function admit(entry: Entry, at: number): Entry {
    entry.state = 'admitted';
    entry.admittedAt = at;
    inFlight++;
    if (inFlight >= limit) reachedLimit = true;
    return entry;
  }

  function popHead(c: ClassState): Entry | undefined {
    while (c.head < c.queue.length) {
      const e = c.queue[c.head++]!;
      if (c.head > 1024 && c.head * 2 > c.queue.length) {
        c.queue = c.queue.slice(c.head);
        c.head = 0;
      }
      if (e.state !== 'queued') continue;
      c.count--;
      queuedTotal--;
      return e;
    }
    return undefined;
  }

  function peekHead(c: ClassState): Entry | undefined {
    while (c.head < c.queue.length && c.queue[c.head]!.state !== 'queued') c.head++;
    return c.queue[c.head];
  }

  /**
   * CoDel's state of a class, from the wait of the entry leaving its queue. Dropping starts once
   * waits have stayed above the target for half a target; it ends when the queue empties, or when
   * waits have stayed at half the target or less for a whole target. Not at the first wait under
   * the target: refusing on arrival holds the queue just under it, waits below it are the rule
   * then, and leaving at the first one let the queue grow again to twice the target, whose heads
   * were then refused after waiting (bench, PostgreSQL: 503s answered after ~510 ms, accepted p99
   * 1,078 ms).
   */
  function observeWait(c: ClassState, waitedMs: number, at: number): void {
    if (c.dropping) {
      if (waitedMs > c.targetMs / 2) c.firstBelowAt = null;
      else if (c.firstBelowAt === null) c.firstBelowAt = at;
      else if (at - c.firstBelowAt >= c.targetMs) settle(c);
      return;
    }
    if (waitedMs <= c.targetMs) c.firstAboveAt = null;
    else if (c.firstAboveAt === null) c.firstAboveAt = at;
    else if (at - c.firstAboveAt >= c.targetMs / 2) {
      c.dropping = true;
      c.firstBelowAt = null;
    }
  }

  /** Out of dropping: the queue drained, or its waits stayed low. */
  function settle(c: ClassState): void {
    c.dropping = false;
    c.firstAboveAt = null;
    c.firstBelowAt = null;
  }

  /** Whether a queued entry has waited past what its class allows now. */
  const overdue = (c: ClassState, e: Entry, at: number) =>
    at - e.arrivedAt > (c.dropping ? c.targetMs : 2 * c.targetMs);

  /** Refuses overdue heads (in every class), then admits while there is room, highest class first. */
  function drain(): void {
    const at = now();
    for (const p of priorities) {
      const c = classOf(p);
      while (c.count > 0) {
        const head = peekHead(c)!;
        const late = overdue(c, head, at);
        if (!late && inFlight >= limit) break;
        popHead(c);
        observeWait(c, at - head.arrivedAt, at);
        if (late) refuse(head, 'wait');
        else {
          admit(head, at);
          dequeued++;
        }
        head.notify?.(head);
      }
      if (c.count === 0) settle(c);
    }
  }

  function adapt(): void {
    const at = now();
    if (at - windowStart < windowMs) return;
    const elapsed = at - windowStart;
    if (queueStood && queuedTotal > 0 && dequeued > 0) {
      // Smoothed over about a second of windows: a window holds a few dozen admissions, and on a
      // shared machine one window's rate swung from 180 to 750/s; refusing on a low one emptied the
      // queue while the process could have served it.
      const sample = (dequeued * 1000) / elapsed;
      drainRate = drainRate === null || at - drainRateAt > rateTtlMs ? sample : drainRate * 0.85 + sample * 0.15;
      drainRateAt = at;
    }
    if (completions > 0) {
      const averageMs = serviceSum / completions;
      // Only while the limit was reached: then it is what held requests back (grow), or admitted
      // requests waited inside the process (shrink). Below it, a slow request is slow on its own,
      // and a quiet hour of slow console reads must not leave a burst a small limit.
      if (reachedLimit) {
        // Half the step the ratio asks for (the average lags the limit by a window or so), plus
        // Gradient2's sqrt(limit) of headroom, so that a limit held back by a slow spell (the
        // machine busy with other work) keeps probing upwards instead of settling at the floor.
        const ratio = Math.min(1.25, Math.max(0.5, serviceTargetMs / Math.max(averageMs, 0.001)));
        const next = limit * (1 + (ratio - 1) / 2) + Math.sqrt(limit) / 2;
        limit = Math.max(minLimit, Math.min(maxInFlight, ratio > 1 ? Math.ceil(next) : Math.floor(next)));
      }
    }
    windowStart = at;
    completions = 0;
    serviceSum = 0;
    dequeued = 0;
    reachedLimit = inFlight >= limit;
    queueStood = queuedTotal > 0;
  }

  /** The lowest class below p with anyone queued (whose newest entry gives way when the queue is full). */
  function evictableBelow(p: Priority): ClassState | undefined {
    for (let i = priorities.length - 1; priorities[i] !== p; i--) {
      const c = classOf(priorities[i]!);
      if (c.count > 0) return c;
    }
    return undefined;
  }

  function evictNewest(c: ClassState): void {
    while (c.queue.length > c.head) {
      const e = c.queue.pop()!;
      if (e.state !== 'queued') continue;
      c.count--;
      queuedTotal--;
      refuse(e, 'queue_full');
      e.notify?.(e);
      return;
    }
  }

  function wouldRefuse(p: Priority): ShedReason | undefined {
    const c = classOf(p);
    const ahead = aheadOf(p);
    if (inFlight < limit && ahead === 0) return undefined;
    if (queuedTotal >= maxQueued && !evictableBelow(p)) return 'queue_full';
    // Only a standing queue refuses on arrival: a burst is let in and served, or refused once it
    // has waited its allowance (a prediction made at a burst's start, from a drain rate measured
    // cold, refused 40 of 1,000 buyers the engine served in 0.9 s).
    const rate = knownRate();
    if (c.dropping && rate !== null && ((ahead + 1) * 1000) / rate > c.targetMs) return 'predicted';
    return undefined;
  }

  return {
    enter(priority) {
      adapt();
      const at = now();
      const entry: Entry = { priority, arrivedAt: at, state: 'queued' };
      if (inFlight < limit && aheadOf(priority) === 0) return admit(entry, at);
      const refusal = wouldRefuse(priority);
      if (refusal) return refuse(entry, refusal);
      const lower = queuedTotal >= maxQueued ? evictableBelow(priority) : undefined;
      if (lower) evictNewest(lower);
      const c = classOf(priority);
      c.queue.push(entry);
      c.count++;
      queuedTotal++;
      reachedLimit = true;
      return entry;
    },
    leave(entry) {
      if (entry.state === 'queued') {
        entry.state = 'left';
        classOf(entry.priority).count--;
        queuedTotal--;
      } else if (entry.state === 'admitted') {
        entry.state = 'left';
        inFlight--;
        completions++;
        serviceSum += now() - entry.admittedAt!;
      } else return;
      if (queuedTotal === 0) queueStood = false;
      adapt();
      drain();
      if (queuedTotal === 0) queueStood = false;
    },
    tick() {
      adapt();
      drain();
      if (queuedTotal === 0) queueStood = false;
    },
    wouldRefuse,
    state() {
      const queued = {} as Record<Priority, number>;
      const dropping = {} as Record<Priority, boolean>;
      for (const p of priorities) {
        queued[p] = classOf(p).count;
        dropping[p] = classOf(p).dropping;
      }
      return { limit, inFlight, queued, dropping, drainRate: knownRate() };
    },
  };
}
