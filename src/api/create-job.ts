import express, { type Request, type RequestHandler } from 'express';
import type { Logger } from '../logger';
import { ApiError, QueueUnavailableError, UserQueueFullError } from './errors';
import { prepareInputs, type MediaSettings } from './inputs';
import type { BodyParser } from './parse-pool';
import { LIMITS } from './schemas';
import type { JobStore } from './store';
import { storageError } from './uploads-routes';

/**
 * `POST /v1/jobs` (DESIGN "HTTP API", "The API boundary"): the size is judged from
 * Content-Length before anything is read; the raw body is parsed and validated off the
 * event loop (parse-pool.ts); the job is added so that an error answer means nothing
 * changed (enqueue.ts).
 */

export interface CreateJobDeps {
  store: JobStore;
  parser: BodyParser;
  /** the URL policy (SSRF guard) for webhookUrl: the reason a URL is refused, or null */
  webhookUrlPolicy?: (url: string) => Promise<string | null> | string | null | undefined;
  /** links for a job id (signed when link signing is on) */
  links: (id: string) => Record<string, string>;
  /** the caller's API key name when keys are scoped */
  ownerOf: (req: Request) => string | undefined;
  /** the queue-depth check before a new job is added (throws 429 queue_full) */
  admit?: () => Promise<void>;
  /** storage and settings for input files; without it, `inputs` are refused */
  media?: MediaSettings;
  log: Logger;
}

export const JSON_TYPES = ['application/json', 'application/*+json'];

export const invalid = (
  details: { path: string; message: string }[],
  message = 'the request is invalid',
) => new ApiError(400, 'invalid_request', message, details);

/** 413 from Content-Length (never read), 400 without a body, 415 for a body that is not JSON. */
export const requireJsonBody: RequestHandler = (req, res, next) => {
  const length = req.headers['content-length'];
  if (length !== undefined && Number(length) > LIMITS.bodyBytes) {
    res.setHeader('Connection', 'close'); // the body is not read: the connection ends here
    return next(
      new ApiError(413, 'payload_too_large', `the request body is larger than 5 MB (${length})`),
    );
  }
  const hasBody = req.headers['transfer-encoding'] !== undefined || (length ?? '0') !== '0';
  if (!hasBody) return next(invalid([{ path: '', message: 'a JSON body is required' }]));
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1];
  if (!req.is(JSON_TYPES) || (charset && !/^utf-?8$/i.test(charset))) {
    return next(
      new ApiError(
        415,
        'unsupported_media_type',
        'the body must be UTF-8 JSON (Content-Type: application/json)',
      ),
    );
  }
  next();
};

/** The raw bytes (inflated if gzip/deflate), at most 5 MB; parsing happens in parse-pool. */
export const rawJsonBody = express.raw({ limit: LIMITS.bodyBytes, type: JSON_TYPES });

/**
 * The Idempotency-Key header (IETF draft: a structured-field string, `"…"`, or a bare
 * token) and the body's `idempotencyKey`: the same thing; both given and different: 400.
 */
export function idempotencyKeyOf(req: Request, bodyKey: string | undefined): string | undefined {
  const raw = req.headers['idempotency-key'];
  if (raw === undefined) return bodyKey;
  const header = String(raw)
    .trim()
    .replace(/^"(.*)"$/, '$1');
  if (header === '' || header.length > LIMITS.shortString) {
    throw invalid([
      {
        path: 'Idempotency-Key',
        message: `the Idempotency-Key header must have 1 to ${LIMITS.shortString} characters`,
      },
    ]);
  }
  if (bodyKey !== undefined && bodyKey !== header) {
    throw invalid([
      {
        path: 'idempotencyKey',
        message: 'the Idempotency-Key header and the body idempotencyKey differ',
      },
    ]);
  }
  return header;
}

/** The enqueue's errors that certainly added no job (errors.ts, enqueue.ts). */
function nothingAdded(err: unknown): boolean {
  return (
    err instanceof ApiError ||
    err instanceof QueueUnavailableError ||
    err instanceof UserQueueFullError
  );
}

export function createJobHandler(deps: CreateJobDeps): RequestHandler {
  return async (req, res) => {
    const bytes: unknown = req.body;
    if (!Buffer.isBuffer(bytes)) throw invalid([{ path: '', message: 'a JSON body is required' }]);
    const parsed = await deps.parser.parse(bytes);
    if (!parsed.ok) throw new ApiError(400, parsed.code, parsed.message, parsed.details);
    const { fields } = parsed;
    const idempotencyKey = idempotencyKeyOf(req, fields.idempotencyKey);
    const refused = fields.webhookUrl && (await deps.webhookUrlPolicy?.(fields.webhookUrl));
    if (refused) throw invalid([{ path: 'webhookUrl', message: refused }]);
    const owner = deps.ownerOf(req);
    const media = await prepareInputs(deps.media, fields.inputs, owner).catch((err: unknown) =>
      Promise.reject(storageError(err, deps.log)),
    );
    if ('issues' in media) throw invalid(media.issues);
    // a refusal (429, 503) or a replay added no job: what was stored for it goes; an
    // unknown outcome (OutcomeUnknownError) keeps it, as the job may exist
    const discard = () =>
      media.discard().catch((err: unknown) => {
        deps.log.warn({ err }, 'could not remove the inputs of a job that was not added');
      });
    const r = await deps.store
      .enqueue({
        admit: deps.admit,
        inputs: media.inputs,
        fields,
        idempotencyKey,
        owner,
        workflowJson: parsed.workflowJson,
        fingerprint: parsed.fingerprint,
        nodes: parsed.nodes,
      })
      .catch(async (err: unknown) => {
        if (nothingAdded(err)) await discard();
        throw err;
      });
    if (r.outcome === 'created') {
      await media.commit(r.id).catch((err: unknown) => Promise.reject(storageError(err, deps.log)));
    } else await discard();
    if (r.outcome === 'key_reused') {
      throw new ApiError(
        422,
        'idempotency_key_reuse',
        `this idempotency key was used for job ${r.id} with a different request body`,
      );
    }
    const links = deps.links(r.id);
    let status = 'queued';
    if (r.outcome === 'existing') {
      const s = await deps.store.read(r.id);
      status = s ? deps.store.statusOf(s) : 'queued';
    }
    res
      .status(r.outcome === 'created' ? 202 : 200)
      .location(links.self)
      .json({ id: r.id, status, links });
  };
}
