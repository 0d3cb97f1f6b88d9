// The stock pages: every SKU with on hand, reserved and available (by cursor), and one SKU's page:
// its level, an adjustment with a reason (one idempotency key per adjustment the operator means,
// kept until it succeeds, so a double press or a retry after an error adjusts once), and the
// movements that explain the level, newest first.
import { useEffect, useState } from 'preact/hooks';
import { api, newIdempotencyKey, type StockLevel, type StockMovement } from '../api.ts';
import type { PageProps } from '../page.ts';
import { DataTable, MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { ErrorNote, Section, Stat } from '../components/ui.tsx';
import { linkTo } from '../router.ts';
import * as f from '../format.ts';
import { signed } from './Orders.tsx';

/** Movements have no id of their own: each row fetched gets a number, for the table's keys. */
let rowNumber = 0;

export function StockPage(_: PageProps) {
  const pages = useCursorPages<StockLevel>(
    (cursor) => api.listStock({ query: { limit: 50, ...(cursor ? { cursor } : {}) } }),
    true,
  );
  return (
    <>
      <div class="page-head">
        <h1>Stock</h1>
      </div>
      <DataTable
        caption="Stock per SKU (available = on hand − reserved)"
        columns={[
          {
            header: 'SKU',
            cell: (s) => (
              <a {...linkTo(`/stock/${encodeURIComponent(s.sku)}`)}>
                <code>{s.sku}</code>
              </a>
            ),
          },
          { header: 'On hand', numeric: true, cell: (s) => f.count(s.onHand) },
          { header: 'Reserved', numeric: true, cell: (s) => f.count(s.reserved) },
          { header: 'Available', numeric: true, cell: (s) => f.count(s.available) },
        ]}
        rows={pages.rows}
        keyOf={(s) => s.sku}
        empty={pages.loading ? 'Loading…' : 'No SKU yet: create a product in the catalog.'}
      />
      <MoreButton pages={pages} label="More SKUs" />
    </>
  );
}

export function SkuPage({ params }: PageProps) {
  const sku = params.sku!;
  const [level, setLevel] = useState<StockLevel | null>(null);
  const [error, setError] = useState<unknown>(null);
  const movements = useCursorPages<StockMovement & { n: number }>(async (cursor) => {
    const page = await api.listStockMovements({ params: { sku }, query: { limit: 25, ...(cursor ? { cursor } : {}) } });
    return { data: page.data.map((m) => ({ ...m, n: ++rowNumber })), nextCursor: page.nextCursor };
  }, true);
  useEffect(() => {
    void api.getStock({ params: { sku } }).then(setLevel, setError);
  }, [sku]);

  return (
    <>
      <p>
        <a {...linkTo('/stock')}>← Stock</a>
      </p>
      <div class="page-head">
        <h1>
          Stock of <code>{sku}</code>
        </h1>
      </div>
      <ErrorNote error={error} />
      {level ? (
        <div class="stats" role="group" aria-label={`Stock of ${sku}`}>
          <Stat label="On hand" value={f.count(level.onHand)} testId="stock-on-hand" />
          <Stat label="Reserved" value={f.count(level.reserved)} hint="by unpaid orders" />
          <Stat label="Available" value={f.count(level.available)} testId="stock-available" />
        </div>
      ) : error ? null : (
        <p role="status">Loading…</p>
      )}
      {level ? (
        <Adjust
          sku={sku}
          onAdjusted={(l) => {
            setLevel(l);
            void movements.reload();
          }}
        />
      ) : null}
      <Section id="movements" title="Movements">
        <DataTable
          caption={`What explains the stock of ${sku}, newest first`}
          columns={[
            { header: 'When', cell: (m) => <time dateTime={m.createdAt}>{f.time(m.createdAt)}</time> },
            { header: 'Movement', cell: (m) => m.kind },
            { header: 'On hand', numeric: true, cell: (m) => signed(m.onHandDelta) },
            { header: 'Reserved', numeric: true, cell: (m) => signed(m.reservedDelta) },
            {
              header: 'Order or reason',
              cell: (m) =>
                m.orderId ? (
                  <a {...linkTo(`/orders/${m.orderId}`)}>
                    <code>{m.orderId}</code>
                  </a>
                ) : (
                  (m.reason ?? '–')
                ),
            },
          ]}
          rows={movements.rows}
          keyOf={(m) => String(m.n)}
          empty={movements.loading ? 'Loading…' : 'No movement.'}
        />
        <MoreButton pages={movements} label="Older movements" />
      </Section>
    </>
  );
}

function Adjust({ sku, onAdjusted }: { sku: string; onAdjusted: (level: StockLevel) => void }) {
  const [delta, setDelta] = useState('');
  const [reason, setReason] = useState('');
  const [key, setKey] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const n = Number(delta);
    if (!Number.isInteger(n) || n === 0) {
      setError(new Error('Type a whole number of units to add (or, negative, to remove), not 0'));
      return;
    }
    if (busy) return;
    const idempotencyKey = key ?? newIdempotencyKey();
    setKey(idempotencyKey);
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const level = await api.adjustStock({
        params: { sku },
        body: { delta: n, reason: reason.trim() },
        idempotencyKey,
      });
      setKey(null);
      setDelta('');
      setReason('');
      setDone(`Adjusted by ${signed(n)}: ${f.count(level.onHand)} on hand.`);
      onAdjusted(level);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  // Editing the adjustment makes it another one, with a key of its own.
  const edit = (fn: () => void) => {
    fn();
    setKey(null);
  };
  return (
    <Section id="adjust" title="Adjust the stock">
      <form class="filters" onSubmit={(e) => void submit(e)}>
        <div class="field">
          <label for="adjust-delta">Units (+ to add, − to remove)</label>
          <input
            id="adjust-delta"
            required
            type="number"
            step={1}
            value={delta}
            onInput={(e) => edit(() => setDelta(e.currentTarget.value))}
          />
        </div>
        <div class="field grow">
          <label for="adjust-reason">Reason</label>
          <input
            id="adjust-reason"
            required
            maxLength={500}
            value={reason}
            onInput={(e) => edit(() => setReason(e.currentTarget.value))}
          />
        </div>
        <div class="field actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Adjusting…' : 'Adjust'}
          </button>
        </div>
      </form>
      <ErrorNote error={error} />
      {done ? (
        <p class="note tone-ok" role="status">
          {done}
        </p>
      ) : null}
    </Section>
  );
}
