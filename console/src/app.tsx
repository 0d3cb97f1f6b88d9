// The console's frame: who is signed in (the session cookie, checked through the API), the layout
// with its navigation, and the page the path names. Pages are listed once, in `pages`; the next
// ones (orders, catalog, customers, support, webhooks, keys and staff, jobs) are added there.
import type { ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, onUnauthenticated, useCsrfToken, type SessionInfo } from './api.ts';
import { linkTo, usePath } from './router.ts';
import type { PageProps } from './page.ts';
import { LoginPage } from './pages/Login.tsx';
import { OperationsPage } from './pages/Operations.tsx';
import { SupportPage } from './pages/Support.tsx';
import { WebhookPage, WebhooksPage } from './pages/Webhooks.tsx';
import { JobsPage } from './pages/Jobs.tsx';
import { CustomerPage, CustomersPage } from './pages/Customers.tsx';
import { AccessPage } from './pages/Access.tsx';
import { OrderPage, OrdersPage } from './pages/Orders.tsx';
import { CatalogPage } from './pages/Catalog.tsx';
import { SkuPage, StockPage } from './pages/Stock.tsx';

interface PageEntry {
  /** A path, with `:name` for a segment that is a parameter. */
  path: string;
  title: string;
  component: ComponentType<PageProps>;
  /** Listed in the navigation (a detail page, reached by a link, is not). */
  nav?: boolean;
  /** Only admins see it in the navigation; the API refuses staff anyway. */
  adminOnly?: boolean;
}

const pages: PageEntry[] = [
  { path: '/', title: 'Operations', component: OperationsPage, nav: true },
  { path: '/support', title: 'Support inbox', component: SupportPage, nav: true },
  { path: '/support/:id', title: 'Support inbox', component: SupportPage },
  { path: '/webhooks', title: 'Webhooks', component: WebhooksPage, nav: true, adminOnly: true },
  { path: '/webhooks/:id', title: 'Webhook endpoint', component: WebhookPage, adminOnly: true },
  { path: '/jobs', title: 'Jobs', component: JobsPage, nav: true, adminOnly: true },
  { path: '/customers', title: 'Customers', component: CustomersPage, nav: true, adminOnly: true },
  { path: '/customers/:id', title: 'Customer', component: CustomerPage, adminOnly: true },
  { path: '/access', title: 'API keys and staff', component: AccessPage, nav: true, adminOnly: true },
  { path: '/orders', title: 'Orders', component: OrdersPage, nav: true },
  { path: '/orders/:id', title: 'Order', component: OrderPage },
  { path: '/catalog', title: 'Catalog', component: CatalogPage, nav: true },
  { path: '/stock', title: 'Stock', component: StockPage, nav: true },
  { path: '/stock/:sku', title: 'Stock of a SKU', component: SkuPage },
];

/** The entry whose pattern matches path, with the parameters it names. */
function matchPage(path: string): { page: PageEntry; params: Record<string, string> } | undefined {
  const parts = path.split('/');
  for (const page of pages) {
    const pattern = page.path.split('/');
    if (pattern.length !== parts.length) continue;
    const params: Record<string, string> = {};
    const matches = pattern.every((seg, i) => {
      if (seg.startsWith(':')) {
        if (!parts[i]) return false;
        params[seg.slice(1)] = decodeURIComponent(parts[i]!);
        return true;
      }
      return seg === parts[i];
    });
    if (matches) return { page, params };
  }
  return undefined;
}

type Auth =
  { state: 'loading' } | { state: 'signed-out'; notice?: string } | { state: 'signed-in'; session: SessionInfo };

export function App() {
  const [auth, setAuth] = useState<Auth>({ state: 'loading' });

  useEffect(() => {
    // Both outcomes end in a state the page shows.
    void api.call('session').then(
      (res) => {
        const user = res.ok ? res.body.user : null;
        if (res.ok && user) {
          useCsrfToken(res.body.csrfToken);
          setAuth({ state: 'signed-in', session: { user, csrfToken: res.body.csrfToken } });
        } else setAuth({ state: 'signed-out' });
      },
      () => setAuth({ state: 'signed-out', notice: 'Engine Room did not answer. Is it running?' }),
    );
    return onUnauthenticated(() => {
      useCsrfToken(null);
      setAuth({ state: 'signed-out', notice: 'Your session has ended: sign in again.' });
    });
  }, []);

  if (auth.state === 'loading')
    return (
      <main id="main" class="centered">
        <p role="status">Loading…</p>
      </main>
    );
  if (auth.state === 'signed-out') {
    return (
      <LoginPage
        notice={auth.notice}
        onSignedIn={(session) => {
          useCsrfToken(session.csrfToken);
          setAuth({ state: 'signed-in', session });
        }}
      />
    );
  }
  // Signed out here whatever the server answers: a session it no longer knows is gone all the same.
  const signOut = () => {
    void api
      .logout()
      .catch(() => undefined)
      .then(() => {
        useCsrfToken(null);
        setAuth({ state: 'signed-out', notice: 'You have signed out.' });
      });
  };
  if (auth.session.user.role === 'customer') return <NotAllowed session={auth.session} onSignOut={signOut} />;
  return <Layout session={auth.session} onSignOut={signOut} />;
}

function Layout({ session, onSignOut }: { session: SessionInfo; onSignOut: () => void }) {
  const path = usePath();
  const found = matchPage(path);
  const page = found?.page;
  useEffect(() => {
    document.title = `${page?.title ?? 'Not found'} · Engine Room console`;
  }, [page]);
  const Page = page?.component;
  return (
    <>
      <a class="skip" href="#main">
        Skip to the content
      </a>
      <header class="top">
        <div class="brand">
          Engine Room <span>console</span>
        </div>
        <nav aria-label="Console">
          <ul>
            {pages
              .filter((p) => p.nav && (!p.adminOnly || session.user.role === 'admin'))
              .map((p) => (
                <li key={p.path}>
                  <a
                    {...linkTo(p.path)}
                    aria-current={
                      p.path === path || (p.path !== '/' && path.startsWith(`${p.path}/`)) ? 'page' : undefined
                    }
                  >
                    {p.title}
                  </a>
                </li>
              ))}
            <li>
              <a href="/docs">API reference</a>
            </li>
          </ul>
        </nav>
        <div class="who">
          <span>
            {session.user.name} <span class="role">({session.user.role})</span>
          </span>
          <button type="button" class="secondary" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {Page && found ? (
          <Page session={session} params={found.params} />
        ) : (
          <>
            <h1>Not found</h1>
            <p>
              The console has no page at this address. <a {...linkTo('/')}>Go to Operations</a>.
            </p>
          </>
        )}
      </main>
    </>
  );
}

function NotAllowed({ session, onSignOut }: { session: SessionInfo; onSignOut: () => void }) {
  useEffect(() => {
    document.title = 'Not allowed · Engine Room console';
  }, []);
  return (
    <main id="main" class="centered">
      <div class="card">
        <h1>Not allowed</h1>
        <p>
          The console is for the shop's staff and admins. You are signed in as {session.user.email ?? session.user.name}
          , a customer account.
        </p>
        <button type="button" class="primary" onClick={onSignOut}>
          Sign out
        </button>
      </div>
    </main>
  );
}
