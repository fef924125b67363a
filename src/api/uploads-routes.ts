import busboy from 'busboy';
import { Router, type Request } from 'express';
import type { Readable } from 'node:stream';
import type { Logger } from '../logger';
import { extensionFor } from '../storage/content-type';
import { saveUpload, type UploadRecord } from '../storage/media';
import { TooLargeError } from '../storage/meter';
import type { Storage } from '../storage/types';
import { ApiError } from './errors';

/**
 * POST /v1/uploads (DESIGN "Media in"): the body is the file (any Content-Type, or
 * `?filename=`), or multipart/form-data with one file field `file`. The bytes stream to
 * storage, hashed on the way; nothing holds the whole file. Above UPLOAD_MAX_BYTES: 413,
 * from Content-Length before anything is read when the header says so.
 */

export const UPLOADS_BASE = '/v1/uploads';

export interface UploadsRouterDeps {
  storage: Storage;
  maxBytes: number;
  log: Logger;
  /** the caller's scoped key name (bearerAuth): the upload is usable by its jobs only */
  ownerOf?: (req: Request) => string | undefined;
}

/** Room for multipart boundaries and part headers beside the file itself. */
const MULTIPART_OVERHEAD = 16 * 1024;
const FILENAME_MAX = 200;

const invalid = (path: string, message: string) =>
  new ApiError(400, 'invalid_request', 'the request is invalid', [{ path, message }]);

const tooLarge = (maxBytes: number) =>
  new ApiError(
    413,
    'payload_too_large',
    `the file is larger than UPLOAD_MAX_BYTES (${maxBytes} bytes)`,
    undefined,
    { Connection: 'close' },
  );

/** A safe display name: the last path segment, printable, at most 200 characters. */
export function cleanFilename(raw: string | undefined, contentType?: string): string {
  const base = (raw ?? '').split(/[/\\]/).pop() ?? '';
  const clean = base
    .replace(/[\p{Cc}"]/gu, '')
    .trim()
    .slice(0, FILENAME_MAX);
  if (clean !== '' && clean !== '.' && clean !== '..') return clean;
  const ext = extensionFor(contentType);
  return ext ? `upload.${ext}` : 'upload';
}

/** The one file of a multipart body (other parts are drained), as a stream and its names. */
function multipartFile(
  req: Request,
  maxBytes: number,
): Promise<{ body: Readable; filename: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({ headers: req.headers, limits: { files: 1, fields: 20, fileSize: maxBytes } });
    } catch (err) {
      return reject(invalid('', (err as Error).message));
    }
    let found = false;
    bb.on('file', (field, stream, info) => {
      if (field !== 'file' || found) return void stream.resume();
      found = true;
      // busboy stops at its fileSize limit: that is a file too large, not a short one
      stream.once('limit', () => stream.destroy(new TooLargeError(maxBytes)));
      resolve({ body: stream, filename: info.filename ?? '', contentType: info.mimeType });
    });
    bb.once('error', (err) => reject(invalid('', (err as Error).message)));
    bb.once('close', () => {
      if (!found) reject(invalid('file', 'a multipart upload needs one file field named "file"'));
    });
    req.pipe(bb);
  });
}

export function uploadsRouter(deps: UploadsRouterDeps): Router {
  const router = Router();
  router.post('/', async (req, res) => {
    const multipart = req.is('multipart/form-data') === 'multipart/form-data';
    const length = Number(req.headers['content-length']);
    if (length > deps.maxBytes + (multipart ? MULTIPART_OVERHEAD : 0)) {
      throw tooLarge(deps.maxBytes);
    }
    const rawName = typeof req.query.filename === 'string' ? req.query.filename : undefined;
    const file = multipart
      ? await multipartFile(req, deps.maxBytes)
      : {
          body: req as Readable,
          filename: rawName ?? '',
          contentType: req.headers['content-type'] ?? 'application/octet-stream',
        };
    const contentType = file.contentType.split(';')[0].trim().toLowerCase();
    let record: UploadRecord;
    try {
      record = await saveUpload(deps.storage, file.body, {
        filename: cleanFilename(file.filename, contentType),
        contentType,
        maxBytes: deps.maxBytes,
        owner: deps.ownerOf?.(req),
      });
    } catch (err) {
      if (err instanceof TooLargeError) throw tooLarge(deps.maxBytes);
      if (req.destroyed) return; // the client went away: nobody to answer
      throw storageError(err, deps.log);
    }
    res.status(201).json({
      id: record.id,
      filename: record.filename,
      size: record.size,
      sha256: record.sha256,
      contentType: record.contentType,
    });
  });
  return router;
}

/** A storage failure: 503 `storage_unavailable`, its cause logged (never shown). */
export function storageError(err: unknown, log: Logger): ApiError {
  if (err instanceof ApiError) return err;
  log.warn({ err: err instanceof Error ? err.message : String(err) }, 'storage operation failed');
  return new ApiError(503, 'storage_unavailable', 'the file storage did not answer; retry shortly');
}
