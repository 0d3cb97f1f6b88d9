// A small router for the console's pages under /console: the path is the state, links push it,
// the back button pops it. Pages register in app.tsx; nothing else knows the URLs.
import { useEffect, useState } from 'preact/hooks';

export const base = '/console';
const listeners = new Set<() => void>();

export function currentPath(): string {
  const path = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : '/';
  return path === '' ? '/' : path;
}

export function navigate(path: string): void {
  if (path === currentPath()) return;
  history.pushState(null, '', base + (path === '/' ? '' : path));
  for (const fn of listeners) fn();
}

addEventListener('popstate', () => {
  for (const fn of listeners) fn();
});

export function usePath(): string {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const update = () => setPath(currentPath());
    listeners.add(update);
    return () => {
      listeners.delete(update);
    };
  }, []);
  return path;
}

/** Props for an <a> that routes inside the console (a plain link on a modified click: new tab and so on). */
export function linkTo(path: string) {
  return {
    href: base + (path === '/' ? '' : path),
    onClick: (e: MouseEvent) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate(path);
    },
  };
}
