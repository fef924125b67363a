/**
 * The Redis password never appears in what the worker prints, even at LOG_LEVEL=trace,
 * while it connects with it to a real Redis that requires it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server';

const ROOT = join(__dirname, '..');
const PASSWORD = 'pw-Zq8rT3vX9-secret';

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis(['--requirepass', PASSWORD]);
});
afterAll(async () => {
  await redis?.stop();
});

test.each([
  ['JSON logs', { LOG_PRETTY: '' }],
  ['pretty logs', { LOG_PRETTY: '1' }],
])('the worker never prints the Redis password (%s)', async (_name, logEnv) => {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'workers', 'worker.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...logEnv,
      REDIS_URL: `redis://default:${PASSWORD}@127.0.0.1:${redis.port}`,
      COMFYUI_URL: `http://127.0.0.1:${await freePort()}`,
      METRICS_PORT: String(await freePort()),
      QUEUE_NAME: `secrets-${process.pid}-${Date.now()}`,
      LOG_LEVEL: 'trace',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      if (out.includes('worker ready')) resolve();
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`worker exited (${code}):\n${out}`)));
  });
  await ready;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  await exited;

  expect(out).toContain('worker ready');
  expect(out).toContain(`127.0.0.1:${redis.port}`); // it does say where it connects
  expect(out).not.toContain(PASSWORD);
});
