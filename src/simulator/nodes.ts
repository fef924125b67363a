/**
 * What each catalogued node does when it runs. Inputs arrive validated and coerced (ints as
 * numbers/bigints, floats as PyFloat, strings as strings) plus the node's hidden inputs.
 * Durations: TestSleep sleeps `seconds` with a progress tick every `progressIntervalMs`;
 * KSampler spends `samplerStepMs` per step with one progress per step; loaders and VAE
 * decoding take a couple of steps' time; image nodes are instant.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { getSaveImagePath, type SimFolders } from './files';
import { orderedObject, PyFloat, stringify, type Json, type JsonObject } from './json';
import { encodeSolidPng } from './png';
import { PyError, pyGetItem, pyIter, pyNumber, pyStr, pyTypeName } from './py';
import { nodeTraceback } from './traceback';
import { colorOf, hash, SimConditioning, SimImage, SimLatent, SimModel, type Rgb } from './values';

export interface NodeTiming {
  progressIntervalMs: number;
  samplerStepMs: number;
}

/** What a running node may do. */
export interface NodeRun {
  readonly nodeId: string;
  readonly folders: SimFolders;
  readonly timing: NodeTiming;
  /** Abortable sleep (rejects when the simulator restarts or closes). */
  sleep(ms: number): Promise<void>;
  /** `ProgressBar.update_absolute`: checks for an interrupt, then reports progress. */
  progress(value: number | PyFloat, max: number | PyFloat): void;
}

export interface NodeResult {
  outputs: unknown[];
  /** The node's UI output (`{"images": [...]}`) for `executed` and history. */
  ui?: JsonObject;
}

type Inputs = Record<string, unknown>;
type NodeFn = (run: NodeRun, inputs: Inputs) => Promise<NodeResult>;

const num = (v: unknown) => Number(pyNumber(v) ?? NaN);

function expect<T>(value: unknown, cls: new (...a: never[]) => T, attr: string): T {
  if (value instanceof cls) return value;
  throw new PyError('AttributeError', `'${pyTypeName(value)}' object has no attribute '${attr}'`);
}

function expectModel(value: unknown, kind: SimModel['kind'], attr: string): SimModel {
  const m = expect(value, SimModel, attr);
  if (m.kind !== kind)
    throw new PyError('AttributeError', `'${m.kind}' object has no attribute '${attr}'`);
  return m;
}

async function saveImages(
  run: NodeRun,
  images: unknown,
  filenamePrefix: string,
  prompt: unknown,
  extraPnginfo: unknown,
  kind: 'output' | 'temp',
): Promise<NodeResult> {
  if (!(images instanceof SimImage)) {
    throw new PyError(
      'TypeError',
      `'${pyTypeName(images)}' object is not subscriptable`,
      nodeTraceback(['nodes.py', 1590, 'save_images', 'images[0].shape[1]']),
    );
  }
  const dir = kind === 'output' ? run.folders.output : run.folders.temp;
  const target = getSaveImagePath(filenamePrefix, dir, images.width, images.height);
  const texts: [string, string][] = [];
  if (prompt !== null && prompt !== undefined) texts.push(['prompt', stringify(prompt)]);
  if (extraPnginfo !== null && extraPnginfo !== undefined) {
    for (const k of pyIter(extraPnginfo as Json))
      texts.push([pyStr(k), stringify(pyGetItem(extraPnginfo, k))]);
  }
  const results: JsonObject[] = [];
  let counter = target.counter;
  for (let b = 0; b < images.colors.length; b++) {
    const file = `${target.filename.replaceAll('%batch_num%', String(b))}_${String(counter).padStart(5, '0')}_.png`;
    writeFileSync(
      path.join(target.folder, file),
      encodeSolidPng(
        images.width,
        images.height,
        images.bytes(b),
        texts,
        kind === 'output' ? 4 : 1,
      ),
    );
    results.push(
      orderedObject<Json>([
        ['filename', file],
        ['subfolder', target.subfolder],
        ['type', kind],
      ]),
    );
    counter++;
  }
  return { outputs: [], ui: { images: results } };
}

const TEMP_LETTERS = 'abcdefghijklmnopqrstupvxyz'; // sic, as in ComfyUI's PreviewImage

export const NODE_FUNCTIONS: Record<string, NodeFn> = {
  async EmptyImage(_run, { width, height, batch_size, color }) {
    const c = num(color);
    const rgb = [16, 8, 0].map((shift) => Math.fround(((c >> shift) & 0xff) / 0xff)) as Rgb;
    return {
      outputs: [
        new SimImage(
          num(width),
          num(height),
          Array.from({ length: num(batch_size) }, () => rgb),
        ),
      ],
    };
  },

  async ImageInvert(_run, { image }) {
    if (!(image instanceof SimImage)) {
      throw new PyError(
        'TypeError',
        `unsupported operand type(s) for -: 'float' and '${pyTypeName(image)}'`,
      );
    }
    const colors = image.colors.map((rgb) => rgb.map((v) => Math.fround(1 - v)) as Rgb);
    return { outputs: [new SimImage(image.width, image.height, colors)] };
  },

  SaveImage: (run, i) =>
    saveImages(run, i.images, String(i.filename_prefix), i.prompt, i.extra_pnginfo, 'output'),

  PreviewImage(run, i) {
    const tag = Array.from(
      { length: 5 },
      () => TEMP_LETTERS[Math.floor(Math.random() * TEMP_LETTERS.length)],
    ).join('');
    return saveImages(run, i.images, `ComfyUI_temp_${tag}`, i.prompt, i.extra_pnginfo, 'temp');
  },

  async LoadImage(_run, { image }) {
    throw new PyError(
      'FileNotFoundError',
      `[Errno 2] No such file or directory: '${pyStr(image)}'`,
    );
  },

  async TestSleep(run, { value, seconds }) {
    const total = num(seconds);
    const start = performance.now();
    const end = start + total * 1000;
    let now = start;
    while (now < end) {
      now = performance.now();
      run.progress(new PyFloat(Math.min((now - start) / 1000, total)), new PyFloat(total));
      await run.sleep(run.timing.progressIntervalMs);
    }
    return { outputs: [value] };
  },

  async CheckpointLoaderSimple(run, { ckpt_name }) {
    await run.sleep(2 * run.timing.samplerStepMs);
    const ckpt = String(ckpt_name);
    return {
      outputs: [new SimModel('MODEL', ckpt), new SimModel('CLIP', ckpt), new SimModel('VAE', ckpt)],
    };
  },

  async CLIPTextEncode(run, { text, clip }) {
    expectModel(clip, 'CLIP', 'tokenize');
    await run.sleep(run.timing.samplerStepMs / 2);
    return { outputs: [new SimConditioning(String(text))] };
  },

  async EmptyLatentImage(_run, { width, height, batch_size }) {
    return {
      outputs: [
        new SimLatent(
          Math.floor(num(width) / 8),
          Math.floor(num(height) / 8),
          num(batch_size),
          'empty',
        ),
      ],
    };
  },

  async KSampler(run, i) {
    const model = expectModel(i.model, 'MODEL', 'model_sampling');
    const positive = expect(i.positive, SimConditioning, 'copy');
    const negative = expect(i.negative, SimConditioning, 'copy');
    const latent = expect(i.latent_image, SimLatent, 'samples');
    const steps = num(i.steps);
    for (let step = 1; step <= steps; step++) {
      await run.sleep(run.timing.samplerStepMs);
      run.progress(step, steps);
    }
    const tag = hash(
      [
        model.checkpoint,
        pyStr(i.seed),
        pyStr(i.cfg),
        pyStr(i.sampler_name),
        pyStr(i.scheduler),
        pyStr(i.denoise),
        positive.text,
        negative.text,
        latent.tag,
      ].join('\u0000'),
    );
    return { outputs: [new SimLatent(latent.width, latent.height, latent.batch, tag)] };
  },

  async VAEDecode(run, { samples, vae }) {
    const latent = expect(samples, SimLatent, 'samples');
    expectModel(vae, 'VAE', 'decode');
    await run.sleep(2 * run.timing.samplerStepMs);
    const colors = Array.from({ length: latent.batch }, (_, b) => colorOf(`${latent.tag}:${b}`));
    return { outputs: [new SimImage(latent.width * 8, latent.height * 8, colors)] };
  },
};
