// The dead letters of every queue (or of one), each sent back to its queue from here, then followed
// until the queue has done its part. Shared by the operations page and the jobs page.
import { useState } from 'preact/hooks';
import { api, type FailedJob } from '../api.ts';
import { ConfirmAction } from './ConfirmAction.tsx';
import { DataTable, MoreButton, useCursorPages } from './DataTable.tsx';
import { Pending } from './Pending.tsx';
import * as f from '../format.ts';

export interface Retried {
  deadId: string;
  newId: string;
  queue: string;
}

/** The list of dead letters (of `queue`, or all) and the jobs sent back from this page. */
export function useDeadLetters(queue: string | undefined, enabled: boolean) {
  const pages = useCursorPages<FailedJob>(
    (cursor) =>
      api.listFailedJobs({ query: { limit: 20, ...(queue ? { queue } : {}), ...(cursor ? { cursor } : {}) } }),
    enabled,
  );
  const [retried, setRetried] = useState<Retried[]>([]);
  return {
    pages,
    retried,
    sentBack(items: Retried[]) {
      setRetried((before) => [...items, ...before].slice(0, 50));
      void pages.reload(); // a failed reload shows as the list's error
    },
  };
}

export type DeadLetterList = ReturnType<typeof useDeadLetters>;

export function DeadLetters({ list, onSentBack }: { list: DeadLetterList; onSentBack?: () => void }) {
  const sentBack = (items: Retried[]) => {
    list.sentBack(items);
    onSentBack?.();
  };
  return (
    <>
      <DataTable
        caption="Jobs that ran out of attempts, latest first"
        columns={[
          { header: 'Queue', cell: (j) => <code>{j.queue}</code> },
          { header: 'Error', cell: (j) => <span class="error-text">{j.error}</span> },
          { header: 'Attempts', numeric: true, cell: (j) => j.attempts },
          {
            header: 'Failed',
            cell: (j) => (
              <time dateTime={j.failedAt} title={f.time(j.failedAt)}>
                {f.ago(j.failedAt)}
              </time>
            ),
          },
          {
            header: 'Action',
            cell: (j) => (
              <ConfirmAction
                label="Retry"
                accessibleLabel={`Retry job ${j.id.slice(0, 8)} of ${j.queue}`}
                tone="secondary"
                title="Send this job back to its queue?"
                confirmLabel="Retry"
                run={(idempotencyKey) => api.retryFailedJob({ params: { id: j.id }, idempotencyKey })}
                onDone={(r) => sentBack([{ deadId: j.id, newId: r.id, queue: j.queue }])}
              >
                <p>
                  Job <code>{j.id}</code> goes back to <code>{j.queue}</code> with a fresh retry budget. Its last error:{' '}
                  {j.error}
                </p>
              </ConfirmAction>
            ),
          },
        ]}
        rows={list.pages.rows}
        keyOf={(j) => j.id}
        empty="No dead letters: every job finished or is still being retried."
      />
      <MoreButton pages={list.pages} label="More dead letters" />
      {list.retried.length > 0 ? (
        <div class="retried">
          <h3>Sent back</h3>
          <ul>
            {list.retried.map((r) => (
              <li key={r.newId}>
                <code>{r.queue}</code> job <code>{r.newId.slice(0, 8)}</code>: <Pending check={() => jobProgress(r)} />
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </>
  );
}

async function jobProgress(r: Retried) {
  const job = await api.getJob({ params: { id: r.newId }, query: { queue: r.queue } });
  if (job.state === 'completed') return { done: true as const, ok: true, label: `Done (attempt ${job.attempts})` };
  if (job.state === 'failed' || job.state === 'cancelled')
    return { done: true as const, ok: false, label: `Failed again: ${job.error ?? job.state}` };
  return {
    done: false as const,
    label: `${job.state === 'running' ? 'Running' : job.state === 'retrying' ? `Retrying (${job.attempts} attempts so far)` : 'Waiting for the queue'}…`,
  };
}
