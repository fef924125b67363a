import { Job } from 'bullmq';
import { createLogger } from '../src/logger';
import { createMetrics, serveMetrics, type Metrics } from '../src/metrics';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { sleepWorkflow, tinyWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/** The worker's /metrics: Prometheus text whose counters move as jobs complete, fail and recover. */
let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem();
});
afterAll(async () => {
  await sys?.close();
});

/** parses Prometheus text exposition into `name{labels}` → value */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

async function scrape(port: number) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parse(await res.text());
}

async function settle(id: string) {
  const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await job.waitUntilFinished(sys.events).catch(() => undefined);
}

test('counters move as jobs complete, fail and recover', async () => {
  const metricsA: Metrics = createMetrics();
  const a = await sys.startWorker({}, { metrics: metricsA });

  await settle(await sys.enqueue(tinyWorkflow('m-ok')));
  await settle(await sys.enqueue(tinyWorkflow('../escape')));
  let m = parse(await metricsA.registry.metrics());
  expect(m.get('comfyui_jobs_completed_total{job_type="test"}')).toBe(1);
  expect(m.get('comfyui_jobs_failed_total{code="execution_error"}')).toBe(1);
  expect(m.get('comfyui_job_wait_seconds_count')).toBe(2);
  expect([...m.keys()].some((k) => k.startsWith('comfyui_queue_jobs'))).toBe(false); // the API's
  expect(
    [...m.keys()].some((k) =>
      /^comfyui_request_duration_seconds_count\{.*comfyui_instance="http:\/\/127\.0\.0\.1/.test(k),
    ),
  ).toBe(true);

  // a hand-off: worker A shuts down mid-job, worker B resumes it and counts the recovery
  const id = await sys.enqueue(sleepWorkflow(1, 'm-handoff'));
  await waitFor('the prompt to be running', async () => {
    const s = (await Job.fromId<JobData>(sys.queue, id))!.data.state;
    return s.promptId && sys.sim.executions()[s.promptId] ? true : undefined;
  });
  await a.close();
  const metricsB = createMetrics();
  await sys.startWorker({}, { metrics: metricsB });
  await settle(id);
  m = parse(await metricsB.registry.metrics());
  expect(m.get('comfyui_job_recoveries_total{reason="handoff"}')).toBe(1);
  expect(m.get('comfyui_jobs_completed_total{job_type="test"}')).toBe(1);
});

test('the worker serves its registry over HTTP on METRICS_PORT', async () => {
  const metrics = createMetrics();
  const server = (await serveMetrics(metrics, 0, createLogger({ logLevel: 'silent' })))!;
  try {
    const port = (server.address() as { port: number }).port;
    // this registry's own series: a fresh one reads 0, the process defaults are there
    let m = await scrape(port);
    expect(m.get('comfyui_job_resubmissions_total')).toBe(0);
    expect(m.get('comfyui_job_wait_seconds_count')).toBe(0);
    expect(m.get('process_start_time_seconds')).toBeGreaterThan(0);
    // …read at each scrape: what the worker counts is what is served
    metrics.resubmissions.inc();
    metrics.jobsCompleted.inc({ job_type: 'scraped' });
    m = await scrape(port);
    expect(m.get('comfyui_job_resubmissions_total')).toBe(1);
    expect(m.get('comfyui_jobs_completed_total{job_type="scraped"}')).toBe(1);
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
  } finally {
    await new Promise<void>((resolve, reject) =>
      server.close((err) => (err ? reject(err) : resolve())),
    );
  }
});
