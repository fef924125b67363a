import { loadConfig } from '../../src/config';
import { ConfigError } from '../../src/errors';
import { describeRedis, redactRedisUrl, redisOptions } from '../../src/redis';

describe('loadConfig', () => {
  test('defaults with an empty environment', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      comfyuiUrls: ['http://127.0.0.1:8188'],
      port: 3000,
      queueName: 'comfyui-jobs',
      pollIntervalMs: 1000,
      recoveryCutoffMs: 600_000,
      retentionMs: 7_200_000,
      jobTimeoutMs: 7_200_000,
      lockDurationMs: 10_000,
      stalledIntervalMs: 5_000,
      logLevel: 'info',
      apiKeys: [],
      movePending: true,
    });
  });

  test('a comma-separated COMFYUI_URL list, trailing slashes trimmed', () => {
    expect(loadConfig({ COMFYUI_URL: 'http://a:8188/, http://b:8188' }).comfyuiUrls).toEqual([
      'http://a:8188',
      'http://b:8188',
    ]);
  });

  test.each([
    ['RECOVERY_CUTOFF_MS', 'soon', 'RECOVERY_CUTOFF_MS must be a positive integer'],
    ['POLL_INTERVAL_MS', '-5', 'POLL_INTERVAL_MS must be a positive integer'],
    ['PORT', '1.5', 'PORT must be a positive integer'],
    ['COMFYUI_URL', 'ftp://x', 'COMFYUI_URL must be one or more comma-separated http(s) URLs'],
    ['REDIS_URL', 'http://user:hunter2@host', 'REDIS_URL must be a redis:// or rediss:// URL'],
    ['REDIS_FAMILY', '5', 'REDIS_FAMILY must be 0, 4 or 6'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL'],
    ['QUEUE_NAME', 'a:b', 'QUEUE_NAME must not contain'],
    ['COMFYUI_WEBSOCKET', 'off', 'COMFYUI_WEBSOCKET must be 0 or 1'],
    ['COMFYUI_MOVE_PENDING', 'no', 'COMFYUI_MOVE_PENDING must be 0 or 1'],
    ['WEBHOOK_ALLOW_PRIVATE', 'yes', 'WEBHOOK_ALLOW_PRIVATE must be 0 or 1'],
    ['REDIS_CLUSTER', 'on', 'REDIS_CLUSTER must be 0 or 1'],
  ])('%s=%s is refused with a message naming it', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  test('a bad REDIS_URL never echoes the password', () => {
    try {
      loadConfig({ REDIS_URL: 'http://user:hunter2@host' });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect(String((err as Error).message)).not.toContain('hunter2');
    }
  });

  test('dashboard credentials go together', () => {
    expect(() => loadConfig({ DASHBOARD_USER: 'admin' })).toThrow(
      'DASHBOARD_USER and DASHBOARD_PASSWORD must be set together',
    );
  });
});

describe('Redis connection options by role', () => {
  const upstash = 'rediss://default:s3cret@fly-comfy.upstash.io:6379';
  test('worker: waits out outages', () => {
    expect(redisOptions({ redisUrl: 'redis://127.0.0.1:6379' }, 'worker')).toMatchObject({
      maxRetriesPerRequest: null,
      enableOfflineQueue: true,
    });
  });
  test('producer: fails fast', () => {
    expect(redisOptions({ redisUrl: 'redis://127.0.0.1:6379' }, 'producer')).toMatchObject({
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      enableOfflineQueue: false,
    });
  });
  test('rediss:// is passed as the URL so ioredis enables TLS', () => {
    expect(redisOptions({ redisUrl: upstash }, 'worker')).toMatchObject({ url: upstash });
  });
  test('Fly private network: family 6 when configured', () => {
    expect(
      redisOptions(
        { redisUrl: 'redis://default:pw@fly-comfy.upstash.io', redisFamily: 6 },
        'producer',
      ),
    ).toMatchObject({ family: 6 });
    expect(redisOptions({ redisUrl: 'redis://localhost' }, 'producer')).not.toHaveProperty(
      'family',
    );
  });
  test('the password never appears in descriptions', () => {
    expect(redactRedisUrl(upstash)).toBe('rediss://default:***@fly-comfy.upstash.io:6379');
    expect(describeRedis({ redisUrl: upstash, redisFamily: 6 })).toBe(
      'TLS fly-comfy.upstash.io:6379 (IPv6)',
    );
  });
});
