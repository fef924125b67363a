import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { contentTypeOf } from './content-type';
import { checkKey, type ByteRange, type ListEntry, type Storage, type StoredObject } from './types';

/**
 * `file://<dir>`: objects are files under `dir` (API and workers must share the disk).
 * A put writes a temporary file beside the target and renames it, so a reader never sees
 * half a file and a crash leaves at most a `.tmp` file, which deletePrefix removes too.
 * The media type is the key's extension's (this driver keeps no metadata).
 */

const TMP = /\.[0-9a-f-]{36}\.tmp$/;

const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** Objects under `prefix`: only the folders that can hold such keys are read. */
async function listFiles(dir: string, prefix: string): Promise<ListEntry[]> {
  const out: ListEntry[] = [];
  const walk = async (base: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(path.join(dir, ...base.split('/').filter(Boolean)), {
        withFileTypes: true,
      });
    } catch (err) {
      if (missing(err)) return;
      throw err;
    }
    for (const e of entries) {
      const key = `${base}${e.name}`;
      if (e.isDirectory()) {
        if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) await walk(`${key}/`);
      } else if (e.isFile() && key.startsWith(prefix) && !TMP.test(e.name)) {
        const s = await fs.stat(path.join(dir, ...key.split('/'))).catch(() => null);
        if (s) out.push({ key, size: s.size, lastModified: s.mtime });
      }
    }
  };
  await walk(prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/') + 1) : '');
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}

export function createFileStorage(root: string): Storage {
  const dir = path.resolve(root);
  const pathOf = (key: string) => path.join(dir, ...checkKey(key).split('/'));

  async function stat(key: string) {
    try {
      const s = await fs.stat(pathOf(key));
      return s.isFile() ? s : null;
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  const list = (prefix: string) => listFiles(dir, prefix);

  return {
    kind: 'file',

    async put(key, body: Readable, opts = {}) {
      body.on('error', () => {}); // reported by the pipeline below, never as an unhandled event
      const target = pathOf(key);
      const tmp = `${target}.${randomUUID()}.tmp`;
      try {
        await fs.mkdir(path.dirname(target), { recursive: true });
        const out = createWriteStream(tmp, { flush: true });
        await pipeline(body, out, { signal: opts.signal });
        await fs.rename(tmp, target);
        return { size: out.bytesWritten };
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw err;
      }
    },

    async get(key, opts: { range?: ByteRange } = {}): Promise<StoredObject | null> {
      const s = await stat(key);
      if (!s) return null;
      const { range } = opts;
      const body = createReadStream(
        pathOf(key),
        range ? { start: range.start, end: range.end } : {},
      );
      // the file may go between stat and open: report that as "no object", not as an error
      const opened = await new Promise<boolean>((resolve) => {
        body.once('open', () => resolve(true));
        body.once('error', () => resolve(false));
      });
      if (!opened) return null;
      return { body, size: s.size, contentType: contentTypeOf(key), lastModified: s.mtime, range };
    },

    async head(key) {
      const s = await stat(key);
      return s ? { size: s.size, contentType: contentTypeOf(key), lastModified: s.mtime } : null;
    },

    async delete(key) {
      await fs.rm(pathOf(key), { force: true });
    },

    async deletePrefix(prefix) {
      const objects = await list(prefix);
      await Promise.all(objects.map((o) => fs.rm(pathOf(o.key), { force: true })));
      // a folder prefix goes whole, with temporary files of interrupted puts
      if (prefix.endsWith('/') && prefix.length > 1) {
        await fs.rm(pathOf(prefix.slice(0, -1)), { recursive: true, force: true });
      }
      return objects.length;
    },

    list,

    async close() {},
  };
}
