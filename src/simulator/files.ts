/**
 * ComfyUI's folders (output, temp, input) and its path rules: `folder_paths.get_save_image_path`
 * (SaveImage numbering and the "outside the output folder" error) and `/view` resolution.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PyError, pyInt } from './py';
import { commonpath, normpath, split } from './pypath';
import { nodeTraceback } from './traceback';

export interface SimFolders {
  readonly output: string;
  readonly temp: string;
  readonly input: string;
  /** `get_directory_by_type`: undefined for an unknown type. */
  byType(type: string): string | undefined;
  /** Like `cleanup_temp()` at ComfyUI start-up. */
  resetTemp(): void;
  dispose(): void;
}

export function createFolders(outputDir?: string): SimFolders {
  const base = mkdtempSync(path.join(os.tmpdir(), 'comfyui-sim-'));
  const output = path.resolve(outputDir ?? path.join(base, 'output'));
  const temp = path.join(base, 'temp');
  const input = path.join(base, 'input');
  for (const d of [output, temp, input]) mkdirSync(d, { recursive: true });
  return {
    output,
    temp,
    input,
    byType(type) {
      const dirs: Record<string, string> = { output, temp, input };
      return Object.hasOwn(dirs, type) ? dirs[type] : undefined;
    },
    resetTemp() {
      rmSync(temp, { recursive: true, force: true });
      mkdirSync(temp, { recursive: true });
    },
    dispose: () => rmSync(base, { recursive: true, force: true }),
  };
}

const pad2 = (n: number) => String(n).padStart(2, '0');

function computeVars(prefix: string, width: number, height: number): string {
  const now = new Date();
  return prefix
    .replaceAll('%width%', String(width))
    .replaceAll('%height%', String(height))
    .replaceAll('%year%', String(now.getFullYear()))
    .replaceAll('%month%', pad2(now.getMonth() + 1))
    .replaceAll('%day%', pad2(now.getDate()))
    .replaceAll('%hour%', pad2(now.getHours()))
    .replaceAll('%minute%', pad2(now.getMinutes()))
    .replaceAll('%second%', pad2(now.getSeconds()));
}

export interface SavePath {
  folder: string;
  filename: string;
  counter: number;
  subfolder: string;
}

/** `folder_paths.get_save_image_path(filename_prefix, output_dir, width, height)`. */
export function getSaveImagePath(
  filenamePrefix: string,
  outputDir: string,
  width: number,
  height: number,
): SavePath {
  const prefix = filenamePrefix.includes('%')
    ? computeVars(filenamePrefix, width, height)
    : filenamePrefix;
  const [subfolder, filename] = split(normpath(prefix));
  const folder = subfolder.startsWith('/') ? subfolder : path.join(outputDir, subfolder);
  const absolute = path.resolve(folder);
  const common = commonpath(outputDir, absolute);
  if (common !== outputDir) {
    const msg =
      '**** ERROR: Saving image outside the output folder is not allowed.' +
      `\n full_output_folder: ${absolute}` +
      `\n         output_dir: ${outputDir}` +
      `\n         commonpath: ${common}`;
    throw new PyError(
      'Exception',
      msg,
      nodeTraceback(
        [
          'nodes.py',
          1590,
          'save_images',
          'full_output_folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])',
        ],
        ['folder_paths.py', 397, 'get_save_image_path', 'raise Exception(err)'],
      ),
    );
  }
  const prefixLen = split(prefix)[1].length;
  let counter = 1;
  try {
    let max = -1;
    for (const f of readdirSync(folder)) {
      const head = f.slice(0, prefixLen + 1);
      if (head.slice(0, -1) !== filename || !head.endsWith('_')) continue;
      let digits = 0;
      try {
        digits = Number(pyInt(f.slice(prefixLen + 1).split('_')[0]));
      } catch {
        digits = 0;
      }
      max = Math.max(max, digits);
    }
    if (max >= 0) counter = max + 1;
  } catch {
    mkdirSync(folder, { recursive: true });
  }
  return { folder, filename, counter, subfolder };
}

/** `folder_paths.annotated_filepath`: `name.png [output]` → (`name.png`, the output folder). */
export function annotatedFilepath(name: string, folders: SimFolders): [string, string | undefined] {
  for (const type of ['output', 'input', 'temp']) {
    const suffix = `[${type}]`;
    if (name.endsWith(suffix)) return [name.slice(0, -(suffix.length + 1)), folders.byType(type)];
  }
  return [name, undefined];
}

export type ViewResult =
  { status: 400 | 403 | 404 } | { status: 200; file: string; filename: string };

/** `GET /view` path resolution (server.py `view_image`), before any re-encoding. */
export function resolveView(query: URLSearchParams, folders: SimFolders): ViewResult {
  if (!query.has('filename')) return { status: 404 };
  const [filename, annotated] = annotatedFilepath(query.get('filename')!, folders);
  let dir = annotated;
  if (!filename) return { status: 400 };
  if (filename.startsWith('/') || filename.includes('..')) return { status: 400 };
  dir ??= folders.byType(query.get('type') ?? 'output');
  if (!dir) return { status: 400 };
  if (query.has('subfolder')) {
    const subfolder = query.get('subfolder')!;
    const full = subfolder.startsWith('/') ? subfolder : path.join(dir, subfolder);
    if (commonpath(path.resolve(full), dir) !== dir) return { status: 403 };
    dir = full;
  }
  const base = split(filename)[1];
  const file = path.join(dir, base);
  try {
    if (!statSync(file).isFile()) return { status: 404 };
  } catch {
    return { status: 404 };
  }
  return { status: 200, file, filename: base };
}
