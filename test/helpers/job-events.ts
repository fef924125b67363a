import type { AnalyticsEvents } from '../../src/analytics';

/** One of each job outcome event as the worker captures it: what the analytics sinks get. */
export const jobEvents = {
  comfyui_job_completed: { promptId: 'p-1', jobId: 'j-1', durationMs: 5000, jobType: 'txt2img' },
  comfyui_job_failed: {
    jobId: 'j-3',
    code: 'execution_error',
    durationMs: 800,
    jobType: 'txt2img',
  },
  comfyui_job_recovered: {
    promptId: 'p-2',
    jobAge: 42,
    recoveryTime: 1234,
    jobId: 'j-2',
    reason: 'stall',
  },
} satisfies Partial<{ [E in keyof AnalyticsEvents]: AnalyticsEvents[E] }>;
