import type { ComfyClient } from '../../comfy/client';
import type { Lease } from '../../comfy/pool';
import type { ComfySocket } from '../../comfy/socket';
import { failedReasonOf, hasLivePrompt, isTerminal, onSaved, type JobState } from '../../job/state';
import type { Logger } from '../../logger';
import type { ImageJob } from '../../queue';
import { createFence, type Fence } from '../fence';
import { ABORT, type FaultPoint, type ProcessorDeps } from './types';
import type { JobData, JobResult, Workflow } from '../../job/data';
import type { JobProgress } from '../../job/progress';

/**
 * One pickup of one job: what the steps (pickup, inputs, submit, follow, finish) share.
 * The state changes only through job/state.ts's functions, and is persisted through `save`.
 */
export class JobRun {
  readonly jobId: string;
  readonly signal: AbortSignal;
  readonly now: () => number;
  /** when this process took the job (this process's clock) */
  readonly pickedAt: number;
  /**
   * Every ComfyUI write that creates work (POST /prompt, /upload/image) goes through it:
   * written only while this worker's lock is proven fresh (fence.ts)
   */
  readonly fence: Fence;
  state: JobState;
  log: Logger;
  lease: Lease | undefined;
  /** ComfyUI accepted this process's POST of the prompt (not persisted: see submit) */
  accepted = false;
  private readonly cancelMarked = new AbortController();
  private lastProgress: JobProgress | undefined;
  private lastProgressAt = 0;
  /** progress.percent never goes backwards: the persisted progress is the floor */
  private floor = 0;
  private adopted?: { key: string; socket: ComfySocket; release(): void };

  constructor(
    readonly deps: ProcessorDeps,
    readonly job: ImageJob,
    readonly token: string | undefined,
    readonly data: JobData,
    signal: AbortSignal | undefined,
  ) {
    this.jobId = job.id!;
    this.now = deps.now ?? Date.now;
    this.pickedAt = this.now();
    this.state = data.state;
    // BullMQ passes a signal because the processor declares three parameters (aborted by
    // shutdown, a published cancel, a lost lock); a cancel mark that a write of ours reports
    // aborts the same way, so a cancel whose message was missed still stops the job
    this.signal = signal
      ? AbortSignal.any([signal, this.cancelMarked.signal])
      : this.cancelMarked.signal;
    // a child logger per job; it gains the prompt id once there is one
    this.log = deps.log.child({ jobId: this.jobId, promptId: data.state.promptId });
    this.fence = createFence(this.jobId, () => deps.proveLock(this.jobId, token), this.log);
    const saved = job.progress as Partial<JobProgress> | number | undefined;
    if (saved && typeof saved === 'object' && typeof saved.percent === 'number') {
      this.lastProgress = saved as JobProgress;
      this.floor = saved.percent;
    }
  }

  /** `p` with its percent raised to the floor, which it then becomes */
  private floored(p: JobProgress): JobProgress {
    this.floor = Math.max(this.floor, p.percent);
    return { ...p, percent: this.floor };
  }

  get settings() {
    return this.deps.settings;
  }

  /**
   * The workflow to submit: the job hash's own field (jobs the API adds), or `data.workflow`
   * (older jobs); read when submitting only, never by the state writes.
   */
  async workflow(): Promise<Workflow | null> {
    return this.data.workflow ?? (await this.deps.writer.readWorkflow(this.jobId));
  }

  /** node → the nodes its inputs link to (`[nodeId, outputIndex]` values), for progress */
  async inputLinks(): Promise<Record<string, string[]>> {
    const links: Record<string, string[]> = {};
    for (const [id, node] of Object.entries((await this.workflow()) ?? {}))
      links[id] = Object.values(node.inputs ?? {})
        .filter((v): v is [string | number, number] => Array.isArray(v) && v.length === 2)
        .map(([from]) => String(from));
    return links;
  }

  /** the workflow's node count (kept in the data, so progress needs no workflow read) */
  get nodeCount(): number {
    return this.data.nodes ?? Object.keys(this.data.workflow ?? {}).length;
  }

  /** who analytics events are attributed to */
  get distinctId(): string {
    return this.data.request.userId ?? this.jobId;
  }

  /** the prompt id; every step after pickup has one */
  get promptId(): string {
    if (!this.state.promptId) throw new Error(`job ${this.jobId} has no prompt id yet`);
    return this.state.promptId;
  }

  /** the client of the instance that holds the prompt */
  client(): ComfyClient {
    if (!this.state.comfyuiUrl) throw new Error(`job ${this.jobId} has no ComfyUI instance yet`);
    return this.deps.pool.client(this.state.comfyuiUrl);
  }

  /**
   * The socket that hears the prompt's events: this process's, or, for a prompt another
   * process submitted (a hand-off, a crash), one opened under that process's client id.
   */
  socket(): ComfySocket | undefined {
    const { comfyuiUrl: url, clientId } = this.state;
    if (!url) return undefined;
    if (!clientId || clientId === this.deps.clientId) return this.deps.pool.socket(url);
    const key = `${url}\n${clientId}`;
    if (this.adopted?.key !== key) {
      this.releaseSocket();
      const a = this.deps.pool.adopt(url, clientId);
      this.adopted = a && { key, ...a };
    }
    return this.adopted?.socket;
  }

  /** whether the prompt's events come through a socket opened under another client id */
  get adoptedSocket(): boolean {
    return this.adopted !== undefined && this.state.clientId !== this.deps.clientId;
  }

  /** Closes the other client id's socket when no followed prompt needs it any more. */
  releaseSocket(): void {
    this.adopted?.release();
    this.adopted = undefined;
  }

  fault(point: FaultPoint): void {
    this.deps.fault?.(point);
  }

  /** Records a cancel mark reported by a write; returns it. */
  private onCancelMark(requested: boolean): boolean {
    if (requested && !this.cancelMarked.signal.aborted) this.cancelMarked.abort(ABORT.cancel);
    return requested;
  }

  /**
   * Persists a transition in one round trip: the state, and optionally the progress that
   * goes with it, a Bull Board log line (only for what an operator needs: recoveries,
   * resubmissions, retries, failures) and the return value. Resolves true when a cancel
   * was requested.
   */
  async save(
    next: JobState,
    line?: string,
    withProgress?: JobProgress,
    result?: JobResult,
  ): Promise<boolean> {
    if (next.promptId !== this.state.promptId)
      this.log = this.deps.log.child({ jobId: this.jobId, promptId: next.promptId });
    this.state = onSaved(next, this.now());
    // a failed job keeps its workflow (shown by Bull Board, needed by a retry)
    const workflow = next.status === 'completed' ? null : this.data.workflow;
    const failedReason = isTerminal(next) && next.error ? failedReasonOf(next.error) : undefined;
    const r = await this.deps.writer.persist(
      this.jobId,
      this.token,
      { ...this.data, workflow, state: this.state },
      { log: line, progress: withProgress && this.floored(withProgress), result, failedReason },
    );
    if (withProgress) {
      this.lastProgress = { ...withProgress, percent: this.floor };
      this.lastProgressAt = this.now();
    }
    return this.onCancelMark(r.cancelRequested);
  }

  /**
   * Progress writes are coalesced: at most one per PROGRESS_INTERVAL_MS, and only when
   * the queue position or the PROGRESS_STEP_PERCENT bucket changed, so a prompt costs at
   * most 100 / PROGRESS_STEP_PERCENT progress writes, however long it runs and however
   * many nodes it has (the node shown is the one current at the write).
   */
  async progress(next: JobProgress, force = false): Promise<void> {
    const p = { ...next, percent: Math.max(this.floor, next.percent) };
    const prev = this.lastProgress;
    const step = this.settings.progressStepPercent;
    const bucket = (x?: JobProgress) => (x ? Math.floor(x.percent / step) : -1);
    const changed = !prev || prev.queuePosition !== p.queuePosition || bucket(prev) !== bucket(p);
    if (!changed) return;
    if (!force && this.now() - this.lastProgressAt < this.settings.progressIntervalMs) return;
    this.lastProgress = p;
    this.lastProgressAt = this.now();
    const r = await this.deps.writer.progress(this.jobId, this.token, this.floored(p));
    this.onCancelMark(r.cancelRequested);
  }

  /** The progress to save with the outcome: the last node the socket saw, at 100 %. */
  finalProgress(): JobProgress {
    // progress writes are coalesced, so lastProgress may lag behind the socket
    const seen = this.state.promptId ? this.socket()?.progress(this.state.promptId) : undefined;
    return { ...this.lastProgress, ...seen, percent: 100, queuePosition: undefined };
  }

  /**
   * Best effort: take the prompt out of ComfyUI (pending → deleted, running → interrupted),
   * on the instance it was being moved from too.
   */
  async removePrompt(): Promise<void> {
    if (!hasLivePrompt(this.state)) return;
    const urls = [this.state.comfyuiUrl!, this.state.movedFrom?.url].filter((u) => u);
    for (const url of urls as string[]) {
      try {
        await this.deps.pool.client(url).cancel(this.promptId);
      } catch (err) {
        this.log.warn(
          { err, promptId: this.state.promptId, comfyuiUrl: url },
          'could not remove the prompt from ComfyUI',
        );
      }
    }
  }
}
