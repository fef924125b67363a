import IORedis from 'ioredis';
import { CANCEL_FIELD, WORKFLOW_FIELD, jobKey } from '../src/queue';
import { allRedisScripts, redisScript } from '../src/scripts';
import { FenceError, createLockProver } from '../src/worker/fence';
import { LockLostError, createJobWriter } from '../src/worker/persist';
import { startRedis, type RedisServer } from './helpers/redis-server';
import type { JobData } from '../src/job/data';

/**
 * src/scripts/: every `.lua` file read, its key count taken from its name, its includes
 * expanded once each, and the result compiled by a real Redis (SCRIPT LOAD); then a worker's
 * writes to its job straight against that Redis: persist-5.lua and progress-5.lua (their
 * included lock check and BullMQ's progress write) and proveLock-1.lua.
 */

const names = { queuePrefix: `{wr-${process.pid}}`, queueName: 'jobs' };
const queueKey = `${names.queuePrefix}:${names.queueName}`;

let server: RedisServer;
let redis: IORedis;
beforeAll(async () => {
  server = await startRedis();
  redis = new IORedis(server.url);
});
afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

test('each script: its name and key count from its file name', () => {
  const scripts = [...allRedisScripts()].map(([file, s]) => [file, s.name, s.numberOfKeys]);
  expect(scripts.sort()).toEqual([
    ['cancelMark-1', 'cancelMark', 1],
    ['enqueue', 'enqueue', undefined],
    ['fairAdmit-8', 'fairAdmit', 8],
    ['fairRelease-8', 'fairRelease', 8],
    ['fairReserve-6', 'fairReserve', 6],
    ['fairUnparkCancelled-3', 'fairUnparkCancelled', 3],
    ['fairUsage-0', 'fairUsage', 0],
    ['listPage-4', 'listPage', 4],
    ['listSweep-1', 'listSweep', 1],
    ['persist-5', 'persist', 5],
    ['progress-5', 'progress', 5],
    ['proveLock-1', 'proveLock', 1],
    ['slotAcquire', 'slotAcquire', undefined],
    ['slotHold', 'slotHold', undefined],
    ['slotRelease-2', 'slotRelease', 2],
    ['snapshot-10', 'snapshot', 10],
  ]);
  expect(() => redisScript('persist')).toThrow(/no Redis script persist\.lua .*persist-5/);
});

test('includes are expanded, each function defined once; Redis compiles every script', async () => {
  for (const [file, { lua }] of allRedisScripts()) {
    expect({ file, include: /@include/.test(lua) }).toEqual({ file, include: false });
    const functions = [...lua.matchAll(/^local function (\w+)/gm)].map((m) => m[1]);
    expect({ file, functions }).toEqual({ file, functions: [...new Set(functions)] });
    expect(await redis.script('LOAD', lua)).toMatch(/^[0-9a-f]{40}$/);
  }
  expect(redisScript('persist-5').lua).toContain('local function checkLock(');
  expect(redisScript('listSweep-1').lua).toContain('local function gone(');
  // an include's own include: enqueue.lua → enqueueFair → band
  expect(redisScript('enqueue').lua).toMatch(
    /local BAND = 4294967296[^]*local function enqueueFair\(/,
  );
});

/** A job hash as BullMQ and the API leave it, locked by `token`. */
async function job(id: string, token: string) {
  const key = jobKey(names, id);
  await redis.hset(key, 'data', '{}', WORKFLOW_FIELD, '{"1":{}}');
  await redis.set(`${key}:lock`, token, 'PX', 30_000);
  return key;
}
const data = { state: { status: 'running' } } as unknown as JobData;

test('persist: data, progress with its event, a log line, the outcome; the workflow goes with it', async () => {
  const key = await job('p1', 'tok');
  const writer = createJobWriter(redis, names);
  await redis.del(`${queueKey}:meta`);
  const r = await writer.persist('p1', 'tok', data, {
    progress: { percent: 100 },
    log: 'a line',
    result: { outputs: [] },
    failedReason: '',
  });
  expect(r).toEqual({ cancelRequested: false });
  const [stored, progress, returnvalue, workflow] = await redis.hmget(
    key,
    'data',
    'progress',
    'returnvalue',
    WORKFLOW_FIELD,
  );
  expect({ stored, progress, returnvalue, workflow }).toEqual({
    stored: JSON.stringify(data),
    progress: '{"percent":100}',
    returnvalue: '{"outputs":[]}',
    workflow: null,
  });
  expect(await redis.lrange(`${key}:logs`, 0, -1)).toEqual(['a line']);
  // BullMQ's updateProgress: the event, and the stream's bound set when absent
  const events = await redis.xrange(`${queueKey}:events`, '-', '+');
  expect(events.at(-1)?.[1]).toEqual([
    'event',
    'progress',
    'jobId',
    'p1',
    'data',
    '{"percent":100}',
  ]);
  expect(await redis.hget(`${queueKey}:meta`, 'opts.maxLenEvents')).toBe('10000');
});

test('persist without an outcome keeps the workflow; a cancel mark is answered', async () => {
  const key = await job('p2', 'tok');
  await redis.hset(key, CANCEL_FIELD, 'now');
  const writer = createJobWriter(redis, names);
  expect(await writer.persist('p2', 'tok', data)).toEqual({ cancelRequested: true });
  expect(await redis.hget(key, WORKFLOW_FIELD)).toBe('{"1":{}}');
  expect(await writer.progress('p2', 'tok', { percent: 5 })).toEqual({ cancelRequested: true });
  expect(await redis.hget(key, 'progress')).toBe('{"percent":5}');
});

test('another token, or no job: nothing is written', async () => {
  const key = await job('p3', 'theirs');
  const writer = createJobWriter(redis, names);
  await expect(writer.persist('p3', 'mine', data)).rejects.toBeInstanceOf(LockLostError);
  await expect(writer.progress('p3', 'mine', { percent: 1 })).rejects.toBeInstanceOf(LockLostError);
  expect(await redis.hmget(key, 'data', 'progress')).toEqual(['{}', null]);
  await expect(writer.persist('gone', 'mine', data)).rejects.toThrow(/no longer exists/);
});

test('the lock proof renews the lock of its token, and refuses another', async () => {
  const key = await job('p4', 'tok');
  await redis.pexpire(`${key}:lock`, 1_000);
  const prove = createLockProver(redis, { ...names, lockDurationMs: 60_000 });
  await prove('p4', 'tok');
  expect(await redis.pttl(`${key}:lock`)).toBeGreaterThan(1_000);
  await expect(prove('p4', 'other')).rejects.toBeInstanceOf(FenceError);
});
