import { Webhook } from 'standardwebhooks';
import { ConfigError } from '../errors';

/**
 * Standard Webhooks signing (standardwebhooks.com). WEBHOOK_SECRET is base64, optionally
 * prefixed with `whsec_`, at least 24 bytes once decoded (the spec's minimum); generate one
 * with `echo "whsec_$(openssl rand -base64 32)"`. Receivers verify with the same secret,
 * e.g. `new Webhook(secret).verify(rawBody, headers)` from the `standardwebhooks` package.
 */

const PREFIX = 'whsec_';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const MIN_BYTES = 24;

/** Checks WEBHOOK_SECRET at boot; throws a ConfigError that names it (never shows the value). */
export function validateWebhookSecret(secret: string): void {
  const b64 = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  const hint = 'generate one with: echo "whsec_$(openssl rand -base64 32)"';
  if (!BASE64.test(b64) || b64.length === 0) {
    throw new ConfigError(
      `WEBHOOK_SECRET must be base64 (optionally prefixed with "whsec_"); ${hint}`,
    );
  }
  const bytes = Buffer.from(b64, 'base64').length;
  if (bytes < MIN_BYTES) {
    throw new ConfigError(
      `WEBHOOK_SECRET must decode to at least ${MIN_BYTES} bytes, got ${bytes}; ${hint}`,
    );
  }
  new Webhook(secret); // the library accepts it too
}

/** The headers of one delivery attempt. Without a secret, `webhook-signature` is left out. */
export type WebhookSigner = (
  msgId: string,
  body: string,
  at?: Date,
) => Record<'webhook-id' | 'webhook-timestamp', string> & { 'webhook-signature'?: string };

export function createSigner(secret: string | undefined): WebhookSigner {
  const wh = secret ? new Webhook(secret) : undefined;
  return (msgId, body, at = new Date()) => {
    const headers = {
      'webhook-id': msgId,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    };
    return wh ? { ...headers, 'webhook-signature': wh.sign(msgId, at, body) } : headers;
  };
}
