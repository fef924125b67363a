import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { ApiError } from './errors';

/**
 * Bearer API keys for /v1 (`API_KEYS`). Without keys the API is open (local use).
 * Keys are compared in constant time, and never appear in a log line or a message.
 */

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time string comparison (the digests have equal lengths whatever the inputs). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** True if `candidate` equals one of `secrets`; every secret is compared, match or not. */
export function matchesAny(candidate: string, secrets: readonly string[]): boolean {
  let ok = false;
  for (const s of secrets) ok = safeEqual(candidate, s) || ok;
  return ok;
}

export interface BearerAuthOptions {
  apiKeys: readonly string[];
}

export function bearerAuth(opts: BearerAuthOptions): RequestHandler {
  const { apiKeys } = opts;
  return (req, _res, next) => {
    if (apiKeys.length === 0) return next();
    const header = req.headers.authorization ?? '';
    const m = /^Bearer +([^\s]+) *$/i.exec(header);
    if (m && matchesAny(m[1], apiKeys)) return next();
    next(
      new ApiError(
        401,
        'unauthorized',
        m
          ? 'the API key is not valid'
          : 'an API key is required: send "Authorization: Bearer <key>"',
        undefined,
        { 'WWW-Authenticate': `Bearer realm="comfyui-queue"${m ? ', error="invalid_token"' : ''}` },
      ),
    );
  };
}
