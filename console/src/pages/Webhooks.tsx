// Webhooks (admins): every endpoint with its health, and one endpoint's deliveries: what each
// attempt sent (headers without the signatures, the exact payload) and what came back (status and
// the first 2 KiB of the body, untrusted: always shown as text), the attempts and the next retry.
// Actions: redeliver, disable and enable, rotate the signing secret with a grace period (the new
// secret is shown once).
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, newIdempotencyKey, type DeliveryAttempt, type WebhookDelivery, type WebhookEndpoint } from '../api.ts';
import type { PageProps } from '../page.ts';
import { ConfirmAction } from '../components/ConfirmAction.tsx';
import { DataTable, MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { AdminOnly, Badge, ErrorNote, Note, Section } from '../components/ui.tsx';
import { linkTo } from '../router.ts';
import * as f from '../format.ts';

function Health({ w }: { w: WebhookEndpoint }) {
  if (!w.enabled) return <Badge tone="warn">Disabled</Badge>;
  if (w.failingSince) return <Badge tone="bad">Failing since {f.ago(w.failingSince)}</Badge>;
  return <Badge tone="ok">Delivering</Badge>;
}

const when = (iso: string | null) =>
  iso ? (
    <time dateTime={iso} title={f.time(iso)}>
      {f.ago(iso)}
    </time>
  ) : (
    '–'
  );

const eventTypes = [
  'order.created',
  'order.paid',
  'order.payment_failed',
  'order.cancelled',
  'order.fulfilled',
  'message.created',
] as const;
type EventChoice = (typeof eventTypes)[number] | '*';

/**
 * An Idempotency-Key per request body: a retry of the same request reuses its key (done at most
 * once), while a request the admin changed after a refusal (another URL, another grace period)
 * gets a new one, rather than a 422 for a key used with a different body.
 */
function useKeyPerBody() {
  const last = useRef<{ body: string; key: string } | null>(null);
  return {
    keyFor(body: unknown): string {
      const text = JSON.stringify(body);
      if (last.current?.body !== text) last.current = { body: text, key: newIdempotencyKey() };
      return last.current.key;
    },
    /** After a success: the next request is a new one, even with the same body. */
    done() {
      last.current = null;
    },
  };
}

/** The secret of a new endpoint, or a rotated one: shown this once, never again. */
function SecretOnce({ secret, note, onDismiss }: { secret: string; note: string; onDismiss: () => void }) {
  return (
    <div class="note tone-warn" role="status">
      <p>
        <strong>The signing secret, shown only now:</strong> copy it to the receiver.
      </p>
      <p>
        <code class="secret" data-testid="new-secret">
          {secret}
        </code>
      </p>
      {note ? <p>{note}</p> : null}
      <button type="button" class="secondary" onClick={onDismiss}>
        I have copied it
      </button>
    </div>
  );
}

/** "*" alone, or the types: what the API accepts (the toggles below keep it so). */
function chosen(events: EventChoice[]): ['*'] | Exclude<EventChoice, '*'>[] {
  return events.includes('*') ? ['*'] : events.filter((e): e is Exclude<EventChoice, '*'> => e !== '*');
}

function CreateEndpoint({ onCreated }: { onCreated: (created: { id: string; secret: string }) => void }) {
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<EventChoice[]>(['*']);
  const key = useKeyPerBody();
  const toggle = (type: EventChoice, on: boolean) => {
    const others = events.filter((e) => e !== type && e !== '*');
    setEvents(type === '*' ? (on ? ['*'] : []) : on ? [...others, type] : others);
  };
  return (
    <ConfirmAction
      label="New endpoint"
      title="Register a webhook endpoint"
      confirmLabel="Register"
      run={() =>
        api.createWebhookEndpoint({
          body: { url, events: chosen(events) },
          idempotencyKey: key.keyFor({ url, events }),
        })
      }
      onDone={(created) => {
        key.done();
        setUrl('');
        onCreated(created);
      }}
    >
      <label for="endpoint-url">URL</label>
      <input
        id="endpoint-url"
        type="url"
        value={url}
        placeholder="https://shop.example/hooks"
        onInput={(e) => setUrl(e.currentTarget.value)}
      />
      <fieldset>
        <legend>Events</legend>
        <label>
          <input
            type="checkbox"
            checked={events.includes('*')}
            onChange={(e) => toggle('*', e.currentTarget.checked)}
          />{' '}
          Every event, including types added later
        </label>
        {eventTypes.map((t) => (
          <label key={t}>
            <input
              type="checkbox"
              checked={events.includes(t)}
              disabled={events.includes('*')}
              onChange={(e) => toggle(t, e.currentTarget.checked)}
            />{' '}
            {t}
          </label>
        ))}
      </fieldset>
    </ConfirmAction>
  );
}

export function WebhooksPage({ session }: PageProps) {
  const admin = session.user.role === 'admin';
  const pages = useCursorPages<WebhookEndpoint>(
    (cursor) => api.listWebhookEndpoints({ query: { limit: 20, ...(cursor ? { cursor } : {}) } }),
    admin,
  );
  const [created, setCreated] = useState<{ id: string; secret: string } | null>(null);
  return (
    <>
      <div class="page-head">
        <h1>Webhooks</h1>
        {admin ? (
          <div class="controls">
            <CreateEndpoint
              onCreated={(c) => {
                setCreated(c);
                void pages.reload();
              }}
            />
          </div>
        ) : null}
      </div>
      {created ? (
        <SecretOnce secret={created.secret} note={`For endpoint ${created.id}.`} onDismiss={() => setCreated(null)} />
      ) : null}
      {!admin ? (
        <AdminOnly what="Webhook endpoints and their deliveries" />
      ) : (
        <>
          <DataTable
            caption="Webhook endpoints, newest first"
            columns={[
              {
                header: 'Endpoint',
                cell: (w) => (
                  <a {...linkTo(`/webhooks/${w.id}`)}>
                    <span class="url">{w.url}</span>
                  </a>
                ),
              },
              { header: 'Events', cell: (w) => w.events.join(', ') },
              { header: 'Health', cell: (w) => <Health w={w} /> },
              {
                header: 'Failing deliveries',
                numeric: true,
                cell: (w) => (w.failingDeliveries > 0 ? <Badge tone="bad">{w.failingDeliveries}</Badge> : '0'),
              },
              { header: 'Last success', cell: (w) => when(w.lastSuccessAt) },
              { header: 'Last failure', cell: (w) => when(w.lastFailureAt) },
            ]}
            rows={pages.rows}
            keyOf={(w) => w.id}
            empty="No webhook endpoints yet."
          />
          <MoreButton pages={pages} label="More endpoints" />
        </>
      )}
    </>
  );
}

export function WebhookPage({ session, params }: PageProps) {
  const admin = session.user.role === 'admin';
  const id = params.id!;
  const [endpoint, setEndpoint] = useState<WebhookEndpoint | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [secret, setSecret] = useState<{ secret: string; previousSecretExpiresAt: string | null } | null>(null);
  const [grace, setGrace] = useState(86_400);
  const rotateKey = useKeyPerBody();
  const attempts = useCursorPages<DeliveryAttempt>(
    (cursor) => api.listDeliveryAttempts({ params: { id }, query: { limit: 20, ...(cursor ? { cursor } : {}) } }),
    admin,
  );

  const load = async () => {
    try {
      setEndpoint(await api.getWebhookEndpoint({ params: { id } }));
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    if (admin) void load();
  }, [id, admin]);
  const refresh = () => {
    void load();
    void attempts.reload();
  };

  if (!admin)
    return (
      <>
        <div class="page-head">
          <h1>Webhook endpoint</h1>
        </div>
        <AdminOnly what="Webhook endpoints and their deliveries" />
      </>
    );
  if (!endpoint) return <>{error ? <ErrorNote error={error} /> : <p role="status">Loading the endpoint…</p>}</>;
  return (
    <>
      <div class="page-head">
        <h1>Webhook endpoint</h1>
        <div class="controls">
          <a {...linkTo('/webhooks')}>All endpoints</a>
          <button type="button" class="secondary" onClick={refresh}>
            Refresh
          </button>
        </div>
      </div>
      <ErrorNote error={error} />
      <dl class="facts">
        <dt>URL</dt>
        <dd class="url">{endpoint.url}</dd>
        <dt>Id</dt>
        <dd>
          <code>{endpoint.id}</code>
        </dd>
        <dt>Events</dt>
        <dd>{endpoint.events.join(', ')}</dd>
        <dt>Health</dt>
        <dd>
          <Health w={endpoint} />
          {endpoint.disabledReason ? <> {endpoint.disabledReason}</> : null}
        </dd>
        <dt>Failing deliveries</dt>
        <dd>{endpoint.failingDeliveries}</dd>
        <dt>Last success</dt>
        <dd>{when(endpoint.lastSuccessAt)}</dd>
        <dt>Last failure</dt>
        <dd>{when(endpoint.lastFailureAt)}</dd>
        <dt>Secret</dt>
        <dd>
          {endpoint.secretRotatedAt ? <>rotated {when(endpoint.secretRotatedAt)}</> : 'never rotated'}
          {endpoint.previousSecretExpiresAt ? (
            <>; the old one signs too until {f.time(endpoint.previousSecretExpiresAt)}</>
          ) : null}
        </dd>
      </dl>
      <div class="actions">
        {endpoint.enabled ? (
          <ConfirmAction
            label="Disable"
            title="Disable this endpoint?"
            confirmLabel="Disable"
            tone="danger"
            run={() => api.updateWebhookEndpoint({ params: { id }, body: { enabled: false } })}
            onDone={(w) => setEndpoint(w)}
          >
            <p>
              Nothing is sent to <span class="url">{endpoint.url}</span> while it is disabled, and events of that time
              are not sent later (redeliver them one by one).
            </p>
          </ConfirmAction>
        ) : (
          <ConfirmAction
            label="Enable"
            title="Enable this endpoint?"
            confirmLabel="Enable"
            run={() => api.updateWebhookEndpoint({ params: { id }, body: { enabled: true } })}
            onDone={(w) => setEndpoint(w)}
          >
            <p>Deliveries start again with the next event; the failure streak starts afresh.</p>
          </ConfirmAction>
        )}
        <ConfirmAction
          label="Rotate secret"
          title="Rotate the signing secret?"
          confirmLabel="Rotate"
          tone="secondary"
          run={() =>
            api.rotateWebhookSecret({
              params: { id },
              body: { gracePeriodSeconds: grace },
              idempotencyKey: rotateKey.keyFor({ id, grace }),
            })
          }
          onDone={(r) => {
            rotateKey.done();
            setSecret(r);
            void load();
          }}
        >
          <p>
            The new secret is shown once. The old one keeps signing every delivery, next to the new, for the grace
            period, so the receiver can switch without failing one.
          </p>
          <label for="grace">Grace period</label>
          <select id="grace" value={grace} onChange={(e) => setGrace(Number(e.currentTarget.value))}>
            <option value={0}>None: the old secret stops now (it leaked)</option>
            <option value={3600}>1 hour</option>
            <option value={86_400}>1 day</option>
            <option value={3 * 86_400}>3 days</option>
            <option value={7 * 86_400}>7 days</option>
          </select>
        </ConfirmAction>
      </div>
      {secret ? (
        <SecretOnce
          secret={secret.secret}
          onDismiss={() => setSecret(null)}
          note={
            secret.previousSecretExpiresAt
              ? `The old secret keeps signing until ${f.time(secret.previousSecretExpiresAt)}.`
              : 'The old secret no longer signs.'
          }
        />
      ) : null}
      <Section id="deliveries" title="Delivery attempts">
        <DataTable
          caption="Delivery attempts, newest first"
          columns={[
            { header: 'When', cell: (a) => when(a.startedAt) },
            {
              header: 'Event',
              cell: (a) => (
                <>
                  <code>{a.eventType}</code> <span class="muted">{a.eventId}</span>
                </>
              ),
            },
            { header: 'Attempt', numeric: true, cell: (a) => a.attempt },
            {
              header: 'Result',
              cell: (a) =>
                a.succeeded ? (
                  <Badge tone="ok">{a.statusCode}</Badge>
                ) : (
                  <Badge tone="bad">{a.statusCode ?? 'no answer'}</Badge>
                ),
            },
            {
              header: 'Answer',
              cell: (a) => (
                <span class="error-text">
                  {a.error ?? ''}
                  {a.error && a.responseBodyExcerpt ? ': ' : ''}
                  {a.responseBodyExcerpt?.slice(0, 120) ?? ''}
                </span>
              ),
            },
            {
              header: 'Details',
              cell: (a) => (
                <DeliveryDetails endpointId={id} attempt={a} enabled={endpoint.enabled} onRedelivered={refresh} />
              ),
            },
          ]}
          rows={attempts.rows}
          keyOf={(a) => a.id}
          empty="No delivery attempts yet."
        />
        <MoreButton pages={attempts} label="More attempts" />
      </Section>
    </>
  );
}

/** An attempt's request and answer, and its delivery's state and next retry, fetched when opened. */
function DeliveryDetails({
  endpointId,
  attempt,
  enabled,
  onRedelivered,
}: {
  endpointId: string;
  attempt: DeliveryAttempt;
  enabled: boolean;
  onRedelivered: () => void;
}) {
  const [delivery, setDelivery] = useState<WebhookDelivery | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [redelivered, setRedelivered] = useState(false);
  const open = async () => {
    try {
      setDelivery(await api.getWebhookDelivery({ params: { id: endpointId, eventId: attempt.eventId } }));
    } catch (err) {
      setError(err);
    }
  };
  return (
    <details
      onToggle={(e) => {
        if ((e.currentTarget as HTMLDetailsElement).open && !delivery) void open();
      }}
    >
      <summary>
        Attempt {attempt.attempt} of <span class="muted">{attempt.eventId}</span>
      </summary>
      <ErrorNote error={error} />
      <h4>Request headers</h4>
      {attempt.requestHeaders ? (
        <pre class="text">
          {Object.entries(attempt.requestHeaders)
            .map(([k, v]) => `${k}: ${v}`)
            .join('\n')}
        </pre>
      ) : (
        <p class="muted">Not kept for this attempt.</p>
      )}
      <h4>
        Answer {attempt.statusCode ?? '(none)'}
        {attempt.responseBodyTruncated ? ', first 2 KiB' : ''}
      </h4>
      {attempt.error ? <p class="error-text">{attempt.error}</p> : null}
      <pre class="text" data-testid="response-excerpt">
        {attempt.responseBodyExcerpt ?? ''}
      </pre>
      {delivery ? (
        <>
          <h4>Delivery</h4>
          <p>
            <Badge tone={delivery.status === 'succeeded' ? 'ok' : delivery.status === 'failed' ? 'bad' : 'warn'}>
              {delivery.status}
            </Badge>{' '}
            {delivery.attempts} attempt{delivery.attempts === 1 ? '' : 's'}
            {delivery.nextAttemptAt ? <> · next retry {f.time(delivery.nextAttemptAt)}</> : null}
          </p>
          <h4>Payload</h4>
          <pre class="text">{delivery.payload}</pre>
        </>
      ) : error ? null : (
        <p role="status">Loading the delivery…</p>
      )}
      {redelivered ? <Note tone="ok">Sent again: the new attempt shows above when it is made.</Note> : null}
      {!enabled ? (
        <Note>Enable the endpoint to redeliver.</Note>
      ) : (
        <ConfirmAction
          label="Redeliver"
          accessibleLabel={`Redeliver ${attempt.eventId}`}
          title="Send this event again, now?"
          confirmLabel="Redeliver"
          tone="secondary"
          run={(idempotencyKey) =>
            api.redeliverEvent({ params: { id: endpointId, eventId: attempt.eventId }, idempotencyKey })
          }
          onDone={() => {
            setRedelivered(true);
            onRedelivered();
          }}
        >
          <p>
            The receiver gets event <code>{attempt.eventId}</code> once more, with the same id (receivers dedupe on it);
            a retry still waiting is replaced by this one.
          </p>
        </ConfirmAction>
      )}
    </details>
  );
}
