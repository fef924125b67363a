import type IORedis from 'ioredis';
import { CANCEL_FIELD, jobKey, type ImageQueue } from '../queue';
import { fairKeys } from '../fair';
import { defineScripts, redisScript } from '../scripts';
import { snapshotFromHash, type BullState, type JobSnapshot } from './view';
import { QUEUE_POSITION_LIMIT } from './progress';

/** The hash fields a job's view is made of: never the workflow (DESIGN "The API boundary"). */
const SNAPSHOT_FIELDS = [
  'data',
  'progress',
  'returnvalue',
  'failedReason',
  'timestamp',
  'processedOn',
  'finishedOn',
  'ats',
  CANCEL_FIELD,
];

/**
 * A job's snapshot in one round trip (`snapshot()`): the fields of its hash that the view
 * needs, its BullMQ state and, for a waiting or prioritized job, the jobs ahead of it; a fork
 * of BullMQ's getStateV2-8.lua (its file says how it differs).
 */
const SNAPSHOT = redisScript('snapshot-10');

/** A job's snapshot reader: one script round trip per read (snapshot-10.lua). */
export function createSnapshotReader(
  redis: IORedis,
  queue: ImageQueue,
  settings: { queuePrefix: string; queueName: string },
) {
  const scripts = defineScripts(redis, { snapshot: SNAPSHOT });
  const k = queue.keys;
  const stateKeys = [
    k.completed,
    k.failed,
    k.delayed,
    k.prioritized,
    k.active,
    k.wait,
    k.paused,
    k['waiting-children'],
    fairKeys(settings).parked(''),
  ];

  /**
   * The job's hash, state, cancel mark and position in one round trip (snapshot-10.lua);
   * without the position (the list: a search of `wait` per listed job would cost a backlog).
   */
  async function snapshot(id: string, withPosition = true): Promise<JobSnapshot | null> {
    const reply = (await scripts.snapshot(
      jobKey(settings, id),
      ...stateKeys,
      id,
      // without the position, a waiting job is found in O(1) (not among the last 1: deeper)
      String(withPosition ? QUEUE_POSITION_LIMIT : 1),
      ...SNAPSHOT_FIELDS,
    )) as [string, number, string[]] | null;
    if (!reply) return null;
    const [state, ahead, flat] = reply;
    const raw: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) raw[flat[i]] = flat[i + 1];
    // parsed before the state is looked at: a corrupted hash is a 500 as with getJob
    const s = snapshotFromHash(id, state as BullState, raw, CANCEL_FIELD);
    if (state === 'unknown') return null;
    if (withPosition && s.cancelRequestedAt === undefined && ahead >= 0) {
      s.queuePosition = Math.min(ahead, QUEUE_POSITION_LIMIT);
    }
    return s;
  }
  return snapshot;
}

export type ReadSnapshot = ReturnType<typeof createSnapshotReader>;
