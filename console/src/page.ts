// What the frame (app.tsx) gives every page. Its own module, so that a page need not import
// app.tsx, which imports every page: a circle, if only of types.
import type { SessionInfo } from './api.ts';

export interface PageProps {
  session: SessionInfo;
  /** The path's parameters, by the names in the entry's pattern (`/orders/:id` gives `params.id`). */
  params: Record<string, string>;
}
