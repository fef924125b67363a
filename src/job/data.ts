import { z } from 'zod';
import { INTERNAL_STATUSES, initialState, type JobOutput, type JobState } from './state';

/**
 * The job's data (what BullMQ's job hash holds in `data`) and its result: the types, their
 * version, the schema a worker checks the data against before it trusts it
 * (`readJobData`), and the data of a new job.
 */

/** Bump when JobData changes shape; workers refuse data of an unknown version. */
export const JOB_DATA_VERSION = 1;

/** A ComfyUI workflow in API format: `{ nodeId: { class_type, inputs, _meta? } }`. */
export type Workflow = Record<
  string,
  { class_type: string; inputs: Record<string, unknown>; [k: string]: unknown }
>;

export interface JobRequest {
  jobType: string;
  userId?: string;
  webhookUrl?: string;
  idempotencyKey?: string;
  metadata?: Record<string, unknown>;
  /** the name of the API key that submitted the job, when keys are scoped (API_KEYS name:key) */
  owner?: string;
}

/**
 * A file the workflow reads (DESIGN "Media in"): an upload in storage, or a URL the worker
 * fetches (into `jobs/<id>/inputs/<i>`; size, sha256 and type are recorded then).
 */
export type JobInput =
  | { name: string; upload: string; size: number; sha256: string; contentType: string }
  | { name: string; url: string; size?: number; sha256?: string; contentType?: string };

export interface JobData {
  v: number;
  /**
   * null for jobs the API adds: their workflow is the job hash's own WORKFLOW_FIELD, so no
   * read of the job (view, events, cancel, state writes) carries it. Jobs added before that
   * (or by tests) may hold it here; workers read either (`readWorkflow`).
   */
  workflow: Workflow | null;
  /** the workflow's node count (progress needs it without reading the workflow) */
  nodes?: number;
  request: JobRequest;
  state: JobState;
  /** input files, in the order given (absent: none) */
  inputs?: JobInput[];
}

export interface JobResult {
  outputs: JobOutput[];
}

/** The schema of JobData a worker accepts (unknown fields kept: `loose`). */
export const JobDataSchema = z.object({
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
      status: z.enum(INTERNAL_STATUSES),
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

/** The data of a new job: what the API enqueues. */
export function newJobData(
  workflow: Workflow | null,
  request: JobRequest,
  now: number,
  inputs?: JobInput[],
): JobData {
  const data: JobData = { v: JOB_DATA_VERSION, workflow, request, state: initialState(now) };
  if (inputs && inputs.length > 0) data.inputs = inputs;
  return data;
}
