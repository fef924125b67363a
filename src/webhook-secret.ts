import { Webhook } from 'standardwebhooks';
import { ConfigError } from './errors';

/**
 * The WEBHOOK_SECRET format (Standard Webhooks): base64, optionally prefixed with `whsec_`,
 * at least 24 bytes once decoded. Checked by the config at load time and by the webhook
 * worker at boot; it lives beside the config so the config imports nothing of webhooks.
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
