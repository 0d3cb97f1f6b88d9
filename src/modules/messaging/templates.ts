// Email templates: each kind renders a subject, a plain-text body and an HTML body from its
// variables. The HTML is built with the `html` tag, which escapes every interpolated value unless
// it is already SafeHtml (built by the tag itself), so a customer's text can never become markup.
// Subjects are kept to one line, so no value can add a header.

export interface SafeHtml {
  readonly safeHtml: string;
}

const entities: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => entities[c]!);
}

function isSafe(value: unknown): value is SafeHtml {
  return typeof value === 'object' && value !== null && typeof (value as SafeHtml).safeHtml === 'string';
}

function htmlOf(value: unknown): string {
  if (isSafe(value)) return value.safeHtml;
  if (Array.isArray(value)) return value.map(htmlOf).join('');
  return escapeHtml(value === null || value === undefined ? '' : String(value));
}

/** A tagged template whose interpolations are escaped (arrays are joined, SafeHtml kept). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += htmlOf(value) + strings[i + 1]!;
  });
  return { safeHtml: out };
}

/** One line, without control characters: for subjects (a CR or LF there could forge a header). */
export function oneLine(value: string, max = 150): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const line = value.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

// Building an Intl.NumberFormat is costly (it was 5% of a busy server's CPU, once per email).
const digitsByCurrency = new Map<string, number>();

function minorDigits(currency: string): number {
  let digits = digitsByCurrency.get(currency);
  if (digits === undefined) {
    try {
      digits =
        new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
    } catch {
      digits = 2;
    }
    if (digitsByCurrency.size < 1000) digitsByCurrency.set(currency, digits);
  }
  return digits;
}

/** 123456 EUR -> "1,234.56 EUR", by string arithmetic on the integer count of minor units. */
export function formatMoney(money: { amount: number; currency: string }): string {
  const digits = minorDigits(money.currency);
  const text = String(Math.abs(money.amount)).padStart(digits + 1, '0');
  const whole = (digits > 0 ? text.slice(0, -digits) : text).replace(/\B(?=(\d{3})+$)/g, ',');
  return `${money.amount < 0 ? '-' : ''}${whole}${digits > 0 ? `.${text.slice(-digits)}` : ''} ${money.currency}`;
}

export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

/** An email's HTML: the title, the content, and the footer every mail shares. */
export function page(title: string, content: SafeHtml): string {
  return html`<!doctype html>
<html><head><meta charset="utf-8"><title>${title}</title></head>
<body style="font-family: sans-serif; line-height: 1.5; color: #222">
${content}
<p style="color: #777; font-size: 12px">Engine Room</p>
</body></html>
`.safeHtml;
}

export interface OrderData {
  id: string;
  lines: { sku: string; quantity: number; total: { amount: number; currency: string } }[];
  total: { amount: number; currency: string };
}

export function orderConfirmation(v: { name: string; order: OrderData }): RenderedEmail {
  const lines = v.order.lines.map((l) => `  ${l.quantity} x ${l.sku}   ${formatMoney(l.total)}`);
  return {
    subject: oneLine(`Order ${v.order.id} confirmed`),
    text: [
      `Hello ${v.name},`,
      '',
      `we have received your payment for order ${v.order.id}. Thank you!`,
      '',
      ...lines,
      `  Total: ${formatMoney(v.order.total)}`,
      '',
    ].join('\n'),
    html: page(
      `Order ${v.order.id} confirmed`,
      html`
<p>Hello ${v.name},</p>
<p>we have received your payment for order <strong>${v.order.id}</strong>. Thank you!</p>
<table cellpadding="4">
${v.order.lines.map((l) => html`<tr><td>${l.quantity} &times;</td><td>${l.sku}</td><td align="right">${formatMoney(l.total)}</td></tr>\n`)}
<tr><td colspan="2"><strong>Total</strong></td><td align="right"><strong>${formatMoney(v.order.total)}</strong></td></tr>
</table>`,
    ),
  };
}

export function paymentFailed(v: { name: string; order: OrderData }): RenderedEmail {
  return {
    subject: oneLine(`Payment failed for order ${v.order.id}`),
    text: [
      `Hello ${v.name},`,
      '',
      `we could not charge your card for order ${v.order.id} (${formatMoney(v.order.total)}), so the order was not placed`,
      'and its items were released. You are welcome to order again with another card.',
      '',
    ].join('\n'),
    html: page(
      `Payment failed for order ${v.order.id}`,
      html`
<p>Hello ${v.name},</p>
<p>we could not charge your card for order <strong>${v.order.id}</strong> (${formatMoney(v.order.total)}), so the order was not placed
and its items were released. You are welcome to order again with another card.</p>`,
    ),
  };
}

export function newMessage(v: {
  name: string;
  author: string;
  subject: string;
  body: string;
  conversationId: string;
}): RenderedEmail {
  const quoted = v.body
    .split(/\r\n|\r|\n/)
    .map((line) => `> ${line}`)
    .join('\n');
  return {
    subject: oneLine(`New message: ${v.subject}`),
    text: [
      `Hello ${v.name},`,
      '',
      `${v.author} wrote in "${oneLine(v.subject)}" (conversation ${v.conversationId}):`,
      '',
      quoted,
      '',
    ].join('\n'),
    html: page(
      `New message: ${oneLine(v.subject)}`,
      html`
<p>Hello ${v.name},</p>
<p>${v.author} wrote in &ldquo;${oneLine(v.subject)}&rdquo; (conversation ${v.conversationId}):</p>
<blockquote style="white-space: pre-wrap; border-left: 3px solid #ccc; margin: 0; padding-left: 12px">${v.body}</blockquote>`,
    ),
  };
}
