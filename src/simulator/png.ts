/**
 * PNG files in and out. Out: 8-bit RGB like PIL writes from a ComfyUI image tensor in
 * SaveImage/PreviewImage, with the same `tEXt` metadata chunks (`prompt`, plus one per
 * `extra_pnginfo` key) between IHDR and IDAT, and APNG for SaveAnimatedPNG. Encoded directly
 * with zlib rather than pngjs:
 * a solid color builds its scanline once, and pngjs's per-byte JS filtering takes seconds
 * for a 1024×1024 image under jest. In: LoadImage decodes with pngjs, the way PIL's
 * `convert("RGB")` sees the file (alpha dropped, palettes expanded).
 */
import { crc32, deflateSync } from 'node:zlib';
import { PNG } from 'pngjs';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
  return out;
}

/** One batch item's pixels: a solid RGB color, or width·height·3 bytes row by row. */
export type Pixels = readonly [number, number, number] | Uint8Array;

/** The filtered scanlines (each row: filter byte 0, then RGB bytes) that IDAT compresses. */
function scanlines(width: number, height: number, pixels: Pixels): Buffer {
  const stride = 1 + width * 3;
  const raw = Buffer.alloc(stride * height);
  if (pixels instanceof Uint8Array) {
    for (let y = 0; y < height; y++)
      raw.set(pixels.subarray(y * width * 3, (y + 1) * width * 3), y * stride + 1);
    return raw;
  }
  const row = Buffer.alloc(stride);
  for (let x = 0; x < width; x++) row.set(pixels, 1 + x * 3);
  for (let y = 0; y < height; y++) row.copy(raw, y * stride);
  return raw;
}

function ihdr(width: number, height: number): Buffer {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data.set([8, 2, 0, 0, 0], 8); // 8-bit, RGB, deflate, adaptive filtering, no interlace
  return chunk('IHDR', data);
}

const keyed = (type: string, texts: readonly [string, string][]) =>
  texts.map(([k, v]) =>
    chunk(
      type,
      Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'latin1')]),
    ),
  );

/** An 8-bit RGB PNG with `tEXt` chunks before IDAT, as PIL writes SaveImage's files. */
export function encodePng(
  width: number,
  height: number,
  pixels: Pixels,
  texts: readonly [key: string, value: string][] = [],
  deflateLevel = 4,
): Buffer {
  const raw = scanlines(width, height, pixels);
  return Buffer.concat([
    SIGNATURE,
    ihdr(width, height),
    ...keyed('tEXt', texts),
    chunk('IDAT', deflateSync(raw, { level: deflateLevel })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * An animated PNG as PIL's APNG writer makes SaveAnimatedPNG's file: consecutive identical
 * frames merged into one longer frame, looping forever, metadata in private `comf` chunks
 * after the image data.
 */
export function encodeApng(
  width: number,
  height: number,
  frames: Pixels[],
  durationMs: number,
  comf: readonly [key: string, value: string][],
  deflateLevel: number,
): Buffer {
  const merged: { raw: Buffer; ms: number }[] = [];
  for (const f of frames) {
    const raw = scanlines(width, height, f);
    const last = merged.at(-1);
    if (last?.raw.equals(raw)) last.ms += durationMs;
    else merged.push({ raw, ms: durationMs });
  }
  const actl = Buffer.alloc(8);
  actl.writeUInt32BE(merged.length, 0); // num_plays 0: loop forever
  let seq = 0;
  const parts = [SIGNATURE, ihdr(width, height), chunk('acTL', actl)];
  merged.forEach(({ raw, ms }, i) => {
    const fctl = Buffer.alloc(26);
    fctl.writeUInt32BE(seq++, 0);
    fctl.writeUInt32BE(width, 4);
    fctl.writeUInt32BE(height, 8);
    fctl.writeUInt16BE(Math.min(ms, 0xffff), 20);
    fctl.writeUInt16BE(1000, 22); // delay = ms / 1000 s; offsets, dispose and blend 0
    parts.push(chunk('fcTL', fctl));
    const data = deflateSync(raw, { level: deflateLevel });
    if (i === 0) {
      parts.push(chunk('IDAT', data));
      return;
    }
    const fdat = Buffer.alloc(4 + data.length);
    fdat.writeUInt32BE(seq++, 0);
    data.copy(fdat, 4);
    parts.push(chunk('fdAT', fdat));
  });
  parts.push(...keyed('comf', comf), chunk('IEND', Buffer.alloc(0)));
  return Buffer.concat(parts);
}

export interface DecodedPng {
  width: number;
  height: number;
  /** RGBA bytes, row-major. */
  rgba: Buffer;
  /** PIL would give the image an alpha band (RGBA, LA, or a palette with tRNS). */
  hasAlpha: boolean;
}

/** True when `buf` starts with the PNG signature. */
export const isPng = (buf: Buffer) => buf.length >= 8 && buf.subarray(0, 8).equals(SIGNATURE);

function hasChunk(buf: Buffer, type: string): boolean {
  for (let pos = 8; pos + 8 <= buf.length;) {
    const len = buf.readUInt32BE(pos);
    const name = buf.toString('latin1', pos + 4, pos + 8);
    if (name === type) return true;
    if (name === 'IDAT' || name === 'IEND') return false;
    pos += 12 + len;
  }
  return false;
}

/** Decodes a PNG file; throws pngjs's error for a damaged one. */
export function decodePng(buf: Buffer): DecodedPng {
  const png = PNG.sync.read(buf);
  return {
    width: png.width,
    height: png.height,
    rgba: png.data,
    hasAlpha: png.alpha || (png.palette && hasChunk(buf, 'tRNS')),
  };
}
