import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { ConfigError } from '../src/errors';
import { messageId } from '../src/webhooks/deliver';
import { validateWebhookSecret } from '../src/webhook-secret';
import { createSigner } from '../src/webhooks/signing';

describe('WEBHOOK_SECRET validation', () => {
  const b64 = randomBytes(32).toString('base64');

  it('accepts base64 of at least 24 bytes, with or without whsec_', () => {
    expect(() => validateWebhookSecret(b64)).not.toThrow();
    expect(() => validateWebhookSecret(`whsec_${b64}`)).not.toThrow();
    expect(() => validateWebhookSecret('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).not.toThrow(); // spec example
  });

  it.each([
    ['not base64', 'my webhook secret!'],
    ['bad padding', 'abc'],
    ['too short', `whsec_${randomBytes(16).toString('base64')}`],
    ['empty after the prefix', 'whsec_'],
  ])('refuses %s with an error naming WEBHOOK_SECRET, not the value', (_what, value) => {
    let err: unknown;
    try {
      validateWebhookSecret(value);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/^WEBHOOK_SECRET must/);
    expect((err as Error).message).toContain('openssl rand -base64 32');
    if (value.length > 8) expect((err as Error).message).not.toContain(value);
  });
});

describe('signer', () => {
  it('produces headers the standardwebhooks verifier accepts, with a stable id', () => {
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    const sign = createSigner(secret);
    const body = JSON.stringify({
      type: 'job.failed',
      timestamp: new Date().toISOString(),
      data: {},
    });
    const id = messageId('abc-123', 'job.failed');
    expect(id).toBe('msg_abc-123_failed');
    const headers = sign(id, body);
    expect(new Webhook(secret).verify(body, headers as Record<string, string>)).toEqual(
      JSON.parse(body),
    );
    const other = new Webhook(`whsec_${randomBytes(32).toString('base64')}`);
    expect(() => other.verify(body, headers as Record<string, string>)).toThrow();
    expect(createSigner(undefined)(id, body)).not.toHaveProperty('webhook-signature');
  });
});
