/**
 * `PromptQueue` of ComfyUI 0.3.64 (execution.py): a Python `heapq` of
 * `[number, prompt_id, prompt, extra_data, outputs_to_execute]`, the running map, and the
 * in-memory history (insertion ordered, capped at 10000). Every queue change calls
 * `onUpdated` (the `status` broadcast), exactly where Python calls `queue_updated()`.
 */
import { deepCopy, isObject, PyFloat, type Json, type JsonObject } from './json';

export type QueueItem = [
  number: number | PyFloat,
  promptId: string,
  prompt: Json,
  extraData: Json,
  outputs: string[],
];

export interface HistoryStatus {
  status_str: 'success' | 'error';
  completed: boolean;
  messages: [string, JsonObject][];
}

export interface HistoryEntry {
  prompt: QueueItem;
  outputs: JsonObject;
  status: HistoryStatus;
  meta: JsonObject;
}

export const MAXIMUM_HISTORY_SIZE = 10000;
const SENSITIVE_EXTRA_DATA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];

const num = (n: number | PyFloat) => (n instanceof PyFloat ? n.value : n);

/** Tuple `<`: by number, then prompt id (Python would raise on an equal pair; we say "no"). */
function less(a: QueueItem, b: QueueItem): boolean {
  if (num(a[0]) !== num(b[0])) return num(a[0]) < num(b[0]);
  return a[1] < b[1];
}

/** heapq._siftdown */
function siftDown(heap: QueueItem[], start: number, pos: number): void {
  const item = heap[pos];
  while (pos > start) {
    const parent = (pos - 1) >> 1;
    if (!less(item, heap[parent])) break;
    heap[pos] = heap[parent];
    pos = parent;
  }
  heap[pos] = item;
}

/** heapq._siftup */
function siftUp(heap: QueueItem[], pos: number): void {
  const end = heap.length;
  const start = pos;
  const item = heap[pos];
  let child = 2 * pos + 1;
  while (child < end) {
    const right = child + 1;
    if (right < end && !less(heap[child], heap[right])) child = right;
    heap[pos] = heap[child];
    pos = child;
    child = 2 * pos + 1;
  }
  heap[pos] = item;
  siftDown(heap, start, pos);
}

export class PromptQueue {
  private heap: QueueItem[] = [];
  private readonly running = new Map<number, QueueItem>();
  private taskCounter = 0;
  private readonly history = new Map<string, HistoryEntry>();

  constructor(private readonly onUpdated: () => void) {}

  put(item: QueueItem): void {
    this.heap.push(item);
    siftDown(this.heap, 0, this.heap.length - 1);
    this.onUpdated();
  }

  /** Takes the next prompt (heappop) and marks it running; undefined when empty. */
  get(): [item: QueueItem, taskId: number] | undefined {
    if (this.heap.length === 0) return undefined;
    const last = this.heap.pop()!;
    let item = last;
    if (this.heap.length > 0) {
      item = this.heap[0];
      this.heap[0] = last;
      siftUp(this.heap, 0);
    }
    const id = this.taskCounter++;
    this.running.set(id, deepCopy(item));
    this.onUpdated();
    return [item, id];
  }

  taskDone(
    taskId: number,
    result: { outputs: JsonObject; meta: JsonObject },
    status: HistoryStatus,
  ): void {
    const prompt = this.running.get(taskId)!;
    this.running.delete(taskId);
    if (this.history.size > MAXIMUM_HISTORY_SIZE)
      this.history.delete(this.history.keys().next().value!);
    if (isObject(prompt[3])) for (const k of SENSITIVE_EXTRA_DATA_KEYS) delete prompt[3][k];
    // Map.set on an existing key keeps its place, like re-assigning a Python dict key.
    this.history.set(prompt[1], {
      prompt,
      outputs: result.outputs,
      status: deepCopy(status),
      meta: result.meta,
    });
    this.onUpdated();
  }

  /** `get_current_queue`: [running items, raw heap copy (not sorted by run order)]. */
  current(): [running: QueueItem[], pending: QueueItem[]] {
    return [[...this.running.values()], [...this.heap]];
  }

  tasksRemaining(): number {
    return this.heap.length + this.running.size;
  }

  isRunning(promptId: unknown): boolean {
    return [...this.running.values()].some((item) => item[1] === promptId);
  }

  /** Every prompt id pending, running or in history. */
  knownIds(): string[] {
    return [...this.running.values(), ...this.heap]
      .map((i) => i[1])
      .concat([...this.history.keys()]);
  }

  /** Whether the id is pending, running or in history (the newest server's 409 check). */
  knows(promptId: string): boolean {
    return (
      this.history.has(promptId) ||
      this.isRunning(promptId) ||
      this.heap.some((i) => i[1] === promptId)
    );
  }

  wipeQueue(): void {
    this.heap = [];
    this.onUpdated();
  }

  /** Deletes the first pending item matching; deleting the last one wipes (two updates). */
  deleteQueueItem(match: (item: QueueItem) => boolean): boolean {
    const i = this.heap.findIndex(match);
    if (i < 0) return false;
    if (this.heap.length === 1) {
      this.wipeQueue();
    } else {
      this.heap.splice(i, 1);
      for (let k = (this.heap.length >> 1) - 1; k >= 0; k--) siftUp(this.heap, k);
    }
    this.onUpdated();
    return true;
  }

  /** `get_history(prompt_id, max_items, offset)`. */
  getHistory(
    opts: { promptId?: string; maxItems?: number; offset?: number } = {},
  ): Map<string, HistoryEntry> {
    if (opts.promptId !== undefined) {
      const e = this.history.get(opts.promptId);
      return new Map(e ? [[opts.promptId, e]] : []);
    }
    const out = new Map<string, HistoryEntry>();
    const max = opts.maxItems;
    let offset = opts.offset ?? -1;
    if (offset < 0 && max !== undefined) offset = this.history.size - max;
    let i = 0;
    for (const [k, v] of this.history) {
      if (i >= offset) {
        out.set(k, v);
        if (max !== undefined && out.size >= max) break;
      }
      i++;
    }
    return out;
  }

  wipeHistory(): void {
    this.history.clear();
  }

  deleteHistoryItem(promptId: string): void {
    this.history.delete(promptId);
  }
}
