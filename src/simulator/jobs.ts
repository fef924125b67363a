/**
 * The unified jobs API of ComfyUI after 0.3.64 (comfyui-api.md §5, §13; shapes from
 * `comfy_execution/jobs.py`): `GET /api/jobs`, `GET /api/jobs/{id}` and
 * `POST /api/jobs/{id}/cancel`. Served only when the simulator plays `current`.
 */
import type { Reply } from './api';
import type { ComfyInstance } from './instance';
import { isObject, type Json, type JsonObject } from './json';
import type { HistoryEntry, QueueItem } from './queue';

type JobStatus = 'pending' | 'in_progress' | 'completed' | 'failed' | 'cancelled';
const STATUSES: JobStatus[] = ['pending', 'in_progress', 'completed', 'failed', 'cancelled'];

const json = (body: unknown, status = 200): Reply => ({ kind: 'json', status, body });

/** `prune_dict`: keys whose value is undefined or null are left out. */
function prune(o: Record<string, unknown>): JsonObject {
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== undefined && v !== null),
  ) as JsonObject;
}

function createTime(extraData: Json): Json | undefined {
  return isObject(extraData) ? extraData.create_time : undefined;
}

function fromQueue(item: QueueItem, status: JobStatus): JsonObject {
  const [priority, id, , extraData] = item;
  return prune({
    id,
    status,
    priority,
    create_time: createTime(extraData),
    outputs_count: 0,
  });
}

function historyStatus(entry: HistoryEntry): JobStatus {
  if (entry.status.status_str !== 'error') return 'completed';
  const interrupted = entry.status.messages.some(([event]) => event === 'execution_interrupted');
  return interrupted ? 'cancelled' : 'failed';
}

function fromHistory(id: string, entry: HistoryEntry, full: boolean): JsonObject {
  const [priority, , prompt, extraData] = entry.prompt;
  let start: Json | undefined;
  let end: Json | undefined;
  let error: JsonObject | undefined;
  for (const [event, data] of entry.status.messages) {
    if (event === 'execution_start') start = data.timestamp;
    if (['execution_success', 'execution_error', 'execution_interrupted'].includes(event))
      end = data.timestamp;
    if (event === 'execution_error') error = data;
  }
  let outputsCount = 0;
  for (const node of Object.values(entry.outputs)) {
    if (!isObject(node)) continue;
    for (const [kind, items] of Object.entries(node))
      if (kind !== 'animated' && Array.isArray(items)) outputsCount += items.length;
  }
  const job = prune({
    id,
    status: historyStatus(entry),
    priority,
    create_time: createTime(extraData),
    execution_start_time: start,
    execution_end_time: end,
    execution_error: error,
    outputs_count: outputsCount,
  });
  if (!full) return job;
  return {
    ...job,
    outputs: entry.outputs,
    execution_status: entry.status as unknown as JsonObject,
    workflow: { prompt, extra_data: extraData },
  };
}

/** `GET /api/jobs/{id}`: history first, then running, then pending; else 404. */
export function getJob(inst: ComfyInstance, id: string): Reply {
  const entry = inst.queue.getHistory({ promptId: id }).get(id);
  if (entry) return json(fromHistory(id, entry, true));
  const [running, pending] = inst.queue.current();
  const r = running.find((i) => i[1] === id);
  if (r) return json(fromQueue(r, 'in_progress'));
  const p = pending.find((i) => i[1] === id);
  if (p) return json(fromQueue(p, 'pending'));
  return json({ error: 'Job not found' }, 404);
}

/** `GET /api/jobs?status=&limit=&offset=&sort_order=`: newest first by default. */
export function listJobs(inst: ComfyInstance, query: URLSearchParams): Reply {
  const wanted = (query.get('status') ?? STATUSES.join(',')).split(',').map((s) => s.trim());
  if (wanted.some((s) => !STATUSES.includes(s as JobStatus)))
    return json({ error: `Invalid status filter: ${query.get('status')}` }, 400);
  const int = (name: string) => (query.has(name) ? Number(query.get(name)) : undefined);
  const limit = int('limit');
  const offset = int('offset') ?? 0;
  if ((limit !== undefined && !(Number.isInteger(limit) && limit > 0)) || !(offset >= 0))
    return json({ error: 'limit must be a positive integer and offset non-negative' }, 400);
  const [running, pending] = inst.queue.current();
  const all = [
    ...running.map((i) => fromQueue(i, 'in_progress')),
    ...pending.map((i) => fromQueue(i, 'pending')),
    ...[...inst.queue.getHistory()].map(([id, e]) => fromHistory(id, e, false)),
  ].filter((j) => wanted.includes(String(j.status)));
  const key = (j: JsonObject) => Number(j.create_time ?? 0);
  all.sort((a, b) => (query.get('sort_order') === 'asc' ? key(a) - key(b) : key(b) - key(a)));
  const page = all.slice(offset, limit === undefined ? undefined : offset + limit);
  return json({
    jobs: page,
    pagination: {
      offset,
      limit: limit ?? null,
      total: all.length,
      has_more: offset + page.length < all.length,
    },
  });
}

/**
 * `POST /api/jobs/{id}/cancel`: dequeues a pending prompt, interrupts a running one (the
 * check and the interrupt are one step), a no-op for finished or unknown ids.
 */
export function cancelJob(inst: ComfyInstance, id: string): Reply {
  if (inst.queue.isRunning(id)) {
    inst.interrupt(id);
    return json({ cancelled: true });
  }
  return json({ cancelled: inst.queue.deleteQueueItem((item) => item[1] === id) });
}
