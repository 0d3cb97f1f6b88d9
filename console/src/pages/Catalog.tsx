// The catalog page: products with their variants (inactive ones too), a new product with its
// variants and starting stock, a variant's price changed, a product deactivated or activated again.
// Creating is sent with an idempotency key kept until it succeeds; changing a price or the active
// flag sets a value (PATCH), which is the same however often it is sent.
import { useState } from 'preact/hooks';
import { api, newIdempotencyKey, type Product } from '../api.ts';
import type { PageProps } from '../page.ts';
import { ConfirmAction } from '../components/ConfirmAction.tsx';
import { DataTable, MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { Badge, ErrorNote, Note, Section } from '../components/ui.tsx';
import { linkTo } from '../router.ts';
import * as f from '../format.ts';

export function CatalogPage(_: PageProps) {
  const pages = useCursorPages<Product>(
    (cursor) => api.listProducts({ query: { limit: 20, includeInactive: true, ...(cursor ? { cursor } : {}) } }),
    true,
  );
  const [notice, setNotice] = useState<string | null>(null);
  const changed = (message: string) => {
    setNotice(message);
    void pages.reload();
  };
  return (
    <>
      <div class="page-head">
        <h1>Catalog</h1>
      </div>
      {notice ? (
        <p class="note tone-ok" role="status">
          {notice}
        </p>
      ) : null}
      <NewProduct onCreated={(p) => changed(`Created ${p.name}.`)} />
      <Section id="products" title="Products">
        <ErrorNote error={pages.error} />
        {pages.rows.length === 0 ? <p>{pages.loading ? 'Loading…' : 'No product yet.'}</p> : null}
        <ul class="products">
          {pages.rows.map((p) => (
            <ProductCard key={p.id} product={p} onChanged={changed} />
          ))}
        </ul>
        <MoreButton pages={pages} label="More products" />
      </Section>
    </>
  );
}

function ProductCard({ product, onChanged }: { product: Product; onChanged: (message: string) => void }) {
  return (
    <li class="product" aria-labelledby={`product-${product.id}`}>
      <div class="section-head">
        <h3 id={`product-${product.id}`}>
          {product.name} {product.active ? <Badge tone="ok">active</Badge> : <Badge tone="neutral">inactive</Badge>}
        </h3>
        <ConfirmAction
          label={product.active ? 'Deactivate' : 'Activate'}
          tone={product.active ? 'danger' : 'secondary'}
          accessibleLabel={`${product.active ? 'Deactivate' : 'Activate'} ${product.name}`}
          title={product.active ? `Deactivate ${product.name}?` : `Activate ${product.name}?`}
          confirmLabel={product.active ? 'Deactivate' : 'Activate'}
          run={() => api.updateProduct({ params: { id: product.id }, body: { active: !product.active } })}
          onDone={(p) => onChanged(`${p.name} is ${p.active ? 'active' : 'inactive'}.`)}
        >
          {product.active ? (
            <p>
              Customers no longer see it and cannot order it. Orders placed before are not touched; its stock stays.
            </p>
          ) : (
            <p>Customers see it again and can order it.</p>
          )}
        </ConfirmAction>
      </div>
      {product.description ? <p class="muted">{product.description}</p> : null}
      <DataTable
        caption={`Variants of ${product.name}`}
        columns={[
          {
            header: 'SKU',
            cell: (v) => (
              <a {...linkTo(`/stock/${encodeURIComponent(v.sku)}`)}>
                <code>{v.sku}</code>
              </a>
            ),
          },
          { header: 'Variant', cell: (v) => v.name || '–' },
          { header: 'Available', numeric: true, cell: (v) => f.count(v.available) },
          {
            header: 'Price',
            cell: (v) => <PriceEditor productId={product.id} sku={v.sku} price={v.price} onChanged={onChanged} />,
          },
        ]}
        rows={product.variants}
        keyOf={(v) => v.id}
        empty="No variants."
      />
    </li>
  );
}

function PriceEditor({
  productId,
  sku,
  price,
  onChanged,
}: {
  productId: string;
  sku: string;
  price: { amount: number; currency: string };
  onChanged: (message: string) => void;
}) {
  const [text, setText] = useState(f.majorUnits(price.amount, price.currency));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const id = `price-${sku}`;
  const save = async (e: Event) => {
    e.preventDefault();
    const amount = f.minorUnits(text, price.currency);
    if (amount === null) {
      setError(new Error(`Type a price in ${price.currency}, like ${f.majorUnits(1999, price.currency)}`));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api.updateProduct({
        params: { id: productId },
        body: { variants: [{ sku, price: { amount, currency: price.currency } }] },
      });
      onChanged(`${sku} now costs ${f.money(amount, price.currency)}.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="inline" onSubmit={(e) => void save(e)}>
      <label for={id} class="visually-hidden">
        Price of {sku} in {price.currency}
      </label>
      <input id={id} inputMode="decimal" size={8} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <span class="muted">{price.currency}</span>
      <button
        type="submit"
        class="secondary"
        disabled={busy || f.minorUnits(text, price.currency) === price.amount}
        aria-label={`Save the price of ${sku}`}
      >
        Save
      </button>
      <ErrorNote error={error} />
    </form>
  );
}

interface VariantDraft {
  sku: string;
  name: string;
  price: string;
  stock: string;
}
const emptyVariant: VariantDraft = { sku: '', name: '', price: '', stock: '0' };

function NewProduct({ onCreated }: { onCreated: (p: Product) => void }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState('');
  const [currency, setCurrency] = useState('EUR');
  const [variants, setVariants] = useState<VariantDraft[]>([{ ...emptyVariant }]);
  const [key, setKey] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const setVariant = (i: number, change: Partial<VariantDraft>) =>
    setVariants(variants.map((v, j) => (j === i ? { ...v, ...change } : v)));
  const submit = async (e: Event) => {
    e.preventDefault();
    const body = {
      name: name.trim(),
      variants: variants.map((v) => ({
        sku: v.sku.trim(),
        name: v.name.trim(),
        price: { amount: f.minorUnits(v.price, currency) ?? -1, currency },
        stock: Number(v.stock),
      })),
    };
    const bad = body.variants.findIndex((v) => v.price.amount < 0 || !Number.isInteger(v.stock) || v.stock < 0);
    if (bad >= 0) {
      setError(
        new Error(`Variant ${bad + 1}: a price like ${f.majorUnits(1999, currency)} and a whole number of units`),
      );
      return;
    }
    // One key per product the operator means to create: a second press after an error sends it again.
    const idempotencyKey = key ?? newIdempotencyKey();
    setKey(idempotencyKey);
    setBusy(true);
    setError(null);
    try {
      const created = await api.createProduct({ body, idempotencyKey });
      setKey(null);
      setName('');
      setVariants([{ ...emptyVariant }]);
      setOpen(false);
      onCreated(created);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  if (!open)
    return (
      <p>
        <button type="button" class="primary" onClick={() => setOpen(true)}>
          New product
        </button>
      </p>
    );
  return (
    <Section id="new-product" title="New product">
      <form class="stack" onSubmit={(e) => void submit(e)}>
        <div class="filters">
          <div class="field">
            <label for="new-name">Name</label>
            <input
              id="new-name"
              required
              maxLength={200}
              value={name}
              onInput={(e) => setName(e.currentTarget.value)}
            />
          </div>
          <div class="field">
            <label for="new-currency">Currency</label>
            <input
              id="new-currency"
              required
              pattern="[A-Z]{3}"
              size={4}
              value={currency}
              onInput={(e) => setCurrency(e.currentTarget.value.toUpperCase())}
            />
          </div>
        </div>
        {variants.map((v, i) => (
          <fieldset key={i} class="filters">
            <legend>Variant {i + 1}</legend>
            <div class="field">
              <label for={`v${i}-sku`}>SKU</label>
              <input
                id={`v${i}-sku`}
                required
                maxLength={64}
                pattern="[A-Za-z0-9][A-Za-z0-9._\-]*"
                value={v.sku}
                onInput={(e) => setVariant(i, { sku: e.currentTarget.value })}
              />
            </div>
            <div class="field">
              <label for={`v${i}-name`}>Variant name</label>
              <input
                id={`v${i}-name`}
                maxLength={200}
                value={v.name}
                onInput={(e) => setVariant(i, { name: e.currentTarget.value })}
              />
            </div>
            <div class="field">
              <label for={`v${i}-price`}>Price ({currency})</label>
              <input
                id={`v${i}-price`}
                required
                inputMode="decimal"
                value={v.price}
                onInput={(e) => setVariant(i, { price: e.currentTarget.value })}
              />
            </div>
            <div class="field">
              <label for={`v${i}-stock`}>Starting stock</label>
              <input
                id={`v${i}-stock`}
                required
                type="number"
                min={0}
                value={v.stock}
                onInput={(e) => setVariant(i, { stock: e.currentTarget.value })}
              />
            </div>
            {variants.length > 1 ? (
              <button type="button" class="secondary" onClick={() => setVariants(variants.filter((_, j) => j !== i))}>
                Remove variant {i + 1}
              </button>
            ) : null}
          </fieldset>
        ))}
        <ErrorNote error={error} />
        <div class="controls">
          <button type="button" class="secondary" onClick={() => setVariants([...variants, { ...emptyVariant }])}>
            Add a variant
          </button>
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create the product'}
          </button>
          <button
            type="button"
            class="secondary"
            onClick={() => {
              setOpen(false);
              setError(null);
            }}
          >
            Cancel
          </button>
        </div>
        <Note>
          Adding a variant to an existing product, or removing one, is not in the API yet: create a new product.
        </Note>
      </form>
    </Section>
  );
}
