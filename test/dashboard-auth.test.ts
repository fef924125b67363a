import request from 'supertest';
import { DASHBOARD_PATH, createDashboard } from '../dashboard/board';
import { captureLogger, startApiHarness, type ApiHarness } from './helpers/api-harness';

/** Bull Board at /admin/queues: basic auth, read-only, and not mounted without credentials. */

const USER = 'operator';
const PASSWORD = 'pw-9c2e61d';
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe('dashboard', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ env: { DASHBOARD_USER: USER, DASHBOARD_PASSWORD: PASSWORD } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it.each([
    ['no credentials', undefined],
    ['a wrong password', basic(USER, 'wrong')],
    ['a wrong user', basic('admin', PASSWORD)],
    ['no colon', `Basic ${Buffer.from(USER).toString('base64')}`],
    ['a bearer token', `Bearer ${PASSWORD}`],
  ])('%s → 401 with WWW-Authenticate: Basic', async (_name, header) => {
    for (const path of [
      DASHBOARD_PATH,
      `${DASHBOARD_PATH}/api/queues`,
      `${DASHBOARD_PATH}/static/x.js`,
    ]) {
      let req = request(h.app).get(path);
      if (header) req = req.set('Authorization', header);
      const res = await req;
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Basic realm="ComfyUI jobs", charset="UTF-8"');
      expect(res.body.error.code).toBe('unauthorized');
      expect(res.text).not.toContain(PASSWORD);
    }
  });

  it('the right credentials → the board, titled; of the writes only retries pass', async () => {
    const page = await request(h.app)
      .get(DASHBOARD_PATH)
      .set('Authorization', basic(USER, PASSWORD));
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.text).toContain('<base href="/admin/queues/"');
    expect(page.text).toContain('ComfyUI jobs');

    const api = await request(h.app)
      .get(`${DASHBOARD_PATH}/api/queues`)
      .query({ activeQueue: h.config.queueName, status: 'latest', page: 1, jobsPerPage: 10 })
      .set('Authorization', basic(USER, PASSWORD));
    expect(api.status).toBe(200);
    const queue = api.body.queues.find((q: { name: string }) => q.name === h.config.queueName);
    expect(queue).toMatchObject({
      readOnlyMode: false,
      allowRetries: true,
      allowCompletedRetries: false,
      description: 'ComfyUI image generation jobs',
    });

    const q = `${DASHBOARD_PATH}/api/queues/${h.config.queueName}`;
    const retry = await request(h.app)
      .put(`${q}/retry/failed`)
      .set('Authorization', basic(USER, PASSWORD));
    expect(retry.status).toBe(200);
    expect(retry.body).toEqual({ retried: 0, skipped: 0 });
    for (const [method, path] of [
      ['put', `${q}/clean/failed`],
      ['put', `${q}/empty`],
      ['put', `${q}/retry/completed`],
      ['post', `${q}/add`],
      ['put', `${q}/pause`],
    ] as const) {
      const write = await request(h.app)[method](path).set('Authorization', basic(USER, PASSWORD));
      expect({ path, status: write.status }).toEqual({ path, status: 405 });
      expect(write.body.error.code).toBe('method_not_allowed');
    }
    expect(JSON.stringify(h.logs)).not.toContain(PASSWORD);
  });

  it('without credentials it is not mounted, and the log says how to enable it', async () => {
    const { log, logs } = captureLogger();
    const dashboard = createDashboard({
      queues: [{ queue: h.services.queue, description: 'x' }],
      log,
    });
    expect(dashboard).toBeUndefined();
    expect(logs.map((l) => l.msg).join('\n')).toMatch(/DASHBOARD_USER and DASHBOARD_PASSWORD/);
  });
});
