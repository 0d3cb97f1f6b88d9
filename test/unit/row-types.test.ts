// The generated row types, without a database: src/db/rows.ts is what scripts/generate-row-types.ts
// makes of the committed src/db/schema.sql (so a migration's renamed column reaches the type check),
// and the reader maps columns, nullability and arrays as the engines return them.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { rowsPath, rowTypesSource, schemaPath } from '../../scripts/generate-row-types.ts';

it('the committed src/db/rows.ts is what src/db/schema.sql generates (else run node scripts/generate-row-types.ts)', async () => {
  const [schema, rows] = await Promise.all([readFile(schemaPath, 'utf8'), readFile(rowsPath, 'utf8')]);
  assert.equal(rows, rowTypesSource(schema));
});

it('columns become fields typed as the driver returns them, nullable ones with | null', () => {
  const sql = `CREATE TABLE public.order_things (
    id text NOT NULL,
    amount bigint DEFAULT 0 NOT NULL,
    "position" integer NOT NULL,
    tags text[],
    seen_at timestamp with time zone,
    body jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT order_things_amount_check CHECK ((amount >= 0))
);`;
  assert.match(
    rowTypesSource(sql),
    /export interface OrderThingsRow \{\n {2}id: string;\n {2}amount: number;\n {2}position: number;\n {2}tags: string\[\] \| null;\n {2}seen_at: Date \| null;\n {2}body: unknown;\n\}/,
  );
});

it('a column type it cannot map is refused, not guessed', () => {
  assert.throws(
    () => rowTypesSource('CREATE TABLE public.t (\n    n numeric NOT NULL\n);'),
    /no TypeScript type for the PostgreSQL type "numeric"/,
  );
});
