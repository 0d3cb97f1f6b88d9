import { it } from 'node:test';
import assert from 'node:assert/strict';
import { coalesce } from '../src/platform/coalesce.ts';

/** A load that records its batches and finishes when told to. */
function controlledLoad(values: Record<string, number>) {
  const batches: string[][] = [];
  const gates: (() => void)[] = [];
  const load = async (keys: string[]) => {
    batches.push(keys);
    await new Promise<void>((resolve) => gates.push(resolve));
    if (keys.includes('boom')) throw new Error('load failed');
    return new Map(keys.filter((k) => k in values).map((k) => [k, values[k]!]));
  };
  const release = async () => {
    while (gates.length === 0) await new Promise((r) => setImmediate(r));
    gates.shift()!();
  };
  return { load, batches, release };
}

it('coalesce: lookups made while one runs go together in the next, each key once, each caller answered', async () => {
  const { load, batches, release } = controlledLoad({ a: 1, b: 2, c: 3 });
  const lookup = coalesce(load, { concurrency: 1, maxBatch: 10 });
  const first = lookup('a');
  const rest = [lookup('b'), lookup('c'), lookup('b'), lookup('missing')];
  await release();
  assert.equal(await first, 1);
  await release();
  assert.deepEqual(await Promise.all(rest), [2, 3, 2, undefined]);
  assert.deepEqual(batches, [['a'], ['b', 'c', 'missing']]);
});

it('coalesce: a failed load rejects its own batch only; maxBatch splits a long wait', async () => {
  const { load, batches, release } = controlledLoad({ a: 1, b: 2, c: 3 });
  const lookup = coalesce(load, { concurrency: 1, maxBatch: 2 });
  const first = lookup('boom');
  const next = [lookup('a'), lookup('b'), lookup('c')];
  await release();
  await assert.rejects(first, /load failed/);
  await release();
  await release();
  assert.deepEqual(await Promise.all(next), [1, 2, 3]);
  assert.deepEqual(batches, [['boom'], ['a', 'b'], ['c']]);
});
