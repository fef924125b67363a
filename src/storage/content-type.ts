/** The media type of a file name's extension (the file driver keeps no metadata). */
const TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  bmp: 'image/bmp',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  svg: 'image/svg+xml',
  mp4: 'video/mp4',
  webm: 'video/webm',
  mov: 'video/quicktime',
  mkv: 'video/x-matroska',
  flac: 'audio/flac',
  mp3: 'audio/mpeg',
  wav: 'audio/wav',
  ogg: 'audio/ogg',
  opus: 'audio/opus',
  json: 'application/json',
  txt: 'text/plain',
  glb: 'model/gltf-binary',
  safetensors: 'application/octet-stream',
};

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

export function extensionOf(name: string): string {
  const m = /\.([A-Za-z0-9]{1,12})$/.exec(name);
  return m ? m[1].toLowerCase() : '';
}

export function contentTypeOf(name: string): string {
  return TYPES[extensionOf(name)] ?? DEFAULT_CONTENT_TYPE;
}

/** An extension for a media type (for names derived from content), or '' when unknown. */
export function extensionFor(contentType: string | undefined): string {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'image/jpeg') return 'jpg';
  for (const [ext, t] of Object.entries(TYPES)) if (t === type) return ext;
  return '';
}
