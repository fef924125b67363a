import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { RequestHandler } from 'express';
import { ImageJobsAdapter } from './image-jobs';
import type { Queue } from 'bullmq';
import type { Logger } from '../src/logger';
import { basicAuth } from '../src/auth/basic';

/**
 * Bull Board at /admin/queues behind HTTP basic auth (DESIGN "/admin/queues").
 * Without DASHBOARD_USER/DASHBOARD_PASSWORD it is not mounted at all, and the log says
 * how to enable it. Queues are a list, so "comfyui-webhooks" is one more entry.
 */

export const DASHBOARD_PATH = '/admin/queues';

export interface DashboardQueue {
  // Bull Board reads any BullMQ queue; the job types do not matter to it
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  queue: Queue<any, any, any>;
  /** a fixed text, or one read each time Bull Board asks (e.g. the top users' jobs) */
  description: string | (() => string);
  /**
   * The image-job queue: shown through ImageJobsAdapter (names, progress bar, readable
   * times, output links), and its failed jobs may be retried from the board. Every other
   * write (remove, add, clean, pause…) answers 405 on every queue.
   */
  imageJobs?: boolean;
}

export interface DashboardOptions {
  user?: string;
  password?: string;
  queues: DashboardQueue[];
  log: Logger;
  /** shown next to the title (e.g. "production") */
  environment?: string;
  title?: string;
}

export interface Dashboard {
  path: string;
  handlers: RequestHandler[];
}

/** The dashboard mount (auth middleware first, then Bull Board's router), or undefined. */
export function createDashboard(opts: DashboardOptions): Dashboard | undefined {
  if (!opts.user || !opts.password) {
    opts.log.info(
      `dashboard disabled: set DASHBOARD_USER and DASHBOARD_PASSWORD to serve Bull Board at ${DASHBOARD_PATH}`,
    );
    return undefined;
  }
  const title = opts.title ?? 'ComfyUI jobs';
  const serverAdapter = new ExpressAdapter();
  // must equal the mount path, or the page stays on "Loading" (bull-board#543)
  serverAdapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: opts.queues.map((q) => {
      const d = q.description;
      const description = typeof d === 'string' ? d : d();
      const adapter = q.imageJobs
        ? new ImageJobsAdapter(q.queue, { description })
        : new BullMQAdapter(q.queue, { readOnlyMode: true, description });
      if (typeof d === 'function') adapter.getDescription = d;
      return adapter;
    }),
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: title,
        ...(opts.environment
          ? {
              environment: {
                label: opts.environment,
                color: opts.environment === 'production' ? '#cc0000' : '#2a7',
              },
            }
          : {}),
      },
    },
  });
  opts.log.info({ path: DASHBOARD_PATH }, 'dashboard enabled (HTTP basic auth)');
  return {
    path: DASHBOARD_PATH,
    handlers: [
      basicAuth({ user: opts.user, password: opts.password, realm: title }),
      onlyRetries(new Set(opts.queues.filter((q) => q.imageJobs).map((q) => q.queue.name))),
      serverAdapter.getRouter(),
    ],
  };
}

/** Bull Board's write routes that retry failed jobs (one, or all of a queue's). */
const RETRY_ROUTE = /^\/api\/queues\/([^/]+)\/(?:[^/]+\/retry|retry\/failed)$/;

/** Reads pass; of the writes, only retries of failed image jobs do: the rest answer 405. */
function onlyRetries(retryable: ReadonlySet<string>): RequestHandler {
  return (req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    const m = req.method === 'PUT' ? RETRY_ROUTE.exec(req.path) : null;
    if (m && retryable.has(decodeURIComponent(m[1]))) return next();
    res.status(405).json({
      error: {
        code: 'method_not_allowed',
        message: 'the dashboard only reads jobs and retries failed image jobs',
      },
    });
  };
}
