import { errorText } from '../lifecycle';
import type { Request, Response } from 'express';
import type IORedis from 'ioredis';
import type { QueueEvents } from 'bullmq';
import type { Logger } from '../logger';
import { notFound } from './errors';
import { type JobView } from '../job/view';
import { isTerminalStatus } from '../job/status';

/**
 * Server-Sent Events for one job (`GET /v1/jobs/:id/events`), fed by ONE shared
 * QueueEvents per process. BullMQ's events are at-most-once and carry only part of the
 * story (updateData emits nothing), so an event is only a trigger: the stream re-reads
 * the job and sends its view when it changed. A heartbeat re-read is the safety net
 * for missed events and for cancels requested through another API process.
 */

/** The QueueEvents events that concern one job and may change its view. */
const JOB_EVENTS = [
  'active',
  'waiting',
  'delayed',
  'progress',
  'completed',
  'failed',
  'removed',
  'stalled',
];

export interface JobEventHub {
  /** calls `onChange` whenever something may have happened to the job; returns unsubscribe */
  subscribe(jobId: string, onChange: () => void): () => void;
  /** registers a stream to end on close(); returns unregister */
  track(end: () => void): () => void;
  /** open streams and jobs with subscribers (leak checks, metrics) */
  stats(): { streams: number; jobs: number };
  /** ends every open stream and detaches from QueueEvents (it does not close QueueEvents) */
  close(): void;
}

/**
 * One listener per event type on the shared QueueEvents, dispatching by job id (no
 * listener per client, so no MaxListeners leak). `cancels`: a subscriber connection
 * already SUBSCRIBEd to the cancel channel, so a cancel shows at once in open streams.
 */
export function createJobEventHub(queueEvents: QueueEvents, cancels?: IORedis): JobEventHub {
  const subscribers = new Map<string, Set<() => void>>();
  const streams = new Set<() => void>();
  const dispatch = (jobId: string) => {
    for (const fn of subscribers.get(String(jobId)) ?? []) fn();
  };
  const onQueueEvent = (payload: { jobId?: string }) => {
    if (payload?.jobId !== undefined) dispatch(payload.jobId);
  };
  const onCancel = (_channel: string, jobId: string) => dispatch(jobId);
  const emitter = queueEvents as unknown as NodeJS.EventEmitter;
  for (const e of JOB_EVENTS) emitter.on(e, onQueueEvent);
  cancels?.on('message', onCancel);

  return {
    subscribe(jobId, onChange) {
      let set = subscribers.get(jobId);
      if (!set) subscribers.set(jobId, (set = new Set()));
      set.add(onChange);
      return () => {
        set.delete(onChange);
        if (set.size === 0 && subscribers.get(jobId) === set) subscribers.delete(jobId);
      };
    },
    track(end) {
      streams.add(end);
      return () => streams.delete(end);
    },
    stats: () => ({ streams: streams.size, jobs: subscribers.size }),
    close() {
      for (const e of JOB_EVENTS) emitter.off(e, onQueueEvent);
      cancels?.off('message', onCancel);
      for (const end of [...streams]) end();
    },
  };
}

export interface StreamDeps {
  hub: JobEventHub;
  readView(id: string): Promise<JobView | null>;
  heartbeatMs: number;
  log: Logger;
}

/** The SSE event name for a view: the terminal status, else `progress`. */
const eventName = (v: JobView) => (isTerminalStatus(v.status) ? v.status : 'progress');

/**
 * Answers the stream's headers, or 204 to an EventSource that already saw the job's terminal
 * event (its id is the status): it reconnects after the server ends a stream, and 204 tells it
 * to stop. Returns whether the stream is open.
 */
function openStream(req: Request, res: Response, first: JobView): boolean {
  if (isTerminalStatus(first.status) && req.headers['last-event-id'] === first.status) {
    res.status(204).end();
    return false;
  }
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache, no-transform');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no'); // no proxy buffering (nginx, Fly)
  res.flushHeaders();
  res.write('retry: 3000\n\n');
  return true;
}

export async function streamJobEvents(
  req: Request,
  res: Response,
  id: string,
  deps: StreamDeps,
): Promise<void> {
  let dirty = false;
  // true during the first read too: events that arrive meanwhile only mark the stream dirty
  let reading = true;
  let ended = false;
  let last = '';
  // subscribe before the first read, so nothing between the read and the subscription is lost
  const unsubscribe = deps.hub.subscribe(id, () => void refresh());
  // a failed read: headers not sent yet, the error handler answers 503 as JSON
  const first = await deps.readView(id).catch((err: unknown) => {
    unsubscribe();
    throw err;
  });
  if (!first || req.destroyed || !openStream(req, res, first)) {
    unsubscribe();
    if (!first && !req.destroyed) throw notFound(`job ${id} not found`);
    return;
  }

  const heartbeat = setInterval(() => {
    if (ended) return;
    res.write(': heartbeat\n\n');
    void refresh();
  }, deps.heartbeatMs);
  const untrack = deps.hub.track(() => end());

  function end() {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    unsubscribe();
    untrack();
    res.end();
  }

  function send(view: JobView) {
    const json = JSON.stringify(view);
    if (json === last) return;
    last = json;
    // only the terminal event has an id, so Last-Event-ID says "saw the end" (see above)
    const idLine = isTerminalStatus(view.status) ? `id: ${view.status}\n` : '';
    res.write(`event: ${eventName(view)}\n${idLine}data: ${json}\n\n`);
    if (isTerminalStatus(view.status)) end();
  }

  /** serialized re-reads: one at a time, and one more if something happened meanwhile */
  async function refresh(): Promise<void> {
    if (ended) return;
    if (reading) {
      dirty = true;
      return;
    }
    reading = true;
    try {
      do {
        dirty = false;
        const view = await deps.readView(id);
        if (ended) return;
        if (!view) {
          res.write(': the job no longer exists\n\n');
          return end();
        }
        send(view);
      } while (dirty && !ended);
    } catch (err) {
      // Redis is unavailable: keep the stream; the next event or heartbeat tries again
      deps.log.debug({ jobId: id, err: errorText(err) }, 'SSE re-read failed');
    } finally {
      reading = false;
    }
  }

  // the response's close is the client going away (req's close fires once the body is read)
  res.on('close', end);
  send(first);
  reading = false;
  if (dirty) void refresh();
}
