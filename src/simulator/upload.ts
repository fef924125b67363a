/**
 * `POST /upload/image` of ComfyUI 0.3.64 (server.py `image_upload`): the form is read like
 * aiohttp's `request.post()`, the target folder comes from `type` (input, temp, output; any
 * other value is Python's UnboundLocalError, a 500), `subfolder` may not leave that folder
 * (400), and without `overwrite` ("true" or "1") an existing name is kept when its bytes are
 * identical and otherwise renamed `name (1).ext`, `name (2).ext`, … The answer is
 * `{"name", "subfolder", "type"}` with `subfolder` exactly as sent.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Reply } from './api';
import type { SimFolders } from './files';
import { PyError } from './py';
import { abspath, commonpath, join, normpath, splitext } from './pypath';

type FormValue = string | File;

/** A filesystem error as the Python exception ComfyUI would raise (→ 500). */
function osError(err: unknown): PyError {
  const e = err as NodeJS.ErrnoException;
  const type = { EISDIR: 'IsADirectoryError', ENOTDIR: 'NotADirectoryError' }[e.code ?? ''];
  return new PyError(type ?? 'OSError', `[Errno ${-(e.errno ?? 0)}] ${e.message}`);
}

function fs<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw osError(err);
  }
}

/** aiohttp `request.post()`: multipart or urlencoded fields; any other body has none. */
async function readForm(contentType: string | undefined, body: Buffer): Promise<FormData> {
  const mime = (contentType ?? 'application/octet-stream').split(';')[0].trim().toLowerCase();
  if (mime === 'application/x-www-form-urlencoded') {
    const form = new FormData();
    for (const [k, v] of new URLSearchParams(body.toString('utf8'))) form.append(k, v);
    return form;
  }
  if (mime !== 'multipart/form-data') return new FormData();
  try {
    return await new Response(body, { headers: { 'content-type': contentType! } }).formData();
  } catch (err) {
    throw new PyError('ValueError', `Could not parse the multipart body: ${String(err)}`);
  }
}

/** `get_dir_by_type`: None means input; an unknown type leaves `type_dir` unbound. */
function dirByType(folders: SimFolders, type: FormValue | null): [dir: string, type: string] {
  const name = type ?? 'input';
  const dir = typeof name === 'string' ? folders.byType(name) : undefined;
  if (dir === undefined || typeof name !== 'string') {
    throw new PyError(
      'UnboundLocalError',
      "cannot access local variable 'type_dir' where it is not associated with a value",
    );
  }
  return [dir, name];
}

/** aiohttp keeps a part without a file name as a plain value; `image.file` then fails. */
function fileOf(image: FormValue | null): File | undefined {
  if (image instanceof File && image.name !== '') return image;
  const size = image === null ? 0 : typeof image === 'string' ? image.length : image.size;
  if (size === 0) return undefined;
  const kind = typeof image === 'string' ? 'str' : 'bytes';
  throw new PyError('AttributeError', `'${kind}' object has no attribute 'file'`);
}

function sameContent(filepath: string, bytes: Buffer): boolean {
  return fs(() => readFileSync(filepath)).equals(bytes);
}

export async function uploadImage(
  folders: SimFolders,
  contentType: string | undefined,
  body: Buffer,
): Promise<Reply> {
  const form = await readForm(contentType, body);
  const overwrite = form.get('overwrite');
  const [uploadDir, uploadType] = dirByType(folders, form.get('type'));
  const image = fileOf(form.get('image'));
  if (!image) return { kind: 'empty', status: 400 };

  let filename = image.name;
  const subfolder = form.get('subfolder') ?? '';
  if (typeof subfolder !== 'string') {
    throw new PyError('TypeError', 'expected str, bytes or os.PathLike object, not FileField');
  }
  const fullOutputFolder = join(uploadDir, normpath(subfolder));
  let filepath = abspath(join(fullOutputFolder, filename));
  if (commonpath(uploadDir, filepath) !== uploadDir) return { kind: 'empty', status: 400 };
  if (!existsSync(fullOutputFolder)) fs(() => mkdirSync(fullOutputFolder, { recursive: true }));

  const [root, ext] = splitext(filename);
  const bytes = Buffer.from(await image.arrayBuffer());
  let duplicate = false;
  if (overwrite !== 'true' && overwrite !== '1') {
    for (let i = 1; existsSync(filepath); i++) {
      if (sameContent(filepath, bytes)) {
        duplicate = true;
        break;
      }
      filename = `${root} (${i})${ext}`;
      filepath = join(fullOutputFolder, filename);
    }
  }
  if (!duplicate) fs(() => writeFileSync(filepath, bytes));
  return { kind: 'json', status: 200, body: { name: filename, subfolder, type: uploadType } };
}
