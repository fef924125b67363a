/**
 * Real PNG files for SaveImage/PreviewImage: 8-bit RGB like PIL writes from a ComfyUI image
 * tensor, with the same `tEXt` metadata chunks (`prompt`, plus one per `extra_pnginfo` key)
 * between IHDR and IDAT.
 *
 * Encoded directly with zlib rather than pngjs: the images are solid colors, so every
 * scanline is the same and is built once; pngjs's per-byte JS filtering takes seconds for a
 * 1024×1024 image under jest. Tests decode the files with pngjs.
 */
import { crc32, deflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
  return out;
}

/** Encodes a width×height image of one RGB color (bytes 0–255). */
export function encodeSolidPng(
  width: number,
  height: number,
  rgb: readonly [number, number, number],
  texts: readonly [key: string, value: string][] = [],
  deflateLevel = 4,
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, RGB, deflate, adaptive filtering, no interlace
  const stride = 1 + width * 3; // filter byte 0 (None) + pixels
  const row = Buffer.alloc(stride);
  for (let x = 0; x < width; x++) row.set(rgb, 1 + x * 3);
  const raw = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) row.copy(raw, y * stride);
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
