import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import IORedis from 'ioredis';
import { freePort, startRedis, type RedisServer } from './redis-server';
import { waitFor } from './wait';

const run = promisify(execFile);

export interface RedisCluster {
  nodes: RedisServer[];
  /** `redis://127.0.0.1:<port>` of every master, in start order */
  urls: string[];
  /** the node that serves `key`'s hash slot (asked with CLUSTER KEYSLOT + CLUSTER SLOTS) */
  ownerOf(key: string): Promise<RedisServer>;
  /** CLUSTER INFO of one node as key → value */
  info(node: RedisServer): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

async function command<T>(port: number, fn: (c: IORedis) => Promise<T>): Promise<T> {
  const c = new IORedis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

/**
 * A real Redis Cluster of `masters` redis-server processes (no replicas), each on a free
 * port with its own data dir and its own free cluster-bus port (`--cluster-port`, so the
 * usual port + 10000 never collides), joined with `redis-cli --cluster create`.
 * Resolves once every node reports `cluster_state:ok`.
 */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < masters; i++) {
      const busPort = await freePort();
      nodes.push(
        await startRedis([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '5000',
        ]),
      );
    }
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    );
    const info = (node: RedisServer) =>
      command(node.port, async (c) => {
        const text = (await c.call('CLUSTER', 'INFO')) as string;
        return Object.fromEntries(
          text
            .split(/\r?\n/)
            .filter((l) => l.includes(':'))
            .map((l) => l.split(':', 2) as [string, string]),
        );
      });
    for (const node of nodes) {
      await waitFor(
        `cluster node ${node.port} to report cluster_state:ok`,
        async () => (await info(node)).cluster_state === 'ok',
        { timeoutMs: 30_000, everyMs: 100 },
      );
    }
    return {
      nodes,
      urls: nodes.map((n) => n.url),
      info,
      async ownerOf(key) {
        return command(nodes[0].port, async (c) => {
          const slot = (await c.call('CLUSTER', 'KEYSLOT', key)) as number;
          const ranges = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
          const range = ranges.find(([from, to]) => slot >= from && slot <= to);
          const node = nodes.find((n) => n.port === range?.[2][1]);
          if (!node) throw new Error(`no node serves slot ${slot} of ${key}`);
          return node;
        });
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
