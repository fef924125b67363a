/**
 * Media in and out (issue #12), with the real processes (API, worker, simulator) sharing a
 * file storage, one job at a time:
 *
 * - copy cost per output: the worker's copy of a 2.0 MB PNG from ComfyUI's /view into
 *   storage (its `outputs copied to storage` log line, `copyMs`), as a ratio of a raw /view
 *   download of the same file by the benchmark, measured alternately in the same run;
 * - overhead per job with one input (an upload, put on ComfyUI by /upload/image) and one
 *   output (copied to storage): POST → completed − prompt time, as in bench/latency.ts,
 *   beside the same figure for the plain instant workflow (one output, no input) in the
 *   same run, and against the figure docs/PERFORMANCE.md gave before media (p50 11 ms).
 */
import { loadConfig } from '../src/config';
import { jobKey } from '../src/queue';
import { encodePng } from '../src/simulator/png';
import { img2imgWorkflow, uncompressedPngWorkflow } from '../test/helpers/workflows';
import { runJob, type JobTimes } from './latency';
import {
  fmt,
  fmtMs,
  median,
  sizedWorkflow,
  startApi,
  startBackend,
  startWorker,
  summarize,
  uniqueName,
} from './lib';
import type { Figure, Row } from './lib';
import type { Workflow } from '../src/job/data';

/** the overhead per job docs/PERFORMANCE.md measured before media (p50, p99) */
const BEFORE_MEDIA = { p50: 11, p99: 38 };
/** EmptyImage side whose uncompressed PNG (SaveAnimatedPNG, compress_level 0) is ≈ 2.0 MB */
const SIDE_2MB = 816;

export const media: Figure = async (ctx, scope) => {
  const n = ctx.quick ? 15 : 40;
  const backend = await startBackend(scope, { simulator: 'simulator-media' });
  const { redis, sim } = backend;
  const env = backend.env('media');
  const [api, worker] = await Promise.all([
    startApi(scope, 'api-media', env),
    startWorker(scope, 'media-worker', env),
  ]);
  const { queuePrefix } = loadConfig(env);
  const key = (queue: string, id: string) => jobKey({ queuePrefix, queueName: queue }, id);
  const run = (workflow: Workflow, extra?: Record<string, unknown>) =>
    runJob(redis, api.url, sim, key, 'media', workflow, extra);

  // one input: a 64×64 PNG uploaded once, used by every job (put on ComfyUI each time)
  const upload = await fetch(`${api.url}/v1/uploads?filename=face.png`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: encodePng(
      64,
      64,
      new Uint8Array(64 * 64 * 3).map((_, i) => i % 251),
    ),
    signal: AbortSignal.timeout(10_000),
  });
  if (upload.status !== 201) throw new Error(`POST /v1/uploads answered ${upload.status}`);
  const { id: uploadId } = (await upload.json()) as { id: string };
  const withInput = () =>
    run(img2imgWorkflow(uniqueName('in')), { inputs: { 'face.png': { upload: uploadId } } });
  const plain = () => run(sizedWorkflow(0, uniqueName('plain')));
  await withInput(); // warm-up: connections, JIT, the first /upload/image
  await plain();

  ctx.log('  media: copy of a 2 MB output vs a raw /view download, alternately');
  const copyMs: number[] = [];
  const rawMs: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const copied = worker.waitForLine(/outputs copied to storage/);
    const job = await run(uncompressedPngWorkflow(SIDE_2MB, uniqueName('big')));
    const line = await copied;
    const field = (name: string) => Number(new RegExp(`"${name}":([\\d.]+)`).exec(line)?.[1]);
    copyMs.push(field('copyMs'));
    bytes = field('bytes');
    rawMs.push(await rawView(api.url, sim.url, job));
  }

  ctx.log('  media: overhead per job, one input and one output, beside the plain workflow');
  const inputs: JobTimes[] = [];
  const plains: JobTimes[] = [];
  for (let i = 0; i < n; i++) {
    inputs.push(await withInput());
    plains.push(await plain());
  }

  const own = (t: JobTimes) => t.finished - t.sent - (t.promptEnd - t.promptStart);
  const ov = summarize(inputs.map(own));
  const base = summarize(plains.map(own));
  const copy = median(copyMs);
  const raw = median(rawMs);
  const p = (s: { p50: number; p99: number }) => `p50 ${fmtMs(s.p50)}, p99 ${fmtMs(s.p99)}`;
  const rows: Row[] = [
    {
      id: 'media-copy',
      figure: `copy cost per output (${fmt(bytes / 1e6, 2)} MB PNG, /view → storage)`,
      value: `median ${fmtMs(copy)} (n=${copyMs.length})`,
      baseline: `raw /view download ${fmtMs(raw)}`,
      ratio: copy / raw,
      target: 'printed',
      data: { copyMs: summarize(copyMs), rawMs: summarize(rawMs), bytes },
    },
    {
      id: 'media-overhead',
      figure: 'overhead per job, one input (upload) and one output (POST → completed − prompt)',
      value: `${p(ov)} (n=${ov.n})`,
      baseline: `same run, no input: ${p(base)}; before media: ${p(BEFORE_MEDIA)}`,
      ratio: ov.p50 / base.p50,
      target: `printed, against today's p50 ${BEFORE_MEDIA.p50} ms`,
      data: { withInput: ov, plain: base, beforeMedia: BEFORE_MEDIA },
      note: `the input adds ${fmtMs(ov.p50 - base.p50)} at p50 over the same run's plain workflow (which copies its one output too)`,
    },
  ];
  return rows;
};

/** Downloads the job's output straight from ComfyUI's /view, as the worker does; ms. */
async function rawView(apiUrl: string, simUrl: string, job: JobTimes): Promise<number> {
  const view = (await (await fetch(`${apiUrl}/v1/jobs/${job.id}`)).json()) as {
    outputs: { filename: string; subfolder: string; type: string }[];
  };
  const o = view.outputs[0];
  const qs = new URLSearchParams({ filename: o.filename, subfolder: o.subfolder, type: o.type });
  const t0 = performance.now();
  const res = await fetch(`${simUrl}/view?${qs}`, { signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return performance.now() - t0;
}
