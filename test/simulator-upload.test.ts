/**
 * The simulator's `POST /upload/image` against ComfyUI 0.3.64's `image_upload` (server.py):
 * the answer, name collisions with and without `overwrite`, identical bytes reusing the
 * name, `subfolder` and `type`, the 400s and 500s, and files surviving a restart.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { http, uploadTo, viewFrom, type UploadOptions } from './simulator-helpers';

let sim: Simulator;

beforeEach(async () => {
  sim = await createSimulator();
});
afterEach(async () => {
  await sim.close();
});

const upload = (bytes: Buffer | string, opts: UploadOptions = {}) => uploadTo(sim.url, bytes, opts);
const viewBytes = (query: string) => viewFrom(sim.url, query);

describe('POST /upload/image', () => {
  it('stores the file in the input folder and answers {name, subfolder, type}', async () => {
    const r = await upload('first');
    expect(r.status).toBe(200);
    expect(r.type).toBe('application/json; charset=utf-8');
    expect(r.text).toBe('{"name": "probe.png", "subfolder": "", "type": "input"}');
    const v = await viewBytes('filename=probe.png&type=input');
    expect(v.status).toBe(200);
    expect(v.body.toString()).toBe('first');
  });

  it('keeps the name for identical bytes and renames different bytes name (n).ext', async () => {
    expect(JSON.parse((await upload('a')).text).name).toBe('probe.png');
    expect(JSON.parse((await upload('a')).text).name).toBe('probe.png');
    expect(JSON.parse((await upload('b')).text).name).toBe('probe (1).png');
    expect(JSON.parse((await upload('c')).text).name).toBe('probe (2).png');
    // The same bytes as the first rename are found again at "probe (1).png".
    expect(JSON.parse((await upload('b')).text).name).toBe('probe (1).png');
    const names = ['probe.png', 'probe (1).png', 'probe (2).png'];
    const bodies = await Promise.all(
      names.map((n) => viewBytes(`filename=${encodeURIComponent(n)}&type=input`)),
    );
    expect(bodies.map((b) => b.body.toString())).toEqual(['a', 'b', 'c']);
  });

  it('replaces the file with overwrite "true" or "1", not with other values', async () => {
    await upload('a');
    expect(JSON.parse((await upload('b', { overwrite: 'true' })).text).name).toBe('probe.png');
    expect(JSON.parse((await upload('c', { overwrite: '1' })).text).name).toBe('probe.png');
    expect(JSON.parse((await upload('d', { overwrite: 'yes' })).text).name).toBe('probe (1).png');
    expect((await viewBytes('filename=probe.png&type=input')).body.toString()).toBe('c');
  });

  it('puts files in a subfolder, echoes it as sent, and serves them via /view', async () => {
    const r = await upload('sub', { subfolder: 'cq', name: 'x.png' });
    expect(JSON.parse(r.text)).toEqual({ name: 'x.png', subfolder: 'cq', type: 'input' });
    expect((await viewBytes('filename=x.png&subfolder=cq&type=input')).body.toString()).toBe('sub');
    const nested = await upload('n', { subfolder: 'a//b/', name: 'y.png' });
    expect(JSON.parse(nested.text).subfolder).toBe('a//b/');
    expect((await viewBytes('filename=y.png&subfolder=a/b&type=input')).status).toBe(200);
  });

  it('stores into temp and output with type, and fails with 500 on an unknown type', async () => {
    expect(JSON.parse((await upload('t', { type: 'temp' })).text).type).toBe('temp');
    expect((await viewBytes('filename=probe.png&type=temp')).body.toString()).toBe('t');
    expect(JSON.parse((await upload('o', { type: 'output' })).text).type).toBe('output');
    expect((await viewBytes('filename=probe.png&type=output')).body.toString()).toBe('o');
    const bad = await upload('x', { type: 'models' });
    expect(bad.status).toBe(500);
    expect(bad.text).toBe('500 Internal Server Error\n\nServer got itself in trouble');
  });

  it('answers 400 for a missing image and for paths that leave the folder', async () => {
    const noImage = new FormData();
    noImage.append('subfolder', 'cq');
    const res = await fetch(`${sim.url}/upload/image`, { method: 'POST', body: noImage });
    expect(res.status).toBe(400);
    expect(await res.text()).toBe('');
    const json = await http(sim.url, 'POST', '/upload/image', { image: 'x' });
    expect(json.status).toBe(400);
    for (const opts of [
      { subfolder: '..' },
      { subfolder: 'a/../../x' },
      { subfolder: '/tmp' },
      { name: '../x.png' },
    ]) {
      expect((await upload('x', opts)).status).toBe(400);
    }
    expect((await upload('y', { subfolder: 'a/..' })).status).toBe(200);
  });

  it('answers 500 for an image field that is not a file, like aiohttp', async () => {
    const form = new FormData();
    form.append('image', 'not a file');
    const res = await fetch(`${sim.url}/upload/image`, { method: 'POST', body: form });
    expect(res.status).toBe(500);
  });

  it('keeps input files across a restart, like files on disk', async () => {
    await upload('kept', { subfolder: 'cq' });
    await upload('gone', { type: 'temp' });
    await sim.restart();
    expect((await viewBytes('filename=probe.png&subfolder=cq&type=input')).status).toBe(200);
    expect((await viewBytes('filename=probe.png&type=temp')).status).toBe(404);
  });

  it('writes the bytes unchanged and removes them when the simulator closes', async () => {
    const bytes = Buffer.from([0, 255, 1, 254, 0x0d, 0x0a, 0x2d, 0x2d]);
    const r = await upload(bytes, { name: 'raw.bin', subfolder: 'cq' });
    expect(r.status).toBe(200);
    const v = await viewBytes('filename=raw.bin&subfolder=cq&type=input');
    expect(v.body.equals(bytes)).toBe(true);
    expect(v.status).toBe(200);
    const dir = sim.inputDir;
    expect(readFileSync(path.join(dir, 'cq', 'raw.bin')).equals(bytes)).toBe(true);
    await sim.close();
    expect(existsSync(dir)).toBe(false);
  });
});
