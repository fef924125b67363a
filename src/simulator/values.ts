/**
 * The values that flow between simulated nodes. Images are solid colors per batch item,
 * held as float32 channel values like ComfyUI's `[B, H, W, 3]` tensors (no pixel buffers).
 */
import { createHash } from 'node:crypto';
import { tensorRepr } from './traceback';

export type Rgb = [r: number, g: number, b: number];

export class SimImage {
  constructor(
    readonly width: number,
    readonly height: number,
    /** float32 channel values in 0..1, one color per batch item. */
    readonly colors: Rgb[],
  ) {}

  /** PIL's bytes: `np.clip(255. * image, 0, 255).astype(np.uint8)` in float32. */
  bytes(batchIndex: number): Rgb {
    return this.colors[batchIndex].map((v) => {
      const x = Math.fround(255 * v);
      return Number.isNaN(x) ? 0 : Math.trunc(Math.min(255, Math.max(0, x)));
    }) as Rgb;
  }

  toPyStr(): string {
    return tensorRepr(
      [this.colors.length, this.height, this.width, 3],
      ([b, , , c]) => this.colors[b][c],
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
