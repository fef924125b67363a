import type { ImageJob } from '../../queue';
import { JOB_DATA_VERSION, JobDataSchema, type JobData } from '../../job/data';
import { JobFailure } from './types';

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
