/**
 * `npm start`: everything on one machine with no configuration. Starts a local redis-server
 * (unless REDIS_URL), the ComfyUI simulator (unless COMFYUI_URL), the API with the dashboard
 * and one worker; prints the URLs once all are ready. SIGINT/SIGTERM stops them in order
 * (API and worker, then simulator, then Redis); a second signal kills them at once. If a
 * child dies on its own, the rest is stopped and the exit code is 1.
 * DATA_DIR (default ./.data) holds the local Redis data, the stored files (`files/`, unless
 * STORAGE_URL or BUCKET_NAME says otherwise), the simulator's output files and its port
 * (`simulator.port`: the same address across restarts, so jobs find their instance).
 */
import { randomBytes } from 'node:crypto';
import { extname, join, resolve } from 'node:path';
import { loadConfig } from '../config';
import { handleSignals, TimeoutError, withTimeout } from '../lifecycle';
import { redactRedisUrl } from '../redis';
import { describeExit, StartError, type ManagedChild } from '../run/child';
import { EXIT_WITH_PARENT_IMPORT } from '../run/exit-with-parent';
import { freePort, isPortFree, stablePort } from '../run/ports';
import { startLocalRedis } from '../run/redis-local';
import { createSupervisor, type Supervisor } from '../run/supervisor';

const ROOT = join(__dirname, '..', '..');
/** `.ts` under tsx, `.js` once built into dist/: children are started the same way. */
const EXT = extname(__filename);
const READY_TIMEOUT_MS = 60_000;
const STAGE = { app: 0, simulator: 1, redis: 2 };
const TTY = process.stdout.isTTY;
const COLORS: Record<string, number> = { start: 1, redis: 31, simulator: 35, api: 36, worker: 32 };

function print(name: string, line: string) {
  const label = name.padEnd(9);
  process.stdout.write(`${TTY ? `\x1b[${COLORS[name] ?? 0}m${label}\x1b[0m` : label} | ${line}\n`);
}
const say = (message: string) => print('start', message);

/** A node child: `node [--import tsx] --import exit-with-parent <file>`, cwd the repo. */
function spawnNode(
  s: Supervisor,
  name: string,
  file: string,
  env: NodeJS.ProcessEnv,
  stage: number,
  stopMs: number,
) {
  const args = [
    ...(EXT === '.ts' ? ['--import', 'tsx'] : []),
    '--import',
    EXIT_WITH_PARENT_IMPORT,
    join(ROOT, `${file}${EXT}`),
  ];
  return s.spawn({ name, command: process.execPath, args, env, cwd: ROOT }, stage, stopMs);
}

/** `p`, or a StartError once READY_TIMEOUT_MS have passed. */
function readyWithin<T>(what: string, p: Promise<T>): Promise<T> {
  return withTimeout(what, READY_TIMEOUT_MS, p).catch((err: unknown) => {
    if (!(err instanceof TimeoutError)) throw err;
    throw new StartError(`${what} was not ready within ${READY_TIMEOUT_MS / 1000} s`);
  });
}

/** Polls /readyz (no event crosses the process boundary) until 200 or the API exits. */
async function waitReady(url: string, api: ManagedChild): Promise<void> {
  while (api.isRunning()) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1_000) })).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new StartError(`api stopped (${describeExit(await api.exited)}) before it was ready`);
}

async function startAll(s: Supervisor, env: NodeJS.ProcessEnv): Promise<string[]> {
  const user = env.DASHBOARD_USER || 'admin';
  const password = env.DASHBOARD_PASSWORD || randomBytes(12).toString('base64url');
  // a bad variable fails here with a message naming it, before anything is started
  const config = loadConfig({ ...env, DASHBOARD_USER: user, DASHBOARD_PASSWORD: password });
  const apiPort = config.port;
  if (!(await isPortFree(apiPort))) {
    throw new StartError(`port ${apiPort} is already in use: stop what listens there or set PORT`);
  }
  const dataDir = resolve(env.DATA_DIR?.trim() || '.data');
  // the API's retention sweep removes files of jobs its Redis does not know: two systems
  // must never share a folder, so the files follow DATA_DIR with the rest of the data
  const storage =
    env.STORAGE_URL || env.BUCKET_NAME ? {} : { STORAGE_URL: `file://${join(dataDir, 'files')}` };
  const base = { ...env, ...storage, LOG_PRETTY: env.LOG_PRETTY ?? '1' };

  const [redis, comfy] = await Promise.all([
    (async () => {
      if (env.REDIS_URL) return { url: env.REDIS_URL, where: 'from REDIS_URL' };
      const spawn = (spec: Parameters<Supervisor['spawn']>[0]) =>
        s.spawn(spec, STAGE.redis, 10_000);
      const local = await startLocalRedis({ dataDir, pathEnv: env.PATH ?? '', env, spawn });
      return { url: local.url, where: `data in ${local.dir}` };
    })(),
    (async () => {
      if (env.COMFYUI_URL) return { url: env.COMFYUI_URL, note: '' };
      // the same port as last time (remembered under DATA_DIR): jobs record their instance's
      // address, and one that changed counts as a replaced instance (prompts resubmitted)
      const { port, changed } = await stablePort(join(dataDir, 'simulator.port'));
      if (changed) say(`the simulator's previous port is in use: it listens on ${port} now`);
      // outputs under DATA_DIR, like a real ComfyUI's output folder: they outlive a restart
      const simEnv = {
        ...base,
        PORT: String(port),
        SIM_OUTPUT_DIR: join(dataDir, 'simulator-output'),
      };
      const sim = spawnNode(s, 'simulator', 'src/bin/simulator', simEnv, STAGE.simulator, 5_000);
      await readyWithin('the simulator', sim.waitForLine(/ComfyUI simulator listening on/));
      return { url: `http://127.0.0.1:${port}`, note: '  (simulator)' };
    })(),
  ]);

  const shared = { ...base, REDIS_URL: redis.url, COMFYUI_URL: comfy.url };
  const apiEnv = {
    ...shared,
    PORT: String(apiPort),
    DASHBOARD_USER: user,
    DASHBOARD_PASSWORD: password,
  };
  const workerEnv = { ...shared, METRICS_PORT: env.METRICS_PORT ?? String(await freePort()) };
  // both bound their own shutdown by SHUTDOWN_TIMEOUT_MS; SIGKILL only after that, plus margin
  const stopMs = config.shutdownTimeoutMs + 5_000;
  const api = spawnNode(s, 'api', 'src/bin/api', apiEnv, STAGE.app, stopMs);
  const worker = spawnNode(s, 'worker', 'workers/worker', workerEnv, STAGE.app, stopMs);
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  await Promise.all([
    readyWithin('the API', waitReady(`${apiUrl}/readyz`, api)),
    readyWithin('the worker', worker.waitForLine(/worker ready/)),
  ]);

  // whatever was not given is generated, so it is printed (a secret given is never echoed)
  const credentials = env.DASHBOARD_PASSWORD
    ? `user ${user}, password from DASHBOARD_PASSWORD`
    : `user ${user}, password ${password}; generated: set DASHBOARD_USER/DASHBOARD_PASSWORD to choose`;
  return [
    'comfyui-queue is ready',
    `  API        ${apiUrl}`,
    `  Dashboard  ${apiUrl}/admin/queues  (${credentials})`,
    `  ComfyUI    ${comfy.url}${comfy.note}`,
    `  Redis      ${redactRedisUrl(redis.url)}  (${redis.where})`,
    `  Files      ${base.STORAGE_URL ?? `s3://${env.BUCKET_NAME}`}`,
    `  PIDs       ${s
      .children()
      .filter((c) => c.isRunning())
      .map((c) => `${c.name}=${c.pid}`)
      .join(' ')}`,
    `  Try        npm run cli -- submit examples/tiny.json --wait --api ${apiUrl}`,
    'Ctrl-C stops everything.',
  ];
}

async function main() {
  let shuttingDown: Promise<void> | undefined;
  const shutdown = (code: number) => {
    shuttingDown ??= supervisor.stop().then(() => {
      say(code === 0 ? 'all stopped' : 'all stopped after an error');
      process.exit(code);
    });
    return shuttingDown;
  };
  const supervisor = createSupervisor({
    print,
    say,
    onUnexpectedExit(child, exit) {
      say(
        `${child.name} (pid ${child.pid}) exited unexpectedly (${describeExit(exit)}): stopping the rest`,
      );
      void shutdown(1);
    },
  });
  // Ctrl-C under `npm start` arrives twice at once (from the terminal and forwarded by npm):
  // only a signal sent well after the first one forces the stop. A closed terminal (SIGHUP)
  // stops in order as for Ctrl-C (else redis-server would outlive us).
  handleSignals({
    signals: ['SIGINT', 'SIGTERM', 'SIGHUP'],
    repeatMs: 1_000,
    say,
    stop(signal) {
      say(`${signal}: stopping everything (send it again to force)`);
      return shutdown(0);
    },
    force(signal) {
      say(`${signal} again: killing everything now`);
      void supervisor.killAll().then(() => process.exit(130));
    },
  });
  // do not die of EIO printing to a terminal that is gone
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);

  try {
    const summary = await startAll(supervisor, process.env);
    if (supervisor.isStopping()) return;
    supervisor.watch();
    for (const line of summary) say(line);
  } catch (err) {
    if (supervisor.isStopping()) return; // a signal or a crash is already being handled
    const message =
      err instanceof StartError ? err.message : `${(err as Error).name}: ${(err as Error).message}`;
    say(`cannot start: ${message}`);
    await shutdown(1);
  }
}

void main();
