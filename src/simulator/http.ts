/**
 * The HTTP face of the simulator: routing (bare paths and `/api/...`), body reading, the
 * aiohttp-style responses (JSON as `application/json; charset=utf-8`, empty 200s as
 * `application/octet-stream`, errors as aiohttp's text/plain pages), `/view` file serving,
 * the loopback Origin check, and the WebSocket upgrade.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { WebSocketServer } from 'ws';
import * as api from './api';
import * as jobs from './jobs';
import type { Catalog } from './catalog';
import { resolveView, type SimFolders } from './files';
import type { ComfyInstance, SimLogger } from './instance';
import { customValidators, listInputFiles } from './load-image';
import { orderedObject, parseJson, stringify, type Json } from './json';
import { PyError } from './py';
import { SERVER_FEATURES } from './sockets';
import { SERVER_HEADER, serveFile } from './serve-file';
import { uploadImage } from './upload';

export interface HttpContext {
  instance(): ComfyInstance;
  readonly catalog: Catalog;
  readonly folders: SimFolders;
  readonly executions: Map<string, number>;
  readonly duplicatePromptIds: api.DuplicatePromptIds;
  readonly version: api.SimVersion;
  readonly host: string;
  port(): number;
  /** the fault for POST /prompt (Simulator.slowPrompts), read when a request is */
  slowPrompts(): SlowPrompts | undefined;
  readonly log: SimLogger;
}

/** A POST /prompt fault: queued, and answered, this long after the request was read. */
export interface SlowPrompts {
  queueAfterMs: number;
  answerAfterMs: number;
}

interface Request {
  url: URL;
  param: string;
  contentType: string | undefined;
  raw(): Promise<Buffer>;
  body(): Promise<Json>;
  text(): Promise<string>;
}

type Handler = (r: Request, res: ServerResponse) => Promise<api.Reply | void> | api.Reply | void;

const MAX_BODY_BYTES = 100 * 1024 * 1024;
const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';
const INTERNAL_ERROR = '500 Internal Server Error\n\nServer got itself in trouble';
class BodyTooLarge extends Error {}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer = '',
  extra: Record<string, string> = {},
): void {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': String(buf.length),
    Server: SERVER_HEADER,
    ...extra,
  });
  res.end(buf);
}

function reply(res: ServerResponse, r: api.Reply): void {
  if (r.kind === 'empty') send(res, r.status, 'application/octet-stream');
  else send(res, r.status, JSON_TYPE, r.kind === 'raw-json' ? r.body : stringify(r.body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** aiohttp's origin_only_middleware: a loopback Host with a different Origin host gets 403. */
function originForbidden(req: IncomingMessage): boolean {
  const host = req.headers.host?.toLowerCase();
  const origin = req.headers.origin;
  if (!host || !origin) return false;
  let o: URL;
  let h: URL;
  try {
    o = new URL(origin);
    h = new URL(`http://${host}`);
  } catch {
    return false;
  }
  const loopback =
    ['localhost', '127.0.0.1', '[::1]'].includes(h.hostname) || h.hostname.startsWith('127.');
  const hostSide = o.port === '' ? h.hostname : h.host;
  const originSide = h.port === '' ? o.hostname : o.host;
  return loopback && hostSide !== '' && originSide !== '' && hostSide !== originSide;
}

type Routes = Record<string, Partial<Record<'GET' | 'POST', Handler>>>;

function routes(ctx: HttpContext): Routes {
  return { ...infoRoutes(ctx), ...promptRoutes(ctx) };
}

/** What a client reads about the server: pages, features, stats, the node catalogue. */
function infoRoutes(ctx: HttpContext): Routes {
  const withInputFiles = (raw: string) => listInputFiles(raw, ctx.folders);
  return {
    '/': {
      GET: (_r, res) => send(res, 200, 'text/html', '<!doctype html><title>ComfyUI</title>\n'),
    },
    '/ws': {
      GET: (_r, res) =>
        send(
          res,
          400,
          TEXT_TYPE,
          '400: No WebSocket UPGRADE hdr: None\n Can "Upgrade" only to "WebSocket".',
        ),
    },
    '/embeddings': { GET: () => ({ kind: 'json', status: 200, body: [] }) },
    '/extensions': { GET: () => ({ kind: 'json', status: 200, body: [] }) },
    '/features': { GET: () => ({ kind: 'json', status: 200, body: SERVER_FEATURES }) },
    '/system_stats': {
      GET: () =>
        api.systemStats(
          ctx.version === 'current' ? api.CURRENT_COMFYUI_VERSION : ctx.version,
          ctx.host,
          ctx.port(),
        ),
    },
    '/object_info': {
      GET: () => ({ kind: 'raw-json', status: 200, body: withInputFiles(ctx.catalog.rawAll) }),
    },
    '/object_info/{}': {
      GET: (r) => {
        const info = api.objectInfoOf(ctx.catalog, r.param);
        return info.kind === 'raw-json' ? { ...info, body: withInputFiles(info.body) } : info;
      },
    },
    '/_sim/executions': {
      GET: () => ({ kind: 'json', status: 200, body: orderedObject([...ctx.executions]) }),
    },
  };
}

/** The prompt's life: submit, queue, history, files in and out, interrupt, the jobs API. */
function promptRoutes(ctx: HttpContext): Routes {
  const inst = () => ctx.instance();
  const custom = customValidators(ctx.folders);
  return {
    '/prompt': {
      GET: () => api.getPrompt(inst()),
      POST: async (r) => {
        const body = await r.body();
        const slow = ctx.slowPrompts();
        if (slow) await delay(slow.queueAfterMs);
        const out = api.postPrompt(
          inst(),
          ctx.catalog,
          body,
          {
            version: ctx.version,
            duplicates: ctx.duplicatePromptIds,
          },
          custom,
        );
        // ComfyUI prints "got prompt" for each prompt it queues; the id here is for tests
        if (out.kind === 'json' && out.status === 200)
          ctx.log.info(`got prompt ${String((out.body as { prompt_id?: unknown }).prompt_id)}`);
        if (slow) await delay(Math.max(0, slow.answerAfterMs - slow.queueAfterMs));
        return out;
      },
    },
    '/queue': {
      GET: () => api.getQueue(inst()),
      POST: async (r) => api.postQueue(inst(), await r.body()),
    },
    '/history': {
      GET: (r) => api.getHistory(inst(), r.url.searchParams),
      POST: async (r) => api.postHistory(inst(), await r.body()),
    },
    '/history/{}': { GET: (r) => api.getHistoryItem(inst(), r.param) },
    '/upload/image': {
      POST: async (r) => uploadImage(ctx.folders, r.contentType, await r.raw()),
    },
    '/interrupt': { POST: async (r) => api.postInterrupt(inst(), await r.text()) },
    '/free': { POST: async (r) => api.postFree(await r.body()) },
    '/view': {
      GET: (r, res) => {
        const v = resolveView(r.url.searchParams, ctx.folders);
        if (v.status !== 200) return { kind: 'empty', status: v.status };
        serveFile(res.req, res, v.file, v.filename);
      },
    },
    ...(ctx.version === 'current'
      ? {
          '/api/jobs': { GET: (r: Request) => jobs.listJobs(inst(), r.url.searchParams) },
          '/api/jobs/{}': { GET: (r: Request) => jobs.getJob(inst(), r.param) },
          '/api/jobs/{}/cancel': { POST: (r: Request) => jobs.cancelJob(inst(), r.param) },
        }
      : {}),
  };
}

/** Maps a path to a route key and its `{param}` (one path segment, decoded). */
function matchRoute(pathname: string): { key: string; param: string } {
  // the jobs API is declared under /api/jobs only (no bare twin)
  const jobsApi = /^\/api\/jobs\/([^/]+)(\/cancel)?$/.exec(pathname);
  if (jobsApi) return { key: `/api/jobs/{}${jobsApi[2] ?? ''}`, param: decode(jobsApi[1]) };
  if (pathname === '/api/jobs') return { key: pathname, param: '' };
  const p = pathname.startsWith('/api/') ? pathname.slice(4) : pathname;
  const m = /^\/(history|object_info)\/([^/]+)$/.exec(p);
  if (m) return { key: `/${m[1]}/{}`, param: decode(m[2]) };
  return { key: p, param: '' };
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

export function createHttpHandlers(ctx: HttpContext) {
  const table = routes(ctx);
  const wss = new WebSocketServer({ noServer: true });

  async function request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (originForbidden(req)) return send(res, 403, 'application/octet-stream');
    if (req.method === 'OPTIONS') return send(res, 200, 'application/octet-stream');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const { key, param } = matchRoute(url.pathname);
    const route = table[key];
    if (!route) return send(res, 404, TEXT_TYPE, '404: Not Found');
    const method = req.method === 'HEAD' ? 'GET' : (req.method as 'GET' | 'POST');
    const handler = route[method];
    if (!handler) {
      return send(res, 405, TEXT_TYPE, '405: Method Not Allowed', {
        Allow: Object.keys(route).join(','),
      });
    }
    let rawBody: Buffer | undefined;
    const raw = async () => (rawBody ??= await readBody(req));
    const text = async () => {
      const bytes = await raw();
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new PyError('UnicodeDecodeError', "'utf-8' codec can't decode the body");
      }
    };
    const r: Request = {
      url,
      param,
      contentType: req.headers['content-type'],
      raw,
      text,
      body: async () => parseJson(await text()),
    };
    try {
      const out = await handler(r, res);
      if (out) reply(res, out);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        return send(
          res,
          413,
          TEXT_TYPE,
          `413: Maximum request body size ${MAX_BODY_BYTES} exceeded`,
        );
      }
      if (!(err instanceof PyError) && !(err instanceof SyntaxError)) {
        ctx.log.warn('simulator request failed', err);
      }
      if (!res.headersSent) send(res, 500, TEXT_TYPE, INTERNAL_ERROR);
    }
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = matchRoute(url.pathname).key;
    const refuse = (status: string) => {
      socket.end(
        `HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
    };
    if (path !== '/ws') return refuse('404 Not Found');
    if (originForbidden(req)) return refuse('403 Forbidden');
    const hub = ctx.instance().hub;
    wss.handleUpgrade(req, socket, head, (ws) =>
      hub.accept(ws, url.searchParams.get('clientId') || null),
    );
  }

  return {
    request: (req: IncomingMessage, res: ServerResponse) => void request(req, res),
    upgrade,
    close: () => wss.close(),
  };
}
