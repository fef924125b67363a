/**
 * The image nodes: EmptyImage, LoadImage (real pixels from the input folder), ImageInvert
 * (`1.0 - image` in float32), SaveImage (output) and PreviewImage (temp), which write the
 * real PNG of the image that reaches them.
 */
import { writeFileSync } from 'node:fs';
import { setImmediate } from 'node:timers/promises';
import path from 'node:path';
import { getSaveImagePath } from './files';
import { loadImage } from './load-image';
import {
  fileEntry,
  metadataTexts,
  num,
  tempTag,
  type NodeFn,
  type NodeResult,
  type NodeRun,
} from './node-util';
import { encodeApng, encodePng } from './png';
import { PyError, pyTypeName } from './py';
import { nodeTraceback } from './traceback';
import { SimImage, type Rgb } from './values';

function expectImages(images: unknown): SimImage {
  if (images instanceof SimImage) return images;
  throw new PyError(
    'TypeError',
    `'${pyTypeName(images)}' object is not subscriptable`,
    nodeTraceback(['nodes.py', 1590, 'save_images', 'images[0].shape[1]']),
  );
}

async function saveImages(
  run: NodeRun,
  input: unknown,
  filenamePrefix: string,
  texts: [string, string][],
  kind: 'output' | 'temp',
): Promise<NodeResult> {
  const images = expectImages(input);
  const dir = kind === 'output' ? run.folders.output : run.folders.temp;
  const target = getSaveImagePath(filenamePrefix, dir, images.width, images.height);
  const level = kind === 'output' ? 4 : 1;
  const results = [];
  let counter = target.counter;
  for (let b = 0; b < images.batch; b++) {
    const file = `${target.filename.replaceAll('%batch_num%', String(b))}_${String(counter).padStart(5, '0')}_.png`;
    const png = encodePng(images.width, images.height, images.bytes(b), texts, level);
    writeFileSync(path.join(target.folder, file), png);
    results.push(fileEntry(file, target.subfolder, kind));
    counter++;
    // ComfyUI executes on its own thread and keeps answering HTTP meanwhile: a large batch
    // must not hold the simulator's event loop (a POST /prompt answered seconds late)
    if (b % 16 === 15) await setImmediate();
  }
  return { outputs: [], ui: { images: results } };
}

export const IMAGE_NODES: Record<string, NodeFn> = {
  async EmptyImage(_run, { width, height, batch_size, color }) {
    const c = num(color);
    const rgb = [16, 8, 0].map((shift) => Math.fround(((c >> shift) & 0xff) / 0xff)) as Rgb;
    const frames = Array.from({ length: num(batch_size) }, () => rgb);
    return { outputs: [new SimImage(num(width), num(height), frames)] };
  },

  async LoadImage(run, { image }) {
    return { outputs: loadImage(run.folders, image) };
  },

  async ImageInvert(_run, { image }) {
    if (!(image instanceof SimImage)) {
      throw new PyError(
        'TypeError',
        `unsupported operand type(s) for -: 'float' and '${pyTypeName(image)}'`,
      );
    }
    return { outputs: [image.map((v) => 1 - v)] };
  },

  SaveImage: (run, i) =>
    saveImages(
      run,
      i.images,
      String(i.filename_prefix),
      metadataTexts(i.prompt, i.extra_pnginfo),
      'output',
    ),

  async SaveAnimatedPNG(run, i) {
    const images = expectImages(i.images);
    const target = getSaveImagePath(
      String(i.filename_prefix),
      run.folders.output,
      images.width,
      images.height,
    );
    const file = `${target.filename}_${String(target.counter).padStart(5, '0')}_.png`;
    const frames = Array.from({ length: images.batch }, (_, b) => images.bytes(b));
    const durationMs = Math.trunc(1000 / num(i.fps));
    const comf = metadataTexts(i.prompt, i.extra_pnginfo);
    const level = num(i.compress_level);
    const png = encodeApng(images.width, images.height, frames, durationMs, comf, level);
    writeFileSync(path.join(target.folder, file), png);
    const results = [fileEntry(file, target.subfolder, 'output')];
    return { outputs: [], ui: { images: results, animated: [true] } };
  },

  PreviewImage: (run, i) =>
    saveImages(
      run,
      i.images,
      `ComfyUI_temp_${tempTag()}`,
      metadataTexts(i.prompt, i.extra_pnginfo),
      'temp',
    ),
};
