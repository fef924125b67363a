/**
 * Helpers for the simulator tests: the recorded ComfyUI 0.3.64 transcripts
 * (test/fixtures/comfyui), a collecting WebSocket client, plain HTTP calls, and "shape"
 * comparison (keys and value types, not volatile values like ids and timestamps).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import path from 'node:path';
import WebSocket from 'ws';
import { createSimulator, type Simulator, type SimulatorOptions } from '../src/simulator/server';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type Msg = { type: string; data: any };

export interface Transcript {
  steps: {
    request: { method: string; path: string; body?: any };
    response: { status: number; headers: Record<string, string>; body: any };
  }[];
  ws: Msg[];
  [extra: string]: any;
}

export function transcript(name: string): Transcript {
  return JSON.parse(
    readFileSync(path.join(__dirname, 'fixtures', 'comfyui', `${name}.json`), 'utf8'),
  );
}

export interface HttpResult {
  status: number;
  headers: Headers;
  contentType: string | null;
  text: string;
  json: any;
}

export async function http(
  base: string,
  method: string,
  urlPath: string,
  body?: unknown,
  raw?: string,
): Promise<HttpResult> {
  const res = await fetch(`${base}${urlPath}`, {
    method,
    headers:
      body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : undefined,
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.text();
  const contentType = res.headers.get('content-type');
  return {
    status: res.status,
    headers: res.headers,
    contentType,
    text,
    json: contentType?.startsWith('application/json') ? JSON.parse(text) : undefined,
  };
}

/** A WebSocket client that keeps every message and lets tests await the ones they need. */
export class WsClient {
  readonly messages: Msg[] = [];
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? { type: 'binary', data: null } : JSON.parse(data.toString()));
      for (const w of this.waiters) w();
    });
    ws.on('close', () => {
      this.closed = true;
      for (const w of this.waiters) w();
    });
  }

  /** Connects to /ws (or /api/ws) and waits for the connect-time `status`. */
  static async connect(base: string, clientId?: string, wsPath = '/ws'): Promise<WsClient> {
    const q = clientId === undefined ? '' : `?clientId=${encodeURIComponent(clientId)}`;
    const ws = new WebSocket(`${base.replace('http', 'ws')}${wsPath}${q}`);
    const client = new WsClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await client.until((m) => m.type === 'status', 'the connect-time status');
    return client;
  }

  /** Resolves with the first message (already received or future) that matches. */
  until(match: (m: Msg) => boolean, what: string, timeoutMs = 15_000): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.messages.find(match);
        if (m) return finish(() => resolve(m));
        if (this.closed) finish(() => reject(new Error(`socket closed before ${what}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`timed out waiting for ${what}`))),
        timeoutMs,
      );
      const finish = (f: () => void) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        f();
      };
      this.waiters.push(check);
      check();
    });
  }

  /** Waits for the end marker of a prompt: `executing` with node null and its prompt_id. */
  done(promptId: string, count = 1): Promise<Msg> {
    return this.until(
      () => this.messages.filter((m) => isDone(m, promptId)).length >= count,
      `executing{node:null} #${count} of ${promptId}`,
    ).then(() => this.messages.filter((m) => isDone(m, promptId))[count - 1]);
  }

  /** Resolves when the server has closed the socket. */
  async waitClosed(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const closed = new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
    this.ws.close();
    await closed;
  }
}

/**
 * A fresh simulator for each test of the file (`options` as createSimulator takes them),
 * handed to `use` before the test; after it, every socket `connect` opened is closed, then
 * the simulator.
 */
export function simulatorPerTest(options: SimulatorOptions, use: (sim: Simulator) => void) {
  let sim: Simulator;
  const sockets: WsClient[] = [];
  beforeEach(async () => {
    sim = await createSimulator(options);
    use(sim);
  });
  afterEach(async () => {
    await Promise.all(sockets.splice(0).map((s) => s.close()));
    await sim.close();
  });
  return {
    /** a WebSocket client of the test's simulator, closed after the test */
    async connect(clientId?: string, wsPath?: string): Promise<WsClient> {
      const ws = await WsClient.connect(sim.url, clientId, wsPath);
      sockets.push(ws);
      return ws;
    },
  };
}

export const isDone = (m: Msg, promptId: string) =>
  m.type === 'executing' && m.data.node === null && m.data.prompt_id === promptId;

/** The type structure of a JSON value: same keys and value kinds, any values. */
export function shape(v: unknown): unknown {
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.map(shape);
  if (typeof v === 'object')
    return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, shape(x)]));
  return typeof v;
}

/**
 * Message types in order, where each `progress_state` + `progress` pair is a `tick` and a run
 * of ticks counts once (their number depends on timing).
 */
export function typeSequence(messages: Msg[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].type === 'progress_state' && messages[i + 1]?.type === 'progress') {
      if (out.at(-1) !== 'tick') out.push('tick');
      i++;
      continue;
    }
    out.push(messages[i].type);
  }
  return out;
}

/** The messages of one prompt (plus the status broadcasts in between), from its execution_start. */
export function promptMessages(messages: Msg[], promptId: string): Msg[] {
  const start = messages.findIndex(
    (m) => m.type === 'execution_start' && m.data.prompt_id === promptId,
  );
  const end = messages.findIndex((m, i) => i > start && isDone(m, promptId));
  return messages.slice(start, end + 1);
}

export const newId = () => randomUUID();

/** A request body from a transcript step with fresh ids (and optional changes to the graph). */
export function bodyFrom(
  t: Transcript,
  step: number,
  ids: { client_id?: string; prompt_id?: string },
  edit?: (prompt: any) => void,
): any {
  const body = structuredClone(t.steps[step].request.body);
  Object.assign(body, ids);
  edit?.(body.prompt);
  return body;
}

/** POSTs step 0 of transcript `name` for `clientId` with a fresh prompt id. */
export async function postTranscript(
  base: string,
  name: string,
  clientId: string,
): Promise<{ id: string; post: HttpResult }> {
  const id = newId();
  const post = await http(
    base,
    'POST',
    '/prompt',
    bodyFrom(transcript(name), 0, { client_id: clientId, prompt_id: id }),
  );
  return { id, post };
}

export interface UploadOptions {
  name?: string;
  overwrite?: string;
  subfolder?: string;
  type?: string;
}

/** POST /upload/image with a multipart form, as ComfyUI's front end sends it. */
export async function uploadTo(base: string, bytes: Buffer | string, opts: UploadOptions = {}) {
  const form = new FormData();
  form.append('image', new Blob([bytes], { type: 'image/png' }), opts.name ?? 'probe.png');
  for (const key of ['overwrite', 'subfolder', 'type'] as const) {
    const value = opts[key];
    if (value !== undefined) form.append(key, value);
  }
  const res = await fetch(`${base}/upload/image`, { method: 'POST', body: form });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), text };
}

/** GET /view on a fresh connection (a simulator restart drops pooled ones). */
export const viewFrom = (base: string, query: string) =>
  new Promise<{ status: number; type: string | undefined; body: Buffer }>((resolve, reject) => {
    get(`${base}/view?${query}`, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          type: res.headers['content-type'],
          body: Buffer.concat(chunks),
        }),
      );
      res.on('error', reject);
    }).on('error', reject);
  });

/** POSTs a prompt for `ws`'s client, expects 200 and waits for its end marker. */
export async function postAndWait(
  base: string,
  ws: WsClient,
  clientId: string,
  prompt: object,
  promptId = newId(),
): Promise<string> {
  const post = await http(base, 'POST', '/prompt', {
    prompt,
    client_id: clientId,
    prompt_id: promptId,
  });
  if (post.status !== 200) throw new Error(`POST /prompt answered ${post.status}: ${post.text}`);
  await ws.done(promptId);
  return promptId;
}
