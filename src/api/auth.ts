import { createHash } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { safeEqual } from '../auth/compare';
import { ApiError } from './errors';
import type { LinkSigner } from './signed-links';

/**
 * Bearer API keys for /v1 (`API_KEYS`). Without keys the API is open (local use).
 * An entry is `key` (an admin key: every job) or `name:key` (scoped: the jobs it submitted
 * only; other jobs are 404 to it); names in `API_ADMIN_NAMES` are admins too. A valid
 * signed link (signed-links.ts) lets a request without a key read that one job's events
 * and outputs. Keys are compared in constant time and never logged.
 */

export interface ApiKey {
  key: string;
  /** the key's name; its jobs carry it as `owner` */
  name?: string;
  admin: boolean;
}

/** Who made the request: `owner` is set for a scoped key (it sees only its jobs). */
export interface Caller {
  /** rate-limit identity: the key's name, or a digest prefix of an unnamed key */
  id: string;
  owner?: string;
}

/** `name:key` entries (a name of letters, digits, `_`, `-`, `.`) or bare keys (admins). */
export function parseApiKeys(entries: readonly string[], adminNames: readonly string[] = []) {
  return entries.map((entry): ApiKey => {
    const m = /^([\w.-]{1,64}):(.+)$/.exec(entry);
    if (!m) return { key: entry, admin: true };
    return { key: m[2], name: m[1], admin: adminNames.includes(m[1]) };
  });
}

/** The key that matches, comparing against every key whether or not one matched. */
function findKey(candidate: string, keys: readonly ApiKey[]): ApiKey | undefined {
  let found: ApiKey | undefined;
  for (const k of keys) if (safeEqual(candidate, k.key) && !found) found = k;
  return found;
}

const callers = new WeakMap<Request, Caller>();
/** The caller bearerAuth recognised (undefined: no keys configured, or a signed link). */
export const callerOf = (req: Request): Caller | undefined => callers.get(req);
export const ownerOf = (req: Request): string | undefined => callers.get(req)?.owner;

/** Paths (under /v1) a signed link may open: one job's events and outputs. */
const SIGNED_PATH = /^\/jobs\/([^/]+)\/(?:events|outputs\/\d{1,6})$/;

export interface BearerAuthOptions {
  apiKeys: readonly ApiKey[];
  links?: LinkSigner;
}

export function bearerAuth(opts: BearerAuthOptions): RequestHandler {
  const { apiKeys, links } = opts;
  return (req, _res, next) => {
    if (apiKeys.length === 0) return next();
    const header = req.headers.authorization;
    const m = /^Bearer +([^\s]+) *$/i.exec(header ?? '');
    const key = m ? findKey(m[1], apiKeys) : undefined;
    if (key) {
      const id = key.name ?? `key-${safeId(key.key)}`;
      callers.set(req, { id, ...(key.admin ? {} : { owner: key.name }) });
      return next();
    }
    const signed = header === undefined && links ? SIGNED_PATH.exec(req.path) : null;
    if (signed && links!.verify(safeDecode(signed[1]), req.query.expires, req.query.signature)) {
      return next();
    }
    next(
      new ApiError(
        401,
        'unauthorized',
        m
          ? 'the API key is not valid'
          : 'an API key is required: send "Authorization: Bearer <key>" (or use a signed link)',
        undefined,
        { 'WWW-Authenticate': `Bearer realm="comfyui-queue"${m ? ', error="invalid_token"' : ''}` },
      ),
    );
  };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return '';
  }
}

/** A short, stable, non-reversible tag of a key (rate-limit identity of unnamed keys). */
const safeId = (key: string) => createHash('sha256').update(key).digest('hex').slice(0, 12);
