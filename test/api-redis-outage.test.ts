import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import request from 'supertest';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { waitFor } from './helpers/wait';

/**
 * Redis outages: every endpoint that needs Redis answers 503 queue_unavailable while Redis
 * is still down or hung (by its own budget, not waiting for Redis), the process keeps
 * running, and it recovers by itself when Redis returns. How fast it answers (the
 * contract's 2 s) is measured by `npm run bench -- --only=outage`.
 */

const workflow = {
  '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
};

/** 'connected', or the error code of a TCP connection to the port */
function connectTo(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
  });
}

describe('API: Redis outage', () => {
  let h: ApiHarness;
  let pausedPid: number | undefined;
  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'error' });
  });
  afterAll(async () => {
    if (pausedPid) process.kill(pausedPid, 'SIGCONT');
    await h?.close();
  });

  const calls = (id: string) =>
    [
      ['POST /v1/jobs', () => request(h.app).post('/v1/jobs').send({ workflow })],
      ['GET /v1/jobs/:id', () => request(h.app).get(`/v1/jobs/${id}`)],
      ['DELETE /v1/jobs/:id', () => request(h.app).delete(`/v1/jobs/${id}`)],
      ['GET /v1/jobs/:id/events', () => request(h.app).get(`/v1/jobs/${id}/events`)],
      ['GET /v1/jobs/:id/outputs/0', () => request(h.app).get(`/v1/jobs/${id}/outputs/0`)],
      ['GET /readyz', () => request(h.app).get('/readyz')],
    ] as const;

  async function expectAll503(id: string, label: string) {
    for (const [name, call] of calls(id)) {
      const res = await call();
      expect(res.status).toBe(503);
      // a write sent to a Redis that never answers may still happen: its outcome is unknown
      const unknown = label === 'redis hung' && name === 'POST /v1/jobs';
      expect(res.body.error.code).toBe(unknown ? 'outcome_unknown' : 'queue_unavailable');
    }
    expect((await request(h.app).get('/healthz')).status).toBe(200); // liveness stays up
  }

  it('killed: 503 while it is down; restarted: new jobs accepted and earlier jobs still readable', async () => {
    const before = await Promise.all(
      [1, 2].map(() => request(h.app).post('/v1/jobs').send({ workflow })),
    );
    const ids = before.map((r) => r.body.id as string);
    expect(before.map((r) => r.status)).toEqual([202, 202]);

    await h.redis.kill();
    await expectAll503(ids[0], 'redis killed');
    // answered while nothing listened on Redis's port: nothing waited for it to return
    expect(await connectTo(h.redis.port)).toBe('ECONNREFUSED');

    await h.redis.start();
    const after = await waitFor(
      'the API to accept jobs again after Redis restarted',
      async () => {
        const r = await request(h.app).post('/v1/jobs').send({ workflow });
        return r.status === 202 ? r : undefined;
      },
      { timeoutMs: 30_000, everyMs: 100 },
    );
    expect(after.body.status).toBe('queued');
    for (const id of ids) {
      const view = await request(h.app).get(`/v1/jobs/${id}`);
      expect(view.status).toBe(200);
      expect(view.body).toMatchObject({ id, status: 'queued' });
    }
    expect((await request(h.app).get('/readyz')).status).toBe(200);
  });

  it('hung (SIGSTOP, the socket stays open): 503 by its own timeout while still hung; recovers on SIGCONT', async () => {
    const id = (await request(h.app).post('/v1/jobs').send({ workflow })).body.id as string;
    const info = await h.services.redis.info('server');
    pausedPid = Number(/process_id:(\d+)/.exec(info)![1]);
    process.kill(pausedPid, 'SIGSTOP');
    try {
      await expectAll503(id, 'redis hung');
      // every answer came while Redis was still stopped (state T): none waited for it
      expect(readFileSync(`/proc/${pausedPid}/stat`, 'utf8').split(') ')[1][0]).toBe('T');
    } finally {
      process.kill(pausedPid, 'SIGCONT');
      pausedPid = undefined;
    }
    await waitFor(
      'the job to be readable again',
      async () => (await request(h.app).get(`/v1/jobs/${id}`)).status === 200,
    );
  });
});
