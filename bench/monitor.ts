/**
 * Counts the commands Redis receives, through MONITOR, split the way they are billed and
 * the way they cost round trips: "client" commands (what the processes send, one per round
 * trip or pipeline slot; an EVALSHA is one) and "Lua" commands (run inside a script, marked
 * `lua` by MONITOR). EVALSHA/EVAL are named after the BullMQ script they run.
 *
 * INFO commandstats counts both kinds together (an EVALSHA plus each call inside it); the
 * counter also reads it so results.json can show the two agree.
 */
import { createHash } from 'node:crypto';
import IORedis from 'ioredis';
import type { BenchRedis, Scope } from './lib';

export interface CommandCounts {
  client: number;
  lua: number;
  /** client commands by name; an EVAL/EVALSHA of a BullMQ script by the script's name */
  byName: Record<string, number>;
}

interface Seen {
  at: number;
  name: string;
  lua: boolean;
}

let scriptNames: Map<string, string> | undefined;

/** sha1 → BullMQ script name, computed from the installed bullmq's own script sources. */
function scripts(): Map<string, string> {
  if (scriptNames) return scriptNames;
  scriptNames = new Map();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const all = require('bullmq/dist/cjs/scripts') as Record<
    string,
    { name?: string; content?: string }
  >;
  for (const s of Object.values(all)) {
    if (s?.name && s.content)
      scriptNames.set(createHash('sha1').update(s.content).digest('hex'), s.name);
  }
  return scriptNames;
}

function commandName(args: string[]): string {
  const cmd = (args[0] ?? '').toLowerCase();
  if (cmd === 'evalsha') return scripts().get(args[1]) ?? 'evalsha';
  if (cmd === 'eval') {
    const body = unescapeMonitor(args[1] ?? '');
    const sha = createHash('sha1').update(body).digest('hex');
    const known = scripts().get(sha);
    if (known) return known;
    // a script of this project (or an inline EVAL): name it after its first line, and
    // remember the name for its later EVALSHAs
    const first = body
      .toString('utf8')
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0 && !l.startsWith('--'));
    const name = `lua(${(first ?? '').slice(0, 32)}…)`;
    scripts().set(sha, name);
    return name;
  }
  if (cmd === 'client' || cmd === 'info' || cmd === 'memory') return `${cmd} ${args[1] ?? ''}`;
  return cmd;
}

/** MONITOR prints arguments escaped (Redis' sdscatrepr): back to the original bytes. */
function unescapeMonitor(text: string): Buffer {
  const out: number[] = [];
  const simple: Record<string, number> = { n: 10, r: 13, t: 9, a: 7, b: 8, '"': 34, '\\': 92 };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== '\\' || i + 1 >= text.length) {
      out.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const e = text[i + 1];
    if (e === 'x' && /^[0-9a-f]{2}$/i.test(text.slice(i + 2, i + 4))) {
      out.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (simple[e] !== undefined) {
      out.push(simple[e]);
      i += 1;
    } else {
      out.push(92);
    }
  }
  return Buffer.from(out);
}

export class CommandCounter {
  private readonly seen: Seen[] = [];
  private constructor(
    private readonly excluded: Set<string>,
    private readonly ignore: (args: string[]) => boolean,
  ) {}

  /**
   * MONITORs `redis`, ignoring the benchmark's own connection (and the monitor itself) and
   * the commands `ignore` picks (e.g. those on another queue).
   */
  static async start(
    redis: BenchRedis,
    scope: Scope,
    ignore: (args: string[]) => boolean = () => false,
  ): Promise<CommandCounter> {
    const conn = new IORedis(redis.url, { maxRetriesPerRequest: 1, connectionName: 'monitor' });
    conn.on('error', () => undefined);
    const counter = new CommandCounter(new Set([redis.clientAddr]), ignore);
    const monitor = await conn.monitor();
    monitor.on('error', () => undefined);
    monitor.on('monitor', (time: string, args: string[], source: string) => {
      if (counter.excluded.has(source) || counter.ignore(args)) return;
      // the server's clock (seconds.microseconds), the same clock as Date.now() here
      const at = Number(time) * 1000 || Date.now();
      counter.seen.push({ at, name: commandName(args), lua: source === 'lua' });
    });
    scope.defer('monitor', () => {
      monitor.disconnect();
      conn.disconnect();
    });
    return counter;
  }

  /** Counts between two instants (epoch ms; `to` defaults to now). */
  count(from: number, to = Date.now()): CommandCounts {
    const out: CommandCounts = { client: 0, lua: 0, byName: {} };
    for (const s of this.seen) {
      if (s.at < from || s.at > to) continue;
      if (s.lua) {
        out.lua++;
        continue;
      }
      out.client++;
      out.byName[s.name] = (out.byName[s.name] ?? 0) + 1;
    }
    return out;
  }
}

/** Total calls in INFO commandstats (client and Lua-internal together). */
export async function commandstatsTotal(redis: BenchRedis): Promise<number> {
  const stats = await redis.info('commandstats');
  let total = 0;
  for (const v of Object.values(stats)) total += Number(/calls=(\d+)/.exec(v)?.[1] ?? 0);
  return total;
}

/** Divides every count by `n` (per-job figures). */
export function perUnit(c: CommandCounts, n: number): CommandCounts {
  const byName: Record<string, number> = {};
  for (const [k, v] of Object.entries(c.byName)) byName[k] = v / n;
  return { client: c.client / n, lua: c.lua / n, byName };
}

/** `name ×n` pairs, most frequent first, for notes. */
export function describeCounts(byName: Record<string, number>, digits = 1): string {
  return Object.entries(byName)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${Number(v.toFixed(digits))}`)
    .join(', ');
}
