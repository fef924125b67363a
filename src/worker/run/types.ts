import { UnrecoverableError } from 'bullmq';
import type { AnalyticsSink } from '../../analytics';
import type { ComfyPool } from '../../comfy/pool';
import { failedReasonOf, type JobError } from '../../job/state';
import type { Logger } from '../../logger';
import type { ProveLock } from '../fence';
import type { Storage } from '../../storage';
import type { UrlFetcher } from '../fetch-url';
import type { JobWriter } from '../persist';
import type { JobData } from '../../job/data';

/** Why a job's signal was aborted (the reason passed to worker.cancelJob/cancelAllJobs). */
export const ABORT = { shutdown: 'shutdown', cancel: 'cancel', lockLost: 'lock-lost' } as const;

/**
 * Named points where tests may kill (COMFYQ_CRASH_AT) or stop (COMFYQ_PAUSE_AT) the
 * process: `before-post` comes before the fence's proof, `fence-sent` right after the
 * proof's call was sent (its answer then arrives late).
 */
export type FaultPoint =
  | 'after-prompt-stored'
  | 'before-post'
  | 'fence-sent'
  | 'after-inputs-uploaded'
  | 'after-post'
  | 'following'
  | 'move-intent-saved'
  | 'move-deleted'
  | 'after-outputs-copied'
  | 'after-outcome-saved';

/** Input and output files (DESIGN "Media in", "Media out"). */
export interface WorkerMedia {
  storage: Storage;
  /** fetches URL inputs under the address policy */
  fetcher: UrlFetcher;
  /** the largest input file (UPLOAD_MAX_BYTES) */
  maxBytes: number;
}

export interface ProcessorSettings {
  pollIntervalMs: number;
  /** stalls (worker deaths) a job survives; one more fails it `stalled` and removes its prompt */
  maxStalledCount: number;
  /** at most one progress write per this interval (progress ticks are coalesced) */
  progressIntervalMs: number;
  /** a progress write needs the percent to cross a step of this size (or a new node) */
  progressStepPercent: number;
  recoveryCutoffMs: number;
  jobTimeoutMs: number;
  submitGraceMs: number;
  /** with COMFYUI_TIMEOUT_MS, bounds the fence and the take-over grace (fence.ts) */
  lockDurationMs: number;
  comfyuiTimeoutMs: number;
  /** COMFYUI_MOVE_PENDING: a pending prompt moves to an idle instance (move.ts); default on */
  movePending?: boolean;
}

export interface ProcessorDeps {
  settings: ProcessorSettings;
  /** the ComfyUI instances: clients, sockets and job slots */
  pool: Pick<
    ComfyPool,
    | 'client'
    | 'socket'
    | 'adopt'
    | 'acquire'
    | 'acquireIdle'
    | 'lease'
    | 'healthyUrls'
    | 'configured'
    | 'waitForSlot'
  >;
  /** this process's WebSocket client id, sent as client_id */
  clientId: string;
  analytics: AnalyticsSink;
  log: Logger;
  isCancelRequested: (jobId: string) => Promise<boolean>;
  /** lock-checked writes: data (+ progress, + log line) in one round trip, and progress */
  writer: JobWriter;
  /** proves the job's lock right before a ComfyUI write that creates work (fence.ts) */
  proveLock: ProveLock;
  /**
   * Called before a job's outcome is saved, for jobs with a webhook: enqueues a durable,
   * idempotent delivery (one per job), so a crash right after the outcome is saved cannot
   * lose the notification. The delivery reads the job's final state when it runs.
   */
  notifyFinished?: (jobId: string, request: JobData['request']) => Promise<void>;
  fault?: (point: FaultPoint) => void;
  now?: () => number;
  /** storage for inputs and outputs; without it, outputs are not copied (tests of other parts) */
  media?: WorkerMedia;
}

/** A job failure that BullMQ must not retry; its message starts with the public error code. */
export class JobFailure extends UnrecoverableError {
  constructor(readonly jobError: JobError) {
    super(failedReasonOf(jobError));
    this.name = 'JobFailure';
    // a classified outcome, not a bug: Bull Board shows the reason, not this file's frames
    this.stack = this.message;
  }
}
