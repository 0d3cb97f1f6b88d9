// fast-check arbitraries built from the JSON schemas of the OpenAPI document: values a schema
// accepts, and values it refuses. Both are checked with Ajv against the very schema (the same
// validator and options the server uses), so a value is only ever sent for what the schema says it
// is, whatever corner of JSON Schema the generator gets wrong.
import fc, { type Arbitrary } from 'fast-check';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

export type Schema = Record<string, unknown>;

// ajv-formats is CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => void;

/** An Ajv set up as the server's (src/platform/http.ts): bodies as sent, query strings and params coerced from text. */
export function schemaAjv(coerce: boolean): Ajv {
  const ajv = new Ajv({ allErrors: true, coerceTypes: coerce ? 'array' : false, useDefaults: false, strict: false });
  addFormats(ajv);
  // The document's integer formats follow from the bounds, which the schema states as well.
  ajv.addFormat('int32', { type: 'number', validate: () => true });
  ajv.addFormat('int64', { type: 'number', validate: () => true });
  return ajv;
}

/** The schema with every local $ref ("#/components/...") replaced by what it points at. */
export function deref(node: unknown, doc: Schema): unknown {
  if (Array.isArray(node)) return node.map((n) => deref(n, doc));
  if (!node || typeof node !== 'object') return node;
  const ref = (node as Schema).$ref;
  if (typeof ref === 'string' && ref.startsWith('#/')) {
    const target = ref
      .slice(2)
      .split('/')
      .reduce<unknown>((at, key) => (at as Schema)[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
    return deref(target, doc);
  }
  return Object.fromEntries(
    Object.entries(node).map(([k, v]) => [k, k === 'example' || k === 'examples' ? v : deref(v, doc)]),
  );
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** Strings kept short: the limits are tested at their edges by the invalid values, not by megabytes of text. */
const cap = (max: number | undefined, min: number) => Math.max(min, Math.min(max ?? 24, min + 24));

function stringArbitrary(s: Schema): Arbitrary<string> {
  const minLength = num(s.minLength) ?? 0;
  const maxLength = num(s.maxLength);
  const fits = (v: string) => v.length >= minLength && (maxLength === undefined || v.length <= maxLength);
  if (s.format === 'date-time') {
    return fc
      .date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T00:00:00Z'), noInvalidDate: true })
      .map((d) => d.toISOString());
  }
  if (s.format === 'email') return fc.emailAddress().filter(fits);
  if (s.format === 'uri') {
    const pattern = typeof s.pattern === 'string' ? new RegExp(s.pattern) : undefined;
    return fc
      .webUrl({ validSchemes: ['https', 'http'], withQueryParameters: true, withFragments: true })
      .filter((v) => fits(v) && (!pattern || pattern.test(v)));
  }
  if (typeof s.pattern === 'string')
    return fc
      .stringMatching(new RegExp(s.pattern), { size: maxLength !== undefined && maxLength <= 8 ? 'small' : 'medium' })
      .filter(fits);
  return fc.string({ minLength, maxLength: cap(maxLength, minLength) });
}

function integerArbitrary(s: Schema): Arbitrary<number> {
  const min = num(s.minimum) ?? (num(s.exclusiveMinimum) ?? -(2 ** 31)) + (s.exclusiveMinimum === undefined ? 0 : 1);
  const max = num(s.maximum) ?? (num(s.exclusiveMaximum) ?? 2 ** 31 - 1) - (s.exclusiveMaximum === undefined ? 0 : 1);
  // Numbers near the bounds and small ones, as fast-check biases, and any in between.
  return fc.integer({ min: Math.max(min, Number.MIN_SAFE_INTEGER), max: Math.min(max, Number.MAX_SAFE_INTEGER) });
}

/** Values that exist (a SKU, an order id), by property name, used instead of generated ones so that requests reach past "not found". */
export type Known = Record<string, Arbitrary<unknown>>;

/** Values of the schema's own shape, before the check against the schema. */
function rawArbitrary(s: Schema, known: Known = {}): Arbitrary<unknown> {
  if ('const' in s) return fc.constant(s.const);
  if (Array.isArray(s.enum)) return fc.constantFrom(...(s.enum as unknown[]));
  const branches = (s.anyOf ?? s.oneOf) as Schema[] | undefined;
  if (branches) {
    const { anyOf: _a, oneOf: _o, ...rest } = s;
    return fc.oneof(...branches.map((b) => rawArbitrary({ ...rest, ...b }, known)));
  }
  if (Array.isArray(s.type))
    return fc.oneof(...(s.type as string[]).map((type) => rawArbitrary({ ...s, type }, known)));
  switch (s.type) {
    case 'string':
      return stringArbitrary(s);
    case 'integer':
      return integerArbitrary(s);
    case 'number':
      return fc.double({
        min: num(s.minimum) ?? -1e9,
        max: num(s.maximum) ?? 1e9,
        noNaN: true,
        noDefaultInfinity: true,
      });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const item = rawArbitrary((s.items as Schema | undefined) ?? {}, known);
      const minLength = num(s.minItems) ?? 0;
      const maxLength = Math.min(num(s.maxItems) ?? 4, minLength + 4);
      return s.uniqueItems
        ? fc.uniqueArray(item, { minLength, maxLength, selector: (v) => JSON.stringify(v) })
        : fc.array(item, { minLength, maxLength });
    }
    case 'object': {
      const properties = (s.properties as Record<string, Schema> | undefined) ?? {};
      const required = (s.required as string[] | undefined) ?? [];
      if (Object.keys(properties).length === 0) return fc.constant({});
      return fc.record(
        Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, known[k] ?? rawArbitrary(v, known)])),
        { requiredKeys: required },
      );
    }
    default:
      return fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean(), fc.constant(null));
  }
}

/** Values the schema accepts. */
export function validArbitrary(schema: Schema, validate: ValidateFunction, known: Known = {}): Arbitrary<unknown> {
  return rawArbitrary(schema, known).filter((v) => validate(structuredClone(v)) === true);
}

/** One value the schema refuses, near what it accepts: a bound crossed, a field missing, an unknown one, a wrong type. */
function mutations(s: Schema): Arbitrary<unknown>[] {
  const out: Arbitrary<unknown>[] = [];
  const branches = (s.anyOf ?? s.oneOf) as Schema[] | undefined;
  if (branches) for (const b of branches) out.push(...mutations(b));
  if (Array.isArray(s.enum) || 'const' in s) out.push(fc.constant('not-one-of-these'));
  const type = s.type;
  if (type === 'string') {
    out.push(fc.constant(12345));
    if (typeof s.maxLength === 'number') out.push(fc.constant('a'.repeat(s.maxLength + 1)));
    if (typeof s.minLength === 'number' && s.minLength > 0) out.push(fc.constant(''));
    if (s.pattern || s.format) out.push(fc.constantFrom(' ', 'not valid at all', '%%%'));
  }
  if (type === 'integer' || type === 'number') {
    out.push(fc.constant('twelve'), fc.constant(1.5));
    if (typeof s.maximum === 'number') out.push(fc.constant(s.maximum + 1));
    if (typeof s.minimum === 'number') out.push(fc.constant(s.minimum - 1));
  }
  if (type === 'boolean') out.push(fc.constant('maybe'));
  if (type === 'array') {
    out.push(fc.constant({}));
    const items = (s.items as Schema | undefined) ?? {};
    if (typeof s.minItems === 'number' && s.minItems > 0) out.push(fc.constant([]));
    out.push(...mutations(items).map((bad) => bad.map((v) => [v])));
  }
  if (type === 'object') {
    const properties = (s.properties as Record<string, Schema> | undefined) ?? {};
    const valid = rawArbitrary(s) as Arbitrary<Record<string, unknown>>;
    out.push(fc.constant([]));
    if (s.additionalProperties === false) out.push(valid.map((v) => ({ ...v, notAField: true })));
    for (const name of (s.required as string[] | undefined) ?? [])
      out.push(valid.map(({ [name]: _dropped, ...rest }) => rest));
    for (const [name, p] of Object.entries(properties)) {
      for (const bad of mutations(p)) out.push(fc.tuple(valid, bad).map(([v, b]) => ({ ...v, [name]: b })));
    }
  }
  return out;
}

/** Values the schema refuses. */
export function invalidArbitrary(schema: Schema, validate: ValidateFunction): Arbitrary<unknown> | undefined {
  const candidates = mutations(schema);
  if (candidates.length === 0) return undefined;
  return fc.oneof(...candidates).filter((v) => validate(structuredClone(v)) === false);
}
