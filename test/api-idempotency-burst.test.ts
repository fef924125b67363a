import { idempotentJobId } from '../src/api/enqueue';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { waitFor } from './helpers/wait';
import { tinyWorkflow } from './helpers/workflows';

/**
 * Redis is killed (SIGKILL) and restarted during a burst of POSTs that all carry
 * idempotency keys; every client retries each non-2xx answer with the same key until it
 * gets a 2xx. Exactly one job per key exists afterwards and none is lost. Redis runs with
 * `appendfsync always`, so what it acknowledged survives the kill.
 */

const KEYS = 80;
const CLIENTS = 8;
const KILL_AFTER = 20;

describe('API: Redis killed during a burst of idempotent POSTs', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'silent', redisArgs: ['--appendfsync', 'always'] });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('every key ends with exactly one job, none lost, however often it was retried', async () => {
    const base = await h.listen();
    const workflow = tinyWorkflow('burst');
    const keys = Array.from({ length: KEYS }, (_, i) => `burst-${i}`);
    const answers = new Map<string, { id: string; status: number; tries: number }>();
    const errors = new Map<string, number>();
    let done = 0;
    let killed: Promise<void> | undefined;
    let restarted: Promise<void> | undefined;

    async function submit(key: string) {
      for (let tries = 1; ; tries++) {
        let status = 0;
        let body: { id?: string; error?: { code: string } } = {};
        try {
          const res = await fetch(`${base}/v1/jobs`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key },
            body: JSON.stringify({ workflow, metadata: { key } }),
          });
          status = res.status;
          body = (await res.json()) as typeof body;
        } catch {
          status = -1; // the connection itself failed: retry like any non-2xx
        }
        if (status >= 200 && status < 300) {
          answers.set(key, { id: body.id!, status, tries });
          if (++done === KILL_AFTER) killed = h.redis.kill();
          return;
        }
        const code = body.error?.code ?? String(status);
        errors.set(code, (errors.get(code) ?? 0) + 1);
        // Redis comes back once a few requests have seen it gone
        if (killed && !restarted && (errors.get('queue_unavailable') ?? 0) >= 10) {
          restarted = killed.then(() => h.redis.start());
        }
        await new Promise((r) => setTimeout(r, 25)); // pacing between retries
      }
    }

    const queue = [...keys];
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        for (let key = queue.shift(); key; key = queue.shift()) await submit(key);
      }),
    );
    await restarted;
    console.log(
      `burst: errors answered and retried: ${JSON.stringify(Object.fromEntries(errors))}`,
    );

    expect(killed).toBeDefined();
    expect(answers.size).toBe(KEYS);
    await waitFor('the API to reach Redis again', async () =>
      (await fetch(`${base}/readyz`)).status === 200 ? true : undefined,
    );
    // one job per key: the id its key derives, and no other job in the queue
    for (const key of keys) expect(answers.get(key)!.id).toBe(idempotentJobId(key));
    const jobs = await h.services.queue.getJobs(['waiting', 'prioritized', 'delayed']);
    expect(jobs.map((j) => j.id).sort()).toEqual(keys.map((k) => idempotentJobId(k)).sort());
    for (const job of jobs) {
      const key = (job.data.request.metadata as { key: string }).key;
      expect(job.id).toBe(idempotentJobId(key));
    }
    // the kill was felt: some requests were answered with an error and retried
    expect([...errors.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });
});
