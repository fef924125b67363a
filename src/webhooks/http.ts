import type { LookupFunction } from 'node:net';
import { Agent, request } from 'undici';

/** The answer to one webhook POST. */
export interface PostResult {
  status: number;
  /** the first bytes of the answer, for logs */
  body: string;
}

const MAX_BODY_LOG = 512;

export class WebhookTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
    this.name = 'WebhookTimeoutError';
  }
}

export interface WebhookPoster {
  /** One POST with a budget for the whole exchange (answer included); no redirects. */
  post(
    url: URL,
    body: string,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<PostResult>;
  close(): Promise<void>;
}

/**
 * Webhook POSTs over undici (the HTTP client of the rest of the code): every connection
 * resolves its host through `lookup`, the address policy, and none is kept alive
 * (`pipelining: 0`), so each delivery connects, and is checked, anew.
 */
export function createWebhookPoster(lookup: LookupFunction): WebhookPoster {
  const agent = new Agent({ pipelining: 0, connect: { lookup } });
  return {
    async post(url, body, headers, timeoutMs) {
      const timeout = AbortSignal.timeout(timeoutMs);
      try {
        const res = await request(url, {
          method: 'POST',
          dispatcher: agent,
          signal: timeout,
          body,
          headers: {
            ...headers,
            'content-type': 'application/json',
            'user-agent': 'comfyui-queue-webhooks/1',
          },
        });
        let text = '';
        // leaving the loop early destroys the rest of the answer
        for await (const chunk of res.body) {
          text += (chunk as Buffer).toString('utf8');
          if (text.length >= MAX_BODY_LOG) break;
        }
        return { status: res.statusCode, body: text.slice(0, MAX_BODY_LOG) };
      } catch (err) {
        if (timeout.aborted) throw new WebhookTimeoutError(timeoutMs);
        throw causeOf(err);
      }
    },
    close: () => agent.close(),
  };
}

/** The error the connection failed with (the address policy's refusal, a DNS code), when undici wraps it. */
function causeOf(err: unknown): unknown {
  const cause = (err as Error | undefined)?.cause;
  return cause instanceof Error && !(err as NodeJS.ErrnoException).code ? cause : err;
}
