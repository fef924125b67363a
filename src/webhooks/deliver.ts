import { DelayedError, UnrecoverableError } from 'bullmq';
import {
  JOBS_BASE,
  snapshotOf,
  toJobView,
  type BullState,
  type JobSnapshot,
  type JobView,
} from '../job/view';
import { isTerminal, type JobState } from '../job/state';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { ImageJob, ImageQueue } from '../queue';
import { createWebhookPoster } from './http';
import type {
  DeliveryJob,
  DeliveryResult,
  DeliverySettings,
  WebhookEvent,
  WebhookEventType,
} from './queue';
import type { WebhookSigner } from './signing';
import {
  checkWebhookUrl,
  guardedLookup,
  isNoSuchHost,
  WebhookRefusedError,
  type LookupAll,
} from './url-policy';
import type { JobData } from '../job/data';

/** A host that does not resolve this many attempts in a row fails the delivery (not retried). */
export const UNRESOLVABLE_ATTEMPTS = 3;

/**
 * The delivery processor. Runs in its own queue, so nothing here can re-run or fail the image
 * job. Steps: wait until the image job has settled (its outcome is saved after the delivery is
 * enqueued), snapshot its public view into the delivery's data, then POST it, signed.
 * 2xx delivered; 410 Gone or a refused target: stop; anything else: BullMQ retries with backoff.
 */

export type DeliveryOutcome = 'delivered' | 'failed' | 'refused' | 'gone';

export interface DeliveryDeps {
  imageQueue: ImageQueue;
  sign: WebhookSigner;
  allowPrivate: boolean;
  /** PUBLIC_URL: output URLs in payloads are absolute, as in the API's job view */
  publicUrl?: string;
  settings: Pick<DeliverySettings, 'timeoutMs' | 'recheckMs'>;
  log: Logger;
  metrics?: Metrics;
  /** DNS resolution (tests inject one); defaults to dns.lookup */
  resolve?: LookupAll;
  now?: () => number;
}

const EVENT_OF: Record<string, WebhookEventType> = {
  completed: 'job.completed',
  failed: 'job.failed',
  cancelled: 'job.cancelled',
};

/** The image job as the API would see it, or null once it is gone. */
async function readImageJob(queue: ImageQueue, id: string): Promise<JobSnapshot | null> {
  const job = (await queue.getJob(id)) as ImageJob | undefined;
  if (!job) return null;
  const bullState = await job.getState();
  if (bullState === 'unknown') return null;
  return snapshotOf(job, bullState as BullState);
}

/** Settled: BullMQ finished it, or the worker saved a terminal outcome (final either way). */
function settled(s: JobSnapshot): boolean {
  const state = (s.data as Partial<JobData> | null)?.state as JobState | undefined;
  return s.bullState === 'completed' || s.bullState === 'failed' || (!!state && isTerminal(state));
}

/** A stable Standard Webhooks message id: retries of one event share it, receivers dedupe on it. */
export function messageId(imageJobId: string, type: WebhookEventType): string {
  return `msg_${imageJobId}_${type.replace('job.', '')}`;
}

/** Where a delivery goes, for logs: origin only (paths and queries may carry tokens). */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '<invalid url>';
  }
}

/** The event to send: the stored snapshot, or a new one once the image job has settled. */
async function eventFor(
  deps: DeliveryDeps,
  now: () => number,
  count: (outcome: DeliveryOutcome) => void,
  job: DeliveryJob,
  token: string | undefined,
): Promise<WebhookEvent> {
  if (job.data.event) return job.data.event;
  const snap = await readImageJob(deps.imageQueue, job.data.imageJobId);
  if (!snap) {
    count('failed');
    throw new UnrecoverableError(
      `image job ${job.data.imageJobId} no longer exists (removed before its webhook was sent)`,
    );
  }
  if (!settled(snap)) {
    // its worker enqueued us just before saving the outcome: look again shortly
    const waitedMs = now() - job.timestamp;
    const delay = Math.min(30_000, Math.max(deps.settings.recheckMs, Math.round(waitedMs / 2)));
    await job.moveToDelayed(now() + delay, token);
    throw new DelayedError();
  }
  const view: JobView = toJobView(snap, `${deps.publicUrl ?? ''}${JOBS_BASE}`);
  const event: WebhookEvent = {
    type: EVENT_OF[view.status],
    timestamp: view.finishedAt ?? new Date(now()).toISOString(),
    data: view,
  };
  await job.updateData({ ...job.data, event });
  return event;
}

export function createDeliveryProcessor(deps: DeliveryDeps) {
  const now = deps.now ?? Date.now;
  const poster = createWebhookPoster(guardedLookup(deps.allowPrivate, deps.resolve));
  const count = (outcome: DeliveryOutcome) => deps.metrics?.webhookDeliveries.inc({ outcome });

  const eventOf = (job: DeliveryJob, token: string | undefined) =>
    eventFor(deps, now, count, job, token);

  async function deliver(job: DeliveryJob, token?: string): Promise<DeliveryResult> {
    const event = await eventOf(job, token);
    const { url, imageJobId } = job.data;
    const attempt = job.attemptsMade + 1;
    const max = job.opts.attempts ?? 1;
    const log = deps.log.child({ jobId: imageJobId, webhook: origin(url), event: event.type });

    const refuse = (message: string): never => {
      count('refused');
      log.warn({ reason: message }, 'webhook refused by the URL policy; not retried');
      throw new UnrecoverableError(`refused: ${message}`);
    };
    /** a failed attempt: BullMQ retries it with backoff until attempts run out */
    const failed = (what: string, fields: object, cause?: unknown) => {
      count('failed');
      const last = attempt >= max;
      log.warn(
        { ...fields, attempt, max },
        `webhook attempt ${attempt} of ${max} ${what}${last ? '; giving up' : '; will retry'}`,
      );
      return new Error(`webhook to ${origin(url)} ${what}`, { cause });
    };
    const problem = checkWebhookUrl(url, deps.allowPrivate);
    if (problem) refuse(problem);

    const body = JSON.stringify(event);
    const headers = deps.sign(messageId(imageJobId, event.type), body, new Date(now()));
    let status: number;
    try {
      const res = await poster.post(new URL(url), body, headers, deps.settings.timeoutMs);
      status = res.status;
      if (status >= 200 && status < 300) {
        count('delivered');
        log.info({ status, attempt }, 'webhook delivered');
        return { status, attempt, deliveredAt: new Date(now()).toISOString() };
      }
      if (status === 410) {
        count('gone');
        log.warn({ status, attempt }, 'webhook receiver answered 410 Gone; not retried');
        throw new UnrecoverableError('gone: the receiver answered 410 Gone');
      }
      log.debug({ body: res.body }, 'webhook receiver answer');
    } catch (err) {
      if (err instanceof UnrecoverableError) throw err;
      if (err instanceof WebhookRefusedError) return refuse(err.message);
      const reason = err instanceof Error ? err.message : String(err);
      if (isNoSuchHost(err) && attempt >= UNRESOLVABLE_ATTEMPTS) {
        count('failed');
        log.warn({ err: reason, attempt }, 'webhook host does not resolve; not retried');
        throw new UnrecoverableError(
          `unresolvable: ${origin(url)} did not resolve in ${attempt} attempts (${reason})`,
        );
      }
      throw failed(`failed: ${reason}`, { err: reason }, err);
    }
    throw failed(`answered ${status}`, { status });
  }
  return { deliver, close: () => poster.close() };
}
