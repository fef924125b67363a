import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';

/** More bytes than allowed went through a meter. */
export class TooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`the file is larger than ${maxBytes} bytes`);
    this.name = 'TooLargeError';
  }
}

/**
 * A pass-through that hashes (sha256) and counts what flows through it, and fails with
 * TooLargeError past `maxBytes`: a file is hashed while it streams to storage, never held.
 */
export function meter(maxBytes = Infinity) {
  const hash = createHash('sha256');
  let size = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) return cb(new TooLargeError(maxBytes));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  let digest: string | undefined;
  return {
    stream,
    get size() {
      return size;
    },
    /** the hex digest, once the stream has ended */
    sha256: () => (digest ??= hash.digest('hex')),
  };
}
