import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
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

/**
 * A port that stays the same across runs: the one remembered in `file` when it is free, else
 * a free one, then remembered in `file`. `changed` says a remembered port could not be kept
 * (something else listens there now).
 */
export async function stablePort(file: string): Promise<{ port: number; changed: boolean }> {
  let remembered: number | undefined;
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    if (Number.isInteger(n) && n > 0 && n < 65536) remembered = n;
  } catch {
    // first run: nothing remembered
  }
  const port =
    remembered !== undefined && (await isPortFree(remembered)) ? remembered : await freePort();
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${port}\n`);
  return { port, changed: remembered !== undefined && remembered !== port };
}
