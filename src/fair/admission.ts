import { WaitingError } from 'bullmq';
import type IORedis from 'ioredis';
import type { Cluster } from 'ioredis';
import type { Logger } from '../logger';
import type { ImageJob } from '../queue';
import { LockLostError } from '../worker/persist';
import { createFairWorker, type FairSettings, type FairWorker } from '.';
import type { JobResult } from '../job/data';

/**
 * USER_MAX_ACTIVE in a worker: every job it takes is admitted first (fairAdmit-8.lua). A job
 * whose user is at the limit is parked in its user's own zset, keeping its place, and the
 * processor never runs (no attempt is used, BullMQ is told with WaitingError that the job
 * moved); other users' jobs overtake it meanwhile. A job that ends (completed or failed
 * for good) frees its slot and unparks the next; a periodic sweep does the same for every
 * user, so a missed release (a crash after BullMQ's move) or a raised limit costs at most
 * one sweep interval.
 */

type Processor = (job: ImageJob, token?: string, signal?: AbortSignal) => Promise<JobResult>;

const FINISHED = new Set(['completed', 'failed', 'cancelled']);

export interface FairAdmission {
  fair: FairWorker;
  /** runs admission before `processor` */
  wrap(processor: Processor): Processor;
  /** frees the slot of a job that ended (BullMQ's completed/failed events) */
  onEnded(job: ImageJob | undefined): void;
  /** stops the sweep */
  stop(): void;
}

export function createFairAdmission(
  client: IORedis | Cluster,
  s: FairSettings,
  sweepIntervalMs: number,
  log: Logger,
): FairAdmission {
  const fair = createFairWorker(client, s);
  const userOf = (job: ImageJob) => job.data?.request?.userId;
  const warn = (what: string) => (err: unknown) =>
    log.warn({ err: err instanceof Error ? err.message : String(err) }, what);

  const sweep = () =>
    void fair
      .sweep(sweepIntervalMs)
      .then((moved) => moved > 0 && log.info({ moved }, 'fair sweep: unparked jobs'))
      .catch(warn('fair sweep failed; will retry'));
  const timer = setInterval(sweep, sweepIntervalMs);
  timer.unref();

  return {
    fair,
    wrap: (processor) =>
      async function admitted(job, token, signal) {
        // a job whose outcome is already saved only needs BullMQ's move: no slot
        if (!FINISHED.has(job.data?.state?.status)) {
          const a = await fair.admit(job.id!, userOf(job), token ?? '');
          if (a === 'lost') throw new LockLostError(job.id!);
          if (a === 'parked') {
            log.debug({ jobId: job.id }, 'user at USER_MAX_ACTIVE: job parked');
            throw new WaitingError();
          }
        }
        return processor(job, token, signal);
      },
    onEnded(job) {
      if (job) void fair.release(userOf(job)).catch(warn('fair release failed; the sweep will'));
    },
    stop: () => clearInterval(timer),
  };
}
