import type IORedis from 'ioredis';
import type { Cluster } from 'ioredis';
import type { Logger } from '../logger';
import { jobKey, type QueueSettings } from '../queue';
import { defineScripts, redisScript } from '../scripts';
import { LockLostError } from './persist';

/**
 * Fencing: a worker writes a request that creates work in ComfyUI (`POST /prompt`,
 * `POST /upload/image`) only while it can prove, freshly, that it still holds the job's
 * BullMQ lock. A worker starved or frozen past its lock (GC, a stopped VM, a loaded
 * machine) could otherwise send its POST after another worker took the job over and
 * submitted the same prompt id, which ComfyUI (0.3.45 up to 0.3.64) accepts a second time.
 *
 * The proof is one script: the lock still holds this worker's token, and is renewed to
 * LOCK_DURATION_MS. It is timed from before the call is sent (`sentAt`), so the lock lasts
 * at least until `sentAt + pttl` whatever the call's latency. The request may start only
 * before `deadline = sentAt + pttl - margin` (margin = LOCK_DURATION_MS / 2); the check
 * runs synchronously right before the request's bytes are written to the socket (the HTTP
 * client's `beforeWrite`), with no await in between. So a request is written at least
 * `margin` before any other worker can take the job. What that bound leaves open is in
 * docs/DESIGN.md ("Fencing").
 */

/** A fresh proof of the lock: a request may start while `performance.now() < deadline`. */
export interface LockProof {
  deadline: number;
}

/** Proves the job's lock or throws FenceError('lost'). */
export type ProveLock = (jobId: string, token: string | undefined) => Promise<LockProof>;

/**
 * Runs `write` (a ComfyUI request that creates work) under a fresh proof. `write` must
 * pass `beforeWrite` to the HTTP client, which calls it synchronously right before the
 * request is written; past the deadline it throws and nothing is sent.
 */
export type Fence = <T>(write: (beforeWrite: () => void) => Promise<T>) => Promise<T>;

/** The worker could not prove it holds the job: it must not touch the job any more. */
export class FenceError extends LockLostError {
  constructor(
    jobId: string,
    readonly reason: 'lost' | 'stale',
  ) {
    super(jobId);
    this.name = 'FenceError';
    this.message =
      reason === 'lost'
        ? `not writing to ComfyUI for job ${jobId}: its lock is held by another worker now (or expired)`
        : `not writing to ComfyUI for job ${jobId}: ${PROOFS} proofs of its lock in a row were stale before the request could be written (the worker is starved)`;
  }
}

/** How many proofs a fenced write tries before it gives up (each stale one wrote nothing). */
const PROOFS = 3;

export interface FenceBounds {
  /** a fenced request is written at least this long before the lock can expire */
  marginMs: number;
  /**
   * how long after its pickup a worker that took over a `submitting` job whose prompt
   * ComfyUI does not know waits before it submits: max(SUBMIT_GRACE_MS,
   * COMFYUI_TIMEOUT_MS - margin)
   */
  takeoverGraceMs: number;
}

/**
 * The bounds the fence gives, from the settings. A POST written by the previous holder
 * left at least `marginMs` before its lock expired, so before this worker's pickup; its
 * writer gives up on it after COMFYUI_TIMEOUT_MS. A look-up that starts `takeoverGraceMs`
 * after the pickup therefore comes after every such POST was answered or abandoned.
 */
export function fenceBounds(s: {
  lockDurationMs: number;
  comfyuiTimeoutMs: number;
  submitGraceMs: number;
}): FenceBounds {
  const marginMs = Math.floor(s.lockDurationMs / 2);
  return {
    marginMs,
    takeoverGraceMs: Math.max(s.submitGraceMs, s.comfyuiTimeoutMs - marginMs),
  };
}

/** The lock renewed if it is still this worker's; answers its PTTL, or -2 (proveLock-1.lua). */
const PROVE_LOCK = redisScript('proveLock-1');

export interface ProverSettings extends Pick<QueueSettings, 'queuePrefix' | 'queueName'> {
  lockDurationMs: number;
}

/**
 * The lock prover on a worker's command connection. `onSent` runs synchronously once the
 * proof's call is handed to the connection (a test seam: a pause there makes the answer
 * arrive late, i.e. stale).
 */
export function createLockProver(
  redis: IORedis | Cluster,
  s: ProverSettings,
  onSent?: () => void,
): ProveLock {
  const scripts = defineScripts(redis, { prove: PROVE_LOCK });
  const { marginMs } = fenceBounds({ ...s, comfyuiTimeoutMs: 0, submitGraceMs: 0 });
  return async (jobId, token) => {
    if (!token) throw new FenceError(jobId, 'lost'); // no lock to prove
    const sentAt = performance.now();
    const reply = scripts.prove(`${jobKey(s, jobId)}:lock`, token, String(s.lockDurationMs));
    onSent?.();
    const pttl = (await reply) as number;
    if (pttl < 0) throw new FenceError(jobId, 'lost');
    return { deadline: sentAt + pttl - marginMs };
  };
}

/** Raised inside `beforeWrite` when the proof went stale; the request is not written. */
class StaleProof extends Error {}

/**
 * A job's fence: each write is proven first; a proof that went stale before the request
 * could be written (the event loop was starved, a connection took long) is made again, up
 * to PROOFS times. A lost lock ends it at once: nothing more is written for the job.
 */
export function createFence(jobId: string, prove: () => Promise<LockProof>, log: Logger): Fence {
  return async (write) => {
    for (let i = 1; ; i++) {
      const { deadline } = await prove().catch((err: unknown) => {
        if (err instanceof FenceError)
          log.warn('fence: the job is no longer this worker’s: nothing is written to ComfyUI');
        throw err;
      });
      let late = 0;
      try {
        return await write(() => {
          const now = performance.now();
          if (now >= deadline) {
            late = now - deadline;
            throw new StaleProof();
          }
        });
      } catch (err) {
        if (!(err instanceof StaleProof)) throw err;
        log.warn(
          { lateMs: Math.round(late), proof: i },
          'fence: the lock proof went stale before the request was written; nothing was sent',
        );
        if (i >= PROOFS) throw new FenceError(jobId, 'stale');
      }
    }
  };
}
