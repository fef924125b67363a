import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createSimulator } from '../src/simulator/server';
import type { ImageWorker } from '../src/worker/worker';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { startTestWorker } from './helpers/api-worker';
import { waitFor } from './helpers/wait';
import { sleepWorkflow, tinyWorkflow } from './helpers/workflows';

/**
 * A real browser (Debian's chromium via playwright-core) logs into Bull Board with basic
 * auth and reads from the page what an operator needs: a completed job named by its
 * jobType with its outputs, a running job's progress bar moving, a cancelled job told apart
 * from a failed one, a failed job's workflow, and the retry button running a failed job
 * again. Screenshots go to test/artifacts/ (git-ignored).
 */

const USER = 'operator';
const PASSWORD = 'pw-browser-51b0';
const ARTIFACTS = join(__dirname, 'artifacts');

type Sim = Awaited<ReturnType<typeof createSimulator>>;
interface View {
  status: string;
  promptId?: string;
  progress: { percent: number };
}

describe('dashboard in a browser', () => {
  let h: ApiHarness;
  let sim: Sim;
  let worker: ImageWorker;
  let browser: Browser;
  let base: string;
  let broken: Sim;
  /** failed on a ComfyUI whose every prompt fails; the one the retry button runs again */
  let failed: { id: string; promptId: string };
  /** cancelled while it waited */
  let cancelledId: string;

  const view = async (id: string) => (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as View;
  const settled = (id: string, status: string) =>
    waitFor(`job ${id} to be ${status}`, async () => {
      const v = await view(id);
      return v.status === status ? v : undefined;
    });
  const enqueue = async (body: Record<string, unknown>) => {
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return ((await res.json()) as { id: string }).id;
  };
  const board = () =>
    browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1280, height: 1000 },
    });
  /** a screenshot and the page's text, as artifacts */
  const shot = async (page: Page, name: string) => {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
    writeFileSync(join(ARTIFACTS, `${name}.txt`), await page.locator('body').innerText());
    writeFileSync(join(ARTIFACTS, `${name}.html`), await page.content());
  };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    h = await startApiHarness({
      env: { DASHBOARD_USER: USER, DASHBOARD_PASSWORD: PASSWORD },
      logLevel: 'warn',
    });
    base = await h.listen();
    broken = await createSimulator({ port: 0, failureRate: 1 });
    sim = await createSimulator({ port: 0 });
    // a job that fails (every prompt fails on `broken`), then one cancelled while it waits
    const first = await startTestWorker(h, broken.url);
    try {
      const id = await enqueue({
        jobType: 'will-fail',
        userId: 'ops',
        workflow: tinyWorkflow('wf'),
      });
      failed = { id, promptId: (await settled(id, 'failed')).promptId! };
    } finally {
      await first.close();
    }
    cancelledId = await enqueue({ jobType: 'cancel-me', userId: 'ops', workflow: tinyWorkflow() });
    expect((await fetch(`${base}/v1/jobs/${cancelledId}`, { method: 'DELETE' })).status).toBe(202);
    worker = await startTestWorker(h, sim.url);
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await worker?.close();
    await broken?.close();
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

  it('a completed job: named by its jobType and user, with its outputs and readable times', async () => {
    const id = await enqueue({
      jobType: 'dashboard-demo',
      userId: 'browser-test',
      workflow: {
        '1': {
          class_type: 'EmptyImage',
          inputs: { width: 64, height: 64, batch_size: 1, color: 0x3366ff },
        },
        '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'board' } },
      },
    });
    const done = await settled(id, 'completed');
    const context = await board();
    try {
      const page = await context.newPage();
      const list = await page.goto(
        `${base}/admin/queues/queue/${h.config.queueName}?status=completed`,
      );
      expect(list?.status()).toBe(200);
      await expect(page.title()).resolves.toContain('ComfyUI jobs');
      await page.getByText('dashboard-demo · browser-test').first().waitFor({ timeout: 15_000 });
      await shot(page, 'dashboard-completed-list');

      const nav = await page.goto(`${base}/admin/queues/queue/${h.config.queueName}/${id}`);
      expect(nav?.status()).toBe(200);
      // the Data tab shows job.data (its `state` is the JobState) and the return value
      await page.getByText(done.promptId!).first().waitFor({ timeout: 15_000 });
      await shot(page, 'dashboard-completed-job');
      const text = await page.locator('body').innerText();
      expect(text).toContain('dashboard-demo · browser-test');
      expect(text).toMatch(/"?status"?:\s*"completed"/);
      expect(text).toContain(`node 2: board_00001_.png (output) → /v1/jobs/${id}/outputs/0`);
      expect(text).toMatch(/"?createdAt"?:\s*"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/);
      await shot(page, 'dashboard-completed-job');
    } finally {
      await context.close();
    }
  });

  it("a running job's progress bar moves", async () => {
    const id = await enqueue({
      jobType: 'slow',
      userId: 'browser-test',
      workflow: sleepWorkflow(30),
    });
    await settled(id, 'running');
    const context = await board();
    try {
      const page = await context.newPage();
      await page.goto(`${base}/admin/queues/queue/${h.config.queueName}?status=active`);
      await page.getByText('slow · browser-test').first().waitFor({ timeout: 15_000 });
      // Bull Board draws the progress as a ring labelled with its percent
      const label = page
        .locator('main svg text tspan')
        .filter({ hasText: /^\d+%$/ })
        .first();
      const percent = async () => Number((await label.textContent())!.replace('%', ''));
      await label.waitFor({ timeout: 15_000 });
      const first = await percent();
      await shot(page, 'dashboard-progress-1');
      // Bull Board polls; the ring follows the job's progress writes
      await waitFor('the progress bar to move', async () =>
        (await percent()) > first ? true : undefined,
      );
      await shot(page, 'dashboard-progress-2');
      expect(await percent()).toBeLessThan(100);
    } finally {
      await context.close();
    }
    expect((await fetch(`${base}/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(202);
    await settled(id, 'cancelled');
  });

  it('a cancelled job is told apart from a failed one, and a failed job keeps its workflow', async () => {
    await settled(cancelledId, 'cancelled');
    const context = await board();
    try {
      const page = await context.newPage();
      await page.goto(`${base}/admin/queues/queue/${h.config.queueName}?status=failed`);
      await page.getByText('cancel-me · ops · CANCELLED').first().waitFor({ timeout: 15_000 });
      await page.getByText('will-fail · ops · failed: execution_error').first().waitFor();
      await shot(page, 'dashboard-failed-and-cancelled');

      await page.goto(`${base}/admin/queues/queue/${h.config.queueName}/${failed.id}`);
      await page.getByRole('tab', { name: 'Data', exact: true }).first().click();
      await page.getByText(failed.promptId).first().waitFor({ timeout: 15_000 });
      await shot(page, 'dashboard-failed-job');
      const text = await page.locator('body').innerText();
      // the workflow, kept for a failed job, one node a line
      expect(text).toContain('3:"SaveImage {"images":["2",0],"filename_prefix":"wf"}"');
    } finally {
      await context.close();
    }
  });

  it('the retry button runs a failed job again: a new prompt, run once, completed', async () => {
    const context = await board();
    try {
      const page = await context.newPage();
      await page.goto(`${base}/admin/queues/queue/${h.config.queueName}/${failed.id}`);
      await page.getByText('will-fail · ops · failed: execution_error').first().waitFor();
      await shot(page, 'dashboard-before-retry');
      // the card's first action button, an icon whose tooltip says what it does
      const retry = page
        .locator('main button:not([role=tab])')
        .filter({ has: page.locator('svg') });
      await retry.first().hover();
      await page.getByText('Retry', { exact: true }).waitFor();
      await retry.first().click();
      await page.getByText('Are you sure that you want to retry this job?').waitFor();
      await shot(page, 'dashboard-retry-confirm');
      await page.getByRole('button', { name: 'Confirm' }).click();
      const done = await settled(failed.id, 'completed');
      expect(done.promptId).not.toBe(failed.promptId);
      expect(sim.executions()[done.promptId!]).toBe(1);
      expect(broken.executions()[failed.promptId]).toBe(1);
      await page.reload();
      await page.getByText('will-fail · ops · retry 1').first().waitFor({ timeout: 15_000 });
      await shot(page, 'dashboard-retried-job');
    } finally {
      await context.close();
    }
  });
});
