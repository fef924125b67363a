/**
 * `/view`'s file answer, as aiohttp's `FileResponse` gives it: Content-Type from Python's
 * `mimetypes` (with Debian's /etc/mime.types, as on the recording machine), ETag and
 * Last-Modified from the file, `If-None-Match` → 304, single `Range` → 206 or 416.
 */
import { createReadStream, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const SERVER_HEADER = 'Python/3.11 aiohttp/3.8.4';

const MIME: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  json: 'application/json',
  txt: 'text/plain',
  mp4: 'video/mp4',
  webm: 'video/webm',
  flac: 'audio/flac',
  wav: 'audio/x-wav',
  mp3: 'audio/mpeg',
  ogg: 'audio/ogg',
  opus: 'audio/ogg',
  svg: 'image/svg+xml',
};

export function serveFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: string,
  filename: string,
): void {
  const st = statSync(file, { bigint: true });
  const size = Number(st.size);
  const etag = `"${st.mtimeNs.toString(16)}-${size.toString(16)}"`;
  const ext = filename.split('.').pop()!.toLowerCase();
  const type = Object.hasOwn(MIME, ext) ? MIME[ext] : 'application/octet-stream';
  const headers: Record<string, string> = {
    'Content-Disposition': `filename="${filename}"`,
    'Content-Type': type,
    Etag: etag,
    'Last-Modified': new Date(Number(st.mtimeMs)).toUTCString(),
    'Accept-Ranges': 'bytes',
    Server: SERVER_HEADER,
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers).end();
    return;
  }
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
  if (range && (range[1] || range[2])) {
    const start = range[1] ? Number(range[1]) : Math.max(0, size - Number(range[2]));
    const end = range[1] && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
    if (start >= size || start > end) {
      res.writeHead(416, { 'Content-Range': `bytes */${size}`, Server: SERVER_HEADER }).end();
      return;
    }
    res.writeHead(206, {
      ...headers,
      'Content-Range': `bytes ${start}-${end}/${size}`,
      'Content-Length': String(end - start + 1),
    });
    createReadStream(file, { start, end }).pipe(res);
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Length': String(size) });
  createReadStream(file).pipe(res);
}
