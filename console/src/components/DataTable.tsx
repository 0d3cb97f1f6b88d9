// Tables of the console, and the cursor pagination every list endpoint answers ({ data, nextCursor }).
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ErrorNote, Scroll } from './ui.tsx';

export interface Column<T> {
  header: string;
  cell: (row: T) => ComponentChildren;
  numeric?: boolean;
}

export function DataTable<T>({
  caption,
  columns,
  rows,
  keyOf,
  empty,
  footer,
}: {
  caption: string;
  columns: Column<T>[];
  rows: T[];
  keyOf: (row: T) => string;
  empty: string;
  footer?: ComponentChildren;
}) {
  return (
    <Scroll label={caption}>
      <table>
        <caption>{caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" key={c.header} class={c.numeric ? 'num' : undefined}>
                {c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr>
              <td colSpan={columns.length} class="empty">
                {empty}
              </td>
            </tr>
          ) : (
            rows.map((row) => (
              <tr key={keyOf(row)}>
                {columns.map((c) => (
                  <td key={c.header} class={c.numeric ? 'num' : undefined}>
                    {c.cell(row)}
                  </td>
                ))}
              </tr>
            ))
          )}
        </tbody>
      </table>
      {footer}
    </Scroll>
  );
}

export interface Page<T> {
  data: T[];
  nextCursor: string | null;
}

/**
 * The pages of a list, fetched one after the other with their cursor. reload() starts again from
 * the first page (after an action changed the list, or on the live tick).
 */
export function useCursorPages<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>, enabled: boolean) {
  const [rows, setRows] = useState<T[]>([]);
  const [nextCursor, setNextCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const fetchRef = useRef(fetchPage);
  fetchRef.current = fetchPage;

  const load = useCallback(async (cursor: string | undefined) => {
    setLoading(true);
    try {
      const page = await fetchRef.current(cursor);
      setRows((before) => (cursor ? [...before, ...page.data] : page.data));
      setNextCursor(page.nextCursor);
      setError(null);
    } catch (err) {
      setError(err);
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    if (enabled) void load(undefined);
  }, [enabled, load]);

  return {
    rows,
    loading,
    error,
    reload: () => load(undefined),
    more: nextCursor ? () => load(nextCursor) : null,
  };
}

/** "Load more" under a table, and the error of the last fetch. */
export function MoreButton({
  pages,
  label,
}: {
  pages: { more: (() => Promise<void>) | null; loading: boolean; error: unknown };
  label: string;
}) {
  return (
    <div class="table-foot">
      <ErrorNote error={pages.error} />
      {pages.more ? (
        <button type="button" class="secondary" disabled={pages.loading} onClick={() => void pages.more?.()}>
          {pages.loading ? 'Loading…' : label}
        </button>
      ) : null}
    </div>
  );
}
