import { createHash } from 'node:crypto';
import stableStringify from 'safe-stable-stringify';
import type { FieldIssue } from './errors';
import { inputNameIssues } from './input-schema';
import {
  CreateJobSchema,
  LIMITS,
  jsonDepthExceeds,
  toFieldIssues,
  type CreateJobBody,
} from './schemas';
import type { Workflow } from '../job/data';

/**
 * The whole CPU cost of a `POST /v1/jobs` body, as one pure function of its bytes:
 * JSON.parse, the depth check, the workflow caps (one cheap pass before zod), zod, the
 * issue list (capped), the idempotency fingerprint and the workflow's JSON text. Large
 * bodies run it in a worker thread (parse-pool.ts), so no body holds the event loop; the
 * answer is small except the workflow text, which goes to Redis as it is.
 */

export type JobFields = Omit<CreateJobBody, 'workflow'>;

export type ParsedJob =
  | {
      ok: true;
      fields: JobFields;
      /** the workflow as JSON text, stored apart from the job's data */
      workflowJson: string;
      /** sha256 of the body without `idempotencyKey`, as canonical JSON (sorted keys) */
      fingerprint: string;
      nodes: number;
    }
  | {
      ok: false;
      code: 'invalid_json' | 'invalid_request';
      message: string;
      details?: FieldIssue[];
    };

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** `[nodeId, outputIndex]`-shaped: how ComfyUI writes a link. */
const linkLike = (v: unknown) => Array.isArray(v) && v.length === 2 && typeof v[0] === 'string';

/**
 * The caps of LIMITS (nodes, inputs per node, links), counted in one pass that stops at the
 * first cap exceeded; null when the workflow is within them (or not an object: zod says why).
 */
export function workflowCapIssue(workflow: unknown): FieldIssue | null {
  if (!isObject(workflow)) return null;
  let nodes = 0;
  let links = 0;
  for (const id in workflow) {
    if (++nodes > LIMITS.nodes) {
      return { path: 'workflow', message: `the workflow has more than ${LIMITS.nodes} nodes` };
    }
    const inputs = (workflow[id] as { inputs?: unknown } | null)?.inputs;
    if (!isObject(inputs)) continue;
    let count = 0;
    for (const name in inputs) {
      if (++count > LIMITS.inputsPerNode) {
        return {
          path: `workflow.${id.slice(0, 64)}.inputs`,
          message: `a node has more than ${LIMITS.inputsPerNode} inputs`,
        };
      }
      if (linkLike(inputs[name]) && ++links > LIMITS.links) {
        return { path: 'workflow', message: `the workflow has more than ${LIMITS.links} links` };
      }
    }
  }
  return null;
}

/** At most LIMITS.details entries; the message says how many problems there were. */
export function cappedIssues(details: FieldIssue[]): { message: string; details: FieldIssue[] } {
  const n = details.length;
  if (n <= LIMITS.details) {
    return { message: n === 1 ? 'the request is invalid' : `${n} problems`, details };
  }
  return {
    message: `${n} problems; the first ${LIMITS.details} are listed`,
    details: details.slice(0, LIMITS.details),
  };
}

const invalid = (details: FieldIssue[]): ParsedJob => ({
  ok: false,
  code: 'invalid_request',
  ...cappedIssues(details),
});

export function parseJobBody(bytes: Uint8Array): ParsedJob {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString());
  } catch {
    return { ok: false, code: 'invalid_json', message: 'the request body is not valid JSON' };
  }
  if (!isObject(body)) return invalid([{ path: '', message: 'the body must be a JSON object' }]);
  if (jsonDepthExceeds(body, LIMITS.jsonDepth)) {
    return invalid([
      { path: '', message: `the body is nested deeper than ${LIMITS.jsonDepth} levels` },
    ]);
  }
  const cap = workflowCapIssue(body.workflow);
  if (cap) return invalid([cap]);
  const parsed = CreateJobSchema.safeParse(body);
  if (!parsed.success) return invalid(toFieldIssues(parsed.error.issues));
  const { workflow, ...fields } = parsed.data;
  const names = fields.inputs ? inputNameIssues(fields.inputs, workflow as Workflow) : [];
  if (names.length > 0) return invalid(names);
  const { idempotencyKey: _key, ...rest } = body;
  return {
    ok: true,
    fields,
    workflowJson: JSON.stringify(workflow),
    fingerprint: createHash('sha256')
      .update(stableStringify(rest) ?? '')
      .digest('base64url'),
    nodes: Object.keys(workflow).length,
  };
}
