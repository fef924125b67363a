import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * A multipart/form-data body that streams its one file (ComfyUI's POST /upload/image):
 * text fields first, then the file, with the exact Content-Length, so a large input is
 * never held in memory.
 */
export function multipartBody(
  fields: Record<string, string>,
  file: { field: string; filename: string; contentType: string; size: number; body: Readable },
): { body: Readable; contentType: string; length: number } {
  const boundary = `----comfyui-queue-${randomBytes(12).toString('hex')}`;
  const quote = (s: string) => s.replace(/["\r\n\\]/g, '_');
  let head = '';
  for (const [name, value] of Object.entries(fields)) {
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${quote(name)}"\r\n\r\n${value}\r\n`;
  }
  head +=
    `--${boundary}\r\nContent-Disposition: form-data; name="${quote(file.field)}"; ` +
    `filename="${quote(file.filename)}"\r\nContent-Type: ${file.contentType}\r\n\r\n`;
  const tail = `\r\n--${boundary}--\r\n`;
  async function* parts() {
    yield Buffer.from(head);
    yield* file.body;
    yield Buffer.from(tail);
  }
  return {
    body: Readable.from(parts(), { objectMode: false }),
    contentType: `multipart/form-data; boundary=${boundary}`,
    length: Buffer.byteLength(head) + file.size + Buffer.byteLength(tail),
  };
}
