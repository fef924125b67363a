import { Webhook } from 'standardwebhooks';

/**
 * Standard Webhooks signing (standardwebhooks.com). WEBHOOK_SECRET is base64, optionally
 * prefixed with `whsec_`, at least 24 bytes once decoded (the spec's minimum); generate one
 * with `echo "whsec_$(openssl rand -base64 32)"`. Receivers verify with the same secret,
 * e.g. `new Webhook(secret).verify(rawBody, headers)` from the `standardwebhooks` package.
 */

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
