import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, type SessionInfo } from '../api.ts';
import { ErrorNote, Note } from '../components/ui.tsx';

export function LoginPage({
  notice,
  onSignedIn,
}: {
  notice?: string | undefined;
  onSignedIn: (session: SessionInfo) => void;
}) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    document.title = 'Sign in · Engine Room console';
  }, []);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // The answer sets the session cookie; the page keeps only the CSRF token, never the token.
      const { user, csrfToken } = await api.login({ body: { email, password } });
      onSignedIn({ user, csrfToken });
    } catch (err) {
      setError(
        err instanceof ApiError && err.problem.code === 'invalid_credentials'
          ? new Error('The email or password is wrong.')
          : err,
      );
      setBusy(false);
    }
  };

  return (
    <main id="main" class="centered">
      <form class="card login" onSubmit={(e) => void submit(e)}>
        <h1>Engine Room console</h1>
        <p>Sign in with your staff or admin account.</p>
        {notice ? <Note>{notice}</Note> : null}
        <label for="email">Email</label>
        <input
          id="email"
          name="email"
          type="email"
          autoComplete="username"
          required
          value={email}
          onInput={(e) => setEmail(e.currentTarget.value)}
        />
        <label for="password">Password</label>
        <input
          id="password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        <ErrorNote error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
