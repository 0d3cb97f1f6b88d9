// An action that changes something, confirmed in a dialog first. The Idempotency-Key is made when
// the dialog opens and kept until the action succeeds: pressing "Confirm" again after a network
// error sends the same key, so the server does the work at most once.
import type { ComponentChildren } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { newIdempotencyKey } from '../api.ts';
import { ErrorNote } from './ui.tsx';

export function ConfirmAction<R>({
  label,
  title,
  confirmLabel,
  children,
  run,
  onDone,
  disabled,
  tone = 'primary',
  accessibleLabel,
}: {
  label: string;
  title: string;
  confirmLabel: string;
  children: ComponentChildren;
  run: (idempotencyKey: string) => Promise<R>;
  onDone: (result: R) => void;
  disabled?: boolean;
  tone?: 'primary' | 'secondary' | 'danger';
  /** A longer name for the button when its label alone is ambiguous (one "Retry" per row). */
  accessibleLabel?: string;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const key = useRef<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const open = () => {
    key.current ??= newIdempotencyKey();
    setError(null);
    dialog.current?.showModal();
  };
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      const result = await run(key.current ?? (key.current = newIdempotencyKey()));
      key.current = null;
      dialog.current?.close();
      onDone(result);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const titleId = useRef(`dialog-${Math.random().toString(36).slice(2)}`).current;

  return (
    <>
      <button type="button" class={tone} disabled={disabled} onClick={open} aria-label={accessibleLabel}>
        {label}
      </button>
      <dialog ref={dialog} aria-labelledby={titleId} onClose={() => setBusy(false)}>
        <h3 id={titleId}>{title}</h3>
        <div class="dialog-body">{children}</div>
        <ErrorNote error={error} />
        <div class="dialog-actions">
          <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button
            type="button"
            class={tone === 'secondary' ? 'primary' : tone}
            disabled={busy}
            onClick={() => void confirm()}
          >
            {busy ? 'Sending…' : confirmLabel}
          </button>
        </div>
      </dialog>
    </>
  );
}
