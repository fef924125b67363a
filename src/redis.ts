import type { RedisOptions } from 'bullmq';
import IORedis, { type RedisOptions as IORedisOptions } from 'ioredis';

/**
 * The one place that knows how to connect to Redis, by role.
 * - worker: blocking commands, waits out outages (`maxRetriesPerRequest: null`).
 * - producer: the API's Queue, fails fast while Redis is down (`enableOfflineQueue: false`).
 * `rediss://` means TLS (ioredis derives it from the URL). On Fly, Upstash is reached over
 * private IPv6: `REDIS_FAMILY=6` (ioredis 6's default 0 resolves both families too).
 */
export type RedisRole = 'worker' | 'producer' | 'subscriber';

export interface RedisSettings {
  redisUrl: string;
  redisFamily?: 0 | 4 | 6;
  connectionName?: string;
}

export function redisOptions(settings: RedisSettings, role: RedisRole): RedisOptions {
  const base: RedisOptions = {
    url: settings.redisUrl,
    enableReadyCheck: true,
    connectionName: settings.connectionName,
    ...(settings.redisFamily !== undefined ? { family: settings.redisFamily } : {}),
  };
  if (role === 'producer') {
    return {
      ...base,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      connectTimeout: 2_000,
      // keep trying to reconnect, at most every 2 s, so the API recovers by itself
      retryStrategy: (times: number) => Math.min(200 * times, 2_000),
    };
  }
  return { ...base, maxRetriesPerRequest: null, enableOfflineQueue: true };
}

/** A plain ioredis client for non-BullMQ work (pub/sub, health checks). The caller closes it. */
export function createRedis(settings: RedisSettings, role: RedisRole): IORedis {
  const { url, ...rest } = redisOptions(settings, role) as RedisOptions & { url: string };
  return new IORedis(url, rest as IORedisOptions);
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
  }`;
}
