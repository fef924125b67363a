import type { Logger } from '../logger';
import { every } from '../lifecycle';
import { keys } from './media';
import type { Storage } from './types';

/**
 * Retention of stored files (DESIGN "Media in", "Media out"): a job's objects
 * (`jobs/<id>/…`) go once the job is gone from Redis (removed by retention, by the periodic
 * clean or by BullMQ's own age removal, which reports no ids: hence a sweep, not a hook)
 * and its newest object is older than RETENTION_MS;
 * an upload goes once it is older than RETENTION_MS and no existing job refers to it (a
 * `pending.*` mark, written while a job is being created, counts for PENDING_REF_MS).
 */

export const PENDING_REF_MS = 10 * 60_000;

export interface SweepDeps {
  storage: Storage;
  /** whether each job id still exists, in order */
  jobsExist(ids: string[]): Promise<boolean[]>;
  retentionMs: number;
  now?: () => number;
}

/** One sweep; resolves to how many objects were removed. */
export async function sweepStorage(deps: SweepDeps): Promise<number> {
  const now = (deps.now ?? Date.now)();
  const { storage } = deps;
  let removed = 0;

  // a job's files are written while it exists, and it exists until RETENTION_MS after it
  // finished: files newer than that whose job is unknown are another system's (a folder or
  // bucket shared by mistake), never ours to remove
  const newest = new Map<string, number>();
  for (const o of await storage.list('jobs/')) {
    const id = o.key.split('/')[1];
    newest.set(id, Math.max(newest.get(id) ?? 0, o.lastModified.getTime()));
  }
  const old = [...newest].filter(([, ms]) => ms <= now - deps.retentionMs).map(([id]) => id);
  const jobLive = old.length > 0 ? await deps.jobsExist(old) : [];
  for (const [i, id] of old.entries()) {
    if (!jobLive[i]) removed += await storage.deletePrefix(keys.job(id));
  }

  const uploads = new Map<string, { createdMs?: number; refs: string[]; pending: boolean }>();
  for (const o of await storage.list('uploads/')) {
    const [, id, kind, ref] = o.key.split('/');
    const u = uploads.get(id) ?? { refs: [], pending: false };
    uploads.set(id, u);
    if (kind === 'meta.json' || kind === 'data') {
      u.createdMs = Math.min(u.createdMs ?? Infinity, o.lastModified.getTime());
    } else if (kind === 'refs' && ref?.startsWith('pending.')) {
      if (now - o.lastModified.getTime() < PENDING_REF_MS) u.pending = true;
    } else if (kind === 'refs' && ref) u.refs.push(ref);
  }
  for (const [id, u] of uploads) {
    if (u.pending || (u.createdMs ?? now) > now - deps.retentionMs) continue;
    const live = u.refs.length > 0 ? await deps.jobsExist(u.refs) : [];
    if (live.some(Boolean)) continue;
    removed += await storage.deletePrefix(`uploads/${id}/`);
  }
  return removed;
}

/** Runs the sweep every `intervalMs` (errors logged, retried next time); returns a stop function. */
export function startStorageSweeper(
  deps: SweepDeps & { intervalMs: number; log: Pick<Logger, 'warn' | 'info'> },
): () => void {
  return every(
    deps.intervalMs,
    'retention sweep of stored files',
    async () => {
      const removed = await sweepStorage(deps);
      if (removed > 0) deps.log.info({ removed }, 'retention: stored files removed');
    },
    deps.log,
  );
}
