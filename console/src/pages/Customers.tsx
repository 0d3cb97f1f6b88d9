// Customers (admin): search users by a prefix of their email or name, and a customer's page with
// their orders, conversations, sessions and API keys; disable (which ends their sessions and
// revokes their keys) and enable, and change their role. Everything through the public API
// (GET /v1/users, GET /v1/orders?customerId=, GET /v1/conversations?customerId=, ...); the API
// refuses staff too, the page only says so first.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type ApiKeyInfo, type Conversation, type Order, type SessionRow, type UserInfo } from '../api.ts';
import type { PageProps } from '../page.ts';
import { linkTo } from '../router.ts';
import { ConfirmAction } from '../components/ConfirmAction.tsx';
import { DataTable, MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { AdminOnly, Badge, ErrorNote, Note, Section } from '../components/ui.tsx';
import { RoleChanger } from './Access.tsx';
import * as f from '../format.ts';

export function UserStatus({ user }: { user: UserInfo }) {
  return user.disabledAt ? <Badge tone="bad">Disabled</Badge> : <Badge tone="ok">Active</Badge>;
}

export function CustomersPage({ session }: PageProps) {
  const admin = session.user.role === 'admin';
  const [query, setQuery] = useState('');
  const [submitted, setSubmitted] = useState('');
  // Read by the fetch at call time, so a new search starts from its first page at once.
  const searched = useRef('');
  const users = useCursorPages(
    (cursor) =>
      api.listUsers({
        query: { limit: 25, ...(searched.current ? { q: searched.current } : {}), ...(cursor ? { cursor } : {}) },
      }),
    admin,
  );
  if (!admin)
    return (
      <>
        <h1>Customers</h1>
        <AdminOnly what="Customers" />
      </>
    );
  const search = (e: Event) => {
    e.preventDefault();
    searched.current = query.trim();
    setSubmitted(searched.current);
    void users.reload(); // a failed reload shows as the list's error
  };
  return (
    <>
      <h1>Customers</h1>
      <form class="search" role="search" onSubmit={search}>
        <label for="customer-search">Email or name starts with</label>
        <input
          id="customer-search"
          type="search"
          value={query}
          maxLength={254}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
        />
        <button type="submit" class="primary">
          Search
        </button>
      </form>
      <DataTable<UserInfo>
        caption={submitted ? `Users matching “${submitted}”` : 'Users, newest first'}
        columns={[
          { header: 'Name', cell: (u) => <a {...linkTo(`/customers/${u.id}`)}>{u.name}</a> },
          { header: 'Email', cell: (u) => u.email },
          { header: 'Role', cell: (u) => u.role },
          { header: 'Status', cell: (u) => <UserStatus user={u} /> },
          { header: 'Since', cell: (u) => f.time(u.createdAt) },
        ]}
        rows={users.rows}
        keyOf={(u) => u.id}
        empty={users.loading ? 'Loading…' : 'No users found.'}
        footer={<MoreButton pages={users} label="More users" />}
      />
    </>
  );
}

export function CustomerPage({ session, params }: PageProps) {
  const admin = session.user.role === 'admin';
  const id = params.id!;
  const [user, setUser] = useState<UserInfo | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (admin) void api.getUser({ params: { id } }).then(setUser, setError);
  }, [admin, id]);
  const orders = useCursorPages(
    (cursor) => api.listOrders({ query: { limit: 10, customerId: id, ...(cursor ? { cursor } : {}) } }),
    admin,
  );
  const conversations = useCursorPages(
    (cursor) => api.listConversations({ query: { limit: 10, customerId: id, ...(cursor ? { cursor } : {}) } }),
    admin,
  );
  const sessions = useCursorPages(
    (cursor) => api.listUserSessions({ params: { id }, query: { limit: 10, ...(cursor ? { cursor } : {}) } }),
    admin,
  );
  const keys = useCursorPages(
    (cursor) => api.listApiKeys({ query: { limit: 10, createdBy: id, ...(cursor ? { cursor } : {}) } }),
    admin,
  );
  if (!admin)
    return (
      <>
        <h1>Customer</h1>
        <AdminOnly what="Customers" />
      </>
    );
  if (error)
    return (
      <>
        <h1>Customer</h1>
        <ErrorNote error={error} />
        <p>
          <a {...linkTo('/customers')}>Back to customers</a>
        </p>
      </>
    );
  if (!user)
    return (
      <>
        <h1>Customer</h1>
        <p role="status">Loading…</p>
      </>
    );
  const changed = (next: UserInfo) => {
    setUser(next);
    void sessions.reload();
    void keys.reload();
  };
  const self = user.id === session.user.id;
  return (
    <>
      <p>
        <a {...linkTo('/customers')}>← Customers</a>
      </p>
      <h1>{user.name}</h1>
      <dl class="facts">
        <dt>Email</dt>
        <dd>
          {user.email}{' '}
          {user.emailVerified ? <Badge tone="ok">verified</Badge> : <Badge tone="neutral">not verified</Badge>}
        </dd>
        <dt>Role</dt>
        <dd>{user.role}</dd>
        <dt>Status</dt>
        <dd data-testid="user-status">
          <UserStatus user={user} />
          {user.disabledAt ? ` since ${f.time(user.disabledAt)}` : ''}
        </dd>
        <dt>Since</dt>
        <dd>{f.time(user.createdAt)}</dd>
        <dt>Id</dt>
        <dd>
          <code>{user.id}</code>
        </dd>
      </dl>
      <div class="section-actions">
        {user.disabledAt ? (
          <ConfirmAction
            label="Enable account"
            title={`Enable ${user.name}'s account?`}
            confirmLabel="Enable"
            run={(idempotencyKey) => api.enableUser({ params: { id }, idempotencyKey })}
            onDone={changed}
          >
            <p>They can sign in again. Their old sessions and API keys stay revoked.</p>
          </ConfirmAction>
        ) : (
          <ConfirmAction
            label="Disable account"
            tone="danger"
            disabled={self}
            title={`Disable ${user.name}'s account?`}
            confirmLabel="Disable"
            run={(idempotencyKey) => api.disableUser({ params: { id }, idempotencyKey })}
            onDone={changed}
          >
            <p>
              Every session of {user.email} ends at once and every API key they are accountable for is revoked. They
              cannot sign in until enabled again.
            </p>
          </ConfirmAction>
        )}
        <RoleChanger user={user} disabled={self} onChanged={setUser} />
      </div>
      {self ? <Note>This is your own account: you cannot disable yourself or change your own role here.</Note> : null}

      <Section id="orders" title="Orders">
        <DataTable<Order>
          caption="Their orders, newest first"
          columns={[
            { header: 'Order', cell: (o) => <code>{o.id}</code> },
            { header: 'Status', cell: (o) => o.status },
            { header: 'Total', cell: (o) => f.money(o.total.amount, o.total.currency), numeric: true },
            { header: 'Placed', cell: (o) => f.time(o.createdAt) },
          ]}
          rows={orders.rows}
          keyOf={(o) => o.id}
          empty={orders.loading ? 'Loading…' : 'No orders.'}
          footer={<MoreButton pages={orders} label="More orders" />}
        />
      </Section>

      <Section id="conversations" title="Conversations">
        <DataTable<Conversation>
          caption="Their conversations, newest first"
          columns={[
            { header: 'Subject', cell: (c) => c.subject },
            { header: 'Order', cell: (c) => (c.orderId ? <code>{c.orderId}</code> : '—') },
            { header: 'Last message', cell: (c) => f.time(c.lastMessageAt) },
            { header: 'Unread', cell: (c) => c.unreadCount, numeric: true },
          ]}
          rows={conversations.rows}
          keyOf={(c) => c.id}
          empty={conversations.loading ? 'Loading…' : 'No conversations.'}
          footer={<MoreButton pages={conversations} label="More conversations" />}
        />
      </Section>

      <Section id="sessions" title="Sessions">
        <DataTable<SessionRow>
          caption="Their sessions, newest first"
          columns={[
            { header: 'Session', cell: (s) => <code>{s.id}</code> },
            {
              header: 'State',
              cell: (s) =>
                s.live ? (
                  <Badge tone="ok">live</Badge>
                ) : (
                  <Badge tone="neutral">{s.revokedAt ? 'revoked' : 'expired'}</Badge>
                ),
            },
            { header: 'Started', cell: (s) => f.time(s.createdAt) },
            { header: 'Expires', cell: (s) => f.time(s.expiresAt) },
          ]}
          rows={sessions.rows}
          keyOf={(s) => s.id}
          empty={sessions.loading ? 'Loading…' : 'No sessions.'}
          footer={<MoreButton pages={sessions} label="More sessions" />}
        />
      </Section>

      <Section id="keys" title="API keys">
        <DataTable<ApiKeyInfo>
          caption="API keys they are accountable for"
          columns={[
            { header: 'Name', cell: (k) => k.name },
            { header: 'Role', cell: (k) => k.role },
            {
              header: 'State',
              cell: (k) => (k.revokedAt ? <Badge tone="neutral">revoked</Badge> : <Badge tone="ok">active</Badge>),
            },
            { header: 'Created', cell: (k) => f.time(k.createdAt) },
          ]}
          rows={keys.rows}
          keyOf={(k) => k.id}
          empty={keys.loading ? 'Loading…' : 'No API keys.'}
          footer={<MoreButton pages={keys} label="More keys" />}
        />
      </Section>
    </>
  );
}
