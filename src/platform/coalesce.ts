// Lookups that many requests make at once (the principal behind a token, say) answered together:
// a lookup starts at once while fewer than `concurrency` are running; otherwise it waits, and all
// that waited go in the next one, as one query. A quiet server pays nothing (a lookup of one key);
// a busy one pays a round trip per batch instead of per request, and round trips are what a
// request mostly costs (see docs/PERFORMANCE.md).

export interface Coalesced<K, V> {
  (key: K): Promise<V | undefined>;
}

/**
 * load answers the values of the keys it found (a key it leaves out answers undefined). A load
 * that throws rejects the lookups of its batch.
 */
export function coalesce<K, V>(
  load: (keys: K[]) => Promise<Map<K, V>>,
  options: { concurrency: number; maxBatch: number },
): Coalesced<K, V> {
  let waiting = new Map<K, { resolve: (v: V | undefined) => void; reject: (err: unknown) => void }[]>();
  let running = 0;

  const pump = () => {
    while (running < options.concurrency && waiting.size > 0) {
      const batch = new Map<K, { resolve: (v: V | undefined) => void; reject: (err: unknown) => void }[]>();
      for (const [key, callers] of waiting) {
        if (batch.size >= options.maxBatch) break;
        batch.set(key, callers);
      }
      for (const key of batch.keys()) waiting.delete(key);
      if (waiting.size === 0) waiting = new Map();
      running++;
      // Both outcomes are handed to the callers below, so nothing is left to reject.
      void load([...batch.keys()])
        .then(
          (found) => {
            for (const [key, callers] of batch) for (const c of callers) c.resolve(found.get(key));
          },
          (err: unknown) => {
            for (const callers of batch.values()) for (const c of callers) c.reject(err);
          },
        )
        .finally(() => {
          running--;
          pump();
        });
    }
  };

  return (key) =>
    new Promise<V | undefined>((resolve, reject) => {
      const callers = waiting.get(key);
      if (callers) callers.push({ resolve, reject });
      else waiting.set(key, [{ resolve, reject }]);
      pump();
    });
}
