import { RedisConnection, createIORedisClient, type IRedisClient, type RedisOptions } from 'bullmq';
import IORedis, {
  Cluster,
  type ClusterOptions,
  type RedisOptions as IORedisOptions,
} from 'ioredis';

/**
 * The one place that knows how to connect to Redis, by role.
 * - worker: blocking commands, waits out outages (`maxRetriesPerRequest: null`).
 * - producer: the API's Queue, fails fast while Redis is down (`enableOfflineQueue: false`).
 * `rediss://` means TLS (ioredis derives it from the URL). On Fly, Upstash is reached over
 * private IPv6: `REDIS_FAMILY=6` (ioredis 6's default 0 resolves both families too).
 *
 * Redis Cluster (`REDIS_CLUSTER=1`): REDIS_URL names one seed node; every connection is an
 * ioredis `Cluster` that discovers the others. The queue keys share one hash slot through
 * the `{…}` in QUEUE_PREFIX. BullMQ gets plain options as before (so it still creates and
 * closes its own connections); a BullMQ client factory, installed the first time cluster
 * options are built, turns options marked for the cluster into a `Cluster`.
 */
export type RedisRole = 'worker' | 'producer' | 'subscriber';

export interface RedisSettings {
  redisUrl: string;
  redisFamily?: 0 | 4 | 6;
  connectionName?: string;
  /** REDIS_CLUSTER=1: REDIS_URL is a seed node of a Redis Cluster. @defaultValue false */
  redisCluster?: boolean;
}

/** The option that marks a BullMQ connection as a Redis Cluster one (read by the factory). */
export const CLUSTER_OPTION = 'comfyuiQueueCluster';

export function redisOptions(settings: RedisSettings, role: RedisRole): RedisOptions {
  const base: RedisOptions = {
    url: settings.redisUrl,
    enableReadyCheck: true,
    connectionName: settings.connectionName,
    ...(settings.redisFamily !== undefined ? { family: settings.redisFamily } : {}),
  };
  if (settings.redisCluster) {
    installClusterFactory();
    base[CLUSTER_OPTION] = true;
  }
  if (role === 'producer') {
    // fail fast, never twice: a command is refused while disconnected (no offline queue),
    // and one in flight when the connection drops is rejected at once, never resent after
    // the reconnect (the API then answers `outcome_unknown`, not a second write)
    return {
      ...base,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      enableOfflineQueue: false,
      connectTimeout: 2_000,
      // keep trying to reconnect, at most every 2 s, so the API recovers by itself
      retryStrategy: (times: number) => Math.min(200 * times, 2_000),
    };
  }
  return { ...base, maxRetriesPerRequest: null, enableOfflineQueue: true };
}

/**
 * A plain ioredis client for non-BullMQ work (pub/sub, health checks). The caller closes it.
 * With REDIS_CLUSTER it is an ioredis `Cluster`: it has every command, event and `status`
 * this project uses on the client (routing each key to its node, pub/sub cluster-wide), so
 * it is returned under the same type and callers need no change.
 */
export function createRedis(settings: RedisSettings, role: RedisRole): IORedis {
  const options = redisOptions(settings, role);
  if (settings.redisCluster) return createCluster(options) as unknown as IORedis;
  const { url, ...rest } = options as RedisOptions & { url: string };
  return new IORedis(url, rest as IORedisOptions);
}

/** An ioredis Cluster from the options `redisOptions` built: seed from the URL, the rest per node. */
export function createCluster(options: RedisOptions): Cluster {
  const {
    url,
    host: _host,
    port: _port,
    retryStrategy,
    enableOfflineQueue,
    enableReadyCheck,
    [CLUSTER_OPTION]: _marker,
    ...perNode
  } = options;
  const u = new URL(String(url));
  const nodeOptions: ClusterOptions['redisOptions'] = {
    ...(perNode as IORedisOptions),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  return new Cluster(
    [{ host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 6379) }],
    {
      redisOptions: nodeOptions,
      enableOfflineQueue,
      enableReadyCheck,
      // the role's reconnect policy (BullMQ's own for worker connections) for the whole cluster
      ...(typeof retryStrategy === 'function'
        ? { clusterRetryStrategy: (times: number) => retryStrategy(times) ?? null }
        : {}),
    },
  );
}

/** BullMQ's default client creation (redis-connection.js `init()`), plus cluster-marked options. */
function clusterAwareFactory(opts: RedisOptions): IRedisClient {
  if (opts[CLUSTER_OPTION]) return createIORedisClient(createCluster(opts));
  const { url, ...rest } = opts;
  return createIORedisClient(
    url ? new IORedis(url, rest as IORedisOptions) : new IORedis(rest as IORedisOptions),
  );
}

function installClusterFactory(): void {
  const current = RedisConnection.clientFactory;
  if (current === clusterAwareFactory) return;
  if (current) {
    throw new Error(
      'REDIS_CLUSTER=1 needs BullMQ’s RedisConnection.clientFactory, but another one is installed',
    );
  }
  RedisConnection.clientFactory = clusterAwareFactory;
}

/** The URL with any password replaced, for logs and messages. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    if (u.username && u.password === '') u.username = '***';
    return u.toString();
  } catch {
    return '<unparseable REDIS_URL>';
  }
}

/** A human description of where we connect: scheme, host, port, TLS; never credentials. */
export function describeRedis(settings: RedisSettings): string {
  const u = new URL(settings.redisUrl);
  return `${u.protocol === 'rediss:' ? 'TLS ' : ''}${u.hostname}:${u.port || 6379}${
    settings.redisFamily ? ` (IPv${settings.redisFamily})` : ''
  }${settings.redisCluster ? ' (Redis Cluster seed node)' : ''}`;
}

/**
 * Redis must not evict keys (a job would vanish). Reads `maxmemory_policy` from INFO (CONFIG
 * may be disabled on managed Redis) and logs a warning naming it; never throws.
 */
export async function warnIfEvicting(
  client: { info(section: string): Promise<string> },
  log: { warn(obj: object, msg: string): void },
): Promise<void> {
  try {
    const policy = /maxmemory_policy:(\S+)/.exec(await client.info('memory'))?.[1];
    if (policy && policy !== 'noeviction') {
      log.warn(
        { policy },
        `Redis maxmemory-policy is ${policy}: jobs can be evicted; set it to noeviction (Upstash: disable eviction)`,
      );
    }
  } catch {
    // not fatal: BullMQ prints its own warning too
  }
}
