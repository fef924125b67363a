import { DelayedError, UnrecoverableError, WaitingError } from 'bullmq';
import { z } from 'zod';
import type { AnalyticsSink } from '../analytics';
import type { Lookup } from '../comfy/client';
import type { WakeReason } from '../comfy/socket';
import type { ComfyPool, Lease } from '../comfy/pool';
import { LockLostError, type JobWriter } from './persist';
import { classifyHistory, describeValidationError, type Outcome } from '../comfy/protocol';
import {
  ComfyHttpError,
  ComfyProtocolError,
  ComfyUnreachableError,
  type ErrorCode,
} from '../errors';
import {
  classifyPickup,
  hasLivePrompt,
  isTerminal,
  onCompleted,
  onFailed,
  onHandoff,
  onPickup,
  onPromptChosen,
  onRunning,
  onSubmitted,
  type JobError,
  type JobOutput,
  type JobState,
} from '../job-state';
import type { Logger } from '../logger';
import {
  JOB_DATA_VERSION,
  promptIdFor,
  type ImageJob,
  type JobData,
  type JobProgress,
  type JobResult,
} from '../queue';

/**
 * The processor: submit-or-resume, follow, finish (DESIGN "The lifecycle rules").
 * Crash-safety rule applied at every step: the prompt id is stored before any network
 * call, so whichever line the process dies on, the next worker finds the same prompt.
 */

/** Why a job's signal was aborted (the reason passed to worker.cancelJob/cancelAllJobs). */
export const ABORT = { shutdown: 'shutdown', cancel: 'cancel', lockLost: 'lock-lost' } as const;

/** Named points where tests may kill the process (COMFYQ_CRASH_AT). */
export type FaultPoint = 'after-prompt-stored' | 'after-post' | 'following' | 'after-outcome-saved';

export interface ProcessorSettings {
  pollIntervalMs: number;
  /** stalls (worker deaths) a job survives; one more fails it `stalled` and removes its prompt */
  maxStalledCount: number;
  /** at most one progress write per this interval (progress ticks are coalesced) */
  progressIntervalMs: number;
  /** a progress write needs the percent to cross a step of this size (or a new node) */
  progressStepPercent: number;
  /** when no instance is healthy with a free slot, a new job waits this long (delayed) */
  healthIntervalMs: number;
  recoveryCutoffMs: number;
  jobTimeoutMs: number;
  submitGraceMs: number;
}

export interface ProcessorDeps {
  settings: ProcessorSettings;
  /** the ComfyUI instances: clients, sockets and job slots */
  pool: Pick<ComfyPool, 'client' | 'socket' | 'acquire' | 'lease' | 'healthyUrls'>;
  /** this process's WebSocket client id, sent as client_id */
  clientId: string;
  analytics: AnalyticsSink;
  log: Logger;
  isCancelRequested: (jobId: string) => Promise<boolean>;
  /** lock-checked writes: data (+ progress, + log line) in one round trip, and progress */
  writer: JobWriter;
  /**
   * Called before a job's outcome is saved, for jobs with a webhook: enqueues a durable,
   * idempotent delivery (one per job), so a crash right after the outcome is saved cannot
   * lose the notification. The delivery reads the job's final state when it runs.
   */
  notifyFinished?: (jobId: string, request: JobData['request']) => Promise<void>;
  fault?: (point: FaultPoint) => void;
  now?: () => number;
}

/** A job failure that BullMQ must not retry; its message starts with the public error code. */
export class JobFailure extends UnrecoverableError {
  constructor(readonly jobError: JobError) {
    super(`${jobError.code}: ${jobError.message}`);
    this.name = 'JobFailure';
  }
}

const JobDataSchema = z.object({
  v: z.literal(JOB_DATA_VERSION),
  workflow: z
    .record(
      z.string(),
      z.object({ class_type: z.string(), inputs: z.record(z.string(), z.unknown()) }).loose(),
    )
    .nullable(),
  request: z.object({ jobType: z.string(), userId: z.string().optional() }).loose(),
  state: z
    .object({
      status: z.enum([
        'queued',
        'submitting',
        'submitted',
        'running',
        'completed',
        'failed',
        'cancelled',
      ]),
      promptId: z.string().min(1).optional(),
      comfyuiUrl: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
      createdAt: z.number(),
      attempts: z.number(),
      recoveries: z.number(),
      resubmissions: z.number(),
      stallsSeen: z.number(),
    })
    .loose(),
});

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export function createProcessor(deps: ProcessorDeps) {
  const now = deps.now ?? Date.now;
  const { settings } = deps;

  return async function process(
    job: ImageJob,
    token: string | undefined,
    maybeSignal?: AbortSignal,
  ): Promise<JobResult> {
    // BullMQ passes a signal because this function declares three parameters (aborted by
    // shutdown, a published cancel, a lost lock); a cancel mark that a write of ours reports
    // aborts the same way, so a cancel whose message was missed still stops the job
    const cancelMarked = new AbortController();
    const signal = maybeSignal
      ? AbortSignal.any([maybeSignal, cancelMarked.signal])
      : cancelMarked.signal;
    const onCancelMark = (requested: boolean) => {
      if (requested && !cancelMarked.signal.aborted) cancelMarked.abort(ABORT.cancel);
      return requested;
    };
    // a child logger per job; it gains the prompt id once there is one
    let log = deps.log.child({ jobId: job.id, promptId: job.data?.state?.promptId });
    const jobId = job.id!;

    // ---- 0. data we can trust, or a clear failure that never crash-loops the worker
    const parsed = JobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const reason =
        job.data &&
        typeof job.data === 'object' &&
        'v' in job.data &&
        job.data.v !== JOB_DATA_VERSION
          ? `job data version ${String((job.data as { v: unknown }).v)} is not supported (this worker reads version ${JOB_DATA_VERSION})`
          : `job data is malformed: ${parsed.error.issues
              .slice(0, 3)
              .map((i) => `${i.path.join('.') || '(root)'} ${i.message}`)
              .join('; ')}`;
      // the data is left as it is (nothing lost); the reason goes to the log and failedReason
      await job.log(`failed: invalid_job_data: ${reason}`);
      throw new JobFailure({ code: 'invalid_job_data', message: reason });
    }
    const data = parsed.data as unknown as JobData;
    let state: JobState = data.state;
    const client = () => deps.pool.client(state.comfyuiUrl!);
    const socket = () => (state.comfyuiUrl ? deps.pool.socket(state.comfyuiUrl) : undefined);
    let lease: Lease | undefined;
    /** ComfyUI accepted this process's POST of the prompt (not persisted: see submit()) */
    let accepted = false;
    /** this pickup submitted the prompt (rather than resuming or finding it) */
    let justSubmitted = false;

    let lastProgress: JobProgress | undefined;
    let lastProgressAt = 0;

    /**
     * Persists a transition in one round trip: the state, and optionally the progress that
     * goes with it, a Bull Board log line (only for what an operator needs: recoveries,
     * resubmissions, retries, failures) and the return value. Resolves true when a cancel
     * was requested.
     */
    const save = async (
      next: JobState,
      line?: string,
      withProgress?: JobProgress,
      result?: JobResult,
    ) => {
      if (next.promptId !== state.promptId)
        log = deps.log.child({ jobId, promptId: next.promptId });
      state = { ...next, updatedAt: now() };
      const r = await deps.writer.persist(
        jobId,
        token,
        { ...data, workflow: isTerminal(next) ? null : data.workflow, state },
        { log: line, progress: withProgress, result },
      );
      if (withProgress) {
        lastProgress = withProgress;
        lastProgressAt = now();
      }
      return onCancelMark(r.cancelRequested);
    };
    /**
     * Progress writes are coalesced: at most one per PROGRESS_INTERVAL_MS, and only when
     * the queue position or the PROGRESS_STEP_PERCENT bucket changed, so a prompt costs at
     * most 100 / PROGRESS_STEP_PERCENT progress writes, however long it runs and however
     * many nodes it has (the node shown is the one current at the write).
     */
    const progress = async (p: JobProgress, force = false) => {
      const prev = lastProgress;
      const bucket = (x?: JobProgress) =>
        x ? Math.floor(x.percent / settings.progressStepPercent) : -1;
      const changed = !prev || prev.queuePosition !== p.queuePosition || bucket(prev) !== bucket(p);
      if (!changed) return;
      if (!force && now() - lastProgressAt < settings.progressIntervalMs) return;
      lastProgress = p;
      lastProgressAt = now();
      onCancelMark((await deps.writer.progress(jobId, token, p)).cancelRequested);
    };

    const fail = async (error: JobError): Promise<never> => {
      if (data.request.webhookUrl) await deps.notifyFinished?.(jobId, data.request);
      await save(
        onFailed(state, error, now()),
        `${error.code === 'cancelled' ? 'cancelled' : 'failed'}: ${error.code}: ${error.message}`,
      );
      socket()?.forget(state.promptId ?? '');
      deps.analytics.capture('comfyui_job_failed', data.request.userId ?? jobId, {
        promptId: state.promptId,
        jobId,
        code: error.code,
        durationMs: now() - (state.startedAt ?? now()),
        jobType: data.request.jobType,
      });
      throw new JobFailure(error);
    };

    const complete = async (outputs: JobOutput[]): Promise<JobResult> => {
      if (data.request.webhookUrl) await deps.notifyFinished?.(jobId, data.request);
      await save(
        onCompleted(state, now()),
        undefined,
        // the last node the socket saw (progress writes are coalesced, so lastProgress may lag)
        {
          ...lastProgress,
          ...socket()?.progress(state.promptId!),
          percent: 100,
          queuePosition: undefined,
        },
        { outputs },
      );
      deps.fault?.('after-outcome-saved');
      socket()?.forget(state.promptId ?? '');
      deps.analytics.capture('comfyui_job_completed', data.request.userId ?? jobId, {
        promptId: state.promptId!,
        jobId,
        durationMs: now() - (state.startedAt ?? now()),
        jobType: data.request.jobType,
      });
      return { outputs };
    };

    // ---- 1. a job that already finished (crash between saving the outcome and BullMQ's move):
    // the outcome's write also stored the return value
    if (state.status === 'completed') return { outputs: job.returnvalue?.outputs ?? [] };
    if ((state.status === 'failed' || state.status === 'cancelled') && state.error)
      throw new JobFailure(state.error);

    /** best effort: take the prompt out of ComfyUI (pending → deleted, running → interrupted) */
    const removePrompt = async () => {
      if (!hasLivePrompt(state)) return;
      try {
        await client().cancel(state.promptId!);
      } catch (err) {
        log.warn({ err, promptId: state.promptId }, 'could not remove the prompt from ComfyUI');
      }
    };

    const handleAbort = async (): Promise<never> => {
      const reason = signal.reason;
      if (reason === ABORT.shutdown) {
        await save(onHandoff(state, now()), 'worker shutting down: job handed back to the queue');
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (reason === ABORT.cancel) {
        await removePrompt();
        return fail({ code: 'cancelled', message: 'cancelled by request' });
      }
      throw new Error(
        `stopped following job ${jobId}: its lock was lost (${String(reason)}); another worker owns it now`,
      );
    };

    try {
      // ---- 2. pickup: fresh, resume, or too late to resume. The pickup's write also tells
      // whether a cancel was requested while the job waited.
      const pickedAt = now();
      const stalls = job.stalledCounter ?? 0;
      const kind = classifyPickup(state, stalls, pickedAt, settings.recoveryCutoffMs);
      if (stalls > settings.maxStalledCount) {
        state = onPickup(state, stalls, pickedAt, false);
        await removePrompt();
        return await fail({
          code: 'stalled',
          message: `the worker following this job died ${stalls} times, more than MAX_STALLED_COUNT (${settings.maxStalledCount})${state.promptId ? '; its prompt was removed from ComfyUI' : ''}`,
        });
      }

      if (kind.kind === 'cutoff') {
        state = onPickup(state, stalls, pickedAt, false);
        await removePrompt();
        return await fail({
          code: 'recovery_cutoff',
          message: `the worker following this job died and the job was recovered ${Math.round(kind.ageMs / 1000)} s after it started, later than the ${Math.round(settings.recoveryCutoffMs / 1000)} s recovery cutoff (RECOVERY_CUTOFF_MS); its prompt was removed from ComfyUI`,
        });
      }

      if (kind.kind === 'fresh') {
        lease = deps.pool.acquire();
        if (!lease) {
          // every instance is down or full: try again later without using up an attempt
          await job.log('no healthy ComfyUI instance with a free slot: waiting');
          await job.moveToDelayed(now() + settings.healthIntervalMs, token);
          throw new DelayedError();
        }
        const url = lease.url;
        const promptId = promptIdFor(job.queueQualifiedName, jobId, job.timestamp);
        if (state.attempts === 0) {
          deps.analytics.capture('comfyui_job_started', data.request.userId ?? jobId, {
            jobId,
            jobType: data.request.jobType,
            waitMs: Math.max(0, pickedAt - job.timestamp),
          });
        }
        // rule 1: the prompt id is decided and stored before any network call that could
        // create a prompt. Redis can lose its last acknowledged writes (an OS crash under
        // appendfsync everysec), an earlier `submitting` write of this job among them, after
        // its POST reached ComfyUI. The id is the job's own, so such a prompt is found by
        // the look-up (read-only, so it runs beside the write) and followed, not run twice.
        const picked = onPickup(state, stalls, pickedAt, false);
        const [stored, found] = await Promise.allSettled([
          save(
            onPromptChosen(picked, promptId, url, now(), false),
            state.attempts > 0 ? `attempt ${state.attempts + 1}: prompt ${promptId}` : undefined,
          ),
          findPrompt(promptId, url),
        ]);
        if (stored.status === 'rejected') throw stored.reason;
        if (stored.value) {
          state = picked; // the chosen prompt id was never sent: the job ends without one
          return await fail({ code: 'cancelled', message: 'cancelled by request before it ran' });
        }
        deps.fault?.('after-prompt-stored');
        if (found.status === 'rejected') throw found.reason;
        const foundAt = found.value;
        if (foundAt) {
          if (foundAt !== url) {
            lease.release();
            lease = deps.pool.lease(foundAt);
          }
          accepted = true;
          log.warn({ promptId, comfyuiUrl: foundAt }, 'prompt found in ComfyUI: following it');
          await save(
            { ...state, comfyuiUrl: foundAt },
            `prompt ${promptId} found in ComfyUI at ${foundAt} although the job had no prompt (a write lost by Redis): following it`,
          );
        } else {
          log.info({ promptId, comfyuiUrl: url }, 'submitting prompt');
          await submit();
          justSubmitted = true;
        }
      } else {
        lease = deps.pool.lease(state.comfyuiUrl!);
        const recovered = kind.reason !== 'retry';
        const lastAlive = state.handedOffAt ?? state.updatedAt ?? state.startedAt ?? pickedAt;
        const cancelled = await save(
          onPickup(state, stalls, pickedAt, recovered),
          `attempt ${state.attempts + 1}: resuming prompt ${state.promptId} on ${state.comfyuiUrl} (${kind.reason})`,
        );
        if (cancelled) {
          await removePrompt();
          return await fail({ code: 'cancelled', message: 'cancelled by request' });
        }
        if (recovered) {
          const props = {
            promptId: state.promptId!,
            jobAge: Math.round((pickedAt - (state.startedAt ?? pickedAt)) / 1000),
            recoveryTime: Math.max(0, pickedAt - lastAlive),
            jobId,
            reason: kind.reason === 'handoff' ? ('handoff' as const) : ('stall' as const),
          };
          log.info(props, `recovered job after ${kind.reason}`);
          deps.analytics.capture('comfyui_job_recovered', data.request.userId ?? jobId, props);
        }
      }

      // ---- 3. follow until ComfyUI reports an outcome
      return await follow(justSubmitted);
    } catch (err) {
      if (
        err instanceof JobFailure ||
        err instanceof WaitingError ||
        err instanceof DelayedError ||
        err instanceof LockLostError
      )
        throw err;
      return await onError(err);
    } finally {
      lease?.release();
    }

    /**
     * The instance that already knows this prompt id (pending, running or in history), or
     * undefined: the chosen instance first, then the other healthy ones. An error on the
     * chosen one is thrown (its POST would fail the same way; the job is retried); on the
     * others it is logged, as they are only searched for a lost write's prompt.
     */
    async function findPrompt(promptId: string, chosen: string): Promise<string | undefined> {
      const others = deps.pool.healthyUrls().filter((url) => url !== chosen);
      for (const url of [chosen, ...others]) {
        try {
          if ((await deps.pool.client(url).lookup(promptId)).state !== 'absent') return url;
        } catch (err) {
          if (url === chosen) throw err;
          log.warn({ err, comfyuiUrl: url }, 'could not look for the prompt on this instance');
        }
      }
      return undefined;
    }

    async function submit(): Promise<void> {
      const promptId = state.promptId!;
      if (!data.workflow)
        await fail({ code: 'invalid_job_data', message: 'the job has no workflow to submit' });
      socket()?.track(promptId, Object.keys(data.workflow ?? {}).length); // before the POST: no event missed
      const r = await client().submit({
        prompt: data.workflow,
        promptId,
        clientId: deps.clientId,
        extraData: { bullmq_job_id: jobId, attempt_key: promptId, client_id: deps.clientId },
      });
      deps.fault?.('after-post');
      if (r.kind === 'invalid') {
        const v = describeValidationError(r.body);
        await fail({ code: 'workflow_invalid', message: v.message, nodeId: v.nodeId });
      }
      if (r.kind === 'accepted' && Object.keys(r.nodeErrors).length > 0) {
        const v = describeValidationError({
          error: { message: 'some outputs failed validation and would be dropped' },
          node_errors: r.nodeErrors,
        });
        await removePrompt();
        await fail({ code: 'workflow_invalid', message: v.message, nodeId: v.nodeId });
      }
      if (r.kind === 'accepted' && r.promptId !== promptId) {
        // a server older than 0.3.45 ignores client prompt ids: follow the one it made
        log.warn(
          { sent: promptId, got: r.promptId },
          'ComfyUI ignored the client prompt id (server older than 0.3.45)',
        );
        await save({ ...state, promptId: r.promptId });
      }
      accepted = true;
      if (r.kind === 'duplicate')
        await save(
          state,
          `prompt ${state.promptId} was already known to ComfyUI (409): following it`,
        );
      // No `submitted` write here: the follower's first lookup writes `submitted` (with the
      // queue position) or `running` in one call. A crash before it leaves `submitting`,
      // which a new worker looks up before it submits anything (rule 2).
      deps.analytics.capture('comfyui_job_state_saved', data.request.userId ?? jobId, {
        promptId: state.promptId!,
        jobType: data.request.jobType,
        userId: data.request.userId,
        jobId,
      });
    }

    /**
     * Follows the prompt until ComfyUI reports an outcome. Right after this process
     * submitted it, with a healthy socket, the first look-up waits up to POLL_INTERVAL_MS
     * for the socket: a prompt that starts or ends at once is seen without polling; one
     * still pending then is looked up (and saved `submitted` with its queue position).
     */
    async function follow(afterSubmit: boolean): Promise<JobResult> {
      socket()?.track(state.promptId!, Object.keys(data.workflow ?? {}).length);
      const deadline = (state.startedAt ?? now()) + settings.jobTimeoutMs;
      let absentSince: number | undefined;
      let woke: WakeReason | undefined =
        afterSubmit && socket()?.healthy
          ? await waitForNextCheck(settings.pollIntervalMs)
          : undefined;
      for (;;) {
        if (signal.aborted) return handleAbort();
        if (now() > deadline) {
          await removePrompt();
          return fail({
            code: 'timeout',
            message: `the job ran longer than JOB_TIMEOUT_MS (${settings.jobTimeoutMs} ms); its prompt was interrupted`,
          });
        }
        // the socket said the prompt finished (its history is written): read it directly
        const entry = woke === 'finished' ? await client().history(state.promptId!) : null;
        const r: Lookup = entry
          ? { state: 'done', outcome: classifyHistory(entry) }
          : await client().lookup(state.promptId!);
        if (signal.aborted) return handleAbort();
        deps.fault?.('following');
        if (r.state === 'done') return finish(r.outcome);
        if (r.state === 'absent') {
          // the POST may still be in ComfyUI's validation, or the prompt was lost (restart)
          const unconfirmed = state.status === 'submitting' && !accepted;
          const since = unconfirmed ? (state.submittedAt ?? now()) : (absentSince ??= now());
          if (now() - since >= settings.submitGraceMs) {
            const lost = !unconfirmed;
            log.warn(
              { promptId: state.promptId },
              lost
                ? 'ComfyUI lost the prompt: submitting it again'
                : 'the prompt never reached ComfyUI: submitting it',
            );
            await save(
              onPromptChosen(state, state.promptId!, state.comfyuiUrl!, now(), lost),
              lost
                ? `prompt ${state.promptId} unknown to ComfyUI (restart?): resubmitting with the same id`
                : undefined,
            );
            if (lost)
              deps.analytics.capture('comfyui_job_resubmitted', data.request.userId ?? jobId, {
                jobId,
                promptId: state.promptId!,
              });
            await submit();
            absentSince = undefined;
            continue;
          }
        } else {
          absentSince = undefined;
          if (r.state === 'pending') {
            const p = { percent: 0, queuePosition: r.position };
            if (state.status === 'submitting') await save(onSubmitted(state), undefined, p);
            else await progress(p, true);
          } else await running();
        }
        woke = await waitForNextCheck();
      }
    }

    /** ComfyUI runs the prompt: the transition and its progress in one write, or the progress. */
    async function running(): Promise<void> {
      const p = { percent: 0, ...socket()?.progress(state.promptId!) };
      if (state.status !== 'running') await save(onRunning(state), undefined, p);
      else await progress(p);
    }

    /**
     * Sleeps until the next poll; with a healthy socket, polls less and wakes on its events.
     * Progress events (and the prompt's start) are handled here without polling.
     */
    async function waitForNextCheck(maxMs?: number): Promise<WakeReason | undefined> {
      const ws = socket();
      if (!ws) return sleep(settings.pollIntervalMs, signal).then(() => undefined);
      const interval =
        maxMs ??
        (ws.healthy
          ? Math.max(settings.pollIntervalMs, Math.min(5 * settings.pollIntervalMs, 5_000))
          : settings.pollIntervalMs);
      const until = now() + interval;
      while (!signal.aborted && now() < until) {
        const why = await ws.wait(state.promptId!, until - now(), signal);
        if (why !== 'progress') return why;
        await running();
      }
      return undefined;
    }

    async function finish(outcome: Outcome): Promise<JobResult> {
      switch (outcome.kind) {
        case 'success':
          return complete(outcome.outputs);
        case 'error':
          return fail({
            code: 'execution_error',
            message: outcome.message,
            nodeId: outcome.nodeId,
            nodeType: outcome.nodeType,
          });
        case 'interrupted':
          if (await deps.isCancelRequested(jobId))
            return fail({ code: 'cancelled', message: 'cancelled by request' });
          return fail({
            code: 'interrupted',
            message: `the prompt was interrupted in ComfyUI${outcome.nodeType ? ` while running ${outcome.nodeType} (node ${outcome.nodeId})` : ''}`,
            nodeId: outcome.nodeId,
            nodeType: outcome.nodeType,
          });
        default:
          return fail({ code: 'execution_error', message: outcome.message });
      }
    }

    /** Transport and server errors: retried by BullMQ with backoff, keeping the same prompt id. */
    async function onError(err: unknown): Promise<never> {
      const transient =
        err instanceof ComfyUnreachableError ||
        err instanceof ComfyProtocolError ||
        (err instanceof ComfyHttpError && err.retryable);
      const code: ErrorCode = 'comfyui_unreachable';
      const attempt = job.attemptsMade + 1;
      const max = job.opts.attempts ?? 1;
      const message = err instanceof Error ? err.message : String(err);
      if (!(
        err instanceof ComfyUnreachableError ||
        err instanceof ComfyHttpError ||
        err instanceof ComfyProtocolError
      )) {
        throw err; // a bug or a Redis error: let BullMQ record it as is
      }
      if (!transient || attempt >= max) {
        return fail({
          code,
          message: transient ? `${message} (gave up after ${attempt} attempts)` : message,
        });
      }
      log.warn(
        { err: message, attempt, max },
        `ComfyUI error, retrying with backoff (attempt ${attempt} of ${max})`,
      );
      // the line goes with the state; a prompt ComfyUI accepted is saved as `submitted`, so
      // the retry counts it as lost (a resubmission) if ComfyUI no longer knows it
      await save(
        accepted ? onSubmitted(state) : state,
        `attempt ${attempt} of ${max} failed: ${message}; retrying with the same prompt id`,
      ).catch(() => {});
      throw err;
    }
  };
}
