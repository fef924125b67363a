import { PostHog } from 'posthog-node';
import { fanOutSink, logAnalyticsSink, type AnalyticsSink } from './analytics';
import type { Config } from './config';
import { TimeoutError, withTimeout } from './lifecycle';
import type { Logger } from './logger';

/**
 * PostHog sink (posthog-node): used when POSTHOG_API_KEY is set; POSTHOG_HOST points it at a
 * self-hosted or EU instance (default https://us.i.posthog.com). Events are batched and sent
 * in the background; `close()` flushes what is left. Analytics never affect jobs: capture
 * never throws, send errors are logged (without the key) at most once per `errorLogEveryMs`.
 */

export interface PostHogSinkOptions {
  /** events per batch. @defaultValue 20 */
  flushAt?: number;
  /** background flush interval. @defaultValue 10000 */
  flushIntervalMs?: number;
  /** how long close() may take to flush. @defaultValue 5000 */
  shutdownTimeoutMs?: number;
  /** retries of a failed batch (network errors, 5xx, 429), 1 s apart. @defaultValue 2 */
  retries?: number;
  /** at most one send-error log line per this interval. @defaultValue 60000 */
  errorLogEveryMs?: number;
}

/** Events held in memory at most while PostHog is unreachable (the oldest are dropped). */
const MAX_QUEUED = 10_000;

export const DEFAULT_POSTHOG_HOST = 'https://us.i.posthog.com';

export function posthogSink(
  config: { posthogApiKey: string; posthogHost?: string },
  log: Logger,
  options: PostHogSinkOptions = {},
): AnalyticsSink {
  const key = config.posthogApiKey;
  const host = (config.posthogHost ?? DEFAULT_POSTHOG_HOST).replace(/\/+$/, '');
  const redact = (text: string) => text.split(key).join('[redacted]');
  const errorLogEveryMs = options.errorLogEveryMs ?? 60_000;
  let lastErrorLog = -Infinity;
  let suppressed = 0;
  const report = (what: string, err: unknown) => {
    const t = Date.now();
    if (t - lastErrorLog < errorLogEveryMs) {
      suppressed++;
      return;
    }
    lastErrorLog = t;
    const message = redact(err instanceof Error ? err.message : String(err));
    log.warn({ err: message, host, suppressed }, `analytics: ${what} failed (jobs are unaffected)`);
    suppressed = 0;
  };

  // posthog-node's own timers and shutdown report errors on the console; flushing here
  // instead routes every failure through `report` (throttled, key redacted)
  const flushAt = options.flushAt ?? 20;
  const client = new PostHog(key, {
    host,
    flushAt: MAX_QUEUED,
    maxQueueSize: MAX_QUEUED,
    flushInterval: 0,
    fetchRetryCount: options.retries ?? 2,
    fetchRetryDelay: 1_000,
    requestTimeout: 5_000,
  });
  let queued = 0;
  /** true when everything queued was sent */
  const flush = (): Promise<boolean> => {
    queued = 0;
    return client.flush().then(
      () => true,
      (err: unknown) => {
        report('sending events to PostHog', err);
        return false;
      },
    );
  };
  const timer = setInterval(() => void flush(), options.flushIntervalMs ?? 10_000);
  timer.unref();

  let closing: Promise<void> | undefined;
  return {
    capture(event, distinctId, props) {
      if (closing) return;
      try {
        const properties: Record<string, unknown> = { ...(props as object) };
        // events keyed by a job id (no userId) are anonymous: no person profile per job
        if (distinctId === properties.jobId) properties.$process_person_profile = false;
        client.capture({ distinctId, event, properties });
        if (++queued >= flushAt) void flush();
      } catch (err) {
        report('capturing an event', err);
      }
    },
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        const budgetMs = options.shutdownTimeoutMs ?? 5_000;
        const flushed = await withTimeout('flushing events on close', budgetMs, flush()).catch(
          (err: unknown) => {
            if (!(err instanceof TimeoutError)) throw err;
            report('flushing events on close', new Error(`no answer within ${budgetMs} ms`));
            return false;
          },
        );
        // after a failure, what is still queued is given up (shutdown would retry, noisily)
        if (flushed) await client.shutdown(budgetMs).catch(() => undefined);
      })();
      return closing;
    },
  };
}

/** The process's analytics: PostHog plus the log when POSTHOG_API_KEY is set, else the log. */
export function createAnalytics(
  config: Pick<Config, 'posthogApiKey' | 'posthogHost'>,
  log: Logger,
  options?: PostHogSinkOptions,
): AnalyticsSink {
  const logged = logAnalyticsSink(log);
  if (!config.posthogApiKey) return logged;
  const host = config.posthogHost ?? DEFAULT_POSTHOG_HOST;
  log.info({ host }, 'analytics: sending events to PostHog');
  return fanOutSink(
    logged,
    posthogSink({ posthogApiKey: config.posthogApiKey, posthogHost: host }, log, options),
  );
}
