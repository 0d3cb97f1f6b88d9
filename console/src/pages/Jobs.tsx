// Jobs (admins): one queue's jobs in one state, newest first, page by page, each with its data
// (secrets hidden by the API) and its last error; and the dead letters, sent back from here as from
// the operations page (the same component and endpoints).
import { useEffect, useState } from 'preact/hooks';
import { api, type QueueJob } from '../api.ts';
import type { PageProps } from '../page.ts';
import { DataTable, MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { DeadLetters, useDeadLetters } from '../components/DeadLetters.tsx';
import { AdminOnly, ErrorNote } from '../components/ui.tsx';
import * as f from '../format.ts';

const states = [
  { value: 'waiting', label: 'Waiting' },
  { value: 'running', label: 'Running' },
  { value: 'retrying', label: 'Retrying' },
  { value: 'completed', label: 'Completed' },
  { value: 'failed', label: 'Failed (out of attempts)' },
  { value: 'cancelled', label: 'Cancelled' },
  { value: 'dead', label: 'Dead letters (to retry)' },
] as const;
type State = (typeof states)[number]['value'];

export function JobsPage({ session }: PageProps) {
  const admin = session.user.role === 'admin';
  const query = new URLSearchParams(location.search);
  const [queues, setQueues] = useState<string[]>([]);
  const [queue, setQueue] = useState(query.get('queue') ?? '');
  const [state, setState] = useState<State>(states.find((s) => s.value === query.get('state'))?.value ?? 'dead');
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    if (!admin) return;
    // The queues, as the operations overview counts them (the shortest window: only the names matter).
    api.operationsOverview({ query: { window: 300 } }).then((o) => {
      const names = o.queues.map((q) => q.name);
      setQueues(names);
      setQueue((current) => current || names[0] || '');
    }, setError);
  }, [admin]);

  const choose = (next: { queue?: string; state?: State }) => {
    if (next.queue !== undefined) setQueue(next.queue);
    if (next.state !== undefined) setState(next.state);
    const url = new URL(location.href);
    url.searchParams.set('queue', next.queue ?? queue);
    url.searchParams.set('state', next.state ?? state);
    history.replaceState(null, '', url);
  };

  if (!admin)
    return (
      <>
        <div class="page-head">
          <h1>Jobs</h1>
        </div>
        <AdminOnly what="Listing jobs and retrying dead letters" />
      </>
    );
  return (
    <>
      <div class="page-head">
        <h1>Jobs</h1>
        <div class="controls">
          <label for="queue">Queue</label>
          <select id="queue" value={queue} onChange={(e) => choose({ queue: e.currentTarget.value })}>
            {queues.map((q) => (
              <option key={q} value={q}>
                {q}
              </option>
            ))}
          </select>
          <label for="state">State</label>
          <select id="state" value={state} onChange={(e) => choose({ state: e.currentTarget.value as State })}>
            {states.map((s) => (
              <option key={s.value} value={s.value}>
                {s.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      <ErrorNote error={error} />
      {!queue ? null : state === 'dead' ? (
        <QueueDeadLetters key={queue} queue={queue} />
      ) : (
        <JobList key={`${queue} ${state}`} queue={queue} state={state} />
      )}
    </>
  );
}

function QueueDeadLetters({ queue }: { queue: string }) {
  const list = useDeadLetters(queue, true);
  return <DeadLetters list={list} />;
}

function JobList({ queue, state }: { queue: string; state: Exclude<State, 'dead'> }) {
  const pages = useCursorPages<QueueJob>(
    (cursor) => api.listQueueJobs({ params: { queue }, query: { state, limit: 20, ...(cursor ? { cursor } : {}) } }),
    true,
  );
  return (
    <>
      <DataTable
        caption={`${states.find((s) => s.value === state)?.label} jobs of ${queue}, newest first`}
        columns={[
          { header: 'Job', cell: (j) => <code title={j.id}>{j.id.slice(0, 8)}</code> },
          {
            header: 'Created',
            cell: (j) => (
              <time dateTime={j.createdAt} title={f.time(j.createdAt)}>
                {f.ago(j.createdAt)}
              </time>
            ),
          },
          { header: 'Attempts', numeric: true, cell: (j) => j.attempts },
          {
            header: state === 'retrying' || state === 'waiting' ? 'Runs at' : 'Finished',
            cell: (j) =>
              state === 'retrying' || state === 'waiting'
                ? f.time(j.startAfter)
                : j.finishedAt
                  ? f.time(j.finishedAt)
                  : '–',
          },
          { header: 'Error', cell: (j) => <span class="error-text">{j.error ?? ''}</span> },
          {
            header: 'Data',
            cell: (j) => (
              <details>
                <summary>Data of {j.id.slice(0, 8)}</summary>
                <pre class="text">{JSON.stringify(j.data, null, 2)}</pre>
              </details>
            ),
          },
        ]}
        rows={pages.rows}
        keyOf={(j) => j.id}
        empty="No jobs in this state (finished jobs are archived after 12 hours)."
      />
      <MoreButton pages={pages} label="More jobs" />
    </>
  );
}
