import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';

/** A signing secret of the test file's own (WEBHOOK_SECRET), to verify what a receiver got. */
export const HOOK_SECRET = `whsec_${randomBytes(32).toString('base64')}`;

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A real HTTP receiver; `answer(n)` is the status of the n-th request (1-based), or 'hang'. */
export async function startReceiver(answer: (n: number) => number | 'hang') {
  const received: Received[] = [];
  const waiters: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const n = received.push({ headers: req.headers, body });
      const status = answer(n);
      if (status !== 'hang') res.writeHead(status).end(status < 300 ? 'ok' : 'nope');
      waiters.splice(0).forEach((w) => w());
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/hooks/comfy?token=t0k`,
    port,
    received,
    /** resolves with the n-th request once it has been answered */
    async request(n: number): Promise<Received> {
      while (received.length < n) await new Promise<void>((r) => waiters.push(r));
      return received[n - 1];
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;
