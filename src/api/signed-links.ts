import { createHash, createHmac } from 'node:crypto';
import { safeEqual } from '../auth/compare';

/**
 * Signed, expiring links for a job's `events` and outputs, so a browser (EventSource sends
 * no headers) can follow its own job without the API key: `?expires=<unix s>&signature=…`,
 * the signature an HMAC-SHA256 over the job id and the expiry. No state: any API process
 * with the same secret verifies it; it grants reading that one job until it expires.
 */

export interface LinkSigner {
  /** `expires=…&signature=…` for the job, valid for the signer's TTL from now */
  query(jobId: string): string;
  /** whether the query's signature is valid for this job and not expired */
  verify(jobId: string, expires: unknown, signature: unknown): boolean;
}

/** LINK_SECRET, or one derived from the API keys (stable across processes with the same keys). */
export function linkSecret(configured: string | undefined, apiKeys: readonly string[]): string {
  if (configured) return configured;
  return createHash('sha256')
    .update(`comfyui-queue signed links\n${[...apiKeys].sort().join('\n')}`)
    .digest('base64url');
}

export function createLinkSigner(
  secret: string,
  ttlS: number,
  now: () => number = Date.now,
): LinkSigner {
  const mac = (jobId: string, expires: number) =>
    createHmac('sha256', secret).update(`${jobId}\n${expires}`).digest('base64url');
  return {
    query(jobId) {
      const expires = Math.floor(now() / 1000) + ttlS;
      return `expires=${expires}&signature=${mac(jobId, expires)}`;
    },
    verify(jobId, expires, signature) {
      if (typeof expires !== 'string' || typeof signature !== 'string') return false;
      if (!/^\d{1,12}$/.test(expires)) return false;
      const at = Number(expires);
      if (at * 1000 < now()) return false;
      return safeEqual(signature, mac(jobId, at));
    },
  };
}
