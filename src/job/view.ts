import { z } from 'zod';
import { compareNodeIds } from '../comfy/protocol';
import { ERROR_CODES } from '../errors';
import { isRetryRequested, type JobOutput, type JobState } from './state';
import type { ImageJob } from '../queue';
import { JobProgressSchema, type JobProgress } from './progress';
import { isTerminalStatus, PUBLIC_STATUSES, type PublicStatus } from './status';
import type { JobData } from './data';

/**
 * The one mapping from what Redis holds about a job (BullMQ's state, our JobState, the
 * failed reason, the cancel mark) to the public job view and status (DESIGN "HTTP API").
 * Pure: no Redis here, so every case is unit-tested.
 */

const iso = z.iso.datetime();
export const JobViewSchema = z.strictObject({
  id: z.string(),
  status: z.enum(PUBLIC_STATUSES),
  jobType: z.string(),
  userId: z.string().nullable(),
  createdAt: iso,
  startedAt: iso.optional(),
  finishedAt: iso.optional(),
  promptId: z.string().optional(),
  progress: JobProgressSchema,
  outputs: z
    .array(
      z.strictObject({
        nodeId: z.string(),
        filename: z.string(),
        subfolder: z.string(),
        type: z.string(),
        contentType: z.string().optional(),
        size: z.int().min(0).optional().describe('bytes'),
        url: z.string().describe('/v1/jobs/{id}/outputs/{n}, absolute when PUBLIC_URL is set'),
        downloadUrl: z
          .string()
          .optional()
          .describe('with s3:// storage: a presigned URL valid OUTPUT_URL_TTL_S seconds'),
      }),
    )
    .optional(),
  inputs: z
    .array(
      z.strictObject({
        name: z.string(),
        size: z.int().min(0).optional().describe('bytes (a URL input: once fetched)'),
        sha256: z.string().optional(),
      }),
    )
    .optional(),
  error: z
    .strictObject({
      code: z.string().describe(`one of ${ERROR_CODES.join(', ')}, or internal_error`),
      message: z.string(),
      nodeId: z.string().optional(),
      nodeType: z.string().optional(),
    })
    .optional(),
  attempts: z.int().min(0).describe('times a worker started the job'),
  recoveries: z.int().min(0).describe('resumptions after a crash or a hand-off'),
  metadata: z.record(z.string(), z.unknown()).optional(),
  links: z
    .strictObject({ self: z.string(), events: z.string() })
    .optional()
    .describe('with API keys: `events` is a signed, expiring link (no key needed)'),
});
export type JobView = z.infer<typeof JobViewSchema>;
export type JobViewError = NonNullable<JobView['error']>;

/** BullMQ's job states as `job.getState()` names them. */
export type BullState =
  'waiting' | 'delayed' | 'prioritized' | 'waiting-children' | 'active' | 'completed' | 'failed';

/** Everything the view is made from, as read from Redis. */
export interface JobSnapshot {
  id: string;
  bullState: BullState;
  /** job.data: normally JobData, but read defensively (older versions, corruption) */
  data: unknown;
  progress: unknown;
  returnvalue: unknown;
  failedReason?: string;
  /** BullMQ's job.timestamp / processedOn / finishedOn (epoch ms) */
  timestamp: number;
  processedOn?: number;
  finishedOn?: number;
  attemptsStarted?: number;
  /** the `cancelRequested` field of the job hash (ISO time), if a cancel was requested */
  cancelRequestedAt?: string;
  /** jobs ahead in BullMQ's queue, for waiting/prioritized jobs */
  queuePosition?: number;
}

/**
 * The snapshot of a job from its raw Redis hash (HGETALL), read exactly as BullMQ's
 * `getJob` (`rawToJobJson` + `Job.fromJSON`) reads the fields the view uses, so it equals
 * `snapshotOf(await queue.getJob(id), state)` and the cancel mark comes from the same read.
 * Corrupted `data` or `progress` JSON throws, as `getJob` does; a corrupted return value
 * reads as undefined. The caller adds the position.
 */
export function snapshotFromHash(
  id: string,
  bullState: BullState,
  raw: Record<string, string>,
  cancelField: string,
): JobSnapshot {
  const int = (v: string | undefined) => parseInt(v as string);
  const s: JobSnapshot = {
    id: raw.id || id,
    bullState,
    data: JSON.parse(raw.data || '{}'),
    progress: JSON.parse(raw.progress || '0') ?? 0,
    returnvalue: typeof raw.returnvalue === 'string' ? parseOrUndefined(raw.returnvalue) : null,
    failedReason: raw.failedReason || undefined,
    timestamp: int(raw.timestamp),
    // BullMQ keeps only truthy times (an absent, empty, 0 or NaN one stays unset)
    processedOn: int(raw.processedOn) || undefined,
    finishedOn: int(raw.finishedOn) || undefined,
    attemptsStarted: int(raw.ats || '0'),
  };
  const mark = raw[cancelField];
  if (mark !== undefined) s.cancelRequestedAt = mark;
  return s;
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The snapshot of a BullMQ job in `bullState`; the caller adds the cancel mark and position. */
export function snapshotOf(job: ImageJob, bullState: BullState): JobSnapshot {
  return {
    id: job.id!,
    bullState,
    data: job.data,
    progress: job.progress,
    returnvalue: job.returnvalue,
    failedReason: job.failedReason || undefined,
    timestamp: job.timestamp,
    processedOn: job.processedOn,
    finishedOn: job.finishedOn,
    attemptsStarted: job.attemptsStarted,
  };
}

const STALLED_REASON = /stalled more than allowable limit/i;
const CODED_REASON = /^([a-z_]+): ([\s\S]*)$/;

/** A failure's public error when the JobState has none (the worker died before saving it). */
export function errorFromFailedReason(reason: string | undefined): JobViewError {
  const text = reason ?? 'the job failed without a reason';
  const m = CODED_REASON.exec(text);
  if (m && (ERROR_CODES as readonly string[]).includes(m[1])) return { code: m[1], message: m[2] };
  if (STALLED_REASON.test(text)) return { code: 'stalled', message: text };
  return { code: 'internal_error', message: text };
}

function stateOf(data: unknown): Partial<JobState> {
  const s = (data as Partial<JobData> | null)?.state;
  return s && typeof s === 'object' ? s : {};
}

/** The public status, from BullMQ's state, the JobState, the failed reason and the cancel mark. */
export function publicStatus(s: JobSnapshot): PublicStatus {
  const state = stateOf(s.data);
  if (s.bullState === 'completed') return 'completed';
  if (s.bullState === 'failed') {
    const code = state.error?.code ?? errorFromFailedReason(s.failedReason).code;
    return state.status === 'cancelled' || code === 'cancelled' ? 'cancelled' : 'failed';
  }
  // a failed job retried on request, before its new generation's first write
  if (isRetryRequested(state, s.failedReason)) return 'queued';
  // the worker saved an outcome but BullMQ has not moved the job yet
  if (state.status === 'completed' || state.status === 'failed' || state.status === 'cancelled') {
    return state.status;
  }
  if (s.cancelRequestedAt !== undefined) return 'cancelled';
  if (s.bullState === 'active') {
    if (state.status === 'running') return 'running';
    if (state.status === 'submitting' || state.status === 'submitted') return 'submitted';
  }
  return 'queued';
}

const isoTime = (ms: number | undefined) =>
  ms !== undefined && Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;

/** The stored output entries in view order (index n is `/outputs/n`). */
export function outputsOf(s: JobSnapshot): JobOutput[] | undefined {
  const outputs = (s.returnvalue as { outputs?: JobOutput[] } | null)?.outputs;
  if (!Array.isArray(outputs)) return undefined;
  // node-id order; Array.prototype.sort is stable, so file order within a node stays
  return [...outputs].sort((a, b) => compareNodeIds(String(a.nodeId), String(b.nodeId)));
}

function progressOf(s: JobSnapshot, status: PublicStatus): JobView['progress'] {
  const raw = s.progress;
  const p: Partial<JobProgress> =
    typeof raw === 'number' ? { percent: raw } : raw && typeof raw === 'object' ? raw : {};
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const percent = status === 'completed' ? 100 : Math.min(100, Math.max(0, num(p.percent) ?? 0));
  const view: JobView['progress'] = { percent };
  if (num(p.value) !== undefined) view.value = num(p.value);
  if (num(p.max) !== undefined) view.max = num(p.max);
  if (typeof p.node === 'string') view.node = p.node;
  if (status === 'queued' && s.queuePosition !== undefined) view.queuePosition = s.queuePosition;
  else if (status === 'submitted' && num(p.queuePosition) !== undefined) {
    view.queuePosition = num(p.queuePosition);
  }
  return view;
}

/** Where the jobs resource lives; with PUBLIC_URL in front, output URLs are absolute. */
export const JOBS_BASE = '/v1/jobs';

/**
 * The public job view (DESIGN "GET /v1/jobs/:id"); `base` is the jobs URL prefix
 * (`${PUBLIC_URL}/v1/jobs` in the API's answers and in webhook payloads alike).
 */
export function toJobView(s: JobSnapshot, base = JOBS_BASE): JobView {
  const data = (s.data ?? {}) as Partial<JobData>;
  const request = data.request ?? { jobType: 'unknown' };
  const state = stateOf(s.data);
  const status = publicStatus(s);
  const view: JobView = {
    id: s.id,
    status,
    jobType: typeof request.jobType === 'string' ? request.jobType : 'unknown',
    userId: typeof request.userId === 'string' ? request.userId : null,
    createdAt: isoTime(state.createdAt ?? s.timestamp) ?? new Date(0).toISOString(),
    progress: progressOf(s, status),
    // the JobState's count: BullMQ's attemptsStarted also counts takes that found no free
    // ComfyUI slot; it stands in only for data without a state (invalid_job_data)
    attempts: state.attempts ?? s.attemptsStarted ?? 0,
    recoveries: state.recoveries ?? 0,
  };
  const startedAt = isoTime(state.startedAt ?? s.processedOn);
  if (startedAt) view.startedAt = startedAt;
  if (state.promptId) view.promptId = state.promptId;

  if (isTerminalStatus(status)) {
    const finished = isoTime(state.finishedAt ?? s.finishedOn);
    const cancelAt = s.cancelRequestedAt && !Number.isNaN(Date.parse(s.cancelRequestedAt));
    if (finished) view.finishedAt = finished;
    else if (cancelAt) view.finishedAt = new Date(s.cancelRequestedAt!).toISOString();
  }
  if (status === 'completed') {
    const outputs = outputsOf(s);
    if (outputs) {
      view.outputs = outputs.map((o, n) => ({
        nodeId: String(o.nodeId),
        filename: String(o.filename),
        subfolder: String(o.subfolder ?? ''),
        type: String(o.type),
        ...(typeof o.contentType === 'string' ? { contentType: o.contentType } : {}),
        ...(typeof o.size === 'number' ? { size: o.size } : {}),
        url: `${base}/${encodeURIComponent(s.id)}/outputs/${n}`,
      }));
    }
  } else if (status === 'failed' || status === 'cancelled') {
    view.error = errorOf(s, state, status);
  }
  if (Array.isArray(data.inputs)) {
    view.inputs = data.inputs.map((i) => ({
      name: String(i.name),
      ...(typeof i.size === 'number' ? { size: i.size } : {}),
      ...(typeof i.sha256 === 'string' ? { sha256: i.sha256 } : {}),
    }));
  }
  if (request.metadata && typeof request.metadata === 'object') view.metadata = request.metadata;
  return view;
}

function errorOf(s: JobSnapshot, state: Partial<JobState>, status: PublicStatus): JobViewError {
  const e = state.error;
  if (e && typeof e.code === 'string') {
    const out: JobViewError = { code: e.code, message: String(e.message ?? '') };
    if (e.nodeId !== undefined) out.nodeId = String(e.nodeId);
    if (e.nodeType !== undefined) out.nodeType = String(e.nodeType);
    return out;
  }
  if (s.bullState === 'failed') {
    const fromReason = errorFromFailedReason(s.failedReason);
    if (status === 'cancelled') return { code: 'cancelled', message: fromReason.message };
    return fromReason;
  }
  return { code: 'cancelled', message: 'cancelled by request' };
}
