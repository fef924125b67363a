/**
 * ComfyUI 0.3.64's `LoadImage` (nodes.py) around the input folder: the combo list that
 * `/object_info` shows (image files at the top of the input folder, sorted), the
 * `VALIDATE_INPUTS` check (`folder_paths.exists_annotated_filepath`, so `cq/x.png` and
 * `x.png [output]` are accepted and a missing file is "Invalid image file: x.png"), the
 * `IS_CHANGED` hash of the file, and the load itself: `np.array(img.convert("RGB"))
 * .astype(np.float32) / 255.0`, with the mask `1 - alpha/255` or 64×64 zeros.
 * Only PNG files are decoded; anything else fails like a file PIL cannot identify.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { CustomValidators } from './custom-validation';
import { annotatedFilepath, type SimFolders } from './files';
import { isObject, stringify, type Json } from './json';
import { PyError, pyTypeName } from './py';
import { join } from './pypath';
import { decodePng, isPng } from './png';
import { nodeTraceback } from './traceback';
import { SimImage, SimMask } from './values';

/** Extensions Python's `mimetypes` (with Debian's /etc/mime.types) calls `image/*`. */
const IMAGE_EXTENSIONS = new Set(
  'png jpg jpeg jpe gif webp bmp tif tiff svg svgz ico avif heic heif jp2 pbm pgm ppm pnm xbm xpm'.split(
    ' ',
  ),
);

/** `folder_paths.get_annotated_filepath(name)` with the input folder as the default. */
export function imagePath(folders: SimFolders, name: string): string {
  const [file, dir] = annotatedFilepath(name, folders);
  return join(dir ?? folders.input, file);
}

/** The combo list of `LoadImage.image`: files (not folders) at the top of the input folder. */
export function inputImages(folders: SimFolders): string[] {
  return readdirSync(folders.input, { withFileTypes: true })
    .filter((e) => e.isFile() && IMAGE_EXTENSIONS.has(e.name.split('.').pop()!.toLowerCase()))
    .map((e) => e.name)
    .sort();
}

const EMPTY_COMBO = '"image": [[], {"image_upload": true}]';

/** The raw `/object_info` text (all, or one class) with LoadImage's list of input files. */
export function listInputFiles(raw: string, folders: SimFolders): string {
  if (!raw.includes(EMPTY_COMBO)) return raw;
  const files = stringify(inputImages(folders));
  return raw.replace(EMPTY_COMBO, `"image": [${files}, {"image_upload": true}]`);
}

/** The `VALIDATE_INPUTS` of the catalogue's nodes. */
export function customValidators(folders: SimFolders): CustomValidators {
  return {
    LoadImage: { inputs: ['image'], validate: ({ image }) => validateImage(folders, image) },
  };
}

/** `IS_CHANGED` of the catalogue's nodes: part of the cache key (undefined: none). */
export function changeKey(
  folders: SimFolders,
  classType: string,
  inputs: Json,
): string | undefined {
  if (classType !== 'LoadImage' || !isObject(inputs)) return undefined;
  return imageHash(folders, inputs.image);
}

/** `LoadImage.VALIDATE_INPUTS(image)`: true, or the reason. */
export function validateImage(folders: SimFolders, image: unknown): true | string {
  if (typeof image !== 'string') {
    throw new PyError(
      'AttributeError',
      `'${pyTypeName(image)}' object has no attribute 'endswith'`,
    );
  }
  return existsSync(imagePath(folders, image)) ? true : `Invalid image file: ${image}`;
}

/** `LoadImage.IS_CHANGED(image)`: the file's sha256 (NaN, never equal, when unreadable). */
export function imageHash(folders: SimFolders, image: unknown): string {
  try {
    return createHash('sha256')
      .update(readFileSync(imagePath(folders, String(image))))
      .digest('hex');
  } catch {
    return `NaN:${Math.random()}`;
  }
}

const LOAD_FRAME: [string, number, string, string] = [
  'nodes.py',
  1666,
  'load_image',
  'img = node_helpers.pillow(Image.open, image_path)',
];

function readImageFile(file: string): Buffer {
  try {
    if (statSync(file).isDirectory()) {
      throw new PyError('IsADirectoryError', `[Errno 21] Is a directory: '${file}'`);
    }
    return readFileSync(file);
  } catch (err) {
    if (err instanceof PyError) throw err;
    throw new PyError('FileNotFoundError', `[Errno 2] No such file or directory: '${file}'`);
  }
}

/** `LoadImage.load_image(image)` → (IMAGE, MASK). */
export function loadImage(folders: SimFolders, image: unknown): [SimImage, SimMask] {
  const file = imagePath(folders, String(image));
  const bytes = readImageFile(file);
  let png;
  try {
    if (!isPng(bytes)) throw new Error('not a PNG');
    png = decodePng(bytes);
  } catch {
    throw new PyError(
      'PIL.UnidentifiedImageError',
      `cannot identify image file '${file}'`,
      nodeTraceback(LOAD_FRAME),
    );
  }
  const { width, height, rgba } = png;
  const pixels = new Float32Array(width * height * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    pixels[o] = rgba[i] / 255;
    pixels[o + 1] = rgba[i + 1] / 255;
    pixels[o + 2] = rgba[i + 2] / 255;
  }
  let mask = new SimMask(64, 64, null);
  if (png.hasAlpha) {
    const values = new Float32Array(width * height);
    for (let i = 0; i < values.length; i++) values[i] = 1 - Math.fround(rgba[i * 4 + 3] / 255);
    mask = new SimMask(width, height, values);
  }
  return [new SimImage(width, height, [pixels]), mask];
}
