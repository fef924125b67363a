import type { ErrorCode } from '../errors';

/**
 * JobState: what the worker knows about one job, persisted in the BullMQ job's data.
 * Every change goes through the pure functions below; the processor persists what they
 * return. None of them touches Redis, so they are unit-tested on their own.
 */

export const INTERNAL_STATUSES = [
  'queued', // not yet taken by a worker
  'submitting', // prompt id chosen and stored, POST /prompt may or may not have arrived
  'submitted', // ComfyUI accepted the prompt (pending in its queue)
  'running', // ComfyUI is executing it
  'completed',
  'failed',
  'cancelled',
] as const;
export type InternalStatus = (typeof INTERNAL_STATUSES)[number];

export interface JobOutput {
  nodeId: string;
  filename: string;
  subfolder: string;
  type: string;
  /** set once the file is copied to storage (DESIGN "Media out") */
  contentType?: string;
  size?: number;
  /** its storage key */
  key?: string;
}

export interface JobError {
  code: ErrorCode;
  message: string;
  nodeId?: string;
  nodeType?: string;
}

export interface JobState {
  status: InternalStatus;
  createdAt: number;
  /** epoch ms of the first take by a worker (the 10-minute cutoff counts from here) */
  startedAt?: number;
  submittedAt?: number;
  finishedAt?: number;
  promptId?: string;
  /** the ComfyUI instance that holds the prompt */
  comfyuiUrl?: string;
  /** the WebSocket client id the prompt was submitted with (its events go only there) */
  clientId?: string;
  /** times a worker started the job */
  attempts: number;
  /** resumptions after a crash or a hand-off */
  recoveries: number;
  /** prompts submitted again because ComfyUI had lost them */
  resubmissions: number;
  /**
   * pending prompts moved to an idle instance (DESIGN "Moving a pending prompt"); absent
   * in data written before moves existed
   */
  moves?: number;
  /**
   * set while the prompt is being moved: the instance it was pending on and the client id
   * it was submitted with there. `comfyuiUrl` is already the new instance; until the prompt
   * is seen there, a worker that resumes the job looks for it here first (and follows it
   * here when it is still here)
   */
  movedFrom?: { url: string; clientId?: string };
  /** BullMQ's stalledCounter as last seen; a higher one at pickup means a crash */
  stallsSeen: number;
  /** epoch ms of the last persisted change (recoveryTime counts from here) */
  updatedAt?: number;
  /** runs of the job: 0 for the first, +1 for each deliberate retry of a failed job */
  generation?: number;
  /** set when a worker handed the job back on shutdown; cleared on the next pickup */
  handedOffAt?: number;
  /** the outputs are not here: they are the job's return value (stored once) */
  error?: JobError;
}

export function initialState(now: number): JobState {
  return {
    status: 'queued',
    createdAt: now,
    attempts: 0,
    recoveries: 0,
    resubmissions: 0,
    stallsSeen: 0,
  };
}

export type PickupKind =
  | { kind: 'fresh' } // no prompt yet: submit
  | { kind: 'resume'; reason: 'stall' | 'handoff' | 'retry' }
  | { kind: 'cutoff'; ageMs: number };

/**
 * Decides what a worker does with a job it has just taken (DESIGN rule 2).
 * `stalledCounter` is BullMQ's count of stalls for this job.
 */
export function classifyPickup(
  s: JobState,
  stalledCounter: number,
  now: number,
  recoveryCutoffMs: number,
): PickupKind {
  if (!s.promptId) return { kind: 'fresh' };
  if (s.handedOffAt !== undefined) return { kind: 'resume', reason: 'handoff' };
  if (stalledCounter > s.stallsSeen) {
    const ageMs = now - (s.startedAt ?? now);
    if (ageMs > recoveryCutoffMs) return { kind: 'cutoff', ageMs };
    return { kind: 'resume', reason: 'stall' };
  }
  return { kind: 'resume', reason: 'retry' };
}

/** A worker took the job. */
export function onPickup(
  s: JobState,
  stalledCounter: number,
  now: number,
  recovered: boolean,
): JobState {
  return {
    ...s,
    attempts: s.attempts + 1,
    recoveries: s.recoveries + (recovered ? 1 : 0),
    stallsSeen: Math.max(s.stallsSeen, stalledCounter),
    startedAt: s.startedAt ?? now,
    handedOffAt: undefined,
  };
}

/**
 * Step 1 of the lifecycle: the prompt id is decided and stored before any network call,
 * with the client id the POST will carry (ComfyUI sends the prompt's events only there).
 */
export function onPromptChosen(
  s: JobState,
  promptId: string,
  comfyuiUrl: string,
  now: number,
  resubmission: boolean,
  clientId?: string,
): JobState {
  return {
    ...s,
    status: 'submitting',
    promptId,
    comfyuiUrl,
    clientId: clientId ?? s.clientId,
    submittedAt: now,
    movedFrom: undefined,
    resubmissions: s.resubmissions + (resubmission ? 1 : 0),
  };
}

/**
 * The prompt was found in ComfyUI at this instance although the job had no prompt (a write
 * lost by Redis): the job follows it there.
 */
export function onPromptFound(s: JobState, comfyuiUrl: string): JobState {
  return { ...s, comfyuiUrl };
}

/** A server older than 0.3.45 ignores client prompt ids: the job follows the one it made. */
export function onPromptRenamed(s: JobState, promptId: string): JobState {
  return { ...s, promptId };
}

/**
 * ComfyUI already knew the prompt (409 on the POST): nothing changes; the write records the
 * line that says so and the time of the write.
 */
export function onPromptKnown(s: JobState): JobState {
  return { ...s };
}

/** Every persisted change carries the time it was written (recoveryTime counts from here). */
export function onSaved(s: JobState, now: number): JobState {
  return { ...s, updatedAt: now };
}

export function onSubmitted(s: JobState): JobState {
  return s.status === 'submitting' ? { ...s, status: 'submitted', movedFrom: undefined } : s;
}

export function onRunning(s: JobState): JobState {
  return s.status === 'submitting' || s.status === 'submitted'
    ? { ...s, status: 'running', movedFrom: undefined }
    : s;
}

/**
 * A move's intent, written before anything is sent (DESIGN "Moving a pending prompt"): the
 * prompt (pending on `comfyuiUrl`) is to be deleted there and submitted on `to` under the
 * same id, with this process's client id.
 */
export function onMoveStarted(s: JobState, to: string, now: number, clientId: string): JobState {
  return {
    ...s,
    status: 'submitting',
    movedFrom: { url: s.comfyuiUrl!, clientId: s.clientId },
    comfyuiUrl: to,
    clientId,
    submittedAt: now,
    moves: (s.moves ?? 0) + 1,
  };
}

/**
 * The move did not happen: the prompt is still where it was (it started, finished, or was
 * still pending there). The job follows it there again, as `submitted` (the next look-up
 * says whether it runs or ended), under the client id it was submitted with there.
 */
export function onMoveAbandoned(s: JobState): JobState {
  if (!s.movedFrom) return s;
  return {
    ...s,
    status: 'submitted',
    comfyuiUrl: s.movedFrom.url,
    clientId: s.movedFrom.clientId,
    movedFrom: undefined,
    moves: Math.max(0, (s.moves ?? 1) - 1),
  };
}

export function onHandoff(s: JobState, now: number): JobState {
  return { ...s, handedOffAt: now };
}

export function onCompleted(s: JobState, now: number): JobState {
  return { ...s, status: 'completed', finishedAt: now, error: undefined };
}

export function onFailed(s: JobState, error: JobError, now: number): JobState {
  return {
    ...s,
    status: error.code === 'cancelled' ? 'cancelled' : 'failed',
    error,
    finishedAt: now,
  };
}

/**
 * The `failedReason` a failed or cancelled outcome's write also stores (BullMQ's
 * moveToFinished then writes the same text). BullMQ's retry (`job.retry('failed')`, the
 * reprocessJob script) deletes it, which is how a worker tells a deliberate retry from a
 * job that came back after a crash between saving its outcome and BullMQ's move.
 */
export function failedReasonOf(error: JobError): string {
  return `${error.code}: ${error.message}`;
}

/**
 * A failed job that BullMQ moved back to wait on request (Bull Board's retry button,
 * POST /v1/jobs/:id/retry): its JobState says `failed` but its failedReason is gone.
 * Cancelled and completed jobs are never retried.
 */
export function isRetryRequested(
  s: Partial<Pick<JobState, 'status'>>,
  failedReason: string | undefined,
): boolean {
  return s.status === 'failed' && !failedReason;
}

/**
 * A new generation of a failed job: it runs again like a first take, with a new derived
 * prompt id (promptIdFor with the generation); attempts, recoveries and resubmissions are
 * kept, the last run's prompt, instance, times and error are not.
 */
export function onRetry(s: JobState): JobState {
  return {
    status: 'queued',
    createdAt: s.createdAt,
    attempts: s.attempts,
    recoveries: s.recoveries,
    resubmissions: s.resubmissions,
    ...(s.moves !== undefined && { moves: s.moves }),
    stallsSeen: s.stallsSeen,
    generation: (s.generation ?? 0) + 1,
  };
}

/** States in which the job's prompt may be alive in ComfyUI. */
export function hasLivePrompt(s: JobState): boolean {
  return s.promptId !== undefined && ['submitting', 'submitted', 'running'].includes(s.status);
}

export function isTerminal(s: JobState): boolean {
  return s.status === 'completed' || s.status === 'failed' || s.status === 'cancelled';
}
