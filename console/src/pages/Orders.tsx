// The orders pages: the list (filtered by status, customer email, dates and id, newest first, by
// cursor) and one order's page, with everything behind it: lines and totals, every change of
// status, the payment and its refund as the processor recorded them, the ledger entries and the
// stock movements. Cancel (refunding a paid order) and fulfil are confirmed, sent with an
// idempotency key, and a refund is shown as pending until the queue has sent it.
import { useEffect, useState } from 'preact/hooks';
import {
  api,
  type LedgerEntry,
  type Order,
  type OrderStatus,
  type OrderStockMovement,
  type Payment,
  type StatusChange,
} from '../api.ts';
import type { PageProps } from '../page.ts';
import { ConfirmAction } from '../components/ConfirmAction.tsx';
import { DataTable, MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { Pending, type PendingState } from '../components/Pending.tsx';
import { Badge, ErrorNote, Note, Section, Stat, type Tone } from '../components/ui.tsx';
import { linkTo } from '../router.ts';
import * as f from '../format.ts';

const statuses: { value: OrderStatus; label: string }[] = [
  { value: 'pending_payment', label: 'Pending payment' },
  { value: 'paid', label: 'Paid' },
  { value: 'payment_failed', label: 'Payment failed' },
  { value: 'cancelled', label: 'Cancelled' },
  { value: 'fulfilled', label: 'Fulfilled' },
];

const statusTone: Record<OrderStatus, Tone> = {
  pending_payment: 'warn',
  paid: 'ok',
  payment_failed: 'bad',
  cancelled: 'neutral',
  fulfilled: 'ok',
};

function StatusBadge({ status }: { status: OrderStatus }) {
  return <Badge tone={statusTone[status]}>{statuses.find((s) => s.value === status)?.label ?? status}</Badge>;
}

interface Filters {
  status: string;
  email: string;
  from: string;
  to: string;
  id: string;
}
const filterNames = ['status', 'email', 'from', 'to', 'id'] as const;

function filtersFromUrl(): Filters {
  const q = new URLSearchParams(location.search);
  return {
    status: q.get('status') ?? '',
    email: q.get('email') ?? '',
    from: q.get('from') ?? '',
    to: q.get('to') ?? '',
    id: q.get('id') ?? '',
  };
}

/** A day typed in a date field, as the instant it starts in the operator's time zone. */
function startOfDay(day: string, plusDays = 0): string {
  const d = new Date(`${day}T00:00:00`);
  d.setDate(d.getDate() + plusDays);
  return d.toISOString();
}

function orderQuery(filters: Filters) {
  return {
    ...(filters.status ? { status: filters.status as OrderStatus } : {}),
    ...(filters.email.trim() ? { customerEmail: filters.email.trim() } : {}),
    ...(filters.from ? { createdFrom: startOfDay(filters.from) } : {}),
    // The "to" day is included: the API's createdTo is exclusive, so the next day's start.
    ...(filters.to ? { createdTo: startOfDay(filters.to, 1) } : {}),
    ...(filters.id.trim() ? { id: filters.id.trim() } : {}),
  };
}

export function OrdersPage(_: PageProps) {
  const [filters, setFilters] = useState<Filters>(filtersFromUrl);
  const [draft, setDraft] = useState<Filters>(filters);
  const pages = useCursorPages<Order>(
    (cursor) => api.listOrders({ query: { limit: 25, ...orderQuery(filters), ...(cursor ? { cursor } : {}) } }),
    true,
  );
  useEffect(() => {
    void pages.reload();
  }, [filters]);

  const apply = (next: Filters) => {
    setFilters(next);
    const url = new URL(location.href);
    for (const name of filterNames) {
      if (next[name]) url.searchParams.set(name, next[name]);
      else url.searchParams.delete(name);
    }
    history.replaceState(null, '', url);
  };
  const field = (name: keyof Filters) => ({
    id: `filter-${name}`,
    name,
    value: draft[name],
    onInput: (e: Event) => setDraft({ ...draft, [name]: (e.currentTarget as HTMLInputElement).value }),
  });

  return (
    <>
      <div class="page-head">
        <h1>Orders</h1>
      </div>
      <form
        class="filters section"
        role="search"
        aria-label="Find orders"
        onSubmit={(e) => {
          e.preventDefault();
          apply(draft);
        }}
      >
        <div class="field">
          <label for="filter-status">Status</label>
          <select {...field('status')} onChange={(e) => setDraft({ ...draft, status: e.currentTarget.value })}>
            <option value="">Any</option>
            {statuses.map((s) => (
              <option key={s.value} value={s.value}>
                {s.label}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-email">Customer email</label>
          <input type="email" autoComplete="off" {...field('email')} />
        </div>
        <div class="field">
          <label for="filter-from">Placed from</label>
          <input type="date" {...field('from')} />
        </div>
        <div class="field">
          <label for="filter-to">Placed until</label>
          <input type="date" {...field('to')} />
        </div>
        <div class="field">
          <label for="filter-id">Order id</label>
          <input type="text" autoComplete="off" spellcheck={false} {...field('id')} />
        </div>
        <div class="field actions">
          <button type="submit" class="primary">
            Find orders
          </button>
          <button
            type="button"
            class="secondary"
            onClick={() => {
              const none = { status: '', email: '', from: '', to: '', id: '' };
              setDraft(none);
              apply(none);
            }}
          >
            Clear
          </button>
        </div>
      </form>
      <DataTable
        caption="Orders, newest first"
        columns={[
          {
            header: 'Order',
            cell: (o) => (
              <a {...linkTo(`/orders/${o.id}`)}>
                <code>{o.id}</code>
              </a>
            ),
          },
          { header: 'Placed', cell: (o) => <time dateTime={o.createdAt}>{f.time(o.createdAt)}</time> },
          { header: 'Status', cell: (o) => <StatusBadge status={o.status} /> },
          { header: 'Customer', cell: (o) => <code>{o.customerId}</code> },
          { header: 'Items', numeric: true, cell: (o) => o.lines.reduce((a, l) => a + l.quantity, 0) },
          { header: 'Total', numeric: true, cell: (o) => f.money(o.total.amount, o.total.currency) },
        ]}
        rows={pages.rows}
        keyOf={(o) => o.id}
        empty={pages.loading ? 'Loading…' : 'No order matches.'}
      />
      <MoreButton pages={pages} label="Next page" />
    </>
  );
}

interface OrderDetail {
  order: Order;
  history: StatusChange[];
  payments: Payment[];
  ledger: LedgerEntry[];
  stock: OrderStockMovement[];
}

async function loadOrder(id: string): Promise<OrderDetail> {
  const params = { id };
  const [order, history, payments, ledger, stock] = await Promise.all([
    api.getOrder({ params }),
    api.listOrderHistory({ params }),
    api.listOrderPayments({ params }),
    api.listOrderLedgerEntries({ params }),
    api.listOrderStockMovements({ params }),
  ]);
  return { order, history: history.data, payments: payments.data, ledger: ledger.data, stock: stock.data };
}

/**
 * Whether the queue has done its part for a cancelled order: each payment failed, refunded, or its
 * refund failed for good (a charge still in flight is captured and then refunded, so it waits too).
 */
async function refundProgress(id: string): Promise<PendingState> {
  const { data } = await api.listOrderPayments({ params: { id } });
  const open = data.filter((p) => !(p.status === 'failed' || p.status === 'refunded' || p.refund?.status === 'failed'));
  if (open.length > 0)
    return {
      done: false,
      label: open.some((p) => p.refund) ? 'Refund sent to the processor…' : 'Waiting for the queue to refund…',
    };
  const failed = data.find((p) => p.refund?.status === 'failed');
  if (failed) return { done: true, ok: false, label: `Refund failed: ${failed.refund?.failure ?? 'see the payment'}` };
  return {
    done: true,
    ok: true,
    label: data.some((p) => p.status === 'refunded') ? 'Refunded' : 'Cancelled, nothing to refund',
  };
}

export function OrderPage({ params }: PageProps) {
  const id = params.id!;
  const [detail, setDetail] = useState<OrderDetail | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [waiting, setWaiting] = useState(false);
  const reload = () =>
    loadOrder(id).then((d) => {
      setDetail(d);
      setError(null);
    }, setError);
  useEffect(() => {
    setDetail(null);
    void reload();
  }, [id]);

  if (!detail) {
    return (
      <>
        <p>
          <a {...linkTo('/orders')}>← Orders</a>
        </p>
        <h1>Order</h1>
        {error ? <ErrorNote error={error} /> : <p role="status">Loading the order…</p>}
      </>
    );
  }
  const { order, history, payments, ledger, stock } = detail;
  const money = (m: { amount: number; currency: string }) => f.money(m.amount, m.currency);
  const paid = order.status === 'paid';
  const cancellable = order.status === 'pending_payment' || paid;

  return (
    <>
      <p>
        <a {...linkTo('/orders')}>← Orders</a>
      </p>
      <div class="page-head">
        <h1>
          Order <code>{order.id}</code>
        </h1>
        <div class="controls">
          {order.status === 'paid' ? (
            <ConfirmAction
              label="Fulfil"
              title="Mark this order fulfilled?"
              confirmLabel="Mark fulfilled"
              run={(idempotencyKey) => api.fulfilOrder({ params: { id }, idempotencyKey })}
              onDone={() => void reload()}
            >
              <p>
                Say the goods of order <code>{order.id}</code> have left. The customer's webhooks hear of it.
              </p>
            </ConfirmAction>
          ) : null}
          {cancellable ? (
            <ConfirmAction
              label={paid ? 'Cancel and refund' : 'Cancel'}
              tone="danger"
              title={paid ? `Cancel and refund ${money(order.total)}?` : 'Cancel this order?'}
              confirmLabel={paid ? 'Cancel and refund' : 'Cancel the order'}
              run={(idempotencyKey) => api.cancelOrder({ params: { id }, idempotencyKey })}
              onDone={() => {
                setWaiting(true);
                void reload();
              }}
            >
              {paid ? (
                <p>
                  The order is paid: its {money(order.total)} go back to the card in full, once, and its units back to
                  stock.
                </p>
              ) : (
                <p>
                  The order is not paid: its reserved units go back to stock. A charge already in flight is refunded
                  when it lands.
                </p>
              )}
            </ConfirmAction>
          ) : null}
        </div>
      </div>
      <ErrorNote error={error} />
      {waiting ? (
        <Note>
          Cancelled. <Pending check={() => refundProgress(id)} onDone={() => void reload()} />
        </Note>
      ) : null}

      <div class="stats" role="group" aria-label="The order">
        <Stat label="Status" value={<StatusBadge status={order.status} />} testId="order-status" />
        <Stat label="Total" value={money(order.total)} />
        <Stat label="Placed" value={f.ago(order.createdAt)} hint={f.time(order.createdAt)} />
        <Stat label="Customer" value={<code class="small">{order.customerId}</code>} />
      </div>

      <div class="grid-2">
        <Section id="lines" title="Lines">
          <DataTable
            caption="What was ordered, at the prices of the time"
            columns={[
              {
                header: 'SKU',
                cell: (l) => (
                  <a {...linkTo(`/stock/${encodeURIComponent(l.sku)}`)}>
                    <code>{l.sku}</code>
                  </a>
                ),
              },
              { header: 'Quantity', numeric: true, cell: (l) => l.quantity },
              { header: 'Unit price', numeric: true, cell: (l) => money(l.unitPrice) },
              { header: 'Total', numeric: true, cell: (l) => money(l.total) },
            ]}
            rows={order.lines}
            keyOf={(l) => l.sku}
            empty="No lines."
            footer={
              <p class="total-line">
                Total <strong>{money(order.total)}</strong>
              </p>
            }
          />
        </Section>
        <Section id="history" title="Status history">
          <ol class="timeline" aria-label="Every change of status, oldest first">
            {history.map((h, i) => (
              <li key={i}>
                <time dateTime={h.at}>{f.time(h.at)}</time>{' '}
                {h.from ? (
                  <>
                    <StatusBadge status={h.from} /> →{' '}
                  </>
                ) : (
                  'Placed: '
                )}
                <StatusBadge status={h.to} />
              </li>
            ))}
          </ol>
        </Section>
      </div>

      <Section id="payments" title="Payments and refunds">
        <DataTable
          caption="Payments, with the processor's record of the charge and its refund"
          columns={[
            { header: 'Payment', cell: (p) => <code>{p.id}</code> },
            {
              header: 'Status',
              cell: (p) => (
                <Badge
                  tone={
                    p.status === 'succeeded'
                      ? 'ok'
                      : p.status === 'failed'
                        ? 'bad'
                        : p.status === 'refunded'
                          ? 'neutral'
                          : 'warn'
                  }
                >
                  {p.status}
                </Badge>
              ),
            },
            { header: 'Amount', numeric: true, cell: (p) => money(p.amount) },
            {
              header: 'Processor',
              cell: (p) => (
                <>
                  {p.provider ?? '–'}
                  {p.providerRef ? (
                    <>
                      {' '}
                      <code>{p.providerRef}</code>
                    </>
                  ) : null}
                </>
              ),
            },
            { header: 'Attempts', numeric: true, cell: (p) => p.attempts },
            {
              header: 'Failure',
              cell: (p) =>
                p.failure ? (
                  <span class="error-text">
                    {p.failure}
                    {p.processorMessage ? `: ${p.processorMessage}` : ''}
                  </span>
                ) : (
                  '–'
                ),
            },
            {
              header: 'Refund',
              cell: (p) =>
                !p.refund ? (
                  '–'
                ) : (
                  <span data-testid="refund">
                    <Badge
                      tone={p.refund.status === 'succeeded' ? 'ok' : p.refund.status === 'failed' ? 'bad' : 'warn'}
                    >
                      refund {p.refund.status}
                    </Badge>{' '}
                    {money(p.refund.amount)}
                    {p.refund.providerRef ? (
                      <>
                        {' '}
                        <code>{p.refund.providerRef}</code>
                      </>
                    ) : null}
                    {p.refund.failure ? <span class="error-text"> {p.refund.failure}</span> : null}
                  </span>
                ),
            },
          ]}
          rows={payments}
          keyOf={(p) => p.id}
          empty="No payment."
        />
        {payments.some((p) => p.review) ? (
          <Note tone="bad">
            Needs an operator's review:{' '}
            {payments
              .filter((p) => p.review)
              .map((p) => p.review)
              .join('; ')}
          </Note>
        ) : null}
      </Section>

      <div class="grid-2">
        <Section id="ledger" title="Ledger entries">
          <DataTable
            caption="The order's ledger entries: each capture and refund, balanced"
            columns={[
              { header: 'Kind', cell: (e) => e.kind },
              { header: 'Account', cell: (e) => <code>{e.account}</code> },
              { header: 'Debit', numeric: true, cell: (e) => (e.debit.amount ? money(e.debit) : '') },
              { header: 'Credit', numeric: true, cell: (e) => (e.credit.amount ? money(e.credit) : '') },
              { header: 'Posted', cell: (e) => <time dateTime={e.createdAt}>{f.time(e.createdAt)}</time> },
            ]}
            rows={ledger}
            keyOf={(e) => `${e.transactionId} ${e.account}`}
            empty="Nothing posted: no money has moved for this order."
          />
        </Section>
        <Section id="stock" title="Stock">
          <DataTable
            caption="The order's stock movements: reservation, then sale or release (a paid order cancelled puts its sale back)"
            columns={[
              { header: 'SKU', cell: (m) => <code>{m.sku}</code> },
              {
                header: 'Movement',
                cell: (m) =>
                  m.reason ? (
                    <>
                      {m.kind} <span class="muted">({m.reason})</span>
                    </>
                  ) : (
                    m.kind
                  ),
              },
              { header: 'On hand', numeric: true, cell: (m) => signed(m.onHandDelta) },
              { header: 'Reserved', numeric: true, cell: (m) => signed(m.reservedDelta) },
              { header: 'When', cell: (m) => <time dateTime={m.createdAt}>{f.time(m.createdAt)}</time> },
            ]}
            rows={stock.map((m, i) => ({ ...m, i }))}
            keyOf={(m) => String(m.i)}
            empty="No stock movement."
          />
        </Section>
      </div>
    </>
  );
}

export function signed(n: number): string {
  return n > 0 ? `+${n}` : n === 0 ? '0' : `−${-n}`;
}
