import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { RequestHandler } from 'express';
import type { Queue } from 'bullmq';
import type { Logger } from '../src/logger';
import { basicAuth } from './basic-auth';

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
  description: string;
  /** default true: the board shows jobs, but retry/remove/add answer 405 */
  readOnly?: boolean;
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
    queues: opts.queues.map(
      (q) =>
        new BullMQAdapter(q.queue, {
          readOnlyMode: q.readOnly ?? true,
          description: q.description,
        }),
    ),
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
      serverAdapter.getRouter(),
    ],
  };
}
