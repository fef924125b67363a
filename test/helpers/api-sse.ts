import { createParser, type EventSourceMessage } from 'eventsource-parser';

/**
 * A real HTTP client for the API's Server-Sent Events: fetch + eventsource-parser.
 * `done` resolves with every event once the server ends the stream.
 */
export interface SseClient {
  events: Array<{ event: string; data: unknown }>;
  /** comment lines (heartbeats) */
  comments: string[];
  /** resolves when the server ends the stream */
  done: Promise<Array<{ event: string; data: unknown }>>;
  /** resolves when an event of this name has arrived */
  next(name: string): Promise<{ event: string; data: unknown }>;
  close(): void;
}

export async function openSse(
  url: string,
  headers: Record<string, string> = {},
): Promise<SseClient> {
  const abort = new AbortController();
  const res = await fetch(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: abort.signal,
  });
  if (res.status !== 200 || !res.body) throw new Error(`SSE ${url} answered ${res.status}`);
  if (!res.headers.get('content-type')?.startsWith('text/event-stream')) {
    throw new Error(`SSE ${url} answered ${res.headers.get('content-type')}`);
  }
  const events: SseClient['events'] = [];
  const comments: string[] = [];
  const waiters: Array<{ name: string; resolve: (e: { event: string; data: unknown }) => void }> =
    [];
  const parser = createParser({
    onComment: (c) => comments.push(c.trim()),
    onEvent(m: EventSourceMessage) {
      const e = { event: m.event ?? 'message', data: JSON.parse(m.data) as unknown };
      events.push(e);
      for (const w of waiters.filter((x) => x.name === e.event)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    },
  });
  const body = res.body;
  const done = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of body)
        parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    }
    return events;
  })();
  done.catch(() => {});
  return {
    events,
    comments,
    done,
    next(name) {
      const seen = events.find((e) => e.event === name);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ name, resolve }));
    },
    close: () => abort.abort(),
  };
}
