// API keys and staff (admin): create an API key (its secret shown once, here, and never again),
// revoke one; the staff and admins, and a change of anyone's role. Through the public API
// (POST /v1/api-keys with an Idempotency-Key, DELETE /v1/api-keys/{id}, GET /v1/users?staff=true,
// PATCH /v1/users/{id}); the API refuses staff too, the page only says so first.
import { useRef, useState } from 'preact/hooks';
import { api, newIdempotencyKey, type ApiKeyInfo, type CreatedApiKey, type UserInfo } from '../api.ts';
import type { PageProps } from '../page.ts';
import { linkTo } from '../router.ts';
import { ConfirmAction } from '../components/ConfirmAction.tsx';
import { DataTable, MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { AdminOnly, Badge, ErrorNote, Note, Section } from '../components/ui.tsx';
import * as f from '../format.ts';

type Role = UserInfo['role'];
const roleNames: Role[] = ['customer', 'staff', 'admin'];

/** A role picker and its confirmed change (PATCH /v1/users/{id}). */
export function RoleChanger({
  user,
  disabled,
  onChanged,
}: {
  user: UserInfo;
  disabled?: boolean;
  onChanged: (user: UserInfo) => void;
}) {
  const [role, setRole] = useState<Role>(user.role);
  const id = `role-${user.id}`;
  return (
    <span class="inline-form">
      <label for={id}>Role of {user.name}</label>
      <select
        id={id}
        value={role}
        disabled={disabled}
        onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}
      >
        {roleNames.map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
      <ConfirmAction
        label="Change role"
        tone="secondary"
        disabled={disabled || role === user.role}
        accessibleLabel={`Change role of ${user.name}`}
        title={`Make ${user.name} ${role}?`}
        confirmLabel={`Make ${role}`}
        run={() => api.updateUser({ params: { id: user.id }, body: { role } })}
        onDone={onChanged}
      >
        <p>
          Lowering a role revokes at once the API keys {user.name} is accountable for whose role is above the new one.
        </p>
      </ConfirmAction>
    </span>
  );
}

function CreateKey({ onCreated }: { onCreated: (key: CreatedApiKey) => void }) {
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>('staff');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  // One key per intended creation: a second press after a network error creates no second key.
  const key = useRef<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const created = await api.createApiKey({
        body: { name: name.trim(), role },
        idempotencyKey: (key.current ??= newIdempotencyKey()),
      });
      key.current = null;
      setName('');
      onCreated(created);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="stack-form" onSubmit={(e) => void submit(e)}>
      <label for="key-name">Name</label>
      <input
        id="key-name"
        required
        maxLength={200}
        value={name}
        onInput={(e) => {
          key.current = null;
          setName((e.target as HTMLInputElement).value);
        }}
      />
      <label for="key-role">Role</label>
      <select
        id="key-role"
        value={role}
        onChange={(e) => {
          key.current = null;
          setRole((e.target as HTMLSelectElement).value as Role);
        }}
      >
        {roleNames.map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
      <button type="submit" class="primary" disabled={busy || name.trim() === ''}>
        {busy ? 'Creating…' : 'Create key'}
      </button>
      <ErrorNote error={error} />
    </form>
  );
}

export function AccessPage({ session }: PageProps) {
  const admin = session.user.role === 'admin';
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const keys = useCursorPages(
    (cursor) => api.listApiKeys({ query: { limit: 25, ...(cursor ? { cursor } : {}) } }),
    admin,
  );
  const staff = useCursorPages(
    (cursor) => api.listUsers({ query: { limit: 50, staff: true, ...(cursor ? { cursor } : {}) } }),
    admin,
  );
  if (!admin)
    return (
      <>
        <h1>API keys and staff</h1>
        <AdminOnly what="API keys and staff" />
      </>
    );
  return (
    <>
      <h1>API keys and staff</h1>
      <Section id="new-key" title="New API key">
        <CreateKey
          onCreated={(k) => {
            setCreated(k);
            void keys.reload();
          }}
        />
        {created ? (
          <div class="card" role="status" data-testid="new-key">
            <p>
              <strong>{created.name}</strong> ({created.role}): copy the key now. It is shown only this once.
            </p>
            <p>
              <code class="secret" data-testid="new-key-secret">
                {created.key}
              </code>
            </p>
            <button type="button" class="secondary" onClick={() => setCreated(null)}>
              I have copied it
            </button>
          </div>
        ) : null}
      </Section>
      <Section id="keys" title="API keys">
        <DataTable<ApiKeyInfo>
          caption="API keys, newest first"
          columns={[
            { header: 'Name', cell: (k) => k.name },
            { header: 'Role', cell: (k) => k.role },
            { header: 'Created', cell: (k) => f.time(k.createdAt) },
            {
              header: 'State',
              cell: (k) => (k.revokedAt ? <Badge tone="neutral">revoked</Badge> : <Badge tone="ok">active</Badge>),
            },
            {
              header: 'Action',
              cell: (k) =>
                k.revokedAt ? (
                  '—'
                ) : (
                  <ConfirmAction
                    label="Revoke"
                    tone="danger"
                    accessibleLabel={`Revoke the key ${k.name}`}
                    title={`Revoke the key ${k.name}?`}
                    confirmLabel="Revoke"
                    run={() => api.revokeApiKey({ params: { id: k.id } })}
                    onDone={() => void keys.reload()}
                  >
                    <p>Every request with this key is refused from now on. This cannot be undone.</p>
                  </ConfirmAction>
                ),
            },
          ]}
          rows={keys.rows}
          keyOf={(k) => k.id}
          empty={keys.loading ? 'Loading…' : 'No API keys.'}
          footer={<MoreButton pages={keys} label="More keys" />}
        />
      </Section>
      <Section id="staff" title="Staff and admins">
        <Note>
          To give a customer a role, open them from <a {...linkTo('/customers')}>Customers</a>.
        </Note>
        <DataTable<UserInfo>
          caption="Staff and admins"
          columns={[
            { header: 'Name', cell: (u) => <a {...linkTo(`/customers/${u.id}`)}>{u.name}</a> },
            { header: 'Email', cell: (u) => u.email },
            {
              header: 'Role',
              cell: (u) =>
                u.id === session.user.id ? (
                  `${u.role} (you)`
                ) : (
                  <RoleChanger user={u} onChanged={() => void staff.reload()} />
                ),
            },
          ]}
          rows={staff.rows}
          keyOf={(u) => u.id}
          empty={staff.loading ? 'Loading…' : 'No staff.'}
          footer={<MoreButton pages={staff} label="More staff" />}
        />
      </Section>
    </>
  );
}
