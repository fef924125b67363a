import { createServer, type Server } from 'node:http';
import type { Express } from 'express';

/**
 * The API's HTTP server with timeouts for a public service (Node's defaults let a client
 * hold a connection for 300 s with a request it never finishes):
 * - headersTimeout: the request's headers must arrive within 20 s (slow-header clients);
 * - requestTimeout: the whole request, body included, within 60 s (a 5 MB body at
 *   ~85 KB/s); SSE responses are not bound by it (it ends when the request is read);
 * - keepAliveTimeout: an idle keep-alive connection closes after 65 s, longer than the
 *   60 s idle timeout of common load balancers, so they never reuse a closing connection.
 * Node checks the first two every `connectionsCheckingInterval` (2 s here, 30 s by default).
 */

export const SERVER_TIMEOUTS = {
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 65_000,
  checkIntervalMs: 2_000,
};

export function createApiServer(app: Express, t: typeof SERVER_TIMEOUTS = SERVER_TIMEOUTS): Server {
  const server = createServer(
    {
      headersTimeout: t.headersTimeoutMs,
      requestTimeout: t.requestTimeoutMs,
      keepAliveTimeout: t.keepAliveTimeoutMs,
      connectionsCheckingInterval: t.checkIntervalMs,
    },
    app,
  );
  server.keepAliveTimeout = t.keepAliveTimeoutMs;
  return server;
}
