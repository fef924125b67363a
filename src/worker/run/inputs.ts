import type { JobRun } from './job-run';

/**
 * Step 2, inputs: puts the job's input files on the instance that will run the prompt,
 * before its POST (each submit, also a resubmission). Jobs have no inputs yet: nothing to do.
 */
export async function prepareInputs(_run: JobRun): Promise<void> {}
