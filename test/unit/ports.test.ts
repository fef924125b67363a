import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stablePort } from '../../src/run/ports';

/** `npm start` keeps its simulator's address across restarts (jobs record their instance's). */
const dir = mkdtempSync(join(tmpdir(), 'cq-ports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('a remembered port is kept while free, and replaced (said so) once something listens there', async () => {
  const file = join(dir, 'sub', 'simulator.port');
  const first = await stablePort(file);
  expect(first.changed).toBe(false);
  expect(readFileSync(file, 'utf8').trim()).toBe(String(first.port));
  expect(await stablePort(file)).toEqual({ port: first.port, changed: false });

  const squatter = createServer().listen(first.port);
  await once(squatter, 'listening');
  try {
    const moved = await stablePort(file);
    expect(moved.changed).toBe(true);
    expect(moved.port).not.toBe(first.port);
    expect(readFileSync(file, 'utf8').trim()).toBe(String(moved.port));
  } finally {
    squatter.close();
  }
});
