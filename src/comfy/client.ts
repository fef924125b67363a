import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { multipartBody } from './multipart';
import { Client, Pool, type Dispatcher } from 'undici';
import { withBeforeWrite, WriteRefused, type WriteOptions } from './before-write';
import { z } from 'zod';
import { ComfyHttpError, ComfyProtocolError, ComfyUnreachableError } from '../errors';
import { TimeoutError, withTimeout } from '../lifecycle';
import {
  HistoryEntrySchema,
  JobListSchema,
  JobSchema,
  QueueSchema,
  SubmitOkSchema,
  classifyHistory,
  type Outcome,
} from './protocol';

/**
 * HTTP client for one ComfyUI instance. Bare paths (no /api prefix) reach every version.
 * Every request has a timeout; transport failures become ComfyUnreachableError and
 * unexpected statuses ComfyHttpError, so callers can classify retryable vs permanent.
 * Requests go through undici's `request()` on a keep-alive Pool per instance (a fraction of
 * fetch's CPU per call); close() releases its connections.
 */

export interface SubmitRequest {
  prompt: unknown;
  promptId: string;
  clientId: string;
  extraData: Record<string, unknown>;
}

export type SubmitResult =
  | { kind: 'accepted'; promptId: string; nodeErrors: Record<string, unknown> }
  /** newest servers: the id is already pending, running or in history */
  | { kind: 'duplicate' }
  /** 400: the workflow is invalid; `body` is ComfyUI's error object */
  | { kind: 'invalid'; body: unknown };

export type Lookup =
  | { state: 'pending'; position: number }
  | { state: 'running' }
  | { state: 'done'; outcome: Outcome }
  | { state: 'absent' };

export interface LookupOptions {
  /**
   * Ask over a new connection of its own (the deciding look-up before a prompt is
   * resubmitted). A server reads its connections in the order it accepted them, so this
   * look-up is read after any POST whose connection was accepted before it; on a kept-alive
   * connection it can be read first, by a server whose event loop was stalled meanwhile
   * (docs/DESIGN.md "Fencing").
   */
  freshConnection?: boolean;
}

export interface ComfyClientOptions {
  timeoutMs: number;
  /** called after every request (metrics): route without ids, duration, outcome */
  observe?: (route: string, ms: number, outcome: 'ok' | 'http_error' | 'unreachable') => void;
}

/** One GET /view answer: the caller streams or destroys `body` (it holds a pooled connection). */
export interface ViewResponse {
  status: number;
  contentType: string | undefined;
  contentLength: string | undefined;
  body: Readable;
}

interface RequestInit {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Readable;
  /** see WriteOptions (before-write.ts) */
  beforeWrite?: () => void;
  /** a connection to use instead of the pool (a deciding look-up's own, see lookup) */
  via?: Dispatcher;
}

interface Reply {
  status: number;
  ok: boolean;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
  /** stops the request's timeout (once the body is read or closed) */
  done(): void;
  /** whether the timeout fired (a body read it aborted reports the timeout) */
  timedOut(): boolean;
  timeoutMs: number;
}

/** Keep-alive connections per ComfyUI instance; far above any realistic number in flight. */
const MAX_CONNECTIONS = 64;

const UploadedSchema = z.object({
  name: z.string().min(1),
  subfolder: z.string().optional(),
  type: z.string().optional(),
});

export class ComfyClient {
  /** created on first use, so a malformed URL fails like any request (ComfyUnreachableError) */
  private dispatcher?: { pool: Pool; prefix: string };
  private closed = false;

  constructor(
    readonly baseUrl: string,
    private readonly opts: ComfyClientOptions,
  ) {}

  private connection(): { pool: Pool; prefix: string } {
    if (this.closed) throw new Error('ComfyClient is closed');
    if (!this.dispatcher) {
      const url = new URL(this.baseUrl);
      this.dispatcher = {
        pool: new Pool(url.origin, { connections: MAX_CONNECTIONS }),
        prefix: url.pathname.replace(/\/+$/, ''),
      };
    }
    return this.dispatcher;
  }

  /**
   * Closes the keep-alive connections. Requests still in flight may finish for up to
   * `graceMs`, then they are aborted (ComfyUnreachableError); later requests fail the same way.
   */
  async close(graceMs = 1_000): Promise<void> {
    this.closed = true;
    const pool = this.dispatcher?.pool;
    if (!pool) return;
    try {
      await withTimeout('closing the connections', graceMs, pool.close());
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
      await pool.destroy();
    }
  }

  /**
   * One request; its timeout runs until `done()` and aborts the body read too (as fetch's
   * signal did). The caller must read or destroy the body, and call `done()`.
   */
  private async request(
    path: string,
    init: RequestInit = {},
    timeoutMs = this.opts.timeoutMs,
  ): Promise<Reply> {
    const started = performance.now();
    const method = init.method ?? 'GET';
    // the route without ids, for metrics
    const route = `${method} ${path
      .replace(/^\/(history|view)[/?].*$/, '/$1')
      .replace(/^\/api\/jobs\/[^/?]+/, '/api/jobs/{id}')
      .replace(/\?.*$/, '')}`;
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
    }, timeoutMs);
    timer.unref();
    const done = () => clearTimeout(timer);
    let res: Dispatcher.ResponseData;
    const check = init.beforeWrite;
    try {
      const { pool, prefix } = this.connection();
      const d = init.via ?? pool;
      res = await (check ? withBeforeWrite(d, check) : d).request({
        path: prefix + path,
        method,
        headers: init.headers,
        body: init.body,
        signal: abort.signal,
      });
    } catch (err) {
      done();
      if (err instanceof WriteRefused) throw err.reason; // nothing was sent
      this.opts.observe?.(route, performance.now() - started, 'unreachable');
      if (timedOut) throw new ComfyUnreachableError(this.baseUrl, path, { timeoutMs });
      throw new ComfyUnreachableError(this.baseUrl, path, { cause: err });
    }
    const status = res.statusCode;
    const ok = status >= 200 && status < 300;
    this.opts.observe?.(
      route,
      performance.now() - started,
      ok || status === 400 || status === 409 ? 'ok' : 'http_error',
    );
    return {
      status,
      ok,
      headers: res.headers,
      body: res.body,
      done,
      timedOut: () => timedOut,
      timeoutMs,
    };
  }

  private async json(path: string, init?: RequestInit): Promise<unknown> {
    const res = await this.request(path, init);
    const text = await this.readText(res, path);
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, text.slice(0, 2000));
    return parseJson(text, this.baseUrl, path);
  }

  private async readText(res: Reply, path: string): Promise<string> {
    try {
      return await res.body.text();
    } catch (err) {
      if (res.timedOut())
        throw new ComfyUnreachableError(this.baseUrl, path, { timeoutMs: res.timeoutMs });
      throw new ComfyUnreachableError(this.baseUrl, path, { cause: err });
    } finally {
      res.done();
    }
  }

  private async postNoContent(path: string, body: unknown): Promise<void> {
    const res = await this.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    await this.readText(res, path);
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, undefined);
  }

  /** POST /prompt with a client-chosen prompt id (comfyui-api.md §2). */
  async submit(req: SubmitRequest, opts: WriteOptions = {}): Promise<SubmitResult> {
    const path = '/prompt';
    const res = await this.request(path, {
      beforeWrite: opts.beforeWrite,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: req.prompt,
        client_id: req.clientId,
        prompt_id: req.promptId,
        extra_data: req.extraData,
      }),
    });
    const text = await this.readText(res, path);
    if (res.status === 409) return { kind: 'duplicate' };
    if (res.status === 400) return { kind: 'invalid', body: safeJson(text) ?? text };
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, text.slice(0, 2000));
    const ok = SubmitOkSchema.safeParse(parseJson(text, this.baseUrl, path));
    if (!ok.success)
      throw new ComfyProtocolError(
        `ComfyUI ${this.baseUrl} answered POST /prompt without a prompt_id`,
      );
    return { kind: 'accepted', promptId: ok.data.prompt_id, nodeErrors: ok.data.node_errors };
  }

  private queueInFlight?: ReturnType<ComfyClient['queue']>;
  private queueNext?: ReturnType<ComfyClient['queue']>;

  /**
   * GET /queue shared by every follower of this instance: callers that arrive while a
   * request is in flight share the one that starts right after it (never an answer older
   * than their call), so N jobs polling one instance cost about one /queue per round trip.
   */
  sharedQueue(): ReturnType<ComfyClient['queue']> {
    if (!this.queueInFlight) {
      this.queueInFlight = this.queue().finally(() => (this.queueInFlight = undefined));
      return this.queueInFlight;
    }
    this.queueNext ??= this.queueInFlight
      .catch(() => undefined)
      .then(() => {
        this.queueNext = undefined;
        return this.sharedQueue();
      });
    return this.queueNext;
  }

  async queue(via?: Dispatcher) {
    const parsed = QueueSchema.safeParse(await this.json('/queue', { via }));
    if (!parsed.success)
      throw new ComfyProtocolError(
        `ComfyUI ${this.baseUrl} answered GET /queue with an unknown shape`,
      );
    return { running: parsed.data.queue_running, pending: parsed.data.queue_pending };
  }

  /** The history entry of a finished prompt, or null (pending, running, unknown, lost). */
  async history(promptId: string, via?: Dispatcher) {
    const body = await this.json(`/history/${encodeURIComponent(promptId)}`, { via });
    if (!body || typeof body !== 'object') return null;
    const raw = (body as Record<string, unknown>)[promptId];
    if (raw === undefined) return null;
    const parsed = HistoryEntrySchema.safeParse(raw);
    if (!parsed.success)
      throw new ComfyProtocolError(
        `ComfyUI ${this.baseUrl} returned a history entry of unknown shape`,
      );
    return parsed.data;
  }

  private jobsApiProbe?: Promise<boolean>;

  /**
   * Whether the server has the jobs API (comfyui-api.md §5, §13: merged after 0.3.64),
   * asked once per instance with `GET /api/jobs?limit=1`; a failed probe is asked again.
   */
  hasJobsApi(): Promise<boolean> {
    this.jobsApiProbe ??= this.json('/api/jobs?limit=1').then(
      (body) => JobListSchema.safeParse(body).success,
      (err: unknown) => {
        this.jobsApiProbe = undefined;
        if (err instanceof ComfyHttpError && err.status === 404) {
          this.jobsApiProbe = Promise.resolve(false);
          return false;
        }
        throw err;
      },
    );
    return this.jobsApiProbe;
  }

  /**
   * Where is this prompt? With the jobs API, one `GET /api/jobs/{id}` (its 404 says
   * "unknown"); else `/queue` first, then `/history/{id}`: the transitions are atomic under
   * ComfyUI's mutex, so this order has no window where a finishing prompt is in neither
   * (comfyui-api.md §4.1, §10).
   */
  async lookup(promptId: string, opts: LookupOptions = {}): Promise<Lookup> {
    if (!opts.freshConnection) return this.lookupVia(promptId);
    const { origin } = new URL(this.baseUrl);
    const own = new Client(origin);
    try {
      return await this.lookupVia(promptId, own);
    } finally {
      await own.destroy().catch(() => undefined);
    }
  }

  /** lookup on `via` (its own requests, not shared), or on the pool (/queue shared) */
  private async lookupVia(promptId: string, via?: Dispatcher): Promise<Lookup> {
    if (await this.hasJobsApi()) {
      const found = await this.lookupJob(promptId, via);
      if (found) return found;
    }
    const q = via ? await this.queue(via) : await this.sharedQueue();
    if (q.running.some((e) => e.promptId === promptId)) return { state: 'running' };
    const mine = q.pending.find((e) => e.promptId === promptId);
    if (mine) {
      const ahead = q.pending.filter((e) => e.number < mine.number).length + q.running.length;
      return { state: 'pending', position: ahead };
    }
    const h = await this.history(promptId, via);
    if (h) return { state: 'done', outcome: classifyHistory(h) };
    return { state: 'absent' };
  }

  /** The jobs API's answer, or undefined when the server turned out not to have it. */
  private async lookupJob(promptId: string, via?: Dispatcher): Promise<Lookup | undefined> {
    const path = `/api/jobs/${encodeURIComponent(promptId)}`;
    const res = await this.request(path, { via });
    const text = await this.readText(res, path);
    const body = safeJson(text);
    if (res.status === 404) {
      if (body && typeof body === 'object' && 'error' in body) return { state: 'absent' };
      this.jobsApiProbe = Promise.resolve(false); // the route is gone (a downgraded server)
      return undefined;
    }
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, text.slice(0, 2000));
    const job = JobSchema.safeParse(body);
    if (!job.success)
      throw new ComfyProtocolError(
        `ComfyUI ${this.baseUrl} answered GET ${path} with an unknown shape`,
      );
    const j = job.data;
    if (j.status === 'in_progress') return { state: 'running' };
    if (j.status === 'pending') return this.pendingPosition(promptId);
    const entry = HistoryEntrySchema.safeParse({ outputs: j.outputs, status: j.execution_status });
    if (!entry.success)
      throw new ComfyProtocolError(`ComfyUI ${this.baseUrl} returned a job of unknown shape`);
    return { state: 'done', outcome: classifyHistory(entry.data) };
  }

  /** A pending prompt's place: prompts running or pending before it (the jobs API has none). */
  private async pendingPosition(promptId: string): Promise<Lookup> {
    const q = await this.sharedQueue();
    const mine = q.pending.find((e) => e.promptId === promptId);
    if (!mine) return { state: 'pending', position: q.running.length };
    const ahead = q.pending.filter((e) => e.number < mine.number).length + q.running.length;
    return { state: 'pending', position: ahead };
  }

  /** Removes pending prompts (running ones are unaffected). */
  deleteFromQueue(promptIds: string[]): Promise<void> {
    return this.postNoContent('/queue', { delete: promptIds });
  }

  /** Interrupts the prompt if it is running (servers < 0.3.57 interrupt whatever runs). */
  interrupt(promptId: string): Promise<void> {
    return this.postNoContent('/interrupt', { prompt_id: promptId });
  }

  /**
   * Removes a prompt wherever it is: pending → deleted, running → interrupted. With the jobs
   * API in one call that checks and interrupts under ComfyUI's mutex.
   */
  async cancel(promptId: string): Promise<void> {
    if (await this.hasJobsApi()) {
      await this.json(`/api/jobs/${encodeURIComponent(promptId)}/cancel`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      return;
    }
    const q = await this.queue();
    if (q.pending.some((e) => e.promptId === promptId)) await this.deleteFromQueue([promptId]);
    if (q.running.some((e) => e.promptId === promptId)) await this.interrupt(promptId);
  }

  /**
   * POST /upload/image (an input file, streamed): ComfyUI answers where it stored it. A 4xx
   * is a ComfyHttpError that is not retryable; 5xx and transport errors are.
   */
  async uploadImage(
    file: { filename: string; contentType: string; size: number; body: Readable },
    opts: { subfolder: string; overwrite: boolean } & WriteOptions,
    timeoutMs = 120_000,
  ): Promise<{ name: string; subfolder: string; type: string }> {
    const path = '/upload/image';
    const form = multipartBody(
      { type: 'input', subfolder: opts.subfolder, overwrite: String(opts.overwrite) },
      { field: 'image', ...file },
    );
    const res = await this.request(
      path,
      {
        method: 'POST',
        headers: { 'content-type': form.contentType, 'content-length': String(form.length) },
        body: form.body,
        beforeWrite: opts.beforeWrite,
      },
      timeoutMs,
    );
    const text = await this.readText(res, path);
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, text.slice(0, 2000));
    const parsed = UploadedSchema.safeParse(safeJson(text));
    if (!parsed.success) {
      throw new ComfyProtocolError(`ComfyUI ${this.baseUrl} answered ${path} without a name`);
    }
    return { subfolder: '', type: 'input', ...parsed.data };
  }

  /** GET /view for one output file; the caller streams the body. */
  async view(
    file: { filename: string; subfolder: string; type: string },
    timeoutMs = 60_000,
  ): Promise<ViewResponse> {
    const qs = new URLSearchParams({
      filename: file.filename,
      subfolder: file.subfolder,
      type: file.type,
    });
    const res = await this.request(`/view?${qs}`, {}, timeoutMs);
    res.body.once('close', res.done);
    res.body.on('error', () => {}); // a caller's destroy() must not become an uncaught 'error'
    return {
      status: res.status,
      contentType: firstHeader(res.headers['content-type']),
      contentLength: firstHeader(res.headers['content-length']),
      body: res.body,
    };
  }

  async systemStats(): Promise<unknown> {
    return this.json('/system_stats');
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseJson(text: string, baseUrl: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ComfyProtocolError(
      `ComfyUI ${baseUrl} answered ${path} with something that is not JSON`,
      {
        cause: err,
      },
    );
  }
}
