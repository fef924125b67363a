/**
 * `npm start` as a real process: it starts Redis, the simulator, the API and a worker, a
 * job submitted with the real CLI completes, and SIGINT leaves no process behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { freePort, startRedis } from './helpers/redis-server';

const ROOT = join(__dirname, '..');
jest.setTimeout(180_000);

interface Proc {
  proc: ChildProcess;
  output(): string;
  waitFor(re: RegExp): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(args: string[], env: NodeJS.ProcessEnv): Proc {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const checks = new Set<() => void>();
  const onData = (b: Buffer) => {
    out += b.toString();
    for (const check of [...checks]) check();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = once(proc, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const waitFor = (re: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = stripVTControlCharacters(out).match(re);
        if (m) {
          checks.delete(check);
          resolve(m);
        }
      };
      checks.add(check);
      check();
      void exited.then((e) => {
        if (!checks.delete(check)) return;
        reject(
          new Error(`exited (${e.code ?? e.signal}) before printing ${re}:\n${out.slice(-5000)}`),
        );
      });
    });
  return { proc, output: () => out, waitFor, exited };
}

/** The environment of the test without anything that would change what start.ts does. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of [
    'REDIS_URL',
    'COMFYUI_URL',
    'DASHBOARD_USER',
    'DASHBOARD_PASSWORD',
    'API_KEYS',
    'PORT',
    'STORAGE_URL',
    'BUCKET_NAME',
  ]) {
    delete env[k];
  }
  return { ...env, ...extra };
}

/** PIDs of live processes whose environment carries `tag` (start.ts's children inherit it). */
function taggedProcesses(tag: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const state = /State:\s+(\S)/.exec(readFileSync(`/proc/${name}/status`, 'utf8'))?.[1];
      if (state !== 'Z' && readFileSync(`/proc/${name}/environ`, 'utf8').includes(tag))
        found.push(Number(name));
    } catch {
      // gone meanwhile, or not readable
    }
  }
  return found;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Started PIDs, from the "started <name> (pid N)" lines. */
const startedPids = (out: string) =>
  [...stripVTControlCharacters(out).matchAll(/started (\w+) \(pid (\d+)\)/g)].map((m) => ({
    name: m[1],
    pid: Number(m[2]),
  }));

/** The `PIDs name=pid …` line start.ts prints once everything runs, as name → pid. */
async function printedPids(start: Proc): Promise<Record<string, string>> {
  const [, line] = await start.waitFor(/PIDs\s+(.+)/);
  return Object.fromEntries(
    line
      .trim()
      .split(/\s+/)
      .map((kv) => kv.split('=')),
  );
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Starts start.ts and registers a cleanup that kills whatever is left if the test failed. */
function runStart(env: NodeJS.ProcessEnv): Proc {
  const start = run(['--import', 'tsx', join(ROOT, 'src', 'bin', 'start.ts')], env);
  cleanups.push(async () => {
    if (start.proc.exitCode === null && start.proc.signalCode === null) {
      start.proc.kill('SIGKILL');
      await start.exited;
    }
    for (const { pid } of startedPids(start.output())) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  return start;
}

test('npm start runs everything; a CLI job completes; SIGINT stops all of it in order', async () => {
  const tag = `CQ_RUN_TAG=${process.pid}-${Date.now()}`; // inherited by every child
  const dataDir = mkdtempSync(join(tmpdir(), 'cq-start-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const start = runStart(
    cleanEnv({ PORT: String(port), DATA_DIR: dataDir, CQ_RUN_TAG: tag.split('=')[1]! }),
  );

  const [, apiUrl] = await start.waitFor(/API\s+(http:\/\/\S+)/);
  expect(apiUrl).toBe(`http://127.0.0.1:${port}`);
  const [, user, password] = await start.waitFor(
    /Dashboard\s+\S+\s+\(user (\S+), password ([^\s;]+)/,
  );
  await start.waitFor(/ComfyUI\s+http:\/\/127\.0\.0\.1:\d+\s+\(simulator\)/);
  const inDataDir = (sub: string) => `${dataDir}/${sub}`.replace(/[/.]/g, '\\$&');
  await start.waitFor(new RegExp(`data in ${inDataDir('redis')}`));
  // the stored files follow DATA_DIR: a system never shares (and sweeps) another's folder
  await start.waitFor(new RegExp(`Files\\s+file://${inDataDir('files')}\\s`));
  const pids = await printedPids(start);
  expect(Object.keys(pids).sort()).toEqual(['api', 'redis', 'simulator', 'worker']);

  // the dashboard is mounted with the printed credentials
  const board = `${apiUrl}/admin/queues`;
  expect((await fetch(board)).status).toBe(401);
  const auth = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  expect((await fetch(board, { headers: { authorization: auth } })).status).toBe(200);

  // the real CLI, through its launcher, submits and follows a model-free example
  const cli = run(
    [
      join(ROOT, 'bin', 'comfyui-queue.js'),
      'submit',
      'examples/tiny.json',
      '--wait',
      '--api',
      apiUrl,
    ],
    cleanEnv({}),
  );
  const cliExit = await cli.exited;
  expect({ code: cliExit.code, out: cli.output() }).toMatchObject({ code: 0 });
  const urls = cli.output().match(/http:\/\/\S+\/v1\/jobs\/\S+\/outputs\/\d+/g) ?? [];
  expect(urls).toHaveLength(1);
  const image = await fetch(urls[0]!);
  // on a failure, the answer's error says which of the 404s it was
  const body = image.status === 200 ? '' : await image.text();
  expect({ status: image.status, body }).toEqual({ status: 200, body: '' });
  expect(image.headers.get('content-type')).toContain('image/png');
  const [, jobId] = /\/v1\/jobs\/([^/]+)\/outputs\/0$/.exec(urls[0]!)!;
  expect(readdirSync(join(dataDir, 'files', 'jobs', jobId, 'outputs'))).toEqual(['0']);

  // the children are live and tagged; SIGINT stops them all, API and worker first, Redis last
  const spawned = startedPids(start.output()).map((s) => s.pid);
  expect(spawned.sort()).toEqual(Object.values(pids).map(Number).sort());
  // the tag reaches the node children and their helpers (tsx's esbuild); redis-server
  // rewrites its environment (process title), so it is checked by PID only
  const tagged = [start.proc.pid!, pids.api, pids.worker, pids.simulator].map(Number);
  expect(taggedProcesses(tag)).toEqual(expect.arrayContaining(tagged));
  start.proc.kill('SIGINT');
  expect(await start.exited).toEqual({ code: 0, signal: null });
  const out = stripVTControlCharacters(start.output());
  const at = (name: string) => out.indexOf(`${name} stopped (`);
  expect(Math.min(at('api'), at('worker'))).toBeGreaterThan(-1);
  expect(Math.max(at('api'), at('worker'))).toBeLessThan(at('simulator'));
  expect(at('simulator')).toBeLessThan(at('redis'));
  expect(out).toContain('all stopped');
  for (const pid of spawned) expect({ pid, alive: alive(pid) }).toEqual({ pid, alive: false });
  expect(taggedProcesses(tag)).toEqual([]);
});

test('with REDIS_URL set it uses that Redis, starts no redis-server, and never prints the password', async () => {
  const secret = 'start-Pw-7kQ2-secret';
  const redis = await startRedis(['--requirepass', secret]);
  cleanups.push(() => redis.stop());
  const dataDir = mkdtempSync(join(tmpdir(), 'cq-start-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const start = runStart(
    cleanEnv({
      PORT: String(port),
      DATA_DIR: dataDir,
      REDIS_URL: `redis://default:${secret}@127.0.0.1:${redis.port}`,
      DASHBOARD_USER: 'ops',
      DASHBOARD_PASSWORD: 'dash-Pw-secret-4411',
      LOG_LEVEL: 'debug',
    }),
  );
  await start.waitFor(/comfyui-queue is ready/);
  const [, pidsLine] = await start.waitFor(/PIDs\s+(.+)/);
  expect(pidsLine).not.toContain('redis=');
  await start.waitFor(/Redis\s+redis:\/\/default:\*\*\*@127\.0\.0\.1:\d+\/?\s+\(from REDIS_URL\)/);
  start.proc.kill('SIGTERM');
  expect(await start.exited).toEqual({ code: 0, signal: null });
  expect(start.output()).not.toContain(secret);
  expect(start.output()).not.toContain('dash-Pw-secret-4411');
});

test('a child that dies stops the rest and start.ts exits non-zero', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cq-start-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const start = runStart(cleanEnv({ PORT: String(await freePort()), DATA_DIR: dataDir }));
  const pids = await printedPids(start);
  process.kill(Number(pids.simulator), 'SIGKILL');
  expect((await start.exited).code).toBe(1);
  expect(stripVTControlCharacters(start.output())).toMatch(
    /simulator \(pid \d+\) exited unexpectedly \(signal SIGKILL\)/,
  );
  for (const pid of Object.values(pids).map(Number))
    expect({ pid, alive: alive(pid) }).toEqual({ pid, alive: false });
});
