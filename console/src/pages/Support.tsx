// The support inbox: every conversation, those with messages the signed-in staff member has not
// read first, and the one open beside them, where staff reply and mark read. Live through the event
// stream (GET /v1/events, the session cookie; staff receive every message.created): a new message
// or conversation shows without a reload. Messages are plain text and shown as text.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, newIdempotencyKey, type Conversation, type Message } from '../api.ts';
import type { PageProps } from '../page.ts';
import { MoreButton, useCursorPages } from '../components/DataTable.tsx';
import { Badge, ErrorNote, Note } from '../components/ui.tsx';
import { linkTo } from '../router.ts';
import * as f from '../format.ts';

interface MessageEvent {
  message: Message;
  conversation: { id: string };
}

type Live = 'connecting' | 'live' | 'reconnecting';

/** Follows message.created on the event stream; EventSource reconnects by itself, with Last-Event-ID. */
function useMessageEvents(onMessage: (e: MessageEvent) => void): Live {
  const [live, setLive] = useState<Live>('connecting');
  const handler = useRef(onMessage);
  handler.current = onMessage;
  useEffect(() => {
    const source = new EventSource('/v1/events');
    source.addEventListener('ready', () => setLive('live'));
    source.addEventListener('error', () => setLive('reconnecting'));
    source.addEventListener('message.created', (e) => {
      try {
        handler.current((JSON.parse((e as globalThis.MessageEvent<string>).data) as { data: MessageEvent }).data);
      } catch {
        // a frame that is not ours: ignored
      }
    });
    return () => source.close();
  }, []);
  return live;
}

export function SupportPage({ params }: PageProps) {
  const openId = params.id;
  const all = useCursorPages<Conversation>(
    (cursor) => api.listConversations({ query: { limit: 20, ...(cursor ? { cursor } : {}) } }),
    true,
  );
  const [unread, setUnread] = useState<Conversation[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [arrived, setArrived] = useState<Message | null>(null);

  const loadUnread = async () => {
    try {
      setUnread((await api.listConversations({ query: { unread: true, limit: 100 } })).data);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const reloadLists = () => {
    void loadUnread();
    void all.reload();
  };
  useEffect(() => {
    void loadUnread();
  }, []);

  const live = useMessageEvents((e) => {
    reloadLists();
    if (e.conversation.id === openId) setArrived(e.message);
  });

  // Unread first (the caller's own read state), then the rest, newest first.
  const unreadIds = new Set(unread.map((c) => c.id));
  const rows = [...unread, ...all.rows.filter((c) => !unreadIds.has(c.id))];

  return (
    <>
      <div class="page-head">
        <h1>Support inbox</h1>
        <div class="controls">
          <span class={`live${live === 'live' ? '' : ' paused'}`} role="status">
            {live === 'live' ? (
              <>
                <span class="dot" aria-hidden="true" />
                Live
              </>
            ) : live === 'connecting' ? (
              'Connecting…'
            ) : (
              'Reconnecting…'
            )}
          </span>
        </div>
      </div>
      <ErrorNote error={error} />
      <div class="inbox">
        <nav class="conversations" aria-label="Conversations">
          <h2>{unread.length > 0 ? `${unread.length} unread` : 'All read'}</h2>
          {rows.length === 0 && !all.loading ? <p class="muted">No conversations yet.</p> : null}
          <ul>
            {rows.map((c) => (
              <li key={c.id} class={c.id === openId ? 'current' : undefined}>
                <a {...linkTo(`/support/${c.id}`)} aria-current={c.id === openId ? 'page' : undefined}>
                  <span class="subject">{c.subject}</span>
                  {c.unreadCount > 0 ? <Badge tone="warn">{c.unreadCount} unread</Badge> : null}
                  <span class="excerpt">
                    {c.lastMessage ? `${c.lastMessage.fromStaff ? 'Staff: ' : ''}${c.lastMessage.body}` : ''}
                  </span>
                  <time class="muted" dateTime={c.lastMessageAt} title={f.time(c.lastMessageAt)}>
                    {f.ago(c.lastMessageAt)}
                  </time>
                </a>
              </li>
            ))}
          </ul>
          <MoreButton pages={all} label="Older conversations" />
        </nav>
        <div class="thread">
          {openId ? (
            <Thread key={openId} id={openId} arrived={arrived} onChanged={reloadLists} />
          ) : (
            <Note>Choose a conversation to read and answer it.</Note>
          )}
        </div>
      </div>
    </>
  );
}

function Thread({ id, arrived, onChanged }: { id: string; arrived: Message | null; onChanged: () => void }) {
  const [conversation, setConversation] = useState<Conversation | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [draft, setDraft] = useState('');
  const [sending, setSending] = useState(false);
  // One key per reply: a retry after a network error never posts it twice; an edited draft is a new reply.
  const replyKey = useRef<{ body: string; key: string } | null>(null);

  const load = async () => {
    try {
      const c = await api.getConversation({ params: { id } });
      const all: Message[] = [];
      let cursor: string | undefined;
      do {
        const page = await api.listMessages({ params: { id }, query: { limit: 100, ...(cursor ? { cursor } : {}) } });
        all.push(...page.data);
        cursor = page.nextCursor ?? undefined;
      } while (cursor && all.length < 1000);
      setConversation(c);
      setMessages(all);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    void load();
  }, [id]);
  useEffect(() => {
    if (!arrived || arrived.conversationId !== id) return;
    setMessages((before) => (before.some((m) => m.id === arrived.id) ? before : [...before, arrived]));
    // Only the thread's header (read state, subject) is refreshed; the message is shown already, and the next one refreshes it again.
    void api.getConversation({ params: { id } }).then(setConversation, () => {});
  }, [arrived]);

  const send = async (e: Event) => {
    e.preventDefault();
    if (!/\S/.test(draft)) return;
    setSending(true);
    try {
      if (replyKey.current?.body !== draft) replyKey.current = { body: draft, key: newIdempotencyKey() };
      const message = await api.postMessage({
        params: { id },
        body: { body: draft },
        idempotencyKey: replyKey.current.key,
      });
      replyKey.current = null;
      setDraft('');
      setMessages((before) => (before.some((m) => m.id === message.id) ? before : [...before, message]));
      setConversation(await api.getConversation({ params: { id } }));
      setError(null);
      onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setSending(false);
    }
  };

  const markRead = async () => {
    try {
      await api.markConversationRead({ params: { id }, body: {}, idempotencyKey: newIdempotencyKey() });
      setConversation(await api.getConversation({ params: { id } }));
      onChanged();
    } catch (err) {
      setError(err);
    }
  };

  if (!conversation) return error ? <ErrorNote error={error} /> : <p role="status">Loading the conversation…</p>;
  return (
    <section aria-labelledby="thread-title">
      <div class="section-head">
        <h2 id="thread-title">{conversation.subject}</h2>
        <div class="section-actions">
          {conversation.unreadCount > 0 ? (
            <button type="button" class="secondary" onClick={() => void markRead()}>
              Mark read ({conversation.unreadCount})
            </button>
          ) : (
            <Badge tone="ok">Read</Badge>
          )}
        </div>
      </div>
      <p class="muted">
        Customer <code>{conversation.customerId}</code>
        {conversation.orderId ? (
          <>
            {' '}
            · order <code>{conversation.orderId}</code>
          </>
        ) : null}{' '}
        · opened {f.time(conversation.createdAt)}
      </p>
      <ol class="messages" aria-label="Messages">
        {messages.map((m) => (
          <li key={m.id} class={m.fromStaff ? 'from-staff' : 'from-customer'}>
            <div class="meta">
              {m.fromStaff ? 'Staff' : 'Customer'} · <time dateTime={m.createdAt}>{f.time(m.createdAt)}</time>
            </div>
            <p class="body">{m.body}</p>
          </li>
        ))}
      </ol>
      <form class="reply" onSubmit={(e) => void send(e)}>
        <label for="reply">Reply</label>
        <textarea
          id="reply"
          rows={4}
          maxLength={10000}
          value={draft}
          onInput={(e) => setDraft(e.currentTarget.value)}
        />
        <ErrorNote error={error} />
        <button type="submit" class="primary" disabled={sending || !/\S/.test(draft)}>
          {sending ? 'Sending…' : 'Send reply'}
        </button>
      </form>
    </section>
  );
}
