import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { createAnalytics, posthogSink } from '../src/analytics-posthog';
import { createLogger } from '../src/logger';
import { waitFor } from './helpers/wait';
import { jobEvents } from './helpers/job-events';

interface Batch {
  path: string;
  headers: IncomingHttpHeaders;
  body: {
    api_key: string;
    batch: { event: string; distinct_id: string; properties: Record<string, unknown> }[];
  };
}

/** A stand-in PostHog ingestion server: records every request (gzip or not). */
async function startIngest(status: number | 'hang' = 200) {
  const requests: Batch[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString();
      requests.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(text || '{}') });
      if (status === 'hang') return;
      res.writeHead(status, { 'content-type': 'application/json' }).end('{"status":1}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    requests,
    events: () => requests.flatMap((r) => r.body.batch ?? []),
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()));
      cb();
    },
  });
  return { log: createLogger({ logLevel: 'info' }, dest), lines };
}

const KEY = 'phc_testkey_0123456789';

describe('PostHog sink (real posthog-node, real HTTP)', () => {
  let ingest: Awaited<ReturnType<typeof startIngest>> | undefined;
  afterEach(async () => {
    await ingest?.close();
    ingest = undefined;
  });

  it('sends the events with their properties to <host>/batch/ and flushes on close', async () => {
    ingest = await startIngest();
    const { log } = capturingLogger();
    // batches of 100 and a 1-minute interval: nothing leaves before close() flushes it
    const sink = posthogSink({ posthogApiKey: KEY, posthogHost: `${ingest.url}/` }, log, {
      flushAt: 100,
      flushIntervalMs: 60_000,
    });
    sink.capture('comfyui_job_state_saved', 'user-7', {
      promptId: 'p-1',
      jobType: 'txt2img',
      userId: 'user-7',
      jobId: 'j-1',
    });
    sink.capture('comfyui_job_recovered', 'j-2', jobEvents.comfyui_job_recovered);
    sink.capture('comfyui_job_completed', 'user-7', jobEvents.comfyui_job_completed);
    sink.capture('comfyui_job_failed', 'j-3', jobEvents.comfyui_job_failed);
    expect(ingest.requests).toHaveLength(0);
    await sink.close();
    await sink.close(); // idempotent

    const batches = ingest.requests.filter((r) => r.path.startsWith('/batch'));
    expect(batches.length).toBeGreaterThanOrEqual(1);
    expect(batches[0].path).toBe('/batch/');
    expect(batches[0].body.api_key).toBe(KEY);
    expect(batches[0].headers['content-encoding']).toBe('gzip'); // posthog-node gzips batches
    const events = ingest.events();
    expect(events.map((e) => e.event)).toEqual([
      'comfyui_job_state_saved',
      'comfyui_job_recovered',
      'comfyui_job_completed',
      'comfyui_job_failed',
    ]);
    const [saved, recovered, completed, failed] = events;
    expect(saved.distinct_id).toBe('user-7');
    expect(saved.properties).toMatchObject({ promptId: 'p-1', jobType: 'txt2img', jobId: 'j-1' });
    expect(saved.properties.$process_person_profile).toBeUndefined();
    expect(recovered.distinct_id).toBe('j-2');
    expect(recovered.properties).toMatchObject({
      promptId: 'p-2',
      jobAge: 42,
      recoveryTime: 1234,
      reason: 'stall',
      $process_person_profile: false, // keyed by job id: no person profile per job
    });
    expect(completed.properties).toMatchObject({ durationMs: 5000, jobType: 'txt2img' });
    expect(failed.properties).toMatchObject({ code: 'execution_error', durationMs: 800 });

    // after close, captures are dropped quietly
    expect(() =>
      sink.capture('comfyui_job_resubmitted', 'x', { jobId: 'x', promptId: 'p' }),
    ).not.toThrow();
  });

  it('flushes in the background once flushAt events are queued', async () => {
    ingest = await startIngest();
    const sink = posthogSink(
      { posthogApiKey: KEY, posthogHost: ingest.url },
      capturingLogger().log,
      {
        flushAt: 2,
        flushIntervalMs: 60_000,
      },
    );
    const started = { jobId: 'j', jobType: 't', waitMs: 12 };
    sink.capture('comfyui_job_started', 'j', started);
    sink.capture('comfyui_job_started', 'j', started);
    await waitFor('a background batch', () => ingest!.events().length === 2);
    expect(ingest.events()[0].properties).toMatchObject({ waitMs: 12 });
    await sink.close();
  });

  it('never throws and logs send failures without the key', async () => {
    ingest = await startIngest(400);
    const { log, lines } = capturingLogger();
    const sink = posthogSink({ posthogApiKey: KEY, posthogHost: ingest.url }, log, {
      flushAt: 100,
      flushIntervalMs: 60_000,
      shutdownTimeoutMs: 3_000,
    });
    expect(() =>
      sink.capture('comfyui_job_resubmitted', 'j', { jobId: 'j', promptId: 'p' }),
    ).not.toThrow();
    await expect(sink.close()).resolves.toBeUndefined();
    expect(ingest.requests.length).toBeGreaterThanOrEqual(1);
    const warn = lines.find((l) => String(l.msg).startsWith('analytics:'));
    expect(warn).toBeDefined();
    expect(JSON.stringify(lines)).not.toContain(KEY);
  });

  it('bounds close() when PostHog does not answer, and reports an unreachable one', async () => {
    ingest = await startIngest('hang');
    const { log, lines } = capturingLogger();
    const sink = posthogSink({ posthogApiKey: KEY, posthogHost: ingest.url }, log, {
      shutdownTimeoutMs: 300,
      retries: 0,
      errorLogEveryMs: 0,
    });
    sink.capture('comfyui_job_resubmitted', 'j', { jobId: 'j', promptId: 'p' });
    // PostHog never answers: close() returns at all only because it is bounded
    await sink.close();
    expect(lines.map((l) => l.msg)).toContain(
      'analytics: flushing events on close failed (jobs are unaffected)',
    );
    await ingest.close(); // the pending request fails now: reported, not thrown
    await waitFor('the send failure to be logged', () =>
      lines.some(
        (l) => l.msg === 'analytics: sending events to PostHog failed (jobs are unaffected)',
      ),
    );
    expect(JSON.stringify(lines)).not.toContain(KEY);
    ingest = undefined;
  });
});

describe('createAnalytics', () => {
  it('logs only without POSTHOG_API_KEY, and logs plus PostHog with it', async () => {
    const { log, lines } = capturingLogger();
    const logOnly = createAnalytics({ posthogApiKey: undefined, posthogHost: undefined }, log);
    logOnly.capture('comfyui_job_started', 'j', { jobId: 'j', jobType: 't', waitMs: 1 });
    await logOnly.close();
    expect(lines.some((l) => l.analytics === 'comfyui_job_started')).toBe(true);

    const ingest = await startIngest();
    try {
      const both = createAnalytics({ posthogApiKey: KEY, posthogHost: ingest.url }, log);
      both.capture('comfyui_job_started', 'j', { jobId: 'j', jobType: 't', waitMs: 2 });
      await both.close();
      expect(ingest.events().map((e) => e.event)).toEqual(['comfyui_job_started']);
      expect(lines.filter((l) => l.analytics === 'comfyui_job_started')).toHaveLength(2);
      expect(JSON.stringify(lines)).not.toContain(KEY);
    } finally {
      await ingest.close();
    }
  });
});
