import type { Readable } from 'node:stream';
import { multipartBody } from './multipart';
import { Client, type Dispatcher } from 'undici';
import type { WriteOptions } from './before-write';
import { z } from 'zod';
import { ComfyHttpError, ComfyProtocolError } from '../errors';
import { ComfyHttp, firstHeader, parseJson, safeJson, type ComfyClientOptions } from './http';
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
 * ComfyUI's HTTP protocol for one instance (comfyui-api.md): submit, queue, history, the
 * jobs API, look-ups, cancel, uploads and downloads. Bare paths (no /api prefix) reach every
 * version. The transport, its timeouts and its error classes are in ./http.
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

export type { ComfyClientOptions } from './http';

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

/** One GET /view answer: the caller streams or destroys `body` (it holds a pooled connection). */
export interface ViewResponse {
  status: number;
  contentType: string | undefined;
  contentLength: string | undefined;
  body: Readable;
}

const UploadedSchema = z.object({
  name: z.string().min(1),
  subfolder: z.string().optional(),
  type: z.string().optional(),
});

export class ComfyClient {
  private readonly http: ComfyHttp;

  constructor(
    readonly baseUrl: string,
    opts: ComfyClientOptions,
  ) {
    this.http = new ComfyHttp(baseUrl, opts);
  }

  /**
   * Closes the keep-alive connections. Requests still in flight may finish for up to
   * `graceMs`, then they are aborted (ComfyUnreachableError); later requests fail the same way.
   */
  close(graceMs = 1_000): Promise<void> {
    return this.http.close(graceMs);
  }

  /** POST /prompt with a client-chosen prompt id (comfyui-api.md §2). */
  async submit(req: SubmitRequest, opts: WriteOptions = {}): Promise<SubmitResult> {
    const path = '/prompt';
    const res = await this.http.request(path, {
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
    const text = await this.http.readText(res, path);
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
    const parsed = QueueSchema.safeParse(await this.http.json('/queue', { via }));
    if (!parsed.success)
      throw new ComfyProtocolError(
        `ComfyUI ${this.baseUrl} answered GET /queue with an unknown shape`,
      );
    return { running: parsed.data.queue_running, pending: parsed.data.queue_pending };
  }

  /** The history entry of a finished prompt, or null (pending, running, unknown, lost). */
  async history(promptId: string, via?: Dispatcher) {
    const body = await this.http.json(`/history/${encodeURIComponent(promptId)}`, { via });
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
    this.jobsApiProbe ??= this.http.json('/api/jobs?limit=1').then(
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
    const res = await this.http.request(path, { via });
    const text = await this.http.readText(res, path);
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

  /**
   * Removes pending prompts (running ones are unaffected; under ComfyUI's queue mutex).
   * The answer says nothing of what was removed: look the prompt up after it.
   */
  deleteFromQueue(promptIds: string[], opts: WriteOptions = {}): Promise<void> {
    return this.http.postNoContent('/queue', { delete: promptIds }, opts.beforeWrite);
  }

  /** Interrupts the prompt if it is running (servers < 0.3.57 interrupt whatever runs). */
  interrupt(promptId: string): Promise<void> {
    return this.http.postNoContent('/interrupt', { prompt_id: promptId });
  }

  /**
   * Removes a prompt wherever it is: pending → deleted, running → interrupted. With the jobs
   * API in one call that checks and interrupts under ComfyUI's mutex.
   */
  async cancel(promptId: string): Promise<void> {
    if (await this.hasJobsApi()) {
      await this.http.json(`/api/jobs/${encodeURIComponent(promptId)}/cancel`, {
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
    const res = await this.http.request(
      path,
      {
        method: 'POST',
        headers: { 'content-type': form.contentType, 'content-length': String(form.length) },
        body: form.body,
        beforeWrite: opts.beforeWrite,
      },
      timeoutMs,
    );
    const text = await this.http.readText(res, path);
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
    const res = await this.http.request(`/view?${qs}`, {}, timeoutMs);
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
    return this.http.json('/system_stats');
  }
}
