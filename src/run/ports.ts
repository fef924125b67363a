import { once } from 'node:events';
import { createServer } from 'node:net';

/**
 * True when nothing listens on `port` on any interface. Checked by binding the wildcard
 * address, which also collides with a server bound to 127.0.0.1 or ::1 only.
 */
export async function isPortFree(port: number): Promise<boolean> {
  const srv = createServer();
  try {
    srv.listen(port);
    await once(srv, 'listening');
  } catch {
    return false;
  }
  srv.close();
  await once(srv, 'close');
  return true;
}

/** A port the kernel says is free right now (bind to port 0, read it back, release it). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0);
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return port;
}
