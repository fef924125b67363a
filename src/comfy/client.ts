import { ComfyHttpError, ComfyProtocolError, ComfyUnreachableError } from '../errors';
import {
  HistoryEntrySchema,
  QueueSchema,
  SubmitOkSchema,
  classifyHistory,
  type Outcome,
} from './protocol';

/**
 * HTTP client for one ComfyUI instance. Bare paths (no /api prefix) reach every version.
 * Every request has a timeout; transport failures become ComfyUnreachableError and
 * unexpected statuses ComfyHttpError, so callers can classify retryable vs permanent.
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

export interface ComfyClientOptions {
  timeoutMs: number;
  /** called after every request (metrics): route without ids, duration, outcome */
  observe?: (route: string, ms: number, outcome: 'ok' | 'http_error' | 'unreachable') => void;
}

export class ComfyClient {
  constructor(
    readonly baseUrl: string,
    private readonly opts: ComfyClientOptions,
  ) {}

  private async request(
    path: string,
    init: RequestInit = {},
    timeoutMs = this.opts.timeoutMs,
  ): Promise<Response> {
    const started = performance.now();
    // the route without ids, for metrics
    const route = `${init.method ?? 'GET'} ${path.replace(/^\/(history|view)[/?].*$/, '/$1')}`;
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      this.opts.observe?.(route, performance.now() - started, 'unreachable');
      if (err instanceof DOMException && err.name === 'TimeoutError') {
        throw new ComfyUnreachableError(this.baseUrl, path, { timeoutMs });
      }
      throw new ComfyUnreachableError(this.baseUrl, path, { cause: err });
    }
    const ok = res.ok || res.status === 400 || res.status === 409;
    this.opts.observe?.(route, performance.now() - started, ok ? 'ok' : 'http_error');
    return res;
  }

  private async json(path: string, init?: RequestInit): Promise<unknown> {
    const res = await this.request(path, init);
    const text = await this.readText(res, path);
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, text.slice(0, 2000));
    return parseJson(text, this.baseUrl, path);
  }

  private async readText(res: Response, path: string): Promise<string> {
    try {
      return await res.text();
    } catch (err) {
      throw new ComfyUnreachableError(this.baseUrl, path, { cause: err });
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
  async submit(req: SubmitRequest): Promise<SubmitResult> {
    const path = '/prompt';
    const res = await this.request(path, {
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

  async queue() {
    const parsed = QueueSchema.safeParse(await this.json('/queue'));
    if (!parsed.success)
      throw new ComfyProtocolError(
        `ComfyUI ${this.baseUrl} answered GET /queue with an unknown shape`,
      );
    return { running: parsed.data.queue_running, pending: parsed.data.queue_pending };
  }

  /** The history entry of a finished prompt, or null (pending, running, unknown, lost). */
  async history(promptId: string) {
    const body = await this.json(`/history/${encodeURIComponent(promptId)}`);
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

  /**
   * Where is this prompt? `/queue` first, then `/history/{id}`: the transitions are atomic
   * under ComfyUI's mutex, so this order has no window where a finishing prompt is in
   * neither (comfyui-api.md §4.1, §10).
   */
  async lookup(promptId: string): Promise<Lookup> {
    const q = await this.sharedQueue();
    if (q.running.some((e) => e.promptId === promptId)) return { state: 'running' };
    const mine = q.pending.find((e) => e.promptId === promptId);
    if (mine) {
      const ahead = q.pending.filter((e) => e.number < mine.number).length + q.running.length;
      return { state: 'pending', position: ahead };
    }
    const h = await this.history(promptId);
    if (h) return { state: 'done', outcome: classifyHistory(h) };
    return { state: 'absent' };
  }

  /** Removes pending prompts (running ones are unaffected). */
  deleteFromQueue(promptIds: string[]): Promise<void> {
    return this.postNoContent('/queue', { delete: promptIds });
  }

  /** Interrupts the prompt if it is running (servers < 0.3.57 interrupt whatever runs). */
  interrupt(promptId: string): Promise<void> {
    return this.postNoContent('/interrupt', { prompt_id: promptId });
  }

  /** Removes a prompt wherever it is: pending → deleted, running → interrupted. */
  async cancel(promptId: string): Promise<void> {
    const q = await this.queue();
    if (q.pending.some((e) => e.promptId === promptId)) await this.deleteFromQueue([promptId]);
    if (q.running.some((e) => e.promptId === promptId)) await this.interrupt(promptId);
  }

  /** GET /view for one output file; the caller streams the body. */
  async view(
    file: { filename: string; subfolder: string; type: string },
    timeoutMs = 60_000,
  ): Promise<Response> {
    const qs = new URLSearchParams({
      filename: file.filename,
      subfolder: file.subfolder,
      type: file.type,
    });
    return this.request(`/view?${qs}`, {}, timeoutMs);
  }

  async systemStats(): Promise<unknown> {
    return this.json('/system_stats');
  }
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
