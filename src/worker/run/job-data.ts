import { z } from 'zod';
import { JOB_DATA_VERSION, type ImageJob, type JobData } from '../../queue';
import { JobFailure } from './types';

const JobDataSchema = z.object({
  v: z.literal(JOB_DATA_VERSION),
  workflow: z
    .record(
      z.string(),
      z.object({ class_type: z.string(), inputs: z.record(z.string(), z.unknown()) }).loose(),
    )
    .nullable(),
  nodes: z.int().min(0).optional(),
  request: z.object({ jobType: z.string(), userId: z.string().optional() }).loose(),
  inputs: z
    .array(
      z.union([
        z
          .object({
            name: z.string(),
            upload: z.string(),
            size: z.number(),
            sha256: z.string(),
            contentType: z.string(),
          })
          .loose(),
        z.object({ name: z.string(), url: z.string() }).loose(),
      ]),
    )
    .optional(),
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

/**
 * The job's data when it can be trusted, or a clear failure that never crash-loops the
 * worker. The data is left as it is (nothing lost); the reason goes to the job's log and
 * its failedReason.
 */
export async function readJobData(job: ImageJob): Promise<JobData> {
  const parsed = JobDataSchema.safeParse(job.data);
  if (parsed.success) return parsed.data as unknown as JobData;
  const reason =
    job.data && typeof job.data === 'object' && 'v' in job.data && job.data.v !== JOB_DATA_VERSION
      ? `job data version ${String((job.data as { v: unknown }).v)} is not supported (this worker reads version ${JOB_DATA_VERSION})`
      : `job data is malformed: ${parsed.error.issues
          .slice(0, 3)
          .map((i) => `${i.path.join('.') || '(root)'} ${i.message}`)
          .join('; ')}`;
  await job.log(`failed: invalid_job_data: ${reason}`);
  throw new JobFailure({ code: 'invalid_job_data', message: reason });
}
