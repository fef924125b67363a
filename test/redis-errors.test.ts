import { once } from 'node:events';
import { ConnectionClosedError } from 'bullmq';
import IORedis, { type RedisOptions } from 'ioredis';
import { TimeoutError } from '../src/lifecycle';
import { isConnectionError, notApplied, replyCode } from '../src/redis-errors';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server';

/**
 * The classifier of Redis failures (src/redis-errors.ts) on the errors ioredis really gives:
 * from a client against a closed port and against real redis-servers (one of them a
 * replica, one full). Each row: the error's reply code, whether it means Redis is not
 * reachable or not serving (a 503), whether it means a write did not happen.
 */

let primary: RedisServer;
let replica: RedisServer;
const clients: IORedis[] = [];
const client = (opts: RedisOptions | string) => {
  const c = typeof opts === 'string' ? new IORedis(opts) : new IORedis(opts);
  clients.push(c);
  return c;
};
const rejection = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
};

beforeAll(async () => {
  [primary, replica] = await Promise.all([startRedis(), startRedis()]);
});
afterAll(async () => {
  // QUIT where connected; disconnect() of a client whose socket already closed would leave
  // ioredis's timer for that close running
  await Promise.all(
    clients.map((c) => (c.status === 'ready' ? c.quit() : c.status === 'end' || c.disconnect())),
  );
  await Promise.all([primary?.stop(), replica?.stop()]);
});

/** The client's 'end' (events.once would reject on the 'error' events before it). */
const ended = (c: IORedis) => new Promise((resolve) => c.once('end', resolve));

const classify = (err: unknown) => ({
  code: replyCode(err),
  connection: isConnectionError(err),
  notApplied: notApplied(err),
});

test('a closed port, a closed connection, a refused offline command, spent retries', async () => {
  const port = await freePort(); // nothing listens there
  const refused = client({ port, lazyConnect: true, retryStrategy: () => null });
  const socketError = once(refused, 'error');
  const closed = await rejection(refused.connect());
  const [econnrefused] = await socketError;
  // the command starts the lazy connection, and is refused at once
  const lazy = client({
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  lazy.on('error', () => {});
  const lazyEnded = ended(lazy);
  const offline = await rejection(lazy.get('k'));
  await lazyEnded;
  // one retry, then it gives up (and ends)
  const retrying = client({
    port,
    maxRetriesPerRequest: 0,
    retryStrategy: (n) => (n > 1 ? null : 0),
  });
  retrying.on('error', () => {});
  const retryingEnded = ended(retrying);
  const maxRetries = await rejection(retrying.get('k'));
  await retryingEnded;
  const quit = client(primary.url);
  await quit.ping();
  quit.disconnect();
  const afterClose = await rejection(quit.get('k'));

  expect({
    econnrefused: classify(econnrefused),
    closed: classify(closed),
    afterClose: classify(afterClose),
    offline: classify(offline),
    maxRetries: classify(maxRetries),
  }).toEqual({
    econnrefused: { code: undefined, connection: true, notApplied: false },
    closed: { code: undefined, connection: true, notApplied: false },
    afterClose: { code: undefined, connection: true, notApplied: false },
    // never sent: nothing was written
    offline: { code: undefined, connection: true, notApplied: true },
    maxRetries: { code: undefined, connection: true, notApplied: false },
  });
});

test("Redis's error replies: by their code", async () => {
  const redis = client(primary.url);
  const execAbort = await rejection(redis.multi().call('set', 'k').exec());
  const scriptError = await rejection(redis.eval("return redis.call('nosuch')", 0));
  const noScript = await rejection(redis.evalsha('0'.repeat(40), 0));
  await redis.set('string', 'x');
  const wrongType = await rejection(redis.lpush('string', 'x'));

  const follower = client(replica.url);
  await follower.replicaof('127.0.0.1', primary.port);
  const readOnly = await rejection(follower.set('k', 'v'));
  const readOnlyInScript = await rejection(
    follower.eval("return redis.call('set', KEYS[1], 'v')", 1, 'k'),
  );

  await redis.config('SET', 'maxmemory', '1');
  const oom = await rejection(redis.set('k', 'v')).finally(() =>
    redis.config('SET', 'maxmemory', '0'),
  );

  expect({
    execAbort: classify(execAbort),
    scriptError: classify(scriptError),
    noScript: classify(noScript),
    wrongType: classify(wrongType),
    readOnly: classify(readOnly),
    readOnlyInScript: classify(readOnlyInScript),
    oom: classify(oom),
  }).toEqual({
    // a MULTI discarded: nothing ran, Redis is serving
    execAbort: { code: 'EXECABORT', connection: false, notApplied: true },
    // a bug (a 500), not an outage
    scriptError: { code: 'ERR', connection: false, notApplied: false },
    noScript: { code: 'NOSCRIPT', connection: false, notApplied: true },
    wrongType: { code: 'WRONGTYPE', connection: false, notApplied: false },
    // a replica (a failover in progress): not serving writes
    readOnly: { code: 'READONLY', connection: true, notApplied: true },
    readOnlyInScript: { code: 'READONLY', connection: true, notApplied: true },
    oom: { code: 'OOM', connection: true, notApplied: true },
  });
});

test("BullMQ's ConnectionClosedError; errors that are not Redis's", () => {
  expect(classify(new ConnectionClosedError())).toEqual({
    code: undefined,
    connection: true,
    notApplied: false,
  });
  for (const err of [
    new TimeoutError('a read: timed out after 10 ms'),
    new TypeError("Cannot read properties of undefined (reading 'x')"),
    new Error('READONLY in a message is not a reply'),
    'Connection is closed.',
    undefined,
  ]) {
    expect({ err, ...classify(err) }).toEqual({
      err,
      code: undefined,
      connection: false,
      notApplied: false,
    });
  }
});
