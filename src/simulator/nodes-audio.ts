/**
 * Audio nodes of ComfyUI 0.3.64 (comfy_extras/nodes_audio.py) that need no model: EmptyAudio
 * (silence of `round(duration · sample_rate)` samples), SaveAudio (a real FLAC file per batch
 * item in the output folder, UI output `{"audio": [{filename, subfolder, type}]}`) and
 * PreviewAudio (the same in temp, named `<prefix>_temp_xxxxx_00001_.flac`).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { getSaveImagePath } from './files';
import { encodeFlac } from './flac';
import { fileEntry, metadataTexts, num, tempTag, type NodeFn, type NodeRun } from './node-util';
import { PyError, pyTypeName } from './py';
import { tensorRepr } from './traceback';

/** `{"waveform": tensor[B, C, N], "sample_rate": int}`; `data` null means silence. */
export class SimAudio {
  constructor(
    readonly sampleRate: number,
    readonly channels: number,
    readonly length: number,
    readonly batch: number,
    readonly data: Float32Array[][] | null = null,
  ) {}

  valueAt(b: number, c: number, i: number): number {
    return this.data ? this.data[b][c][i] : 0;
  }

  toPyStr(): string {
    const t = tensorRepr([this.batch, this.channels, this.length], ([b, c, i]) =>
      this.valueAt(b, c, i),
    );
    return `{'waveform': ${t}, 'sample_rate': ${this.sampleRate}}`;
  }
}

/** Python's round() of a float: halves to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** swresample's float → s16: `av_clip_int16(lrintf(x * 32768))`. */
const toS16 = (x: number) => Math.max(-32768, Math.min(32767, roundHalfEven(x * 32768)));

const MAX_TENSOR_BYTES = 2 ** 31;

async function saveAudio(run: NodeRun, i: Record<string, unknown>, kind: 'output' | 'temp') {
  const audio = i.audio;
  if (!(audio instanceof SimAudio)) {
    throw new PyError('TypeError', `'${pyTypeName(audio)}' object is not subscriptable`);
  }
  const dir = kind === 'output' ? run.folders.output : run.folders.temp;
  const suffix = kind === 'temp' ? `_temp_${tempTag()}` : '';
  const target = getSaveImagePath(`${String(i.filename_prefix)}${suffix}`, dir, 0, 0);
  const tags = metadataTexts(i.prompt, i.extra_pnginfo);
  const results = [];
  let counter = target.counter;
  for (let b = 0; b < audio.batch; b++) {
    const file = `${target.filename.replaceAll('%batch_num%', String(b))}_${String(counter).padStart(5, '0')}_.flac`;
    const flac = encodeFlac(
      {
        sampleRate: audio.sampleRate,
        channels: audio.channels,
        length: audio.length,
        sample: (c, n) => toS16(audio.valueAt(b, c, n)),
      },
      tags,
    );
    writeFileSync(path.join(target.folder, file), flac);
    results.push(fileEntry(file, target.subfolder, kind));
    counter++;
  }
  return { outputs: [], ui: { audio: results } };
}

export const AUDIO_NODES: Record<string, NodeFn> = {
  async EmptyAudio(_run, { duration, sample_rate, channels }) {
    const rate = num(sample_rate);
    const samples = roundHalfEven(num(duration) * rate);
    const shape = `[1, ${num(channels)}, ${samples}]`;
    if (samples < 0) {
      throw new PyError(
        'RuntimeError',
        `Trying to create tensor with negative dimension ${samples}: ${shape}`,
      );
    }
    const bytes = 4 * num(channels) * samples;
    if (bytes > MAX_TENSOR_BYTES || !(rate > 0 && rate < 2 ** 20)) {
      // Past what the simulator encodes (FLAC rates stop below 2^20 Hz): fail as torch/av would.
      throw new PyError(
        'RuntimeError',
        `DefaultCPUAllocator: not enough memory: you tried to allocate ${bytes} bytes.`,
      );
    }
    return { outputs: [new SimAudio(rate, num(channels), samples, 1)] };
  },

  SaveAudio: (run, i) => saveAudio(run, i, 'output'),

  PreviewAudio: (run, i) => saveAudio(run, { ...i, filename_prefix: 'ComfyUI' }, 'temp'),
};
