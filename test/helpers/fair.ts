import type IORedis from 'ioredis';
import request from 'supertest';
import type { ApiHarness } from './api-harness';
import { tinyWorkflow } from './workflows';

/** Helpers of the fair-sharing tests: submit as a user, read BullMQ's own records. */

interface QueueNames {
  queuePrefix: string;
  queueName: string;
}

/** POST /v1/jobs as `userId` (a workflow that finishes at once); the job id. */
export async function post(h: ApiHarness, userId: string | undefined, workflow = tinyWorkflow()) {
  const res = await request(h.app).post('/v1/jobs').send({ workflow, userId });
  if (res.status !== 202)
    throw new Error(`POST /v1/jobs: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}

/** A numeric field of every job's hash, grouped as `ids` is. */
export async function jobsByUser(
  client: IORedis,
  q: QueueNames,
  ids: Record<string, string[]>,
  field: string,
): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [u, list] of Object.entries(ids)) {
    const pipe = client.pipeline();
    for (const id of list) pipe.hget(`${q.queuePrefix}:${q.queueName}:${id}`, field);
    out[u] = ((await pipe.exec()) ?? []).map(([, v]) => Number(v));
  }
  return out;
}

/**
 * Job ids in the order BullMQ first started them: its `active` events, in stream order
 * (a job started again after a crash counts at its first start).
 */
export async function startOrder(client: IORedis, q: QueueNames): Promise<string[]> {
  const entries = await client.xrange(`${q.queuePrefix}:${q.queueName}:events`, '-', '+');
  const out: string[] = [];
  for (const [, fields] of entries) {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
    if (f.event === 'active') out.push(f.jobId);
  }
  return [...new Set(out)];
}

/** The start order as one letter per start: the user (key of `ids`) of each job. */
export function usersOf(order: string[], ids: Record<string, string[]>): string {
  const userOf = new Map<string, string>();
  for (const [u, list] of Object.entries(ids)) for (const id of list) userOf.set(id, u);
  return order.map((id) => userOf.get(id) ?? '?').join('');
}
