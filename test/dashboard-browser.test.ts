import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { createSimulator } from '../src/simulator/server';
import type { ImageWorker } from '../src/worker/worker';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { startTestWorker } from './helpers/api-worker';
import { waitFor } from './helpers/wait';

/**
 * A real browser (Debian's chromium via playwright-core) logs into Bull Board with basic
 * auth and sees a completed job with its JobState; the screenshot goes to test/artifacts/.
 */

const USER = 'operator';
const PASSWORD = 'pw-browser-51b0';
const ARTIFACTS = join(__dirname, 'artifacts');

type Sim = Awaited<ReturnType<typeof createSimulator>>;

describe('dashboard in a browser', () => {
  let h: ApiHarness;
  let sim: Sim;
  let worker: ImageWorker;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    h = await startApiHarness({
      env: { DASHBOARD_USER: USER, DASHBOARD_PASSWORD: PASSWORD },
      logLevel: 'warn',
    });
    sim = await createSimulator({ port: 0 });
    worker = await startTestWorker(h, sim.url);
    base = await h.listen();
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await worker?.close();
    await sim?.close();
    await h?.close();
  });

  it('without credentials the browser is refused (basic-auth challenge)', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      // headless Chromium cannot prompt: it reports the 401 challenge as a navigation error
      await expect(page.goto(`${base}/admin/queues`)).rejects.toThrow(
        /ERR_INVALID_AUTH_CREDENTIALS/,
      );
    } finally {
      await context.close();
    }
  });

  it('with a wrong password the browser gets 401', async () => {
    const context = await browser.newContext({
      httpCredentials: { username: USER, password: 'wrong' },
    });
    try {
      const page = await context.newPage();
      const res = await page.goto(`${base}/admin/queues`);
      expect(res?.status()).toBe(401);
      expect(await page.locator('body').innerText()).toContain('unauthorized');
    } finally {
      await context.close();
    }
  });

  it('logs in and sees a completed job with its JobState', async () => {
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        jobType: 'dashboard-demo',
        userId: 'browser-test',
        workflow: {
          '1': {
            class_type: 'EmptyImage',
            inputs: { width: 64, height: 64, batch_size: 1, color: 0x3366ff },
          },
          '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'board' } },
        },
      }),
    });
    const { id } = (await res.json()) as { id: string };
    const done = await waitFor('the job to complete', async () => {
      const v = (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as {
        status: string;
        promptId: string;
      };
      return v.status === 'completed' ? v : undefined;
    });

    const context = await browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1280, height: 1000 },
    });
    try {
      const page = await context.newPage();
      mkdirSync(ARTIFACTS, { recursive: true });
      const list = await page.goto(
        `${base}/admin/queues/queue/${h.config.queueName}?status=completed`,
      );
      expect(list?.status()).toBe(200);
      await expect(page.title()).resolves.toContain('ComfyUI jobs');
      await page.getByText(`#${id}`).first().waitFor({ timeout: 15_000 });
      await page.screenshot({
        path: join(ARTIFACTS, 'dashboard-completed-list.png'),
        fullPage: true,
      });

      const nav = await page.goto(`${base}/admin/queues/queue/${h.config.queueName}/${id}`);
      expect(nav?.status()).toBe(200);
      // the Data tab shows job.data, whose `state` is the JobState
      await page.getByText(done.promptId).first().waitFor({ timeout: 15_000 });
      const text = await page.locator('body').innerText();
      expect(text).toContain(h.config.queueName);
      expect(text).toContain('dashboard-demo');
      expect(text).toMatch(/"?status"?:\s*"completed"/);
      await page.screenshot({
        path: join(ARTIFACTS, 'dashboard-completed-job.png'),
        fullPage: true,
      });
    } finally {
      await context.close();
    }
  });
});
