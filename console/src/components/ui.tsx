// Small shared pieces of every console page: sections, figures, badges, notes.
import type { ComponentChildren } from 'preact';
import { errorText } from '../api.ts';

export function Section({
  id,
  title,
  actions,
  children,
}: {
  id: string;
  title: string;
  actions?: ComponentChildren;
  children: ComponentChildren;
}) {
  return (
    <section class="section" aria-labelledby={`${id}-title`}>
      <div class="section-head">
        <h2 id={`${id}-title`}>{title}</h2>
        {actions ? <div class="section-actions">{actions}</div> : null}
      </div>
      {children}
    </section>
  );
}

export type Tone = 'ok' | 'bad' | 'warn' | 'neutral';

/** One figure with its label; `tone` colours it (and says so in words, not by colour alone). */
export function Stat({
  label,
  value,
  tone = 'neutral',
  hint,
  testId,
}: {
  label: string;
  value: ComponentChildren;
  tone?: Tone;
  hint?: string;
  testId?: string;
}) {
  return (
    <div class={`stat tone-${tone}`} data-testid={testId}>
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {hint ? <div class="stat-hint">{hint}</div> : null}
    </div>
  );
}

export function Badge({ tone, children }: { tone: Tone; children: ComponentChildren }) {
  return <span class={`badge tone-${tone}`}>{children}</span>;
}

export function Note({ children, tone = 'neutral' }: { children: ComponentChildren; tone?: Tone }) {
  return <p class={`note tone-${tone}`}>{children}</p>;
}

/** Shown in place of what only admins may see or do, so a staff member knows why it is missing. */
export function AdminOnly({ what }: { what: string }) {
  return <Note>{what}: admins only. Ask an admin, or sign in as one.</Note>;
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p class="note tone-bad" role="alert">
      {errorText(error)}
    </p>
  );
}

/** A region that scrolls sideways on a narrow screen; focusable, so the keyboard can scroll it too. */
export function Scroll({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="scroll" tabIndex={0} role="region" aria-label={label}>
      {children}
    </div>
  );
}
