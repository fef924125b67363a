import { accessSync, constants, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { StartError, type ChildSpec, type ManagedChild } from './child';
import { freePort, isPortFree } from './ports';

/** Port tried first for the local Redis: stable across runs, and never the usual 6379. */
export const PREFERRED_REDIS_PORT = 6380;

export interface LocalRedis {
  child: ManagedChild;
  url: string;
  dir: string;
}

/** The absolute path of `bin` on PATH, or undefined. */
export function findOnPath(bin: string, path = ''): string | undefined {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    const file = join(dir, bin);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A redis-server left running by an earlier `npm start` that was killed hard. Where /proc
 * exists (Linux) the pid must be a redis process; elsewhere (macOS) any live process with
 * that pid counts: a false alarm only asks the user to check, while two servers on one
 * data dir would damage it.
 */
function leftoverPid(pidFile: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (existsSync('/proc')) {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').includes('redis') ? pid : undefined;
    } catch {
      return undefined;
    }
  }
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/**
 * The command line of a redis-server of our own (`npm start`, tests, bench): loopback only,
 * data in `dir`, noeviction (BullMQ needs it), no RDB snapshots; with `aof` jobs survive a
 * restart (fsync every second).
 */
export function redisServerArgs(o: {
  port: number;
  dir: string;
  aof: boolean;
  extra?: Record<string, string>;
}): string[] {
  return Object.entries({
    port: String(o.port),
    bind: '127.0.0.1',
    dir: o.dir,
    appendonly: o.aof ? 'yes' : 'no',
    ...(o.aof ? { appendfsync: 'everysec' } : {}),
    save: '',
    'maxmemory-policy': 'noeviction',
    'set-proc-title': 'no', // its title would overwrite its environment (tests find it there)
    daemonize: 'no',
    ...o.extra,
  }).flatMap(([k, v]) => [`--${k}`, v]);
}

/**
 * Starts `redis-server` from PATH with its data under `dataDir/redis` (AOF on, noeviction),
 * bound to 127.0.0.1 on port 6380 when free, else on a free port. Resolves once it accepts
 * connections. Only the warnings and errors of its log are echoed.
 */
export async function startLocalRedis(opts: {
  dataDir: string;
  pathEnv: string;
  env: NodeJS.ProcessEnv;
  spawn: (spec: ChildSpec) => ManagedChild;
}): Promise<LocalRedis> {
  const bin = findOnPath('redis-server', opts.pathEnv);
  if (!bin) {
    throw new StartError(
      'redis-server was not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, ' +
        'macOS: `brew install redis`) or point REDIS_URL at a Redis you already run.',
    );
  }
  const dir = join(opts.dataDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const pidFile = join(dir, 'redis.pid');
  const leftover = leftoverPid(pidFile);
  if (leftover !== undefined) {
    throw new StartError(
      `a redis-server (pid ${leftover}) from an earlier run still uses ${dir}; stop it (kill ${leftover}) and start again`,
    );
  }
  for (let attempt = 0; ; attempt++) {
    const port =
      attempt === 0 && (await isPortFree(PREFERRED_REDIS_PORT))
        ? PREFERRED_REDIS_PORT
        : await freePort();
    const child = opts.spawn({
      name: 'redis',
      command: bin,
      args: redisServerArgs({ port, dir, aof: true, extra: { pidfile: pidFile } }),
      env: opts.env,
      cwd: dir,
      // only its warnings and errors (`#` lines that say so)
      echo: (line) => / # .*(warning|error|fail|denied|cannot|can't)/i.test(line),
    });
    try {
      await child.waitForLine(/Ready to accept connections/);
      return { child, url: `redis://127.0.0.1:${port}`, dir };
    } catch (err) {
      // another process took the port between our check and redis' bind: try another one
      if (attempt < 2 && /Address already in use/.test(child.tail())) continue;
      throw new StartError(
        `redis-server did not start: ${(err as Error).message}\n${child.tail()}`,
      );
    }
  }
}
