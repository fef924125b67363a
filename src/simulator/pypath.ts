/**
 * Python's `posixpath` functions that ComfyUI's file handling relies on, with their quirks
 * (`normpath('')` is `'.'`, `join` restarts at an absolute part, `splitext('.png')` has no
 * extension), so paths resolve, collide and escape exactly as on the real server.
 */
import path from 'node:path';

/** posixpath.normpath (minus the `//` special case). */
export function normpath(p: string): string {
  if (p === '') return '.';
  const n = path.posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.replace(/\/+$/, '') : n;
}

/** posixpath.join: an absolute part discards everything before it. */
export function join(first: string, ...rest: string[]): string {
  let out = first;
  for (const part of rest) {
    if (part.startsWith('/')) out = part;
    else if (out === '' || out.endsWith('/')) out += part;
    else out += `/${part}`;
  }
  return out;
}

/** posixpath.split: (dirname, basename) with Python's rules (`dirname('a')` is `''`). */
export function split(p: string): [string, string] {
  const i = p.lastIndexOf('/') + 1;
  let head = p.slice(0, i);
  if (head && head !== '/'.repeat(head.length)) head = head.replace(/\/+$/, '');
  return [head, p.slice(i)];
}

/** posixpath.splitext: the extension starts at the last dot of the last component, unless
 *  that component is all leading dots before it (`.png`, `..x`). */
export function splitext(p: string): [string, string] {
  const sep = p.lastIndexOf('/');
  const dot = p.lastIndexOf('.');
  if (dot > sep) {
    for (let i = sep + 1; i < dot; i++) {
      if (p[i] !== '.') return [p.slice(0, dot), p.slice(dot)];
    }
  }
  return [p, ''];
}

/** os.path.commonpath for two absolute paths. */
export function commonpath(a: string, b: string): string {
  const parts = (p: string) => p.split('/').filter((c) => c !== '' && c !== '.');
  const pa = parts(a);
  const pb = parts(b);
  let i = 0;
  while (i < pa.length && i < pb.length && pa[i] === pb[i]) i++;
  return `/${pa.slice(0, i).join('/')}`;
}

/** os.path.abspath for a path that is already absolute. */
export const abspath = (p: string): string => normpath(p);
