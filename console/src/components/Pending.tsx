// "Pending until the queue has done its part": after an action that hands work to the job queue
// (a job sent back from the dead letters, an order cancelled and refunded), the page shows the
// work as pending and asks, every second, whether it is done, then says how it ended.
import { useEffect, useState } from 'preact/hooks';
import { Badge } from './ui.tsx';

export type PendingState = { done: false; label: string } | { done: true; ok: boolean; label: string };

export function Pending({
  check,
  intervalMs = 1000,
  onDone,
}: {
  check: () => Promise<PendingState>;
  intervalMs?: number;
  onDone?: (state: PendingState) => void;
}) {
  const [state, setState] = useState<PendingState>({ done: false, label: 'Waiting for the queue…' });
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const tick = async () => {
      try {
        const next = await check();
        if (stopped) return;
        setState(next);
        if (next.done) {
          onDone?.(next);
          return;
        }
      } catch {
        // a failed check is asked again at the next tick
      }
      if (!stopped) timer = window.setTimeout(() => void tick(), intervalMs);
    };
    void tick(); // tick catches its own failures and tries again at the next one
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, []);
  return (
    <span role="status" class="pending">
      {state.done ? (
        <Badge tone={state.ok ? 'ok' : 'bad'}>{state.label}</Badge>
      ) : (
        <>
          <span class="spinner" aria-hidden="true" />
          {state.label}
        </>
      )}
    </span>
  );
}
