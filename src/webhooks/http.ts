import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';

/** One POST with a budget for the whole exchange; no redirects, no pooled sockets. */
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

export function postJson(
  url: URL,
  body: string,
  headers: Record<string, string>,
  options: { timeoutMs: number; lookup: LookupFunction },
): Promise<PostResult> {
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise<PostResult>((resolve, reject) => {
    const req = transport.request(url, {
      method: 'POST',
      agent: false,
      lookup: options.lookup,
      headers: {
        ...headers,
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
        'user-agent': 'comfyui-queue-webhooks/1',
      },
    });
    const timer = setTimeout(
      () => req.destroy(new WebhookTimeoutError(options.timeoutMs)),
      options.timeoutMs,
    );
    const settle = (fn: () => void) => {
      clearTimeout(timer);
      fn();
    };
    req.on('error', (err) => settle(() => reject(err)));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (text.length < MAX_BODY_LOG) text += chunk.slice(0, MAX_BODY_LOG - text.length);
      });
      res.on('end', () => settle(() => resolve({ status: res.statusCode ?? 0, body: text })));
      res.on('error', (err) => settle(() => reject(err)));
    });
    req.end(body);
  });
}
