import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { freePort } from '../../src/run/ports';
import { redisServerArgs } from '../../src/run/redis-local';
import { spawnScoped } from './process-scope';

export { freePort };

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** SIGKILL the server (data on disk stays: AOF everysec) */
  kill(): Promise<void>;
  /** start it again on the same port and data dir */
  start(): Promise<void>;
  /** stop and delete the data dir */
  stop(): Promise<void>;
  /** the pid of the running server (undefined once it is gone) */
  pid(): number | undefined;
}

export interface RedisServerOptions {
  /** AOF on (default): a test can kill and restart it; the bench turns it off (noise) */
  aof?: boolean;
}

/**
 * A real redis-server of the test's (or the bench's) own: free port, own data dir, AOF on
 * unless turned off, so a test can kill and restart it; in the process scope. Never the
 * machine's shared Redis on 6379. A port taken meanwhile is retried with another one.
 */
export async function startRedis(
  extraArgs: string[] = [],
  opts: RedisServerOptions = {},
): Promise<RedisServer> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'cq-redis-'));
    try {
      return await startRedisOn(port, dir, extraArgs, opts.aof ?? true);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      if (attempt < 2 && /Address already in use/.test(String(err))) continue;
      throw err;
    }
  }
}

async function startRedisOn(
  port: number,
  dir: string,
  extraArgs: string[],
  aof: boolean,
): Promise<RedisServer> {
  let proc: ChildProcess | undefined;

  const start = async () => {
    proc = spawnScoped('redis-server', [...redisServerArgs({ port, dir, aof }), ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const p = proc;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const onData = (b: Buffer) => {
        out += b.toString();
        if (out.includes('Ready to accept connections')) {
          p.stdout!.off('data', onData);
          p.stdout!.resume();
          resolve();
        }
      };
      p.stdout!.on('data', onData);
      p.once('exit', (code) =>
        reject(new Error(`redis-server exited (${code}): ${out.slice(-500)}`)),
      );
      p.once('error', reject);
    });
  };
  const kill = async () => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const p = proc;
    p.kill('SIGKILL');
    await once(p, 'exit');
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    kill,
    start,
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
    pid: () => (proc && proc.exitCode === null && proc.signalCode === null ? proc.pid : undefined),
  };
}
