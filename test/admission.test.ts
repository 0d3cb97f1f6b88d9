// The admission queue alone (src/platform/admission.ts), on a fake clock: no server, no database.
// A small simulation stands in for the process: an admitted request takes the base service time,
// or longer when more are admitted than the process does at once (Little's law: in flight /
// capacity), the way requests wait inside a process for its event loop and database connections.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createAdmission, priorities, type Entry, type Priority } from '../src/platform/admission.ts';

interface Sim {
  /** Requests per second the simulated process completes. */
  capacity: number;
  /** Service time of one request alone, ms. */
  baseMs: number;
}

/**
 * Runs arrivals (ms offsets and classes) through an admission queue on a fake clock, 1 ms steps,
 * ticking every 20 ms as load-shedding.ts does; answers each entry with when it was decided.
 */
function simulate(
  sim: Sim,
  arrivals: { at: number; priority: Priority }[],
  options: { targetWaitMs?: number; maxInFlight?: number; initialLimit?: number } = {},
) {
  let clock = 0;
  const admission = createAdmission({
    now: () => clock,
    targetWaitMs: options.targetWaitMs ?? 500,
    maxInFlight: options.maxInFlight ?? 2000,
    maxQueued: 10_000,
    initialLimit: options.initialLimit ?? 64,
  });
  const done: { entry: Entry; finishAt: number }[] = [];
  const results: { entry: Entry; decidedAt: number; waitedMs: number; refusedAtOnce: boolean; doneAt?: number }[] = [];
  const limits: number[] = [];
  let maxInFlightSeen = 0;
  const start = (entry: Entry) => {
    const inFlight = admission.state().inFlight;
    maxInFlightSeen = Math.max(maxInFlightSeen, inFlight);
    done.push({ entry, finishAt: clock + Math.max(sim.baseMs, (inFlight / sim.capacity) * 1000) });
  };
  const sorted = [...arrivals].sort((a, b) => a.at - b.at);
  let next = 0;
  const end = (sorted.at(-1)?.at ?? 0) + 60_000;
  for (clock = 0; clock <= end; clock++) {
    for (let i = done.length - 1; i >= 0; i--) {
      if (done[i]!.finishAt <= clock) {
        const [d] = done.splice(i, 1);
        admission.leave(d!.entry);
      }
    }
    while (next < sorted.length && sorted[next]!.at <= clock) {
      const entry = admission.enter(sorted[next++]!.priority);
      const result = { entry, decidedAt: clock, waitedMs: 0, refusedAtOnce: entry.state === 'refused' };
      results.push(result);
      if (entry.state === 'admitted') start(entry);
      else if (entry.state === 'queued') {
        entry.notify = (e) => {
          result.decidedAt = clock;
          result.waitedMs = clock - e.arrivedAt;
          if (e.state === 'admitted') start(e);
        };
      }
    }
    if (clock % 20 === 0) admission.tick();
    if (clock % 100 === 0) limits.push(admission.state().limit);
    if (next >= sorted.length && done.length === 0 && results.every((r) => r.entry.state !== 'queued')) break;
  }
  return { admission, results, limits, maxInFlightSeen, endedAt: clock };
}

const burst = (n: number, priority: Priority = 'critical') => Array.from({ length: n }, () => ({ at: 0, priority }));
/** A steady stream at this many requests per second for this long. */
const stream = (perSecond: number, seconds: number, priority: Priority, offset = 0) =>
  Array.from({ length: Math.round(perSecond * seconds) }, (_, i) => ({
    at: offset + Math.floor((i * 1000) / perSecond),
    priority,
  }));
const p99 = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.max(0, Math.ceil(values.length * 0.99) - 1)] ?? 0;

describe('admission by waiting time (fake clock)', () => {
  it('a burst the process clears within twice the target is queued and served: nothing is refused', () => {
    // 1,000 at once on a process that does 1,500/s: the last waits about 0.65 s (< 2 x 500 ms).
    const { results } = simulate({ capacity: 1500, baseMs: 5 }, burst(1000));
    assert.equal(results.filter((r) => r.entry.state === 'refused').length, 0);
    assert.equal(results.filter((r) => r.entry.state === 'left').length, 1000);
  });

  it('a burst the process cannot clear in time is served up to what it can, and the rest refused (none waits past twice the target)', () => {
    const { results } = simulate({ capacity: 1000, baseMs: 5 }, burst(5000));
    const served = results.filter((r) => r.entry.state === 'left');
    const refused = results.filter((r) => r.entry.state === 'refused');
    assert.ok(served.length >= 800 && served.length <= 2000, `served ${served.length}`);
    assert.equal(served.length + refused.length, 5000);
    for (const r of results) assert.ok(r.waitedMs <= 2 * 500 + 20, `waited ${r.waitedMs} ms`);
  });

  it('a burst is never refused on arrival, even with a drain rate known from an earlier overload: it is queued, and only those past the allowance refused', () => {
    const arrivals = [...stream(1600, 3, 'critical'), ...burst(1200).map((a) => ({ ...a, at: 6000 }))];
    const { results } = simulate({ capacity: 800, baseMs: 5 }, arrivals);
    assert.ok(
      results.some((r) => r.entry.arrivedAt < 6000 && r.refusedAtOnce),
      'the overload was refused on arrival',
    );
    const later = results.filter((r) => r.entry.arrivedAt >= 6000);
    assert.equal(
      later.filter((r) => r.refusedAtOnce).length,
      0,
      JSON.stringify(
        later
          .filter((r) => r.refusedAtOnce)
          .slice(0, 2)
          .map((r) => [r.entry.reason, r.entry.arrivedAt]),
      ),
    );
    assert.ok(later.filter((r) => r.entry.state === 'left').length >= 600);
  });

  it('under a sustained overload (twice what the process does) the excess is refused, mostly on arrival, and the accepted wait about the target', () => {
    const { results, admission } = simulate({ capacity: 800, baseMs: 5 }, stream(1600, 20, 'critical'));
    const accepted = results.filter((r) => r.entry.state === 'left');
    const refused = results.filter((r) => r.entry.state === 'refused');
    // About half served: the process's capacity, not less.
    assert.ok(accepted.length >= 0.9 * 800 * 20, `accepted ${accepted.length}`);
    assert.ok(refused.length >= 0.4 * 32_000, `refused ${refused.length}`);
    const atOnce = refused.filter((r) => r.refusedAtOnce).length;
    assert.ok(atOnce >= 0.8 * refused.length, `${atOnce} of ${refused.length} refused on arrival`);
    // After the first seconds the queue is held to the target.
    const late = accepted.filter((r) => r.entry.arrivedAt >= 5000).map((r) => r.waitedMs);
    assert.ok(p99(late) <= 500 + 50, `p99 wait ${p99(late)} ms`);
    assert.ok(admission.state().drainRate !== null);
  });

  it('priorities hold: under overload the critical class is served while the low class is refused', () => {
    const arrivals = [...stream(600, 10, 'critical'), ...stream(600, 10, 'low')];
    const { results } = simulate({ capacity: 800, baseMs: 5 }, arrivals);
    const of = (p: Priority) => results.filter((r) => r.entry.priority === p);
    const servedShare = (p: Priority) => of(p).filter((r) => r.entry.state === 'left').length / of(p).length;
    assert.ok(servedShare('critical') >= 0.98, `critical served ${servedShare('critical')}`);
    assert.ok(servedShare('low') <= 0.5, `low served ${servedShare('low')}`);
    for (const r of of('low'))
      assert.ok(r.waitedMs <= 2 * 125 + 20, `a low request waited ${r.waitedMs} ms (its target is 125 ms)`);
  });

  it('the limit adapts to the process: it grows while admitted requests are quick, and shrinks when they wait inside the process', () => {
    const fast = simulate(
      { capacity: 5000, baseMs: 5 },
      stream(4000, 3, 'normal').concat(burst(2000, 'normal').map((a) => ({ ...a, at: 1000 }))),
    );
    assert.ok(Math.max(...fast.limits) > 64, `the limit stayed at ${Math.max(...fast.limits)}`);
    const slow = simulate({ capacity: 100, baseMs: 5 }, stream(200, 5, 'normal'), { initialLimit: 200 });
    assert.ok(Math.min(...slow.limits) < 50, `the limit stayed at ${Math.min(...slow.limits)}`);
  });

  it('a request whose client leaves while queued is dropped from the queue; one admitted and done leaves its place', () => {
    let clock = 0;
    const admission = createAdmission({
      now: () => clock,
      targetWaitMs: 500,
      maxInFlight: 1,
      maxQueued: 10,
      initialLimit: 1,
    });
    const first = admission.enter('normal');
    const second = admission.enter('normal');
    const third = admission.enter('normal');
    assert.deepEqual([first.state, second.state, third.state], ['admitted', 'queued', 'queued']);
    admission.leave(second);
    assert.equal(admission.state().queued.normal, 1);
    clock = 10;
    let notified: Entry | undefined;
    third.notify = (e) => {
      notified = e;
    };
    admission.leave(first);
    assert.equal(notified, third);
    assert.equal(third.state, 'admitted');
    assert.equal(admission.state().inFlight, 1);
  });

  it('when the queue is full, a request of a higher class takes the place of the newest of the lowest class queued', () => {
    const clock = 0;
    const admission = createAdmission({
      now: () => clock,
      targetWaitMs: 500,
      maxInFlight: 1,
      maxQueued: 3,
      initialLimit: 1,
    });
    admission.enter('critical');
    const lows = [admission.enter('low'), admission.enter('low'), admission.enter('low')];
    assert.deepEqual(
      lows.map((e) => e.state),
      ['queued', 'queued', 'queued'],
    );
    assert.equal(admission.enter('low').reason, 'queue_full');
    const order = admission.enter('critical');
    assert.equal(order.state, 'queued');
    assert.deepEqual(
      lows.map((e) => e.state),
      ['queued', 'queued', 'refused'],
    );
    assert.equal(lows[2]!.reason, 'queue_full');
  });

  it('invariants, whatever the arrivals: every request is decided, never more admitted than the limit allows, no one waits past twice its target', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: 3000 }), priority: fc.constantFrom(...priorities) }), {
          maxLength: 400,
        }),
        fc.integer({ min: 20, max: 3000 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 200 }),
        (arrivals, capacity, baseMs, maxInFlight) => {
          const { results, maxInFlightSeen, admission } = simulate({ capacity, baseMs }, arrivals, { maxInFlight });
          assert.equal(results.length, arrivals.length);
          for (const r of results) assert.ok(r.entry.state === 'left' || r.entry.state === 'refused', r.entry.state);
          assert.ok(maxInFlightSeen <= maxInFlight);
          const target: Record<Priority, number> = { critical: 500, normal: 250, low: 125 };
          for (const r of results)
            assert.ok(r.waitedMs <= 2 * target[r.entry.priority] + 20, `${r.entry.priority} waited ${r.waitedMs}`);
          assert.equal(admission.state().inFlight, 0);
        },
      ),
      { numRuns: 60 },
    );
  });
});
