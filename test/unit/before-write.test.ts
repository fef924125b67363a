import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { ComfyClient } from '../../src/comfy/client';

/**
 * The check a fenced request runs right before it is written (src/comfy/before-write.ts):
 * a throw there means not one byte reaches the server, and the caller gets that error.
 */
test('a beforeWrite that throws sends nothing; one that passes sends the request', async () => {
  let received = '';
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (b: Buffer) => {
      received += b.toString('latin1');
      const body = JSON.stringify({ prompt_id: 'p-1', number: 0, node_errors: {} });
      socket.end(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new ComfyClient(url, { timeoutMs: 5_000 });
  const req = { prompt: {}, promptId: 'p-1', clientId: 'c', extraData: {} };
  try {
    const refusal = new Error('stale proof');
    await expect(
      client.submit(req, {
        beforeWrite: () => {
          throw refusal;
        },
      }),
    ).rejects.toBe(refusal);
    expect(received).toBe('');

    let checked = 0;
    const r = await client.submit(req, { beforeWrite: () => void checked++ });
    expect(r).toMatchObject({ kind: 'accepted', promptId: 'p-1' });
    expect(checked).toBe(1);
    expect(received).toMatch(/^POST \/prompt HTTP\/1\.1\r\n/);
    expect(received).toContain('"prompt_id":"p-1"');
  } finally {
    await client.close();
    for (const s of sockets) s.destroy();
    server.close();
  }
});
