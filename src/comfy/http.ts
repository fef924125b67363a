import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { withBeforeWrite, WriteRefused } from './before-write';
import { ComfyHttpError, ComfyProtocolError, ComfyUnreachableError } from '../errors';
import { TimeoutError, withTimeout } from '../lifecycle';

/**
 * The transport to one ComfyUI instance: undici's `request()` on a keep-alive Pool (a
 * fraction of fetch's CPU per call), a timeout on every request that also bounds reading its
 * body, and errors told apart for the caller: transport failures are ComfyUnreachableError,
 * unexpected statuses ComfyHttpError, bodies that are not JSON ComfyProtocolError.
 */

export interface ComfyClientOptions {
  timeoutMs: number;
  /** called after every request (metrics): route without ids, duration, outcome */
  observe?: (route: string, ms: number, outcome: 'ok' | 'http_error' | 'unreachable') => void;
}

export interface RequestInit {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Readable;
  /** see WriteOptions (before-write.ts) */
  beforeWrite?: () => void;
  /** a connection to use instead of the pool (a deciding look-up's own, see lookup) */
  via?: Dispatcher;
}

export interface Reply {
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

export class ComfyHttp {
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
  async request(
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

  async json(path: string, init?: RequestInit): Promise<unknown> {
    const res = await this.request(path, init);
    const text = await this.readText(res, path);
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, text.slice(0, 2000));
    return parseJson(text, this.baseUrl, path);
  }

  async readText(res: Reply, path: string): Promise<string> {
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

  async postNoContent(path: string, body: unknown, beforeWrite?: () => void): Promise<void> {
    const res = await this.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      beforeWrite,
    });
    await this.readText(res, path);
    if (!res.ok) throw new ComfyHttpError(this.baseUrl, path, res.status, undefined);
  }
}

export function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function parseJson(text: string, baseUrl: string, path: string): unknown {
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
