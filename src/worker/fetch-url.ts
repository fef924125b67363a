import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { MediaError } from '../errors';
import {
  WebhookRefusedError,
  checkWebhookUrl,
  guardedLookup,
  type LookupAll,
} from '../webhooks/url-policy';

const SUBJECT = { label: 'input URL', allow: 'INPUT_URL_ALLOW_PRIVATE' } as const;

/**
 * Fetches an input file by URL (DESIGN "Media in"), with the webhook address policy: the
 * literal host is checked on every hop (redirects included, at most MAX_REDIRECTS) and
 * every address a name resolves to is checked when connecting (no second resolution). The
 * whole fetch is bounded by `timeoutMs`. A 4xx, a refused address or too many redirects fail
 * for good; a network error, a timeout or a 5xx may be retried.
 */

const MAX_REDIRECTS = 5;

export interface UrlFetcher {
  open(
    url: string,
    signal?: AbortSignal,
  ): Promise<{ body: Readable; contentType?: string; size?: number }>;
  close(): Promise<void>;
}

export function createUrlFetcher(opts: {
  allowPrivate: boolean;
  timeoutMs: number;
  /** DNS resolution (tests inject one); defaults to dns.lookup */
  resolve?: LookupAll;
}): UrlFetcher {
  const agent = new Agent({
    connect: { lookup: guardedLookup(opts.allowPrivate, opts.resolve, SUBJECT) },
  });
  const refused = (message: string) => new MediaError('input_unavailable', message, false);

  return {
    async open(url, signal) {
      const timeout = AbortSignal.timeout(opts.timeoutMs);
      const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
      let target = url;
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const problem = checkWebhookUrl(target, opts.allowPrivate, 'url', SUBJECT.allow);
        if (problem) throw refused(`input URL refused: ${problem}`);
        let res: Awaited<ReturnType<typeof request>>;
        try {
          res = await request(target, { dispatcher: agent, signal: both });
        } catch (err) {
          if (
            err instanceof WebhookRefusedError ||
            (err as Error)?.cause instanceof WebhookRefusedError
          ) {
            throw refused(
              `input URL refused: ${(err instanceof WebhookRefusedError ? err : ((err as Error).cause as Error)).message}`,
            );
          }
          const why = timeout.aborted
            ? `no answer within ${opts.timeoutMs} ms`
            : (err as Error).message;
          throw new MediaError(
            'input_unavailable',
            `input URL ${origin(target)} failed: ${why}`,
            true,
            { cause: err },
          );
        }
        const { statusCode: status, headers } = res;
        if (status >= 300 && status < 400 && typeof headers.location === 'string') {
          discard(res.body);
          target = new URL(headers.location, target).href;
          continue;
        }
        if (status < 200 || status >= 300) {
          discard(res.body);
          const retryable = status >= 500 || status === 408 || status === 429;
          throw new MediaError(
            'input_unavailable',
            `input URL ${origin(target)} answered ${status}`,
            retryable,
          );
        }
        // the timeout keeps running over the body: a stalled download fails like a slow answer
        const body = res.body as unknown as Readable;
        const length = Number(headers['content-length']);
        return {
          body,
          contentType:
            typeof headers['content-type'] === 'string' ? headers['content-type'] : undefined,
          size: Number.isFinite(length) ? length : undefined,
        };
      }
      throw refused(`input URL ${origin(url)} redirected more than ${MAX_REDIRECTS} times`);
    },
    close: () => agent.close(),
  };
}

/** Drops a body we do not read (its abort is not an error anyone waits for). */
function discard(body: Readable | { on(e: 'error', f: () => void): unknown; destroy(): unknown }) {
  body.on('error', () => {});
  body.destroy();
}

/** Scheme, host and port only: a URL's path and query may hold secrets (signed URLs). */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}
