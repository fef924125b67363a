import type { Logger } from './logger';

/**
 * Product analytics events. The worker emits them through a sink so where they go
 * (the log now, PostHog when configured) is not the processor's concern.
 * A sink never throws into its caller.
 */
export interface AnalyticsEvents {
  comfyui_job_state_saved: { promptId: string; jobType: string; userId?: string; jobId: string };
  comfyui_job_recovered: {
    promptId: string;
    jobAge: number;
    recoveryTime: number;
    jobId: string;
    reason: 'stall' | 'handoff';
  };
  comfyui_job_started: { jobId: string; jobType: string; waitMs: number };
  comfyui_job_resubmitted: { jobId: string; promptId: string };
  /** a pending prompt moved to an idle instance (DESIGN "Moving a pending prompt") */
  comfyui_prompt_moved: { jobId: string; promptId: string; from: string; to: string };
  comfyui_job_completed: { promptId: string; jobId: string; durationMs: number; jobType: string };
  comfyui_job_failed: {
    promptId?: string;
    jobId: string;
    code: string;
    durationMs: number;
    jobType: string;
  };
}

export interface AnalyticsSink {
  capture<E extends keyof AnalyticsEvents>(
    event: E,
    distinctId: string,
    props: AnalyticsEvents[E],
  ): void;
  close(): Promise<void>;
}

export function logAnalyticsSink(log: Logger): AnalyticsSink {
  return {
    capture(event, distinctId, props) {
      log.info(
        { analytics: event, distinctId, ...(props as object) },
        'analytics ' + String(event),
      );
    },
    async close() {},
  };
}

/** Sends every event to each sink; one failing sink never affects the others or the job. */
export function fanOutSink(...sinks: AnalyticsSink[]): AnalyticsSink {
  return {
    capture(event, distinctId, props) {
      for (const s of sinks) {
        try {
          s.capture(event, distinctId, props);
        } catch {
          // analytics never affect jobs
        }
      }
    },
    async close() {
      await Promise.allSettled(sinks.map((s) => s.close()));
    },
  };
}
