/**
 * PNG files in and out. Out: 8-bit RGB like PIL writes from a ComfyUI image tensor in
 * SaveImage/PreviewImage, with the same `tEXt` metadata chunks (`prompt`, plus one per
 * `extra_pnginfo` key) between IHDR and IDAT. Encoded directly with zlib rather than pngjs:
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

/** Builds the file from the filtered scanlines (each row: filter byte 0, then RGB bytes). */
function assemble(
  width: number,
  height: number,
  raw: Buffer,
  texts: readonly [key: string, value: string][],
  deflateLevel: number,
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, RGB, deflate, adaptive filtering, no interlace
  const text = texts.map(([k, v]) =>
    chunk(
      'tEXt',
      Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'latin1')]),
    ),
  );
  return Buffer.concat([
    SIGNATURE,
    chunk('IHDR', ihdr),
    ...text,
    chunk('IDAT', deflateSync(raw, { level: deflateLevel })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Encodes a width×height image of one RGB color (bytes 0–255). */
export function encodeSolidPng(
  width: number,
  height: number,
  rgb: readonly [number, number, number],
  texts: readonly [key: string, value: string][] = [],
  deflateLevel = 4,
): Buffer {
  const stride = 1 + width * 3; // filter byte 0 (None) + pixels
  const row = Buffer.alloc(stride);
  for (let x = 0; x < width; x++) row.set(rgb, 1 + x * 3);
  const raw = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) row.copy(raw, y * stride);
  return assemble(width, height, raw, texts, deflateLevel);
}

/** Encodes width×height RGB bytes (row-major, 3 bytes a pixel). */
export function encodeRgbPng(
  width: number,
  height: number,
  rgb: Uint8Array,
  texts: readonly [key: string, value: string][] = [],
  deflateLevel = 4,
): Buffer {
  const stride = 1 + width * 3;
  const raw = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * stride + 1);
  }
  return assemble(width, height, raw, texts, deflateLevel);
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
