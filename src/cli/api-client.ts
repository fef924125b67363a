import { createParser } from 'eventsource-parser';
import { TERMINAL_STATUSES } from '../job/status';
import type { JobView } from '../job/view';

/** A client of the comfyui-queue HTTP API, for the CLI. Errors carry the API's message. */

/** The statuses a job ends in, as strings (an SSE event's name is one). */
const TERMINAL: readonly string[] = TERMINAL_STATUSES;

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface ApiClient {
  submit(body: Record<string, unknown>): Promise<{ id: string; status: string }>;
  get(id: string): Promise<JobView>;
  cancel(id: string): Promise<{ id: string; status: string }>;
  /** Follows the job over SSE (reconnecting if the stream drops) until a terminal state. */
  follow(id: string, onUpdate: (view: JobView) => void): Promise<JobView>;
  /** An API path or URL made absolute (output URLs). */
  absolute(url: string): string;
}

function unreachable(baseUrl: string, err: unknown): ApiError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as Error).message;
  return new ApiError(
    `cannot reach the API at ${baseUrl} (${why}): is it running (npm start)? ` +
      'Set --api or COMFYUI_QUEUE_API to its URL.',
  );
}

async function toApiError(res: Response, what: string): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const { error } = JSON.parse(text) as {
      error: { code: string; message: string; details?: { path?: unknown; message?: string }[] };
    };
    const details = (error.details ?? []).map(
      (d) => `\n  ${String(d.path ?? '')}: ${d.message ?? ''}`,
    );
    return new ApiError(
      `${what}: ${error.message} (${res.status} ${error.code})${details.join('')}`,
      res.status,
      error.code,
    );
  } catch {
    return new ApiError(`${what}: HTTP ${res.status} ${text.slice(0, 200)}`.trim(), res.status);
  }
}

export function createApiClient(opts: { baseUrl: string; apiKey?: string }): ApiClient {
  const baseUrl = opts.baseUrl.replace(/\/+$/, '');
  const headers = (extra: Record<string, string> = {}) => ({
    ...extra,
    ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
  });
  const call = async (method: string, path: string, what: string, body?: unknown) => {
    let res: Response;
    try {
      res = await fetch(`${baseUrl}${path}`, {
        method,
        headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw unreachable(baseUrl, err);
    }
    if (!res.ok) throw await toApiError(res, what);
    return (await res.json()) as never;
  };
  const jobPath = (id: string) => `/v1/jobs/${encodeURIComponent(id)}`;
  const get = (id: string): Promise<JobView> => call('GET', jobPath(id), `job ${id}`);

  /** One SSE connection; resolves with the terminal view, or undefined if the stream ended early. */
  const stream = async (
    id: string,
    onUpdate: (v: JobView) => void,
  ): Promise<JobView | undefined> => {
    let res: Response;
    try {
      res = await fetch(`${baseUrl}${jobPath(id)}/events`, {
        headers: headers({ accept: 'text/event-stream' }),
      });
    } catch (err) {
      throw unreachable(baseUrl, err);
    }
    if (!res.ok || !res.body) throw await toApiError(res, `events of job ${id}`);
    let final: JobView | undefined;
    const parser = createParser({
      onEvent(ev) {
        const view = JSON.parse(ev.data) as JobView;
        onUpdate(view);
        if (TERMINAL.includes(ev.event ?? '') || TERMINAL.includes(view.status)) final = view;
      },
    });
    // the job may have finished before we subscribed: read it once the stream is open
    const now = await get(id);
    onUpdate(now);
    if (TERMINAL.includes(now.status)) {
      await res.body.cancel().catch(() => undefined);
      return now;
    }
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        parser.feed(decoder.decode(chunk, { stream: true }));
        if (final) break;
      }
    } catch {
      // the connection dropped: the caller re-reads and reconnects
    }
    return final;
  };

  return {
    submit: (body) => call('POST', '/v1/jobs', 'submit', body),
    get,
    cancel: (id) => call('DELETE', jobPath(id), `cancel ${id}`),
    async follow(id, onUpdate) {
      for (let drops = 0; ; drops++) {
        const final = await stream(id, onUpdate).catch((err: unknown) => {
          if (err instanceof ApiError && err.status !== undefined) throw err; // an HTTP answer
          if (drops >= 30) throw err;
          return undefined;
        });
        if (final) return final;
        await new Promise((r) => setTimeout(r, 1_000));
      }
    },
    absolute: (url) => new URL(url, `${baseUrl}/`).toString(),
  };
}
