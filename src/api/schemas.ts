import { z } from 'zod';
import type { FieldIssue } from './errors';
import { InputsSchema } from './input-schema';

/**
 * Request schemas of the HTTP API (and the response schemas the OpenAPI document shows).
 * Limits are the contract's (DESIGN "HTTP API"); each failure names its field.
 */

export const LIMITS = {
  bodyBytes: 5 * 1024 * 1024,
  shortString: 256,
  metadataBytes: 4096,
  /** BullMQ's largest priority (2^21 - 1) */
  maxPriority: 2_097_151,
  urlLength: 2048,
  nodeIdLength: 256,
  /** nesting depth of the JSON body; deeper input could overflow JSON.stringify's stack */
  jsonDepth: 64,
  /**
   * Workflow caps, checked in one cheap pass before any other validation. The largest
   * workflows we know of have a few hundred nodes with a few dozen inputs each; these are
   * 10-100 times that, and keep the cost of one request bounded.
   */
  nodes: 5_000,
  inputsPerNode: 500,
  links: 20_000,
  /** at most this many entries in an error's `details` (its message says how many there were) */
  details: 20,
} as const;

const shortString = (what: string) =>
  z
    .string()
    .min(1, `${what} must not be empty`)
    .max(LIMITS.shortString, `${what} must be at most ${LIMITS.shortString} characters`);

const NodeSchema = z
  .object({
    class_type: z.string().min(1, 'class_type must be a non-empty string').max(LIMITS.shortString),
    inputs: z.record(z.string(), z.unknown()),
  })
  .loose();

/** `[nodeId, outputIndex]`: how ComfyUI writes a link from another node's output. */
function isLinkLike(v: unknown): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number';
}

export const WorkflowSchema = z
  .record(
    z
      .string()
      .min(1, 'node ids must not be empty')
      .max(LIMITS.nodeIdLength, `node ids must be at most ${LIMITS.nodeIdLength} characters`)
      .refine((k) => k !== '__proto__', 'node id "__proto__" is not allowed'),
    NodeSchema,
  )
  .refine((wf) => Object.keys(wf).length > 0, 'the workflow must have at least one node')
  .superRefine((wf, ctx) => {
    for (const [nodeId, node] of Object.entries(wf ?? {})) {
      // defensive: refinements may run on nodes that already failed their own checks
      if (!node || typeof node.inputs !== 'object' || node.inputs === null) continue;
      for (const [name, value] of Object.entries(node.inputs)) {
        if (!isLinkLike(value)) continue;
        if (!Number.isInteger(value[1]) || value[1] < 0) {
          ctx.addIssue({
            code: 'custom',
            path: [nodeId, 'inputs', name, 1],
            message: 'a link output index must be a non-negative integer',
          });
        } else if (!Object.hasOwn(wf, value[0])) {
          ctx.addIssue({
            code: 'custom',
            path: [nodeId, 'inputs', name],
            message: `links to node "${value[0].slice(0, 64)}", which is not in the workflow`,
          });
        }
      }
    }
  })
  .describe('ComfyUI workflow in API format: { nodeId: { class_type, inputs, _meta? } }');

const MetadataSchema = z
  .record(z.string(), z.unknown())
  .refine(
    (m) => Buffer.byteLength(JSON.stringify(m)) <= LIMITS.metadataBytes,
    `metadata must be at most ${LIMITS.metadataBytes} bytes serialized as JSON`,
  )
  .describe(`free-form JSON object, at most ${LIMITS.metadataBytes} bytes serialized`);

const WebhookUrlSchema = z
  .string()
  .max(LIMITS.urlLength, `webhookUrl must be at most ${LIMITS.urlLength} characters`)
  .refine((u) => {
    try {
      const url = new URL(u);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
    } catch {
      return false;
    }
  }, 'webhookUrl must be an absolute http(s) URL');

export const CreateJobSchema = z.strictObject({
  workflow: WorkflowSchema,
  jobType: shortString('jobType').optional().describe('defaults to "image"'),
  userId: shortString('userId').optional(),
  priority: z
    .int('priority must be an integer')
    .min(0, 'priority must be at least 0')
    .max(LIMITS.maxPriority, `priority must be at most ${LIMITS.maxPriority}`)
    .optional()
    .describe(`0 (default, first) to ${LIMITS.maxPriority}; lower runs first`),
  webhookUrl: WebhookUrlSchema.optional(),
  idempotencyKey: shortString('idempotencyKey')
    .optional()
    .describe('the same key (per userId) again answers 200 and the same job'),
  metadata: MetadataSchema.optional(),
  inputs: InputsSchema.optional(),
});

export type CreateJobBody = z.infer<typeof CreateJobSchema>;

export const DEFAULT_JOB_TYPE = 'image';

/** Ids the API hands out: BullMQ's numbers, or `idem-<sha256 hex>`. Anything else is a 404. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,100}$/;

/** Depth of nested arrays/objects, iteratively (the check itself must not overflow). */
export function jsonDepthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return true;
    for (const child of Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** zod issues → one entry per bad field, with its path (unrecognized keys: one per key). */
export function toFieldIssues(
  issues: readonly z.core.$ZodIssue[],
  prefix: PropertyKey[] = [],
): FieldIssue[] {
  const byPath = new Map<string, string>();
  const add = (path: PropertyKey[], message: string) => {
    const key = [...prefix, ...path].map(String).join('.');
    if (!byPath.has(key)) byPath.set(key, message);
  };
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) add([...issue.path, k], 'unknown field');
    } else {
      add(issue.path, issue.message);
    }
  }
  return [...byPath].map(([path, message]) => ({ path, message }));
}
