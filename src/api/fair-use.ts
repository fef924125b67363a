import type { Request, RequestHandler } from 'express';
import type IORedis from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { ImageQueue } from '../queue';
import { callerOf } from './auth';
import { ApiError } from './errors';

/**
 * Fair use (DESIGN "The API boundary"), both off by default:
 * - RATE_LIMIT_REQUESTS per RATE_LIMIT_WINDOW_S for each API key (by name; each client
 *   address without keys), counted in Redis so every API process shares the count
 *   (rate-limiter-flexible); 429 `rate_limited` with Retry-After. A Redis that does not
 *   answer does not block requests here (they then fail fast on their own).
 * - MAX_QUEUED_JOBS: a new job while that many wait answers 429 `queue_full` with
 *   Retry-After. Checked before the add (concurrent POSTs may pass it together).
 */

export interface FairUseSettings {
  rateLimitRequests: number;
  rateLimitWindowS: number;
  maxQueuedJobs: number;
}

export const QUEUE_FULL_RETRY_AFTER_S = 10;

export function rateLimit(
  redis: IORedis,
  settings: FairUseSettings & { keyPrefix: string },
): RequestHandler | undefined {
  if (settings.rateLimitRequests <= 0) return undefined;
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: settings.keyPrefix,
    points: settings.rateLimitRequests,
    duration: settings.rateLimitWindowS,
  });
  const who = (req: Request) => callerOf(req)?.id ?? `ip-${req.ip ?? 'unknown'}`;
  return async (req, res, next) => {
    try {
      const r = await limiter.consume(who(req));
      res.setHeader('RateLimit-Remaining', String(r.remainingPoints));
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        const retryAfter = String(Math.max(1, Math.ceil(err.msBeforeNext / 1000)));
        return next(
          new ApiError(
            429,
            'rate_limited',
            `more than ${settings.rateLimitRequests} requests in ${settings.rateLimitWindowS} s for this key; retry after ${retryAfter} s`,
            undefined,
            { 'Retry-After': retryAfter },
          ),
        );
      }
      // the store failed (Redis down): let the request fail fast on its own
    }
    next();
  };
}

/** Throws 429 `queue_full` when MAX_QUEUED_JOBS (> 0) jobs are waiting. */
export function queueDepthCheck(
  queue: Pick<ImageQueue, 'getJobCounts'>,
  maxQueuedJobs: number,
): (() => Promise<void>) | undefined {
  if (maxQueuedJobs <= 0) return undefined;
  return async () => {
    const c = await queue.getJobCounts('wait', 'prioritized', 'delayed');
    const queued = Object.values(c).reduce((a, b) => a + b, 0);
    if (queued >= maxQueuedJobs) {
      throw new ApiError(
        429,
        'queue_full',
        `the queue holds ${queued} waiting jobs (MAX_QUEUED_JOBS ${maxQueuedJobs}); retry later`,
        undefined,
        { 'Retry-After': String(QUEUE_FULL_RETRY_AFTER_S) },
      );
    }
  };
}
