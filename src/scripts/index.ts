import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster, default as IORedis } from 'ioredis';

/**
 * The Redis scripts, one per `.lua` file in this folder, kept as BullMQ keeps its own
 * (`commands/updateProgress-3.lua`): `<name>-<number of KEYS>.lua`. A script whose key count
 * varies has no count in its name: its caller passes the count first.
 * A line `--- @include "includes/<file>"` stands for that file (functions several scripts
 * share; each included once per script), as in BullMQ's scripts. A script forked from one
 * of BullMQ's names it and its sha256 in a `-- forked from BullMQ …` line, which
 * test/unit/bullmq-pins.test.ts checks against the installed BullMQ.
 *
 * Read once, when this module is loaded. `npm run build` copies the files beside the
 * compiled module (bin/copy-assets.js).
 */

export interface RedisScript {
  /** the file's name without the key count: `persist` for `persist-5.lua` */
  name: string;
  /** how many KEYS it takes; undefined: the caller passes the count first */
  numberOfKeys?: number;
  /** the source, includes expanded */
  lua: string;
}

const INCLUDE = /^--- @include "([\w/-]+)"$/gm;

function read(file: string): string {
  try {
    return readFileSync(join(__dirname, file), 'utf8');
  } catch (err) {
    throw new Error(
      `Redis script ${file} not found in ${__dirname} (a build copies them: npm run build)`,
      { cause: err },
    );
  }
}

/** The source with its includes expanded, each once (so a repeat or a cycle adds nothing). */
function expand(text: string, seen: Set<string>): string {
  return text.replace(INCLUDE, (_line, name: string) => {
    if (seen.has(name)) return '';
    seen.add(name);
    return expand(read(`${name}.lua`), seen);
  });
}

function load(file: string): RedisScript {
  const m = /^([a-zA-Z]+)(?:-(\d+))?\.lua$/.exec(file);
  if (!m) throw new Error(`Redis script ${file}: expected <name>-<keys>.lua or <name>.lua`);
  const lua = expand(read(file), new Set());
  return { name: m[1], numberOfKeys: m[2] === undefined ? undefined : Number(m[2]), lua };
}

const SCRIPTS = new Map(
  readdirSync(__dirname)
    .filter((f) => f.endsWith('.lua'))
    .map((f) => [f.slice(0, -'.lua'.length), load(f)] as const),
);

/** The script of `<file>.lua` in this folder, e.g. `redisScript('persist-5')`. */
export function redisScript(file: string): RedisScript {
  const script = SCRIPTS.get(file);
  if (!script) {
    throw new Error(
      `no Redis script ${file}.lua in ${__dirname} (there are: ${[...SCRIPTS.keys()].join(', ')})`,
    );
  }
  return script;
}

/** Every script of this folder by file name (without `.lua`), for tests. */
export function allRedisScripts(): ReadonlyMap<string, RedisScript> {
  return SCRIPTS;
}

export type ScriptCall = (...keysAndArgs: (string | number)[]) => Promise<unknown>;

/**
 * Defines the scripts on a connection as commands `comfyq<Name>` (ioredis sends EVALSHA, and
 * the source once after a NOSCRIPT) and returns a function per script, by the keys given.
 */
export function defineScripts<K extends string>(
  client: IORedis | Cluster,
  scripts: Record<K, RedisScript>,
): Record<K, ScriptCall> {
  const calls = {} as Record<K, ScriptCall>;
  const commands = client as unknown as Record<string, ScriptCall>;
  for (const [key, s] of Object.entries(scripts) as [K, RedisScript][]) {
    const command = `comfyq${s.name[0].toUpperCase()}${s.name.slice(1)}`;
    client.defineCommand(command, { numberOfKeys: s.numberOfKeys, lua: s.lua });
    calls[key] = (...keysAndArgs) => commands[command](...keysAndArgs);
  }
  return calls;
}
