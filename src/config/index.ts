import { z } from 'zod';
import { ConfigError } from '../errors';
import { DEFAULT_STORAGE_URL, parseStorageUrl } from '../storage';
import { validateWebhookSecret } from '../webhook-secret';
import { flag, list, nonNegativeInt, optionalString, positiveInt, urlList } from './fields';

/**
 * Every setting the processes read, with its default and unit, in one place.
 * `loadConfig(env)` is called once by an entry file; nothing else reads process.env.
 */
const schema = z.object({
  REDIS_URL: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const url = v && v.trim() !== '' ? v.trim() : 'redis://127.0.0.1:6379';
      try {
        const p = new URL(url).protocol;
        if (p !== 'redis:' && p !== 'rediss:') throw new Error('scheme');
      } catch {
        ctx.addIssue({
          code: 'custom',
          message: 'REDIS_URL must be a redis:// or rediss:// URL (the value is not shown)',
        });
        return z.NEVER;
      }
      return url;
    }),
  REDIS_FAMILY: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return undefined;
      const n = Number(v);
      if (n !== 0 && n !== 4 && n !== 6) {
        ctx.addIssue({ code: 'custom', message: `REDIS_FAMILY must be 0, 4 or 6, got "${v}"` });
        return z.NEVER;
      }
      return n as 0 | 4 | 6;
    }),
  /** `1`: REDIS_URL is a seed node of a Redis Cluster (see src/redis.ts) */
  REDIS_CLUSTER: flag('REDIS_CLUSTER', false),
  COMFYUI_URL: urlList('COMFYUI_URL', 'http://127.0.0.1:8188'),
  PORT: positiveInt('PORT', 3000),
  METRICS_PORT: nonNegativeInt('METRICS_PORT', 9464),
  QUEUE_NAME: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const name = v && v.trim() !== '' ? v.trim() : 'comfyui-jobs';
      if (name.includes(':')) {
        ctx.addIssue({ code: 'custom', message: `QUEUE_NAME must not contain ":", got "${name}"` });
        return z.NEVER;
      }
      return name;
    }),
  QUEUE_PREFIX: z
    .string()
    .optional()
    .transform((v) => (v && v.trim() !== '' ? v.trim() : '{comfyui}')),
  API_KEYS: list('API_KEYS'),
  API_ADMIN_NAMES: list('API_ADMIN_NAMES'),
  RATE_LIMIT_REQUESTS: nonNegativeInt('RATE_LIMIT_REQUESTS', 0),
  RATE_LIMIT_WINDOW_S: positiveInt('RATE_LIMIT_WINDOW_S', 60),
  MAX_QUEUED_JOBS: nonNegativeInt('MAX_QUEUED_JOBS', 0),
  LINK_SECRET: optionalString,
  LINK_TTL_S: positiveInt('LINK_TTL_S', 21_600),
  DASHBOARD_USER: optionalString,
  DASHBOARD_PASSWORD: optionalString,
  WORKER_CONCURRENCY: positiveInt('WORKER_CONCURRENCY', 4),
  POLL_INTERVAL_MS: positiveInt('POLL_INTERVAL_MS', 1000),
  PROGRESS_INTERVAL_MS: positiveInt('PROGRESS_INTERVAL_MS', 500),
  PROGRESS_STEP_PERCENT: positiveInt('PROGRESS_STEP_PERCENT', 20),
  COMFYUI_WEBSOCKET: flag('COMFYUI_WEBSOCKET', true),
  COMFYUI_MOVE_PENDING: flag('COMFYUI_MOVE_PENDING', true),
  RECOVERY_CUTOFF_MS: positiveInt('RECOVERY_CUTOFF_MS', 600_000),
  RETENTION_MS: positiveInt('RETENTION_MS', 7_200_000),
  CLEAN_INTERVAL_MS: positiveInt('CLEAN_INTERVAL_MS', 60_000),
  JOB_TIMEOUT_MS: positiveInt('JOB_TIMEOUT_MS', 7_200_000),
  SUBMIT_GRACE_MS: positiveInt('SUBMIT_GRACE_MS', 5_000),
  COMFYUI_TIMEOUT_MS: positiveInt('COMFYUI_TIMEOUT_MS', 10_000),
  COMFYUI_HEALTH_INTERVAL_MS: positiveInt('COMFYUI_HEALTH_INTERVAL_MS', 5_000),
  LOCK_DURATION_MS: positiveInt('LOCK_DURATION_MS', 10_000),
  STALLED_INTERVAL_MS: positiveInt('STALLED_INTERVAL_MS', 5_000),
  MAX_STALLED_COUNT: positiveInt('MAX_STALLED_COUNT', 3),
  DRAIN_DELAY_S: positiveInt('DRAIN_DELAY_S', 10),
  JOB_ATTEMPTS: positiveInt('JOB_ATTEMPTS', 8),
  RETRY_BACKOFF_MS: positiveInt('RETRY_BACKOFF_MS', 2_000),
  SHUTDOWN_TIMEOUT_MS: positiveInt('SHUTDOWN_TIMEOUT_MS', 20_000),
  WEBHOOK_SECRET: optionalString,
  WEBHOOK_ALLOW_PRIVATE: flag('WEBHOOK_ALLOW_PRIVATE', false),
  POSTHOG_API_KEY: optionalString,
  POSTHOG_HOST: optionalString,
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .optional()
    .transform((v) => v ?? 'info'),
  LOG_PRETTY: flag('LOG_PRETTY', false),
  WORKER_NAME: optionalString,
  NODE_ENV: optionalString,
  STORAGE_URL: optionalString,
  /** set by `fly storage create` (Tigris): the bucket when STORAGE_URL is unset */
  BUCKET_NAME: optionalString,
  AWS_ENDPOINT_URL_S3: optionalString,
  AWS_ENDPOINT_URL: optionalString,
  AWS_REGION: optionalString,
  AWS_ACCESS_KEY_ID: optionalString,
  AWS_SECRET_ACCESS_KEY: optionalString,
  S3_FORCE_PATH_STYLE: flag('S3_FORCE_PATH_STYLE', false),
  PUBLIC_URL: optionalString,
  UPLOAD_MAX_BYTES: positiveInt('UPLOAD_MAX_BYTES', 52_428_800),
  INPUT_URL_ALLOW_PRIVATE: flag('INPUT_URL_ALLOW_PRIVATE', false),
  INPUT_URL_TIMEOUT_MS: positiveInt('INPUT_URL_TIMEOUT_MS', 30_000),
  OUTPUT_URL_TTL_S: nonNegativeInt('OUTPUT_URL_TTL_S', 3600),
  USER_FAIRNESS: flag('USER_FAIRNESS', true),
  USER_MAX_ACTIVE: nonNegativeInt('USER_MAX_ACTIVE', 0),
  USER_MAX_QUEUED: nonNegativeInt('USER_MAX_QUEUED', 0),
  /** Test-only fault injection: exit the process at a named crash window (see processor). */
  COMFYQ_CRASH_AT: optionalString,
  /** Test-only fault injection: stop the process (SIGSTOP) once at a named point. */
  COMFYQ_PAUSE_AT: optionalString,
});

export type Config = ReturnType<typeof toConfig>;

function toConfig(e: z.infer<typeof schema>) {
  return {
    redisUrl: e.REDIS_URL,
    redisFamily: e.REDIS_FAMILY,
    redisCluster: e.REDIS_CLUSTER,
    comfyuiUrls: e.COMFYUI_URL,
    port: e.PORT,
    metricsPort: e.METRICS_PORT,
    queueName: e.QUEUE_NAME,
    queuePrefix: e.QUEUE_PREFIX,
    apiKeys: e.API_KEYS,
    apiAdminNames: e.API_ADMIN_NAMES,
    rateLimitRequests: e.RATE_LIMIT_REQUESTS,
    rateLimitWindowS: e.RATE_LIMIT_WINDOW_S,
    maxQueuedJobs: e.MAX_QUEUED_JOBS,
    linkSecret: e.LINK_SECRET,
    linkTtlS: e.LINK_TTL_S,
    dashboardUser: e.DASHBOARD_USER,
    dashboardPassword: e.DASHBOARD_PASSWORD,
    workerConcurrency: e.WORKER_CONCURRENCY,
    pollIntervalMs: e.POLL_INTERVAL_MS,
    progressIntervalMs: e.PROGRESS_INTERVAL_MS,
    progressStepPercent: e.PROGRESS_STEP_PERCENT,
    comfyuiWebsocket: e.COMFYUI_WEBSOCKET,
    movePending: e.COMFYUI_MOVE_PENDING,
    recoveryCutoffMs: e.RECOVERY_CUTOFF_MS,
    retentionMs: e.RETENTION_MS,
    cleanIntervalMs: e.CLEAN_INTERVAL_MS,
    jobTimeoutMs: e.JOB_TIMEOUT_MS,
    submitGraceMs: e.SUBMIT_GRACE_MS,
    comfyuiTimeoutMs: e.COMFYUI_TIMEOUT_MS,
    healthIntervalMs: e.COMFYUI_HEALTH_INTERVAL_MS,
    lockDurationMs: e.LOCK_DURATION_MS,
    stalledIntervalMs: e.STALLED_INTERVAL_MS,
    maxStalledCount: e.MAX_STALLED_COUNT,
    drainDelayS: e.DRAIN_DELAY_S,
    jobAttempts: e.JOB_ATTEMPTS,
    retryBackoffMs: e.RETRY_BACKOFF_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    webhookSecret: e.WEBHOOK_SECRET,
    webhookAllowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
    posthogApiKey: e.POSTHOG_API_KEY,
    posthogHost: e.POSTHOG_HOST,
    logLevel: e.LOG_LEVEL,
    logPretty: e.LOG_PRETTY,
    workerName: e.WORKER_NAME,
    production: e.NODE_ENV === 'production',
    crashAt: e.COMFYQ_CRASH_AT,
    storage: parseStorageUrl(
      e.STORAGE_URL ?? (e.BUCKET_NAME ? `s3://${e.BUCKET_NAME}` : DEFAULT_STORAGE_URL),
    ),
    s3: {
      endpoint: e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL,
      region: e.AWS_REGION,
      forcePathStyle: e.S3_FORCE_PATH_STYLE,
      // both set: used as they are; otherwise the SDK's default chain (profiles, roles, …)
      credentials:
        e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY
          ? { accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY }
          : undefined,
    },
    publicUrl: e.PUBLIC_URL,
    uploadMaxBytes: e.UPLOAD_MAX_BYTES,
    inputUrlAllowPrivate: e.INPUT_URL_ALLOW_PRIVATE,
    inputUrlTimeoutMs: e.INPUT_URL_TIMEOUT_MS,
    outputUrlTtlS: e.OUTPUT_URL_TTL_S,
    userFairness: e.USER_FAIRNESS,
    userMaxActive: e.USER_MAX_ACTIVE,
    userMaxQueued: e.USER_MAX_QUEUED,
    pauseAt: e.COMFYQ_PAUSE_AT,
  };
}

/** PUBLIC_URL: the API's address as clients see it (absolute output URLs), without a trailing `/`. */
function checkPublicUrl(v: string): string {
  try {
    const u = new URL(v);
    if ((u.protocol === 'http:' || u.protocol === 'https:') && !u.search && !u.hash) {
      return u.href.replace(/\/+$/, '');
    }
  } catch {
    // reported below
  }
  throw new ConfigError(`PUBLIC_URL must be an absolute http(s) URL without query, got "${v}"`);
}

/** Reads and validates the environment once; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) =>
      i.code === 'custom' ? i.message : `${String(i.path[0])}: ${i.message}`,
    );
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const config = toConfig(parsed.data);
  if ((config.dashboardUser === undefined) !== (config.dashboardPassword === undefined)) {
    throw new ConfigError('DASHBOARD_USER and DASHBOARD_PASSWORD must be set together');
  }
  if (config.webhookSecret) validateWebhookSecret(config.webhookSecret);
  if (config.publicUrl !== undefined) config.publicUrl = checkPublicUrl(config.publicUrl);
  return config;
}
