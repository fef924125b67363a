import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';

/**
 * Our Redis scripts forked from BullMQ's (or written to follow one of them) name that script
 * and its sha256 in a header line, `-- forked from BullMQ <version> commands/<file>.lua sha256
 * <hex>` (src/scripts/index.ts). A BullMQ upgrade that changes one of those scripts fails
 * here, naming ours to re-check: they rely on how BullMQ keeps its jobs (states, locks,
 * events), which such a change may have moved.
 */

const SCRIPTS = join(__dirname, '..', '..', 'src', 'scripts');
// bullmq has no `exports` map: its package.json and shipped .lua files resolve as they lie
const BULLMQ = dirname(require.resolve('bullmq/package.json'));
const BULLMQ_VERSION = (
  JSON.parse(readFileSync(join(BULLMQ, 'package.json'), 'utf8')) as {
    version: string;
  }
).version;
const PIN =
  /^-- (forked from|follows) BullMQ (\S+) (commands\/[\w/-]+\.lua) sha256 ([0-9a-f]{64})$/gm;
const INCLUDE = /^--- @include "([\w/-]+)"$/gm;

const sha256 = (text: Buffer) => createHash('sha256').update(text).digest('hex');
const ours = (readdirSync(SCRIPTS, { recursive: true }) as string[])
  .map((f) => f.split('\\').join('/'))
  .filter((f) => f.endsWith('.lua'))
  .sort();
const source = (file: string) => readFileSync(join(SCRIPTS, file), 'utf8');

const pins = ours.flatMap((file) =>
  [...source(file).matchAll(PIN)].map(([, verb, version, path, sha]) => ({
    file,
    verb,
    version,
    path,
    sha,
  })),
);

/** `file`, and for an include the scripts that include it. */
function named(file: string): string {
  const name = file.replace(/\.lua$/, '');
  const users = ours.filter((f) => [...source(f).matchAll(INCLUDE)].some((m) => m[1] === name));
  return `src/scripts/${file}${users.length > 0 ? ` (included by ${users.join(', ')})` : ''}`;
}

test('the forks of BullMQ scripts are the known ones, each pinned', () => {
  expect(pins.map((p) => `${p.file} ${p.verb} ${p.path}`)).toEqual([
    'fairAdmit-8.lua follows commands/includes/prepareJobForProcessing.lua',
    'fairRelease-8.lua follows commands/includes/addBaseMarkerIfNeeded.lua',
    'includes/band.lua follows commands/includes/getPriorityScore.lua',
    'includes/writeProgress.lua forked from commands/updateProgress-3.lua',
    'includes/writeProgress.lua forked from commands/includes/getOrSetMaxEvents.lua',
    'proveLock-1.lua follows commands/extendLock-2.lua',
    'snapshot-10.lua forked from commands/getStateV2-8.lua',
  ]);
});

test.each(pins)('$file: BullMQ $path is as when it was forked', (pin) => {
  const original = join(BULLMQ, 'dist', 'cjs', pin.path);
  const recheck =
    `re-check ${named(pin.file)} against it, ` +
    `then record BullMQ ${BULLMQ_VERSION} and the new sha256 in its header`;
  if (!existsSync(original)) {
    throw new Error(`BullMQ ${BULLMQ_VERSION} has no ${pin.path} any more: ${recheck}`);
  }
  const actual = sha256(readFileSync(original));
  if (actual !== pin.sha) {
    throw new Error(
      `BullMQ ${BULLMQ_VERSION} changed ${pin.path} (sha256 ${actual}); ` +
        `src/scripts/${pin.file} ${pin.verb} it as in BullMQ ${pin.version} (sha256 ${pin.sha}): ${recheck}`,
    );
  }
});

test('what a pinned BullMQ script includes is pinned too', () => {
  const pinned = new Set(pins.map((p) => p.path));
  const included = pins.flatMap((p) =>
    [...readFileSync(join(BULLMQ, 'dist', 'cjs', p.path), 'utf8').matchAll(INCLUDE)].map(
      (m) => `${posix.join(posix.dirname(p.path), m[1])}.lua`,
    ),
  );
  expect(included.sort()).toEqual([
    'commands/includes/addBaseMarkerIfNeeded.lua',
    'commands/includes/getOrSetMaxEvents.lua',
  ]);
  for (const path of included)
    expect({ path, pinned: pinned.has(path) }).toEqual({ path, pinned: true });
});
