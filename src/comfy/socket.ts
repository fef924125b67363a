import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import type { JobProgress } from '../job/progress';
import type { Logger } from '../logger';

/**
 * One WebSocket to one ComfyUI instance, per worker process (`/ws?clientId=…`). It only
 * gives hints: live progress and an early wake-up when a prompt changes state. Polling of
 * /queue and /history stays the source of truth, because ComfyUI replays nothing after a
 * reconnect and can silently drop a socket (comfyui-api.md §7.1).
 *
 * Heartbeat: a ping every `heartbeatMs`; no message or pong for 3 beats → terminate and
 * reconnect. Reconnect backoff doubles from 250 ms up to `maxBackoffMs`. The old socket is
 * always closed before a new one opens (the 0.3.64 same-clientId trap).
 */

/**
 * 'finished': the prompt ended and its history is written; 'changed': anything may have
 * changed (a reconnect, an abort), poll; 'progress': it started or ticked.
 */
export type WakeReason = 'finished' | 'changed' | 'progress' | 'timeout';
const RANK: Record<WakeReason, number> = { timeout: 0, progress: 1, changed: 2, finished: 3 };

interface Tracked {
  nodeCount: number;
  /** node → the nodes its inputs link to (known for a prompt followed from mid-run) */
  inputs?: Record<string, string[]>;
  /** nodes seen starting (or cached) so far */
  started: Set<string>;
  current?: string;
  value?: number;
  max?: number;
  /** an event that came while nobody waited (during a lookup or a write): the next wait returns it */
  pending?: Exclude<WakeReason, 'timeout'>;
}

export interface ComfySocketOptions {
  baseUrl: string;
  clientId: string;
  log: Logger;
  heartbeatMs?: number;
  maxBackoffMs?: number;
}

export class ComfySocket {
  private ws?: WebSocket;
  private readonly events = new EventEmitter();
  private readonly tracked = new Map<string, Tracked>();
  private backoffMs = 250;
  private closed = false;
  private lastSeen = 0;
  private heartbeat?: NodeJS.Timeout;
  private reconnectTimer?: NodeJS.Timeout;
  private readonly heartbeatMs: number;
  private readonly maxBackoffMs: number;
  /** `exec_info.queue_remaining` of the last `status` message (sent to every socket) */
  private remaining?: number;

  constructor(private readonly opts: ComfySocketOptions) {
    this.heartbeatMs = opts.heartbeatMs ?? 10_000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10_000;
    this.events.setMaxListeners(0);
    this.connect();
  }

  /** true while the socket is open and has answered recently */
  get healthy(): boolean {
    return (
      this.ws?.readyState === WebSocket.OPEN && Date.now() - this.lastSeen < 3 * this.heartbeatMs
    );
  }

  /** ComfyUI's prompts (running + pending) as its last `status` said; undefined unless healthy. */
  queueRemaining(): number | undefined {
    return this.healthy ? this.remaining : undefined;
  }

  /**
   * Follows a prompt's events. `inputs` (node → the nodes it takes inputs from) is for a
   * prompt followed from mid-run (a hand-off): ComfyUI runs a node only after its inputs,
   * so a running node's ancestors count as done, although this socket never heard them
   * (cached ones are announced once, at the start, and never appear in `progress_state`).
   */
  track(promptId: string, nodeCount: number, inputs?: Record<string, string[]>): void {
    const t = this.tracked.get(promptId);
    if (t) t.inputs ??= inputs;
    else
      this.tracked.set(promptId, { nodeCount: Math.max(1, nodeCount), started: new Set(), inputs });
  }

  forget(promptId: string): void {
    this.tracked.delete(promptId);
  }

  progress(promptId: string): JobProgress | undefined {
    const t = this.tracked.get(promptId);
    if (!t || t.started.size === 0) return undefined;
    const frac = t.max ? Math.min(1, (t.value ?? 0) / t.max) : 0;
    const done = Math.max(0, t.started.size - 1) + frac;
    const percent = Math.min(99, Math.floor((100 * done) / t.nodeCount));
    return { percent, value: t.value, max: t.max, node: t.current };
  }

  /** Resolves at the next event for this prompt, after `ms`, or when `signal` aborts. */
  wait(promptId: string, ms: number, signal: AbortSignal): Promise<WakeReason> {
    const t = this.tracked.get(promptId);
    if (t?.pending) {
      const reason = t.pending;
      t.pending = undefined;
      return Promise.resolve(reason);
    }
    return new Promise((resolve) => {
      if (signal.aborted) return resolve('changed');
      const finish = (reason: WakeReason) => {
        clearTimeout(timer);
        this.events.off(promptId, finish);
        signal.removeEventListener('abort', onAbort);
        if (t && reason !== 'timeout') t.pending = undefined;
        resolve(reason);
      };
      const onAbort = () => finish('changed');
      const timer = setTimeout(() => finish('timeout'), ms);
      this.events.on(promptId, finish);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** wakes the prompt's waiter, or keeps the event for its next wait (the strongest wins) */
  private wake(promptId: string, reason: Exclude<WakeReason, 'timeout'>): void {
    const t = this.tracked.get(promptId);
    if (t && RANK[reason] > RANK[t.pending ?? 'timeout']) t.pending = reason;
    this.events.emit(promptId, reason);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.heartbeat);
    this.ws?.terminate();
    this.events.removeAllListeners();
  }

  private connect(): void {
    if (this.closed) return;
    const url = `${this.opts.baseUrl.replace(/^http/, 'ws')}/ws?clientId=${encodeURIComponent(this.opts.clientId)}`;
    const ws = new WebSocket(url, { handshakeTimeout: 5_000 });
    this.ws = ws;
    ws.on('open', () => {
      this.lastSeen = Date.now();
      this.backoffMs = 250;
      this.opts.log.debug({ comfyui: this.opts.baseUrl }, 'ComfyUI WebSocket connected');
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => {
        if (Date.now() - this.lastSeen > 3 * this.heartbeatMs) {
          this.opts.log.warn(
            { comfyui: this.opts.baseUrl },
            'ComfyUI WebSocket silent: reconnecting',
          );
          ws.terminate();
          return;
        }
        ws.ping();
      }, this.heartbeatMs);
      this.heartbeat.unref();
      // nothing is replayed after a (re)connect: wake every follower so it re-syncs by polling
      for (const id of this.tracked.keys()) this.wake(id, 'changed');
    });
    ws.on('pong', () => (this.lastSeen = Date.now()));
    ws.on('message', (raw, isBinary) => {
      this.lastSeen = Date.now();
      if (!isBinary) this.onMessage(raw.toString());
    });
    ws.on('error', (err) =>
      this.opts.log.debug(
        { comfyui: this.opts.baseUrl, err: err.message },
        'ComfyUI WebSocket error',
      ),
    );
    ws.on('close', () => {
      clearInterval(this.heartbeat);
      if (this.ws === ws) this.ws = undefined;
      if (this.closed) return;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs * 2);
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
      this.reconnectTimer.unref();
    });
  }

  private onStatus(data: Record<string, unknown>): void {
    const info = (data.status as { exec_info?: { queue_remaining?: unknown } } | undefined)
      ?.exec_info?.queue_remaining;
    if (typeof info === 'number') this.remaining = info;
  }

  private onProgressState(t: Tracked, nodes: unknown): void {
    if (!nodes || typeof nodes !== 'object') return;
    for (const [id, n] of Object.entries(nodes as Record<string, { state?: unknown }>)) {
      if (n?.state !== 'running' && n?.state !== 'finished') continue;
      if (!t.started.has(id) && n.state === 'running') t.current = id;
      start(t, id);
    }
  }

  private onMessage(text: string): void {
    let msg: { type?: unknown; data?: Record<string, unknown> };
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    const data = msg.data ?? {};
    if (msg.type === 'status') return this.onStatus(data);
    const promptId = typeof data.prompt_id === 'string' ? data.prompt_id : undefined;
    if (!promptId) return; // the reconnect `executing` without prompt id
    const t = this.tracked.get(promptId);
    if (!t) return;
    switch (msg.type) {
      case 'progress_state':
        // every node started so far: a socket opened mid-prompt (a hand-off) counts them too
        this.onProgressState(t, data.nodes);
        return;
      case 'execution_cached':
        for (const n of Array.isArray(data.nodes) ? data.nodes : []) t.started.add(String(n));
        this.wake(promptId, 'progress');
        return;
      case 'executing':
        if (data.node === null || data.node === undefined) {
          this.wake(promptId, 'finished'); // history is written: read it now
          return;
        }
        t.current = String(data.node);
        start(t, t.current);
        t.value = undefined;
        t.max = undefined;
        this.wake(promptId, 'progress');
        return;
      case 'progress':
        t.value = Number(data.value);
        t.max = Number(data.max);
        if (typeof data.node === 'string') {
          t.current = data.node;
          start(t, data.node);
        }
        this.wake(promptId, 'progress');
        return;
      case 'execution_start':
        this.wake(promptId, 'progress'); // pending → running, no need to poll
        return;
      default:
        // execution_success/_error/_interrupted come before history is written; the
        // `executing` with a null node that follows them is the signal to poll.
        // progress_state, executed and custom types: nothing the follower needs.
        return;
    }
  }
}

/** A node started (or finished): it, and every node it depends on (they ran or were cached). */
function start(t: Tracked, node: string): void {
  const todo = [node];
  for (let id = todo.pop(); id !== undefined; id = todo.pop()) {
    if (t.started.has(id) && id !== node) continue;
    t.started.add(id);
    for (const up of t.inputs?.[id] ?? []) if (!t.started.has(up)) todo.push(up);
  }
}
