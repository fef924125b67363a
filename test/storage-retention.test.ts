import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createFileStorage } from '../src/storage/file';
import { keys } from '../src/storage/media';
import { sweepStorage } from '../src/storage/retention';
import type { Storage } from '../src/storage/types';

/**
 * The retention sweep of stored files (DESIGN "Media in"), on a real folder: which files it
 * removes is decided by the job's existence (the API asks its Redis; here a set of ids) and
 * by the age of the job's newest file.
 */

const RETENTION_MS = 7_200_000;
let dir: string;
let storage: Storage;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cq-sweep-'));
  storage = createFileStorage(dir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const put = (key: string) => storage.put(key, Readable.from([Buffer.from(key)]));
/** Sets a stored file's modification time `ageMs` before now. */
const age = (key: string, ageMs: number) => {
  const t = new Date(Date.now() - ageMs);
  utimesSync(join(dir, key), t, t);
};
const stored = async () => (await storage.list('')).map((o) => o.key).sort();
const sweep = (live: string[]) =>
  sweepStorage({
    storage,
    retentionMs: RETENTION_MS,
    jobsExist: async (ids) => ids.map((id) => live.includes(id)),
  });

test("a gone job's files go once its newest file is older than RETENTION_MS", async () => {
  for (const key of [keys.output('gone', 0), keys.output('gone', 1), keys.input('gone', 0)]) {
    await put(key);
    age(key, RETENTION_MS + 60_000);
  }
  await put(keys.output('live', 0));
  age(keys.output('live', 0), RETENTION_MS + 60_000);

  expect(await sweep(['live'])).toBe(3);
  expect(await stored()).toEqual([keys.output('live', 0)]);
});

test("files newer than RETENTION_MS of a job this Redis does not know stay (another system's)", async () => {
  // another system sharing the folder: its job is unknown here, its files are fresh
  await put(keys.output('foreign', 0));
  // one old file is not enough: the job's newest file counts
  await put(keys.output('mixed', 0));
  await put(keys.output('mixed', 1));
  age(keys.output('mixed', 0), RETENTION_MS + 60_000);

  expect(await sweep([])).toBe(0);
  expect(await stored()).toEqual([
    keys.output('foreign', 0),
    keys.output('mixed', 0),
    keys.output('mixed', 1),
  ]);
});

test('an old upload goes unless a live job refers to it', async () => {
  for (const id of ['u-used', 'u-unused']) {
    await put(keys.uploadData(id));
    age(keys.uploadData(id), RETENTION_MS + 60_000);
  }
  await put(keys.uploadRef('u-used', 'live'));
  await put(keys.uploadRef('u-unused', 'gone'));

  expect(await sweep(['live'])).toBe(2);
  expect(await stored()).toEqual([keys.uploadData('u-used'), keys.uploadRef('u-used', 'live')]);
});
