/**
 * One "ComfyUI process": its queue, history, WebSocket sessions, node cache, `number`
 * counter and prompt worker. A restart throws the instance away and starts a new one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Catalog } from './catalog';
import { PromptExecutor, type ExecState } from './executor';
import type { SimFolders } from './files';
import { isObject, type Json, type JsonObject } from './json';
import type { NodeTiming } from './node-util';
import { pyTruthy } from './py';
import { PromptQueue, type QueueItem } from './queue';
import { SocketHub } from './sockets';

export interface SimLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
}

export interface InstanceDeps {
  catalog: Catalog;
  folders: SimFolders;
  timing: NodeTiming;
  failureRate: number;
  /** Executions per prompt id; shared across restarts. */
  executions: Map<string, number>;
  log: SimLogger;
}

/**
 * Delay between `execution_success` (or the error event) and the history write: in ComfyUI
 * the message is sent before `task_done`, and a client that reads /history right after
 * `execution_success` can find nothing yet. `executing{node:null}` always comes after.
 */
const HISTORY_WRITE_DELAY_MS = 2;

export class ComfyInstance {
  readonly hub: SocketHub;
  readonly queue: PromptQueue;
  readonly state: ExecState = { clientId: null, lastNodeId: null, interrupted: false };
  /** `PromptServer.number`: the next server-assigned queue number. */
  number = 0;
  private readonly abort = new AbortController();
  private readonly executor: PromptExecutor;
  private busy = false;
  private stopped = false;

  constructor(private readonly deps: InstanceDeps) {
    this.hub = new SocketHub({
      queueInfo: () => this.queueInfo(),
      currentNodeFor: (sid) => (this.state.clientId === sid ? this.state.lastNodeId : null),
    });
    this.queue = new PromptQueue(() => this.hub.send('status', { status: this.queueInfo() }, null));
    this.executor = new PromptExecutor({
      catalog: deps.catalog,
      folders: deps.folders,
      timing: deps.timing,
      failureRate: deps.failureRate,
      state: this.state,
      signal: this.abort.signal,
      send: (type, data, sid) => this.hub.send(type, data, sid),
    });
  }

  queueInfo(): JsonObject {
    return { exec_info: { queue_remaining: this.queue.tasksRemaining() } };
  }

  /** `PromptQueue.put` + waking the prompt worker. */
  put(item: QueueItem): void {
    this.queue.put(item);
    if (!this.busy && !this.stopped) setImmediate(() => void this.work());
  }

  /** POST /interrupt: targeted (only if that id is running) or global; cooperative. */
  interrupt(promptId: Json): void {
    if (!pyTruthy(promptId)) {
      this.state.interrupted = true;
    } else if (this.queue.isRunning(promptId)) {
      this.state.interrupted = true;
    } else {
      this.deps.log.info(`Prompt ${String(promptId)} is not currently running, skipping interrupt`);
    }
  }

  /** Stops the worker and drops every socket; nothing of this instance is sent or stored after. */
  dispose(): void {
    this.stopped = true;
    this.abort.abort();
    this.hub.closeAll();
  }

  /** `prompt_worker` (main.py): one prompt at a time, in queue order. */
  private async work(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      while (!this.stopped) {
        const next = this.queue.get();
        if (!next) break;
        await this.runOne(next[0], next[1]);
      }
    } catch (err) {
      if (!this.abort.signal.aborted) {
        // Like an exception escaping ComfyUI's worker thread: the prompt stays "running".
        this.deps.log.warn('simulator prompt worker crashed', err);
        this.stopped = true;
      }
    } finally {
      this.busy = false;
    }
  }

  private async runOne(item: QueueItem, taskId: number): Promise<void> {
    const [, promptId, prompt, extraData, outputs] = item;
    const started = performance.now();
    const { executions } = this.deps;
    executions.set(promptId, (executions.get(promptId) ?? 0) + 1);
    await this.executor.execute(isObject(prompt) ? prompt : {}, promptId, extraData, outputs);
    await sleep(HISTORY_WRITE_DELAY_MS, undefined, { signal: this.abort.signal });
    const ok = this.executor.success;
    this.queue.taskDone(taskId, this.executor.historyResult, {
      status_str: ok ? 'success' : 'error',
      completed: ok,
      messages: this.executor.statusMessages,
    });
    if (this.state.clientId !== null) {
      this.hub.send('executing', { node: null, prompt_id: promptId }, this.state.clientId);
    }
    this.deps.log.info(
      `Prompt executed in ${((performance.now() - started) / 1000).toFixed(2)} seconds`,
    );
  }
}
