import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Job, RedisConnection } from 'bullmq';
import IORedis from 'ioredis';
import type { JobView } from '../src/job/view';
import { createApp } from '../src/api/app';
import { mediaSettings } from '../src/api/inputs';
import { createApiServices, type ApiServices } from '../src/api/services';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { jobKey } from '../src/queue';
import { describeRedis, redisOptions, CLUSTER_OPTION } from '../src/redis';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { bareAppDeps, closeApiServer } from './helpers/api-harness';
import { startRedisCluster, type RedisCluster } from './helpers/cluster';
import type { RedisServer } from './helpers/redis-server';
import { FAST_ENV } from './helpers/system';
import { waitFor } from './helpers/wait';
import { alive, killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow, tinyWorkflow } from './helpers/workflows';
import { historyEntry } from './helpers/sim-history';
import type { JobData, JobResult } from '../src/job/data';

/**
 * The system on a real 3-master Redis Cluster (REDIS_CLUSTER=1): the API (wired as
 * src/bin/api.ts wires it), real worker processes and the simulator. REDIS_URL names a seed
 * node that does NOT serve the queue's hash slot, so every command must be routed (MOVED)
 * by the cluster client; all queue keys share the slot of the `{comfyui}` prefix.
 */

describe('REDIS_CLUSTER configuration', () => {
  it('off by default: the options are exactly the single-node ones and BullMQ is untouched', () => {
    const config = loadConfig({ REDIS_URL: 'redis://127.0.0.1:7000' });
    expect(config.redisCluster).toBe(false);
    for (const role of ['worker', 'producer', 'subscriber'] as const) {
      expect(redisOptions(config, role)).not.toHaveProperty(CLUSTER_OPTION);
    }
    expect(RedisConnection.clientFactory).toBeUndefined();
    expect(describeRedis(config)).toBe('127.0.0.1:7000');
  });

  it('REDIS_CLUSTER=1 marks every role for the cluster; a bad value names the variable', () => {
    const config = loadConfig({ REDIS_URL: 'redis://127.0.0.1:7000', REDIS_CLUSTER: '1' });
    expect(config.redisCluster).toBe(true);
    expect(redisOptions(config, 'worker')).toMatchObject({
      [CLUSTER_OPTION]: true,
      maxRetriesPerRequest: null,
    });
    expect(redisOptions(config, 'producer')).toMatchObject({
      [CLUSTER_OPTION]: true,
      enableOfflineQueue: false,
    });
    expect(RedisConnection.clientFactory).toBeDefined();
    expect(describeRedis(config)).toContain('Redis Cluster seed node');
    expect(() => loadConfig({ REDIS_CLUSTER: 'yes' })).toThrow(/REDIS_CLUSTER must be 0 or 1/);
  });
});

describe('on a real Redis Cluster', () => {
  let cluster: RedisCluster;
  let owner: RedisServer;
  let seed: RedisServer;
  let sim: Simulator;
  let services: ApiServices;
  let server: Server;
  let base: string;
  let env: Record<string, string>;
  const procs: WorkerProcess[] = [];
  const byName = new Map<string, WorkerProcess>();

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    const queueName = `cl-${randomBytes(4).toString('hex')}`;
    owner = await cluster.ownerOf(`{comfyui}:${queueName}:1`);
    seed = cluster.nodes.find((n) => n !== owner)!;
    sim = await createSimulator({ progressIntervalMs: 50 });
    env = {
      ...FAST_ENV,
      REDIS_URL: seed.url,
      REDIS_CLUSTER: '1',
      COMFYUI_URL: sim.url,
      QUEUE_NAME: queueName,
      // API and workers share the output storage, as in production
      STORAGE_URL: `file://${mkdtempSync(join(tmpdir(), 'cq-files-'))}`,
    };
    const config = loadConfig(env);
    const log = createLogger({ logLevel: 'warn' });
    services = await createApiServices(config, log);
    const app = createApp({
      ...bareAppDeps(services, log),
      media: mediaSettings(config, services.storage),
    });
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }, 60_000);

  afterAll(async () => {
    await killAll(procs);
    if (server) await closeApiServer(server, services.hub);
    await services?.queue.obliterate({ force: true }).catch(() => undefined);
    await services?.close();
    await sim?.close();
    await cluster?.stop();
    if (env?.STORAGE_URL)
      rmSync(env.STORAGE_URL.slice('file://'.length), { recursive: true, force: true });
  });

  function worker(name: string): WorkerProcess {
    const w = spawnWorker({ ...env, WORKER_NAME: name });
    procs.push(w);
    byName.set(name, w);
    w.ready.catch(() => undefined); // a worker killed by a test before it was ready
    return w;
  }

  const post = async (workflow: unknown) => {
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ workflow }),
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const view = async (id: string) =>
    (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as JobView;
  const job = async (id: string) =>
    (await Job.fromId<JobData, JobResult>(services.queue, id)) as Job<JobData, JobResult>;
  const settled = (id: string, timeoutMs = 30_000) =>
    waitFor(
      `job ${id} to finish`,
      async () => {
        const v = await view(id);
        return ['completed', 'failed', 'cancelled'].includes(v.status) ? v : undefined;
      },
      { timeoutMs, everyMs: 50 },
    );
  const executing = (id: string) =>
    waitFor('the prompt to start executing', async () => {
      const p = (await job(id)).data.state.promptId;
      return p && sim.executions()[p] ? p : undefined;
    });

  it('every connection of the API is a cluster client, and the seed is not the slot owner', async () => {
    expect(owner.port).not.toBe(seed.port);
    for (const node of cluster.nodes) {
      expect((await cluster.info(node)).cluster_known_nodes).toBe('3');
    }
    expect((services.redis as unknown as { isCluster?: boolean }).isCluster).toBe(true);
    const queueClient = (await services.queue.getBackend().client) as { isCluster?: boolean };
    expect(queueClient.isCluster).toBe(true);
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
  });

  it('submit → a worker process completes it with outputs; the keys live on the slot owner only', async () => {
    const a = worker('cluster-a');
    const b = worker('cluster-b');
    await Promise.all([a.ready, b.ready]);
    expect(a.output()).toContain('Redis Cluster seed node');
    const id = await post(tinyWorkflow('cluster-tiny'));
    const done = await settled(id);
    expect(done).toMatchObject({ status: 'completed', attempts: 1, recoveries: 0 });
    expect(done.outputs).toHaveLength(1);
    expect(done.outputs![0].filename).toMatch(/^cluster-tiny_\d+_\.png$/);
    const png = await fetch(`${base}/v1/jobs/${id}/outputs/0`);
    expect(png.status).toBe(200);
    expect(
      Buffer.from(await png.arrayBuffer())
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');

    // a plain (non-cluster) connection to each node: only the owner holds the job hash
    const hashKey = jobKey({ queuePrefix: '{comfyui}', queueName: env.QUEUE_NAME }, id);
    for (const node of cluster.nodes) {
      const direct = new IORedis(node.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      try {
        if (node === owner) expect(await direct.exists(hashKey)).toBe(1);
        else await expect(direct.exists(hashKey)).rejects.toThrow(/MOVED/);
      } finally {
        direct.disconnect();
      }
    }
  });

  it('DELETE reaches the running job through the workers’ cluster pub/sub subscriber', async () => {
    const id = await post(sleepWorkflow(20, 'cluster-cancel'));
    const promptId = await executing(id);
    const res = await fetch(`${base}/v1/jobs/${id}`, { method: 'DELETE' });
    expect(res.status).toBe(202);
    const done = await settled(id);
    expect(done).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    // the 20 s prompt was interrupted in ComfyUI (the interrupt lands asynchronously), not
    // waited out
    const status = await waitFor(
      'the interrupted prompt in the history',
      async () => (await historyEntry(sim.url, promptId))?.status.status_str,
    );
    expect(status).toBe('error');
    expect(sim.executions()[promptId]).toBe(1);
  });

  it('SIGTERM hands the job back at once; the other worker resumes it; one execution', async () => {
    const id = await post(sleepWorkflow(3, 'cluster-term'));
    const promptId = await executing(id);
    const holderName = (await job(id)).processedBy!;
    const holder = byName.get(holderName)!;
    const t0 = Date.now();
    holder.proc.kill('SIGTERM');
    await waitFor(
      'the other worker to pick the job up',
      async () => ((await job(id)).data.state.attempts >= 2 ? true : undefined),
      { everyMs: 10 },
    );
    const handOffMs = Date.now() - t0;
    expect((await holder.exited).code).toBe(0);
    const done = await settled(id);
    console.log(`cluster: SIGTERM → resumed by the other worker in ${handOffMs} ms`);
    expect(done).toMatchObject({ status: 'completed', promptId, recoveries: 1 });
    const finished = await job(id);
    expect(finished.processedBy).not.toBe(holderName);
    expect(finished.stalledCounter).toBe(0);
    expect(sim.executions()[promptId]).toBe(1);
  });

  it('kill -9 mid-job: a second worker resumes the same prompt after the stall; one execution', async () => {
    worker('cluster-c');
    const live = procs.filter(alive);
    await Promise.all(live.map((w) => w.ready));
    const id = await post(sleepWorkflow(2, 'cluster-kill'));
    const promptId = await executing(id);
    const holderName = (await job(id)).processedBy!;
    const holder = byName.get(holderName)!;
    expect(alive(holder)).toBe(true);
    holder.proc.kill('SIGKILL');
    await holder.exited;
    const done = await settled(id);
    expect(done).toMatchObject({ status: 'completed', promptId, recoveries: 1 });
    expect(done.outputs).toHaveLength(1);
    const finished = await job(id);
    expect(finished.processedBy).not.toBe(holderName);
    expect(finished.stalledCounter).toBe(1);
    expect(sim.executions()[promptId]).toBe(1);
  });
});
