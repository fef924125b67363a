import type { Config } from './index';

/*
 * The settings by concern, each setting in exactly one group (checked below); a part of
 * the system names the groups it reads (the worker's, the API's and webhooks' configs).
 */

/** What every process needs to reach the queue: Redis and the queue's name and key prefix. */
export type QueueConnectionConfig = Pick<
  Config,
  'redisUrl' | 'redisFamily' | 'redisCluster' | 'queueName' | 'queuePrefix'
>;
/** A job's life: tries and their back-off, its run time, recovery, retention. */
export type JobPolicyConfig = Pick<
  Config,
  | 'jobAttempts'
  | 'retryBackoffMs'
  | 'jobTimeoutMs'
  | 'recoveryCutoffMs'
  | 'retentionMs'
  | 'cleanIntervalMs'
>;
/** Reaching ComfyUI and following a prompt there. */
export type ComfyConfig = Pick<
  Config,
  | 'comfyuiUrls'
  | 'comfyuiTimeoutMs'
  | 'healthIntervalMs'
  | 'comfyuiWebsocket'
  | 'movePending'
  | 'pollIntervalMs'
  | 'submitGraceMs'
  | 'progressIntervalMs'
  | 'progressStepPercent'
>;
/** BullMQ's worker: concurrency, locks and stalls; the worker's name. */
export type WorkerRunConfig = Pick<
  Config,
  | 'workerConcurrency'
  | 'lockDurationMs'
  | 'stalledIntervalMs'
  | 'maxStalledCount'
  | 'drainDelayS'
  | 'workerName'
>;
/** Files: where they are kept, the links to them, inputs by upload or URL. */
export type FilesConfig = Pick<
  Config,
  | 'storage'
  | 's3'
  | 'publicUrl'
  | 'outputUrlTtlS'
  | 'uploadMaxBytes'
  | 'inputUrlAllowPrivate'
  | 'inputUrlTimeoutMs'
>;
/** Fair sharing between users. */
export type FairConfig = Pick<Config, 'userFairness' | 'userMaxActive' | 'userMaxQueued'>;
/** Who may call the API and how much: keys, rate limit, queue depth, signed links. */
export type ApiAccessConfig = Pick<
  Config,
  | 'apiKeys'
  | 'apiAdminNames'
  | 'rateLimitRequests'
  | 'rateLimitWindowS'
  | 'maxQueuedJobs'
  | 'linkSecret'
  | 'linkTtlS'
>;
/** Webhook deliveries: the signing secret and the address policy. */
export type WebhookSendConfig = Pick<Config, 'webhookSecret' | 'webhookAllowPrivate'>;
/** A process's own: ports, logs, shutdown, environment, the dashboard, analytics, test faults. */
export type ProcessConfig = Pick<
  Config,
  | 'port'
  | 'metricsPort'
  | 'shutdownTimeoutMs'
  | 'logLevel'
  | 'logPretty'
  | 'production'
  | 'dashboardUser'
  | 'dashboardPassword'
  | 'posthogApiKey'
  | 'posthogHost'
  | 'crashAt'
  | 'pauseAt'
>;

type Grouped = keyof (QueueConnectionConfig &
  JobPolicyConfig &
  ComfyConfig &
  WorkerRunConfig &
  FilesConfig &
  FairConfig &
  ApiAccessConfig &
  WebhookSendConfig &
  ProcessConfig);
/** Fails to compile while a setting is in no group. */
const everySettingGrouped: Record<Exclude<keyof Config, Grouped>, never> = {};
void everySettingGrouped;
