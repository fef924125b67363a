/**
 * The simulator's image pipeline with real files: LoadImage reads the pixels of an uploaded
 * PNG, ImageInvert computes `1.0 - x` in float32, SaveImage truncates `255·x`, and the saved
 * PNG (decoded with pngjs) holds exactly those bytes. LoadImage refuses a file that is not
 * in the input folder with ComfyUI 0.3.64's `custom_validation_failed` 400, `/object_info`
 * lists the input folder's images, and a changed file is loaded again (IS_CHANGED).
 * SaveAnimatedPNG reports `{images, animated: [true]}` and writes an APNG.
 */
import { inflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { encodeApng } from '../src/simulator/png';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { toByte } from '../src/simulator/values';
import { http, postAndWait, uploadTo, viewFrom, WsClient } from './simulator-helpers';

let sim: Simulator;
let ws: WsClient;

beforeEach(async () => {
  sim = await createSimulator();
  ws = await WsClient.connect(sim.url, 'media');
});
afterEach(async () => {
  await ws.close();
  await sim.close();
});

/** A 256×2 RGBA PNG holding every byte value in each channel, alpha varying. */
function gradientPng(shift = 0): Buffer {
  const png = new PNG({ width: 256, height: 2 });
  for (let y = 0; y < 2; y++) {
    for (let x = 0; x < 256; x++) {
      const i = (y * 256 + x) * 4;
      png.data[i] = (x + shift) & 0xff;
      png.data[i + 1] = 255 - x;
      png.data[i + 2] = (x * 7 + y) & 0xff;
      png.data[i + 3] = y === 0 ? 255 : x;
    }
  }
  return PNG.sync.write(png);
}

const invertGraph = (image: string, prefix = 'inv') => ({
  '1': { class_type: 'LoadImage', inputs: { image } },
  '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
});

/** Runs a prompt to its end and returns its history entry. */
async function run(prompt: object) {
  const promptId = await postAndWait(sim.url, ws, 'media', prompt);
  const history = await http(sim.url, 'GET', `/history/${promptId}`);
  return { promptId, entry: history.json[promptId] };
}

async function savedPixels(entry: { outputs: Record<string, { images: object[] }> }) {
  const [image] = entry.outputs['3'].images as {
    filename: string;
    subfolder: string;
    type: string;
  }[];
  const q = new URLSearchParams({ ...image }).toString();
  const view = await viewFrom(sim.url, q);
  expect(view.status).toBe(200);
  expect(view.type).toBe('image/png');
  return PNG.sync.read(view.body);
}

const expectedInvert = (v: number) => toByte(Math.fround(1 - Math.fround(v / 255)));

describe('LoadImage → ImageInvert → SaveImage', () => {
  it('saves the float32 inverse of the uploaded pixels', async () => {
    const source = gradientPng();
    const up = await uploadTo(sim.url, source, { name: 'x.png', subfolder: 'cq' });
    expect(JSON.parse(up.text)).toEqual({ name: 'x.png', subfolder: 'cq', type: 'input' });
    const { entry } = await run(invertGraph('cq/x.png'));
    expect(entry.status.status_str).toBe('success');
    const out = await savedPixels(entry);
    const input = PNG.sync.read(source);
    expect([out.width, out.height]).toEqual([256, 2]);
    const expected = Buffer.from(input.data.map((v, i) => (i % 4 === 3 ? 255 : expectedInvert(v))));
    expect(Buffer.from(out.data).equals(expected)).toBe(true); // alpha dropped: saved as RGB
    const lowered = [...out.data].filter((b, i) => i % 4 !== 3 && b === 254 - input.data[i]);
    // Every byte value occurs in each channel of both rows: 159 of 256 come out as 254 − v.
    expect(lowered.length).toBe(159 * 3 * 2);
  });

  it('accepts annotated names and loads a changed file again (IS_CHANGED)', async () => {
    await uploadTo(sim.url, gradientPng(), { name: 'g.png' });
    const first = await run(invertGraph('g.png [input]'));
    expect((await savedPixels(first.entry)).data[0]).toBe(expectedInvert(0));
    await uploadTo(sim.url, gradientPng(9), { name: 'g.png', overwrite: 'true' });
    const second = await run(invertGraph('g.png [input]'));
    const cached = ws.messages.find(
      (m) => m.type === 'execution_cached' && m.data.prompt_id === second.promptId,
    );
    expect(cached?.data.nodes).toEqual([]);
    expect((await savedPixels(second.entry)).data[0]).toBe(expectedInvert(9));
  });

  it('fails at run time like PIL for a file that is not an image', async () => {
    await uploadTo(sim.url, 'not a png', { name: 'bad.png' });
    const { entry } = await run(invertGraph('bad.png'));
    expect(entry.status.status_str).toBe('error');
    const error = entry.status.messages.find(([t]: [string]) => t === 'execution_error')[1];
    expect(error.node_type).toBe('LoadImage');
    expect(error.exception_type).toBe('PIL.UnidentifiedImageError');
    expect(error.exception_message).toMatch(/^cannot identify image file '.*bad\.png'\n$/);
  });
});

describe('LoadImage validation and /object_info', () => {
  it('answers ComfyUI 0.3.64’s 400 for a file not in the input folder', async () => {
    const res = await http(sim.url, 'POST', '/prompt', { prompt: invertGraph('missing.png') });
    expect(res.status).toBe(400);
    expect(res.text).toBe(
      '{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, ' +
        '"node_errors": {"1": {"errors": [{"type": "custom_validation_failed", "message": "Custom validation failed for node", "details": "image - Invalid image file: missing.png", "extra_info": {"input_name": "image"}}], "dependent_outputs": ["3"], "class_type": "LoadImage"}}}',
    );
  });

  it('reports a missing image input as the TypeError VALIDATE_INPUTS raises', async () => {
    const prompt = invertGraph('x.png') as Record<string, { inputs: object }>;
    prompt['1'].inputs = {};
    const res = await http(sim.url, 'POST', '/prompt', { prompt });
    expect(res.status).toBe(400);
    expect(Object.keys(res.json.node_errors)).toEqual(['1']);
    const [reason] = res.json.node_errors['1'].errors;
    expect(reason.type).toBe('exception_during_inner_validation');
    expect(reason.details).toBe(
      "LoadImage.VALIDATE_INPUTS() missing 1 required positional argument: 'image'",
    );
  });

  it('lists the image files at the top of the input folder, sorted', async () => {
    const png = gradientPng();
    for (const [name, subfolder] of [
      ['b.png', ''],
      ['a.PNG', ''],
      ['notes.txt', ''],
      ['deep.png', 'cq'],
    ]) {
      expect((await uploadTo(sim.url, png, { name, subfolder })).status).toBe(200);
    }
    const one = await http(sim.url, 'GET', '/object_info/LoadImage');
    expect(one.json.LoadImage.input.required.image).toEqual([
      ['a.PNG', 'b.png'],
      { image_upload: true },
    ]);
    expect(one.text).toContain('"image": [["a.PNG", "b.png"], {"image_upload": true}]');
    const all = await http(sim.url, 'GET', '/object_info');
    expect(all.json.LoadImage.input.required.image[0]).toEqual(['a.PNG', 'b.png']);
  });
});

/** The chunks of a PNG file: [type, data]. */
function chunks(buf: Buffer): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  for (let pos = 8; pos < buf.length;) {
    const len = buf.readUInt32BE(pos);
    out.push([buf.toString('latin1', pos + 4, pos + 8), buf.subarray(pos + 8, pos + 8 + len)]);
    pos += 12 + len;
  }
  return out;
}

describe('SaveAnimatedPNG (images + animated)', () => {
  it('reports {images, animated: [true]} and writes an APNG that merges equal frames', async () => {
    const { entry } = await run({
      '1': {
        class_type: 'EmptyImage',
        inputs: { width: 8, height: 4, batch_size: 3, color: 0x336699 },
      },
      '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
      '3': {
        class_type: 'SaveAnimatedPNG',
        inputs: { images: ['2', 0], filename_prefix: 'anim', fps: 4, compress_level: 4 },
      },
    });
    expect(entry.outputs['3']).toEqual({
      images: [{ filename: 'anim_00001_.png', subfolder: '', type: 'output' }],
      animated: [true],
    });
    const view = await viewFrom(sim.url, 'filename=anim_00001_.png&type=output');
    expect([view.status, view.type]).toEqual([200, 'image/png']);
    const png = PNG.sync.read(view.body);
    const rgb = [0x33, 0x66, 0x99].map(expectedInvert);
    expect([...png.data.subarray(0, 3)]).toEqual(rgb);
    const list = chunks(view.body);
    expect(list.map(([t]) => t)).toEqual(['IHDR', 'acTL', 'fcTL', 'IDAT', 'comf', 'IEND']);
    const fctl = list[2][1];
    expect([fctl.readUInt16BE(20), fctl.readUInt16BE(22)]).toEqual([750, 1000]); // 3 × 250 ms
    expect(list[4][1].toString('latin1')).toMatch(/^prompt\0\{"1": /);
  });

  it('keeps different frames apart as fcTL + fdAT with sequence numbers', () => {
    const file = encodeApng(2, 1, [[1, 2, 3], Uint8Array.from([9, 9, 9, 8, 8, 8])], 100, [], 1);
    const list = chunks(file);
    expect(list.map(([t]) => t)).toEqual(['IHDR', 'acTL', 'fcTL', 'IDAT', 'fcTL', 'fdAT', 'IEND']);
    expect(list[1][1].readUInt32BE(0)).toBe(2);
    expect([list[2], list[4], list[5]].map(([, d]) => d.readUInt32BE(0))).toEqual([0, 1, 2]);
    const second = inflateSync(list[5][1].subarray(4));
    expect([...second]).toEqual([0, 9, 9, 9, 8, 8, 8]);
    expect([...PNG.sync.read(file).data]).toEqual([1, 2, 3, 255, 1, 2, 3, 255]);
  });
});
