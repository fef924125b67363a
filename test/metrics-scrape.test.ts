import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import {
  createApiMetrics,
  createMetrics,
  metricsHandler,
  registerQueueDepth,
} from '../src/metrics';
import { createSimulator } from '../src/simulator/server';
import { startImageWorker, type ImageWorker } from '../src/worker/worker';
import { logAnalyticsSink } from '../src/analytics';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { FAST_WORKER_ENV } from './helpers/api-worker';
import { waitFor } from './helpers/wait';
import { tinyWorkflow } from './helpers/workflows';

/**
 * Both processes' /metrics, scraped over HTTP after a job ran: valid Prometheus text (a
 * parser, as `promtool check metrics` would), each process with only what it owns, the
 * ComfyUI instance label `comfyui_instance`, Node's default metrics unprefixed, and every
 * metric and grouping label the Grafana dashboard queries present in a real scrape.
 */

type Sim = Awaited<ReturnType<typeof createSimulator>>;
interface Family {
  name: string;
  type: string;
  metrics: Array<{ labels?: Record<string, string> }>;
}

const GRAFANA_DIR = join(__dirname, '..', 'docs', 'grafana');
/** PromQL words that are not metric names */
const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const SAMPLE_LINE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? \S+$/;

let h: ApiHarness;
let sim: Sim;
let worker: ImageWorker;
let base: string;

beforeAll(async () => {
  const apiMetrics = createApiMetrics();
  h = await startApiHarness({ logLevel: 'warn', deps: { metrics: metricsHandler(apiMetrics) } });
  registerQueueDepth(apiMetrics, [h.services.queue]);
  sim = await createSimulator({ port: 0 });
  const config = loadConfig({ ...h.env, ...FAST_WORKER_ENV, COMFYUI_URL: sim.url });
  const log = createLogger({ logLevel: 'warn' });
  worker = await startImageWorker(config, {
    log,
    analytics: logAnalyticsSink(log),
    metrics: createMetrics(),
  });
  base = await h.listen();
  const res = await fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jobType: 'scraped', workflow: tinyWorkflow('scrape') }),
  });
  const { id } = (await res.json()) as { id: string };
  await waitFor('the job to complete', async () => {
    const v = (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as { status: string };
    return v.status === 'completed' ? true : undefined;
  });
});
afterAll(async () => {
  await worker?.close();
  await sim?.close();
  await h?.close();
});

/** Scrapes, checks every line is exposition format, and parses into families. */
async function scrape(url: string) {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  const text = await res.text();
  const bad = text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('# HELP ') && !l.startsWith('# TYPE '))
    .filter((l) => !SAMPLE_LINE.test(l));
  expect(bad).toEqual([]);
  const families = parsePrometheusTextFormat(text) as Family[];
  const names = families.map((f) => f.name);
  expect(new Set(names).size).toBe(names.length); // one HELP/TYPE per family
  /** sample name → label names seen on its lines (a family nothing counted yet: none) */
  const samples = new Map<string, { labels: Set<string>; sampled: boolean }>();
  for (const f of families) {
    const suffixes = f.type === 'HISTOGRAM' ? ['_bucket', '_count', '_sum'] : [''];
    for (const x of suffixes) samples.set(f.name + x, { labels: new Set(), sampled: false });
  }
  for (const line of text.split('\n')) {
    const m = SAMPLE_LINE.exec(line);
    if (!m) continue;
    const sample = samples.get(m[1]) ?? { labels: new Set<string>(), sampled: false };
    sample.sampled = true;
    for (const [, label] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g))
      sample.labels.add(label);
    samples.set(m[1], sample);
  }
  return { families, samples };
}

/** Metric names and grouping labels of a PromQL expression. */
function queried(expr: string): { metrics: string[]; groupBy: string[] } {
  const groupBy = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1].split(',').map((s) => s.trim()),
  );
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without)\s*\([^)]*\)/g, '');
  const metrics = [...bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
    .filter((m) => bare.slice(m.index + m[0].length).trimStart()[0] !== '(')
    .map((m) => m[0])
    .filter((w) => !PROMQL_WORDS.has(w));
  return { metrics, groupBy };
}

function dashboardQueries(): string[] {
  const exprs: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'expr' && typeof x === 'string') exprs.push(x);
        else if (k === 'query' && typeof x === 'object') walk(x);
        else walk(x);
      }
    }
  };
  for (const f of readdirSync(GRAFANA_DIR).filter((n) => n.endsWith('.json'))) {
    const dash = JSON.parse(readFileSync(join(GRAFANA_DIR, f), 'utf8')) as {
      templating: { list: Array<{ definition?: string }> };
    };
    walk(dash);
    for (const v of dash.templating.list) {
      const m = v.definition && /label_values\((\w+),/.exec(v.definition);
      if (m) exprs.push(m[1]);
    }
  }
  return exprs;
}

test('the API exposes the process and the queue, nothing of the workers', async () => {
  const { families } = await scrape(`${base}/metrics`);
  const names = families.map((f) => f.name);
  expect(names).toEqual(
    expect.arrayContaining(['process_cpu_seconds_total', 'nodejs_eventloop_lag_seconds']),
  );
  expect(names).toContain('comfyui_queue_jobs');
  const depth = families.find((f) => f.name === 'comfyui_queue_jobs')!;
  expect(depth.metrics).toContainEqual(
    expect.objectContaining({ labels: { queue: h.config.queueName, state: 'completed' } }),
  );
  expect(names.filter((n) => /^comfyui_(jobs?_|request_|webhook_|instance_)/.test(n))).toEqual([]);
  expect(names.filter((n) => n.startsWith('comfyui_queue_') && n !== 'comfyui_queue_jobs')).toEqual(
    [],
  );
});

test("the worker exposes its jobs and instances, labelled comfyui_instance, not the queue's depth", async () => {
  const { families, samples } = await scrape(`http://127.0.0.1:${worker.metricsPort}/metrics`);
  const names = families.map((f) => f.name);
  expect(names).toEqual(
    expect.arrayContaining([
      'process_cpu_seconds_total',
      'comfyui_jobs_completed_total',
      'comfyui_request_duration_seconds',
      'comfyui_instance_up',
    ]),
  );
  expect(names).not.toContain('comfyui_queue_jobs');
  const completed = families.find((f) => f.name === 'comfyui_jobs_completed_total')!;
  expect(completed.metrics).toEqual([{ value: '1', labels: { job_type: 'scraped' } }]);
  const up = families.find((f) => f.name === 'comfyui_instance_up')!;
  expect(up.metrics).toEqual([{ value: '1', labels: { comfyui_instance: sim.url } }]);
  const requestLabels = samples.get('comfyui_request_duration_seconds_count')!.labels;
  expect([...requestLabels].sort()).toEqual(['comfyui_instance', 'outcome', 'route']);
  for (const { labels } of samples.values()) expect(labels.has('instance')).toBe(false);
});

test('every metric and grouping label the Grafana dashboard queries is in a real scrape', async () => {
  const api = await scrape(`${base}/metrics`);
  const wrk = await scrape(`http://127.0.0.1:${worker.metricsPort}/metrics`);
  const samples = new Map([...api.samples, ...wrk.samples]);
  const exprs = dashboardQueries();
  expect(exprs.length).toBeGreaterThan(10);
  const missing: string[] = [];
  for (const expr of exprs) {
    const { metrics, groupBy } = queried(expr);
    if (metrics.length === 0) missing.push(`no metric in: ${expr}`);
    const labels = new Set(['instance', 'job']); // added by Prometheus to every target
    let sampled = false;
    for (const m of metrics) {
      const seen = samples.get(m);
      if (!seen) missing.push(`${m} (in ${expr})`);
      sampled ||= seen?.sampled ?? false;
      for (const l of seen?.labels ?? []) labels.add(l);
    }
    // a labelled counter nothing has counted yet has no samples to read its labels from
    if (sampled)
      for (const l of groupBy) if (!labels.has(l)) missing.push(`label ${l} (in ${expr})`);
  }
  expect(missing).toEqual([]);
});
