import { z } from 'zod';

/**
 * A job's progress, declared once: what the worker saves (BullMQ's job progress, which
 * Bull Board's progress tab shows), what the socket computes from ComfyUI's events, and
 * the `progress` of the public job view.
 */

/**
 * The largest `progress.queuePosition` of a queued job: the API looks for a job among the
 * last this-many entries of BullMQ's wait list only (where the jobs next to run are), so
 * this value means "this many jobs ahead, or more".
 */
export const QUEUE_POSITION_LIMIT = 10_000;

export const JobProgressSchema = z.strictObject({
  percent: z.number().min(0).max(100),
  value: z.number().optional(),
  max: z.number().optional(),
  node: z.string().optional(),
  queuePosition: z
    .int()
    .min(0)
    .optional()
    .describe(
      `jobs ahead of this one: in this queue while queued (${QUEUE_POSITION_LIMIT} means ${QUEUE_POSITION_LIMIT} or more), in ComfyUI's queue once submitted`,
    ),
});
export type JobProgress = z.infer<typeof JobProgressSchema>;
