import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import type { Job } from 'bullmq';
import type IORedis from 'ioredis';
import { snapshotOf, toJobView } from '../src/job/view';
import type { JobState } from '../src/job/state';
import { WORKFLOW_FIELD, type ImageJob } from '../src/queue';
import type { JobData, JobRequest } from '../src/job/data';
import type { JobProgress } from '../src/job/progress';

/**
 * How Bull Board shows an image job, through its own formatters (no fork of Bull Board):
 * - name: `jobType · user`, then `CANCELLED` or `failed: <code>` and `retry <n>`, so a
 *   cancelled job is told apart from a failed one in the FAILED list at a glance;
 * - progress: the progress object with a numeric `progress` field (its percent), which is
 *   what Bull Board 9 draws as a bar; the object itself stays in the Progress tab;
 * - data: the JobState's epoch-ms times as ISO 8601 and one line per workflow node (the
 *   stored data is unchanged);
 * - return value: each output as one line with the URL the API serves it at (the job
 *   view's `url`).
 */

const TIME_FIELDS = [
  'createdAt',
  'startedAt',
  'submittedAt',
  'finishedAt',
  'updatedAt',
  'handedOffAt',
] as const;

/** The board's name of a job (`jobProps` is BullMQ's job.toJSON()). */
export function jobName(jobProps: { name?: string; data?: unknown }): string {
  const data = (jobProps.data ?? {}) as {
    request?: Partial<JobRequest>;
    state?: Partial<JobState>;
  };
  const request = data.request ?? {};
  const state = data.state ?? {};
  const parts = [
    typeof request.jobType === 'string' ? request.jobType : (jobProps.name ?? 'job'),
    typeof request.userId === 'string' ? request.userId : 'anonymous',
  ];
  if (state.status === 'cancelled') parts.push('CANCELLED');
  else if (state.status === 'failed') parts.push(`failed: ${state.error?.code ?? 'unknown'}`);
  if (state.generation) parts.push(`retry ${state.generation}`);
  return parts.join(' · ');
}

/** The progress object with the numeric `progress` field Bull Board draws a bar from. */
export function progressBar(progress: unknown): unknown {
  if (!progress || typeof progress !== 'object' || Array.isArray(progress)) return progress;
  const percent = (progress as Partial<JobProgress>).percent;
  return typeof percent === 'number' ? { progress: percent, ...progress } : progress;
}

/**
 * The job's data with the JobState's times readable and each workflow node on one line
 * (`class_type` and its inputs as JSON): Bull Board's JSON view folds objects nested as
 * deep as a node's into `{}`.
 */
export function readableData(data: unknown): unknown {
  if (!data || typeof data !== 'object') return data;
  const { state, workflow } = data as Partial<JobData>;
  const readable: Record<string, unknown> = { ...data };
  if (state && typeof state === 'object') {
    const times: Record<string, unknown> = { ...state };
    for (const field of TIME_FIELDS) {
      const ms = state[field];
      if (typeof ms === 'number' && Number.isFinite(ms)) times[field] = new Date(ms).toISOString();
    }
    readable.state = times;
  }
  if (workflow && typeof workflow === 'object') {
    readable.workflow = Object.fromEntries(
      Object.entries(workflow).map(([id, node]) => [
        id,
        `${String(node?.class_type)} ${JSON.stringify(node?.inputs ?? {})}`,
      ]),
    );
  }
  return readable;
}

/**
 * The job as the board shows and acts on it (in memory only): each output of a completed
 * job with its URL; and only a failed job retried. A completed or cancelled job's retry is
 * refused (`refuse`: the single-job button) or skipped (retry-all): a completed job's
 * retry would drop its outputs, and a cancel is final.
 */
function boardJob<T extends Job | undefined>(job: T, refuse: boolean): T {
  if (!job) return job;
  const outputs = (job.returnvalue as { outputs?: unknown } | null | undefined)?.outputs;
  if (Array.isArray(outputs)) {
    // one line per output: Bull Board's JSON view folds objects nested this deep into `{}`
    const view = toJobView(snapshotOf(job as unknown as ImageJob, 'completed'));
    job.returnvalue = {
      ...(job.returnvalue as object),
      outputs: (view.outputs ?? []).map(
        (o) => `node ${o.nodeId}: ${o.filename} (${o.type}) → ${o.url}`,
      ),
    };
  }
  const status = (job.data as Partial<JobData> | undefined)?.state?.status;
  if (status === 'completed' || status === 'cancelled') {
    const why = `job ${job.id} is ${status}: only a failed job is retried`;
    job.retry = () => (refuse ? Promise.reject(new Error(why)) : Promise.resolve());
  }
  return job;
}

export class ImageJobsAdapter extends BullMQAdapter {
  constructor(
    private readonly jobs: ConstructorParameters<typeof BullMQAdapter>[0],
    options: ConstructorParameters<typeof BullMQAdapter>[1] = {},
  ) {
    // (allowCompletedRetries is read by Bull Board 9 but missing from its option type)
    super(jobs, { ...options, allowCompletedRetries: false } as typeof options);
    this.setFormatter('name', jobName);
    this.setFormatter('progress', progressBar);
    this.setFormatter('data', readableData);
  }

  override async getJob(id: string): Promise<Job | undefined> {
    const job = await super.getJob(id);
    if (job) await this.withWorkflows([job]);
    return boardJob(job, true);
  }

  override async getJobs(...args: Parameters<BullMQAdapter['getJobs']>): Promise<Job[]> {
    const jobs = await super.getJobs(...args);
    await this.withWorkflows(jobs);
    return jobs.map((job) => boardJob(job, false));
  }

  /**
   * Puts each job's workflow (the job hash's own field, which job reads leave out) into its
   * data, in memory, for the data formatter; one round trip for the page.
   */
  private async withWorkflows(jobs: Job[]): Promise<void> {
    if (jobs.length === 0) return;
    const client = (await this.jobs.backend.client) as unknown as IORedis;
    const pipeline = client.pipeline();
    for (const job of jobs) pipeline.hget(this.jobs.toKey(job.id!), WORKFLOW_FIELD);
    const replies = (await pipeline.exec()) ?? [];
    jobs.forEach((job, i) => {
      const [err, text] = replies[i] ?? [];
      if (err || typeof text !== 'string') return;
      try {
        job.data = { ...(job.data as object), workflow: JSON.parse(text) as unknown };
      } catch {
        // a workflow that is not JSON is shown as it is stored
        job.data = { ...(job.data as object), workflow: text };
      }
    });
  }
}
