/**
 * A small FLAC encoder for SaveAudio: 16-bit samples (what ffmpeg's flac encoder makes of
 * ComfyUI's float waveform), fixed blocks of 4608 samples like ffmpeg's, each channel's
 * subframe CONSTANT when the block is one value (silence) and VERBATIM otherwise, with
 * STREAMINFO (MD5 included) and a VORBIS_COMMENT block carrying the node's metadata.
 * Every field is byte aligned at 16 bits per sample, so no bit writer is needed.
 */
import { createHash } from 'node:crypto';

const BLOCK = 4608;
const RATE_CODES: Record<number, number> = {
  88200: 1,
  176400: 2,
  192000: 3,
  8000: 4,
  16000: 5,
  22050: 6,
  24000: 7,
  32000: 8,
  44100: 9,
  48000: 10,
  96000: 11,
};

/** Audio as 16-bit samples: `sample(c, i)` for channel c, index i. */
export interface PcmSource {
  sampleRate: number;
  channels: number;
  length: number;
  sample(channel: number, index: number): number;
}

export function crc8(buf: Buffer): number {
  let crc = 0;
  for (const byte of buf) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

export function crc16(buf: Buffer): number {
  let crc = 0;
  for (const byte of buf) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x8005) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** FLAC's UTF-8-like coding of the frame number. */
function codedNumber(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  let rest = n;
  let lead = 0x3f; // payload bits that still fit in the first byte
  while (rest > lead) {
    bytes.unshift(0x80 | (rest & 0x3f));
    rest = Math.floor(rest / 64);
    lead >>= 1;
  }
  const marker = (0xff << (7 - bytes.length)) & 0xff;
  return [marker | rest, ...bytes];
}

function frame(src: PcmSource, index: number): Buffer {
  const start = index * BLOCK;
  const size = Math.min(BLOCK, src.length - start);
  const sizeCode = size === BLOCK ? 5 : size <= 256 ? 6 : 7;
  const header = [0xff, 0xf8, (sizeCode << 4) | (RATE_CODES[src.sampleRate] ?? 0)];
  header.push(((src.channels - 1) << 4) | (0b100 << 1), ...codedNumber(index));
  if (sizeCode === 6) header.push(size - 1);
  if (sizeCode === 7) header.push((size - 1) >> 8, (size - 1) & 0xff);
  header.push(crc8(Buffer.from(header)));
  const parts: Buffer[] = [Buffer.from(header)];
  for (let c = 0; c < src.channels; c++) {
    const first = src.sample(c, start);
    let constant = true;
    for (let i = 1; i < size && constant; i++) constant = src.sample(c, start + i) === first;
    const sub = Buffer.alloc(constant ? 3 : 1 + 2 * size);
    sub[0] = constant ? 0x00 : 0x02; // CONSTANT or VERBATIM, no wasted bits
    if (constant) sub.writeInt16BE(first, 1);
    else for (let i = 0; i < size; i++) sub.writeInt16BE(src.sample(c, start + i), 1 + 2 * i);
    parts.push(sub);
  }
  const body = Buffer.concat(parts);
  const crc = Buffer.alloc(2);
  crc.writeUInt16BE(crc16(body));
  return Buffer.concat([body, crc]);
}

function metadataBlock(type: number, last: boolean, data: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(data.length);
  head[0] = (last ? 0x80 : 0) | type;
  return Buffer.concat([head, data]);
}

function streamInfo(src: PcmSource): Buffer {
  const block = Math.max(16, Math.min(BLOCK, src.length));
  const info = Buffer.alloc(34);
  info.writeUInt16BE(block, 0);
  info.writeUInt16BE(block, 2);
  // min/max frame size (bytes 4–9) left 0: unknown, which the format allows.
  const total = BigInt(src.length);
  const packed =
    (BigInt(src.sampleRate) << 44n) |
    (BigInt(src.channels - 1) << 41n) |
    (15n << 36n) | // 16 bits per sample
    total;
  info.writeBigUInt64BE(packed, 10);
  const md5 = createHash('md5');
  const chunk = Buffer.alloc(2 * src.channels * BLOCK);
  for (let start = 0; start < src.length; start += BLOCK) {
    const size = Math.min(BLOCK, src.length - start);
    for (let i = 0; i < size; i++) {
      for (let c = 0; c < src.channels; c++)
        chunk.writeInt16LE(src.sample(c, start + i), 2 * (i * src.channels + c));
    }
    md5.update(chunk.subarray(0, 2 * src.channels * size));
  }
  md5.digest().copy(info, 18);
  return info;
}

function vorbisComment(tags: [string, string][]): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const vendor = Buffer.from('Lavf60.16.100', 'utf8');
  const entries = tags.map(([k, v]) => Buffer.from(`${k}=${v}`, 'utf8'));
  return Buffer.concat([
    u32(vendor.length),
    vendor,
    u32(entries.length),
    ...entries.flatMap((e) => [u32(e.length), e]),
  ]);
}

/** A complete `.flac` file. */
export function encodeFlac(src: PcmSource, tags: [string, string][] = []): Buffer {
  const frames: Buffer[] = [];
  for (let i = 0; i * BLOCK < src.length; i++) frames.push(frame(src, i));
  return Buffer.concat([
    Buffer.from('fLaC', 'latin1'),
    metadataBlock(0, false, streamInfo(src)),
    metadataBlock(4, true, vorbisComment(tags)),
    ...frames,
  ]);
}
