import { fanOutSink, type AnalyticsSink } from '../../src/analytics';
import { createMetrics, metricsSink } from '../../src/metrics';
import { jobEvents } from '../helpers/job-events';

test('job events move the Prometheus counters', async () => {
  const m = createMetrics();
  const sink = metricsSink(m);
  sink.capture('comfyui_job_started', 'u', { jobId: 'j-1', jobType: 'txt2img', waitMs: 20 });
  sink.capture('comfyui_job_completed', 'u', jobEvents.comfyui_job_completed);
  sink.capture('comfyui_job_failed', 'u', jobEvents.comfyui_job_failed);
  sink.capture('comfyui_job_recovered', 'u', jobEvents.comfyui_job_recovered);
  sink.capture('comfyui_job_resubmitted', 'u', { jobId: '3', promptId: 'p' });
  const text = await m.registry.metrics();
  expect(text).toContain('comfyui_jobs_completed_total{job_type="txt2img"} 1');
  expect(text).toContain('comfyui_jobs_failed_total{code="execution_error"} 1');
  expect(text).toContain('comfyui_job_recoveries_total{reason="stall"} 1');
  expect(text).toContain('comfyui_job_resubmissions_total 1');
  expect(text).toContain('comfyui_job_wait_seconds_count 1');
});

test('a throwing sink never stops the others', () => {
  const seen: string[] = [];
  const bad: AnalyticsSink = {
    capture: () => {
      throw new Error('down');
    },
    close: async () => {},
  };
  const good: AnalyticsSink = { capture: (e) => void seen.push(e), close: async () => {} };
  fanOutSink(bad, good).capture('comfyui_job_resubmitted', 'u', { jobId: '1', promptId: 'p' });
  expect(seen).toEqual(['comfyui_job_resubmitted']);
});
