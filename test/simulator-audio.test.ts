/**
 * A node whose output is not an image: EmptyAudio → SaveAudio / PreviewAudio write real FLAC
 * files, reported in history under `audio` (type output / temp) and served by `/view` as
 * `audio/flac`. The files are decoded here: STREAMINFO, every frame's CRC-16, the samples
 * and the MD5 of the samples that STREAMINFO carries.
 */
import { createHash } from 'node:crypto';
import { encodeFlac, crc16, crc8 } from '../src/simulator/flac';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { http, postAndWait, viewFrom, WsClient } from './simulator-helpers';

interface Decoded {
  sampleRate: number;
  channels: number;
  total: number;
  md5: string;
  tags: string[];
  samples: number[][];
}

/** Decodes the FLAC subset SaveAudio writes (16-bit, CONSTANT or VERBATIM subframes). */
function decodeFlac(buf: Buffer): Decoded {
  expect(buf.subarray(0, 4).toString('latin1')).toBe('fLaC');
  let pos = 4;
  let info = { sampleRate: 0, channels: 0, total: 0, md5: '' };
  const tags: string[] = [];
  for (let last = false; !last;) {
    last = (buf[pos] & 0x80) !== 0;
    const type = buf[pos] & 0x7f;
    const len = buf.readUInt32BE(pos) & 0xffffff;
    const data = buf.subarray(pos + 4, pos + 4 + len);
    if (type === 0) {
      const packed = data.readBigUInt64BE(10);
      info = {
        sampleRate: Number(packed >> 44n),
        channels: Number((packed >> 41n) & 7n) + 1,
        total: Number(packed & 0xfffffffffn),
        md5: data.subarray(18, 34).toString('hex'),
      };
      expect(Number((packed >> 36n) & 31n) + 1).toBe(16);
    }
    if (type === 4) {
      let p = 4 + data.readUInt32LE(0);
      const count = data.readUInt32LE(p);
      p += 4;
      for (let i = 0; i < count; i++) {
        const n = data.readUInt32LE(p);
        tags.push(data.toString('utf8', p + 4, p + 4 + n));
        p += 4 + n;
      }
    }
    pos += 4 + len;
  }
  const samples: number[][] = Array.from({ length: info.channels }, () => []);
  while (pos < buf.length) {
    const start = pos;
    expect(buf.readUInt16BE(pos)).toBe(0xfff8);
    const sizeCode = buf[pos + 2] >> 4;
    pos += 4;
    while ((buf[pos] & 0xc0) === 0x80 || pos === start + 4) pos++; // coded frame number
    let size = 4608;
    if (sizeCode === 6) size = buf[pos++] + 1;
    if (sizeCode === 7) size = buf.readUInt16BE((pos += 2) - 2) + 1;
    expect(buf[pos]).toBe(crc8(buf.subarray(start, pos)));
    pos++;
    for (let c = 0; c < info.channels; c++) {
      const kind = buf[pos++];
      if (kind === 0x00) {
        const v = buf.readInt16BE(pos);
        pos += 2;
        for (let i = 0; i < size; i++) samples[c].push(v);
      } else {
        expect(kind).toBe(0x02);
        for (let i = 0; i < size; i++, pos += 2) samples[c].push(buf.readInt16BE(pos));
      }
    }
    expect(buf.readUInt16BE(pos)).toBe(crc16(buf.subarray(start, pos)));
    pos += 2;
  }
  return { ...info, tags, samples };
}

/** MD5 of interleaved little-endian 16-bit samples, as STREAMINFO defines it. */
function pcmMd5(samples: number[][]): string {
  const n = samples[0]?.length ?? 0;
  const out = Buffer.alloc(2 * n * samples.length);
  for (let i = 0; i < n; i++)
    samples.forEach((ch, c) => out.writeInt16LE(ch[i], 2 * (i * samples.length + c)));
  return createHash('md5').update(out).digest('hex');
}

describe('the FLAC encoder', () => {
  it('uses the standard CRC-8 and CRC-16 of the FLAC format', () => {
    const check = Buffer.from('123456789', 'latin1');
    expect(crc8(check)).toBe(0xf4);
    expect(crc16(check)).toBe(0xfee8);
  });

  it('round-trips a signal over several blocks, with a short last block', () => {
    const length = 4608 * 2 + 300;
    const wave = (c: number, i: number) => Math.round((c ? -1 : 1) * 12000 * Math.sin(i / 7)) | 0;
    const flac = encodeFlac({ sampleRate: 22050, channels: 2, length, sample: wave });
    const d = decodeFlac(flac);
    expect([d.sampleRate, d.channels, d.total]).toEqual([22050, 2, length]);
    expect(d.samples[1].slice(0, 50)).toEqual(Array.from({ length: 50 }, (_, i) => wave(1, i)));
    expect(d.samples.map((s) => s.length)).toEqual([length, length]);
    expect(d.md5).toBe(pcmMd5(d.samples));
  });
});

describe('EmptyAudio → SaveAudio / PreviewAudio', () => {
  let sim: Simulator;
  let ws: WsClient;
  beforeEach(async () => {
    sim = await createSimulator();
    ws = await WsClient.connect(sim.url, 'audio');
  });
  afterEach(async () => {
    await ws.close();
    await sim.close();
  });

  it('reports the FLAC files under `audio` and serves them via /view', async () => {
    const prompt = {
      '1': { class_type: 'EmptyAudio', inputs: { duration: 0.5, sample_rate: 44100, channels: 2 } },
      '2': {
        class_type: 'SaveAudio',
        inputs: { audio: ['1', 0], filename_prefix: 'audio/ComfyUI' },
      },
      '3': { class_type: 'PreviewAudio', inputs: { audio: ['1', 0] } },
    };
    const promptId = await postAndWait(sim.url, ws, 'audio', prompt);
    const { outputs, status } = (await http(sim.url, 'GET', `/history/${promptId}`)).json[promptId];
    expect(status.status_str).toBe('success');
    expect(outputs['2']).toEqual({
      audio: [{ filename: 'ComfyUI_00001_.flac', subfolder: 'audio', type: 'output' }],
    });
    const [preview] = outputs['3'].audio;
    expect(preview).toEqual({
      filename: expect.stringMatching(/^ComfyUI_temp_[a-z]{5}_00001_\.flac$/),
      subfolder: '',
      type: 'temp',
    });
    for (const item of [outputs['2'].audio[0], preview]) {
      const view = await viewFrom(sim.url, new URLSearchParams(item).toString());
      expect([view.status, view.type]).toEqual([200, 'audio/flac']);
      const d = decodeFlac(view.body);
      expect([d.sampleRate, d.channels, d.total]).toEqual([44100, 2, 22050]);
      expect(d.samples.every((ch) => ch.length === 22050 && ch.every((v) => v === 0))).toBe(true);
      expect(d.md5).toBe(pcmMd5(d.samples));
      expect(d.tags).toEqual([`prompt=${JSON.stringify(prompt).replaceAll(/([,:])/g, '$1 ')}`]);
    }
    const again = await postAndWait(sim.url, ws, 'audio', {
      ...prompt,
      '2': { ...prompt['2'], inputs: { ...prompt['2'].inputs, filename_prefix: 'audio/x' } },
    });
    const second = (await http(sim.url, 'GET', `/history/${again}`)).json[again].outputs;
    expect(second['2'].audio[0].filename).toBe('x_00001_.flac');
  });

  it('lists EmptyAudio, SaveAudio and PreviewAudio in /object_info as 0.3.64 declares them', async () => {
    const info = (await http(sim.url, 'GET', '/object_info/SaveAudio')).json.SaveAudio;
    expect(info.input.required.filename_prefix).toEqual(['STRING', { default: 'audio/ComfyUI' }]);
    expect(info.output_node).toBe(true);
    const all = (await http(sim.url, 'GET', '/object_info')).json;
    expect(all.EmptyAudio.output).toEqual(['AUDIO']);
    expect(all.PreviewAudio.python_module).toBe('comfy_extras.nodes_audio');
  });
});
