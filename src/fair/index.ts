import { PRIORITY_LIMIT } from 'bullmq';
import type IORedis from 'ioredis';
import type { Cluster } from 'ioredis';
import { defineScripts, redisScript, type ScriptCall } from '../scripts';

/**
 * Fair sharing between users (DESIGN "Fair sharing between users"): round-robin order
 * through the tag of each job's score in BullMQ's `prioritized` zset, per-user limits on
 * queued jobs (at enqueue) and on active ones (at a worker's pickup, parking the job in its
 * user's own zset until a slot frees). Every set here is either healed from BullMQ's own
 * state where it is read (`processedOn`, `finishedOn`, a job hash that is gone) or swept.
 */

export interface FairSettings {
  queuePrefix: string;
  queueName: string;
  /** USER_FAIRNESS: round-robin order between users (default on) */
  userFairness: boolean;
  /** USER_MAX_ACTIVE: jobs submitted or running per user; 0 = no limit */
  userMaxActive: number;
  /** USER_MAX_QUEUED: waiting jobs per user; 0 = no limit */
  userMaxQueued: number;
}

/** Jobs without a userId share this user (the empty string; shown as `(anonymous)`). */
export const ANONYMOUS = '';
export const userOf = (userId: string | undefined): string => userId ?? ANONYMOUS;
export const userLabel = (user: string): string => (user === ANONYMOUS ? '(anonymous)' : user);

export function fairKeys(s: Pick<FairSettings, 'queuePrefix' | 'queueName'>) {
  const P = `${s.queuePrefix}:${s.queueName}:`;
  const F = `${P}fair:`;
  return {
    /** prefix of job hashes */
    P,
    /** prefix of every fair key */
    F,
    waiting: (u: string) => `${F}w:${u}`,
    active: (u: string) => `${F}a:${u}`,
    parked: (u: string) => `${F}p:${u}`,
    reserved: (u: string) => `${F}r:${u}`,
    users: `${F}users`,
    vt: `${F}vt`,
    maxActive: `${F}max-active`,
    maxQueued: `${F}max-queued`,
    sweep: `${F}sweep`,
    prioritized: `${P}prioritized`,
    wait: `${P}wait`,
    active_: `${P}active`,
    stalled: `${P}stalled`,
    marker: `${P}marker`,
  };
}

/** Whether the enqueue keeps the users' waiting zsets: fairness or a queued limit. */
export const tracksUsers = (s: Pick<FairSettings, 'userFairness' | 'userMaxQueued'>): boolean =>
  s.userFairness || s.userMaxQueued > 0;

/**
 * The BullMQ priority of a request's priority: with fairness (or a queued limit, which
 * counts jobs by their place in `prioritized`) every job is prioritized (1 + the
 * request's, so `wait` holds only jobs BullMQ puts back: stalled, handed off, cancelled
 * ones, which run first; the two lowest priorities, 2,097,150 and 2,097,151, share BullMQ's
 * last one); without, BullMQ's own (0: plain FIFO).
 */
export function bullPriority(
  s: Pick<FairSettings, 'userFairness' | 'userMaxQueued'>,
  requested = 0,
): number {
  return tracksUsers(s) ? Math.min(requested + 1, PRIORITY_LIMIT) : requested;
}

type Client = IORedis | Cluster;

/** The fair scripts, in src/scripts/: fairReserve-6.lua, fairAdmit-8.lua, … (their files say what they do). */
const SCRIPTS = {
  reserve: redisScript('fairReserve-6'),
  admit: redisScript('fairAdmit-8'),
  release: redisScript('fairRelease-8'),
  usage: redisScript('fairUsage-0'),
  unparkCancelled: redisScript('fairUnparkCancelled-3'),
};
const defined = new WeakMap<Client, Record<keyof typeof SCRIPTS, ScriptCall>>();

/** The fair scripts on a connection, defined once (EVALSHA, the source sent on first use). */
function fairScripts(client: Client): Record<keyof typeof SCRIPTS, ScriptCall> {
  let scripts = defined.get(client);
  if (!scripts) defined.set(client, (scripts = defineScripts(client, SCRIPTS)));
  return scripts;
}

/**
 * The keys and arguments of the enqueue's fair part (src/scripts/includes/enqueueFair.lua): prioritized,
 * vt, the user's waiting zset, users, the user's reservations; band, user.
 */
export function enqueueFairArgs(
  s: Pick<FairSettings, 'queuePrefix' | 'queueName'>,
  userId: string | undefined,
  priority: number,
): { keys: string[]; args: string[] } {
  const k = fairKeys(s);
  const u = userOf(userId);
  return {
    keys: [k.prioritized, k.vt, k.waiting(u), k.users, k.reserved(u)],
    args: [String(priority), u],
  };
}

/**
 * Reserves a place among the user's queued jobs when a queued limit may apply (the
 * default or an override); false: the user is at the limit. Nothing is written then.
 */
export async function reserveQueued(
  client: Client,
  s: FairSettings,
  userId: string | undefined,
  id: string,
  now: number,
): Promise<boolean> {
  const k = fairKeys(s);
  const u = userOf(userId);
  const r = await fairScripts(client).reserve(
    k.waiting(u),
    k.parked(u),
    k.maxQueued,
    k.users,
    k.reserved(u),
    k.prioritized,
    u,
    s.userMaxQueued,
    id,
    now,
  );
  return r === 1;
}

/** Gives a reservation back (the add was refused before it was sent). */
export async function unreserveQueued(
  client: Client,
  s: FairSettings,
  userId: string | undefined,
  id: string,
): Promise<void> {
  await client.zrem(fairKeys(s).reserved(userOf(userId)), id);
}

/** A cancelled job that is parked goes to the front of the queue (fairUnparkCancelled-3.lua). */
export async function unparkCancelled(
  client: Client,
  s: Pick<FairSettings, 'queuePrefix' | 'queueName'>,
  id: string,
): Promise<boolean> {
  const k = fairKeys(s);
  const r = await fairScripts(client).unparkCancelled(`${k.P}${id}`, k.wait, k.marker, k.F, id);
  return r === 1;
}

export type Admission = 'run' | 'parked' | 'lost';

/** A worker's side: admission at pickup, release at the end, the periodic sweep. */
export function createFairWorker(client: Client, s: FairSettings) {
  const k = fairKeys(s);
  const c = fairScripts(client);
  const release = async (user: string): Promise<number> =>
    Number(
      await c.release(
        k.active(user),
        k.parked(user),
        k.waiting(user),
        k.maxActive,
        k.users,
        k.prioritized,
        k.wait,
        k.marker,
        user,
        s.userMaxActive,
        k.P,
      ),
    );
  return {
    /** Whether a job just taken may run now, was parked, or is not this worker's. */
    async admit(id: string, userId: string | undefined, token: string): Promise<Admission> {
      const u = userOf(userId);
      const r = await c.admit(
        `${k.P}${id}`,
        k.active_,
        k.stalled,
        `${k.P}${id}:lock`,
        k.active(u),
        k.parked(u),
        k.maxActive,
        k.users,
        id,
        u,
        s.userMaxActive,
        token,
        k.P,
      );
      return r === 1 ? 'run' : r === 0 ? 'parked' : 'lost';
    },
    /** After a job of the user ended: free its slot, unpark the next. */
    release: (userId: string | undefined) => release(userOf(userId)),
    /**
     * Heals every user's sets and unparks what free slots allow (a missed release, a
     * raised limit, a job BullMQ failed by itself). At most one sweep per interval runs
     * across all processes (a Redis key, like BullMQ's stalled check).
     */
    async sweep(intervalMs: number): Promise<number> {
      if ((await client.set(k.sweep, '1', 'PX', intervalMs, 'NX')) !== 'OK') return 0;
      let moved = 0;
      let cursor = '0';
      do {
        const [next, users] = await client.sscan(k.users, cursor, 'COUNT', 200);
        cursor = next;
        for (const u of users) moved += await release(u);
      } while (cursor !== '0');
      return moved;
    },
  };
}

export type FairWorker = ReturnType<typeof createFairWorker>;

export interface UserUsage {
  user: string;
  /** in BullMQ's queue, never started */
  waiting: number;
  /** held by a worker (BullMQ's active list) */
  active: number;
  /** taken while the user was at USER_MAX_ACTIVE, waiting for a slot */
  parked: number;
}

/**
 * The `top` users with the most jobs (waiting + parked + active; ties in user id order),
 * healed as they are read.
 * Reads at most `scan` users.
 */
export async function topUsers(
  client: Client,
  s: Pick<FairSettings, 'queuePrefix' | 'queueName'>,
  top = 10,
  scan = 5000,
): Promise<UserUsage[]> {
  const k = fairKeys(s);
  const users: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.sscan(k.users, cursor, 'COUNT', 500);
    cursor = next;
    users.push(...batch);
  } while (cursor !== '0' && users.length < scan);
  const by = new Map<string, UserUsage>();
  const of = (user: string) => {
    let x = by.get(user);
    if (!x) by.set(user, (x = { user, waiting: 0, active: 0, parked: 0 }));
    return x;
  };
  const c = fairScripts(client);
  for (let i = 0; i === 0 || i < users.length; i += 200) {
    const [running, queued] = (await c.usage(k.F, k.P, ...users.slice(i, i + 200))) as [
      (string | number)[],
      (string | number)[],
    ];
    if (i === 0)
      for (let j = 0; j + 1 < running.length; j += 2)
        of(String(running[j])).active = Number(running[j + 1]);
    for (let j = 0; j + 2 < queued.length; j += 3) {
      const x = of(String(queued[j]));
      x.waiting = Number(queued[j + 1]);
      x.parked = Number(queued[j + 2]);
    }
  }
  const size = (x: UserUsage) => x.waiting + x.active + x.parked;
  return (
    [...by.values()]
      .filter((x) => size(x) > 0)
      // most jobs first; ties by user id, so the list is the same on every read
      .sort((a, b) => size(b) - size(a) || (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))
      .slice(0, top)
  );
}

/**
 * A one-line summary of the top users for Bull Board's queue description, refreshed in the
 * background when read and older than `maxAgeMs` (Bull Board reads it on every poll).
 */
export function userSummary(
  client: Client,
  s: Pick<FairSettings, 'queuePrefix' | 'queueName'>,
  base: string,
  maxAgeMs = 5_000,
): () => string {
  let line = base;
  let at = 0;
  let busy = false;
  const refresh = async () => {
    busy = true;
    try {
      const users = await topUsers(client, s, 5);
      const list = users.map((u) => `${userLabel(u.user)} ${u.waiting + u.parked}/${u.active}`);
      line = list.length ? `${base} · top users (waiting/active): ${list.join(', ')}` : base;
    } catch {
      // Redis down: keep the last line
    } finally {
      at = Date.now();
      busy = false;
    }
  };
  return () => {
    if (!busy && Date.now() - at > maxAgeMs) void refresh();
    return line;
  };
}
