import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import type { Logger } from '../logger';

/**
 * The API's error shape and the one error handler. Every error leaves the API as
 * `{ "error": { "code", "message", "details"? } }` (DESIGN "HTTP API").
 */

export type ApiErrorCode =
  | 'invalid_json'
  | 'invalid_request'
  | 'unauthorized'
  | 'not_found'
  | 'already_finished'
  | 'not_finished'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'queue_unavailable'
  | 'outcome_unknown'
  | 'server_busy'
  | 'idempotency_key_reuse'
  | 'rate_limited'
  | 'queue_full'
  | 'user_queue_full'
  | 'comfyui_unreachable'
  | 'range_not_satisfiable'
  | 'storage_unavailable'
  | 'internal_error';

/** One bad field of a request: where (dot-joined path, '' for the body itself) and why. */
export interface FieldIssue {
  path: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
    readonly details?: FieldIssue[],
    readonly headers: Record<string, string> = {},
    /** the job an `outcome_unknown` concerns */
    readonly jobId?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * A write was sent and Redis did not confirm it (the connection broke or the answer came too
 * late): it may or may not have happened. `jobId` is the id the job has if it was created.
 */
export class OutcomeUnknownError extends Error {
  constructor(
    readonly operation: string,
    readonly jobId: string,
    options: { cause?: unknown } = {},
  ) {
    super(`Redis did not confirm ${operation} of job ${jobId}`, options);
    this.name = 'OutcomeUnknownError';
  }
}

/** Redis (the queue) did not answer in time or is disconnected. */
export class QueueUnavailableError extends Error {
  constructor(operation: string, options: { cause?: unknown } = {}) {
    super(
      `the job queue is unavailable (Redis did not answer ${operation}); retry shortly`,
      options,
    );
    this.name = 'QueueUnavailableError';
  }
}

/** USER_MAX_QUEUED: the user has as many waiting jobs as allowed; nothing was created. */
/** The pool that checks large bodies is full (src/api/parse-pool.ts): a 503, nothing changed. */
export class BodyParserBusyError extends Error {
  constructor() {
    super('too many large request bodies are being checked at once; retry shortly');
    this.name = 'BodyParserBusyError';
  }
}

export class UserQueueFullError extends Error {
  /** seconds a client should wait before it tries again */
  static readonly RETRY_AFTER_S = 10;
  constructor(readonly userId: string | undefined) {
    super(
      `${userId === undefined ? 'anonymous jobs have' : `user ${JSON.stringify(userId)} has`} as many waiting jobs as USER_MAX_QUEUED allows; no job was created: retry after some have started`,
    );
    this.name = 'UserQueueFullError';
  }
}

export const notFound = (what = 'no such resource') => new ApiError(404, 'not_found', what);

export function sendError(res: Response, err: ApiError): void {
  for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  res.status(err.status).json({
    error: {
      code: err.code,
      message: err.message,
      ...(err.details ? { details: err.details } : {}),
      ...(err.jobId ? { jobId: err.jobId } : {}),
    },
  });
}

/** body-parser error types → our codes (express.json reports them as `err.type`). */
const BODY_ERRORS: Record<string, [number, ApiErrorCode, string]> = {
  'entity.parse.failed': [400, 'invalid_json', 'the request body is not valid JSON'],
  'entity.too.large': [413, 'payload_too_large', 'the request body is larger than 5 MB'],
  'charset.unsupported': [415, 'unsupported_media_type', 'the body must be UTF-8 encoded JSON'],
  'encoding.unsupported': [415, 'unsupported_media_type', 'unsupported Content-Encoding'],
  'request.aborted': [400, 'invalid_request', 'the request body was not received completely'],
  'request.size.invalid': [400, 'invalid_request', 'the body length does not match Content-Length'],
};

/** Maps anything thrown by a route or middleware to an ApiError (never a 5xx for bad input). */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof QueueUnavailableError) {
    return new ApiError(503, 'queue_unavailable', err.message, undefined, { 'Retry-After': '2' });
  }
  if (err instanceof OutcomeUnknownError) {
    const how =
      err.operation === 'a cancel'
        ? 'send the DELETE again with the same Idempotency-Key, or GET the job'
        : 'send the request again with the same Idempotency-Key (safe), or GET the job';
    return new ApiError(
      503,
      'outcome_unknown',
      `${err.message}: it may or may not have happened; ${how}`,
      undefined,
      { 'Retry-After': '2' },
      err.jobId,
    );
  }
  if (err instanceof UserQueueFullError) {
    return new ApiError(429, 'user_queue_full', err.message, undefined, {
      'Retry-After': String(UserQueueFullError.RETRY_AFTER_S),
    });
  }
  if (err instanceof BodyParserBusyError) {
    return new ApiError(503, 'server_busy', err.message, undefined, { 'Retry-After': '1' });
  }
  const e = err as { type?: string; status?: number; statusCode?: number } | undefined;
  const mapped = e?.type ? BODY_ERRORS[e.type] : undefined;
  if (mapped) return new ApiError(mapped[0], mapped[1], mapped[2]);
  if (err instanceof URIError) return notFound('no such resource (malformed URL encoding)');
  const status = e?.status ?? e?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return status === 404
      ? notFound()
      : new ApiError(400, 'invalid_request', 'the request is malformed');
  }
  return new ApiError(500, 'internal_error', 'internal error; the API log has the details');
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const apiError = toApiError(err);
    if (apiError.status >= 500) {
      const level = apiError.status === 503 ? 'warn' : 'error';
      log[level]({ err, method: req.method, path: req.path }, `request failed: ${apiError.code}`);
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendError(res, apiError);
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(notFound(`no route for ${req.method} ${req.path.slice(0, 200)}`));
};
