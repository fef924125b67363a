/**
 * The values that flow between simulated nodes. Images are held like ComfyUI's `[B, H, W, 3]`
 * float32 tensors: each batch item is either one solid color (EmptyImage, VAEDecode: no
 * pixel buffer needed) or real pixels (LoadImage) in a Float32Array, so arithmetic on them
 * rounds to float32 exactly as torch does.
 */
import { createHash } from 'node:crypto';
import { tensorRepr } from './traceback';

export type Rgb = [r: number, g: number, b: number];

/** One batch item: a solid color, or H·W·3 channel values in row-major HWC order. */
export type Frame = Rgb | Float32Array;

/** `np.clip(255. * x, 0, 255).astype(np.uint8)` for a float32 x (SaveImage's conversion). */
export function toByte(v: number): number {
  const x = Math.fround(255 * v);
  return Number.isNaN(x) ? 0 : Math.trunc(Math.min(255, Math.max(0, x)));
}

export class SimImage {
  constructor(
    readonly width: number,
    readonly height: number,
    /** float32 channel values in 0..1, one frame per batch item. */
    readonly frames: Frame[],
  ) {}

  get batch(): number {
    return this.frames.length;
  }

  /** An element-wise float32 operation (`1.0 - image`, …). */
  map(fn: (v: number) => number): SimImage {
    const frames = this.frames.map((f) =>
      f instanceof Float32Array ? f.map(fn) : (f.map((v) => Math.fround(fn(v))) as Rgb),
    );
    return new SimImage(this.width, this.height, frames);
  }

  /** PIL's bytes of one batch item: a solid color, or H·W·3 bytes. */
  bytes(batchIndex: number): Rgb | Uint8Array {
    const f = this.frames[batchIndex];
    if (!(f instanceof Float32Array)) return f.map(toByte) as Rgb;
    const out = new Uint8Array(f.length);
    for (let i = 0; i < f.length; i++) out[i] = toByte(f[i]);
    return out;
  }

  valueAt(b: number, y: number, x: number, c: number): number {
    const f = this.frames[b];
    return f instanceof Float32Array ? f[(y * this.width + x) * 3 + c] : f[c];
  }

  toPyStr(): string {
    return tensorRepr([this.batch, this.height, this.width, 3], ([b, y, x, c]) =>
      this.valueAt(b, y, x, c),
    );
  }
}

/** A `[B, H, W]` float32 mask (LoadImage's second output); `values` null means all zeros. */
export class SimMask {
  constructor(
    readonly width: number,
    readonly height: number,
    readonly values: Float32Array | null,
  ) {}

  toPyStr(): string {
    return tensorRepr([1, this.height, this.width], ([, y, x]) =>
      this.values ? this.values[y * this.width + x] : 0,
    );
  }
}

/** A latent `{"samples": tensor[B, 4, H/8, W/8]}`; `tag` stands for its content. */
export class SimLatent {
  constructor(
    readonly width: number,
    readonly height: number,
    readonly batch: number,
    readonly tag: string,
  ) {}

  toPyStr(): string {
    return `{'samples': ${tensorRepr([this.batch, 4, this.height, this.width], () => 0)}}`;
  }
}

/** MODEL, CLIP or VAE loaded from a checkpoint. */
export class SimModel {
  constructor(
    readonly kind: 'MODEL' | 'CLIP' | 'VAE',
    readonly checkpoint: string,
  ) {}

  toPyStr(): string {
    const cls = {
      MODEL: 'comfy.model_patcher.ModelPatcher',
      CLIP: 'comfy.sd.CLIP',
      VAE: 'comfy.sd.VAE',
    }[this.kind];
    return `<${cls} object at 0x7f${hash(this.kind + this.checkpoint).slice(0, 10)}>`;
  }
}

export class SimConditioning {
  constructor(readonly text: string) {}

  toPyStr(): string {
    const t = tensorRepr([1, 77, 2048], () => 0);
    return `[[${t}, {'pooled_output': ${tensorRepr([1, 1280], () => 0)}}]]`;
  }
}

export function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A deterministic float32 color derived from some text. */
export function colorOf(text: string): Rgb {
  const h = hash(text);
  return [0, 2, 4].map((i) => Math.fround(parseInt(h.slice(i, i + 2), 16) / 255)) as Rgb;
}
