import { z } from 'zod';
import { ListQuerySchema } from './job-index';
import { PUBLIC_STATUSES } from '../job/status';

/** The pieces of the OpenAPI document (openapi.ts): small schemas, parameters, responses. */

export const ErrorSchema = z.strictObject({
  error: z.strictObject({
    code: z.string(),
    message: z.string(),
    details: z
      .array(z.strictObject({ path: z.string(), message: z.string() }))
      .max(20)
      .optional()
      .describe('at most 20 entries; message says how many problems there were'),
    jobId: z.string().optional().describe('outcome_unknown: the id the job has if it exists'),
  }),
});

export const LinksSchema = z.strictObject({ self: z.string(), events: z.string() });
export const AcceptedSchema = z.strictObject({
  id: z.string(),
  status: z.enum(PUBLIC_STATUSES),
  links: LinksSchema,
});
export const CancelledSchema = z.strictObject({ id: z.string(), status: z.literal('cancelled') });
export const UploadSchema = z.strictObject({
  id: z.string().describe('use as inputs.<name>.upload on POST /v1/jobs'),
  filename: z.string(),
  size: z.int().min(0).describe('bytes'),
  sha256: z.string(),
  contentType: z.string(),
});

export function schema(s: z.ZodType, io: 'input' | 'output') {
  const json = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}

export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
export const json = (name: string) => ({ content: { 'application/json': { schema: ref(name) } } });
export const error = (description: string) => ({ description, ...json('Error') });

export const jobId = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
export const idempotencyKey = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'IETF draft header ("…" or a bare token, ≤ 256 characters); the same as the body idempotencyKey',
  schema: { type: 'string', maxLength: 258 },
};
export const common = {
  '401': error('unauthorized: missing or invalid API key'),
  '429': error('rate_limited: over RATE_LIMIT_REQUESTS for this key (Retry-After says when)'),
  '503': error(
    'queue_unavailable (nothing changed), outcome_unknown (a write Redis did not confirm; error.jobId names the job; retry with the same Idempotency-Key) or server_busy',
  ),
  '500': error('internal_error: a bug (logged with the request); nothing is known to have changed'),
};
/** Bearer auth on every /v1 operation (API_KEYS; an API without keys accepts any request). */
export const bearer = [{ bearer: [] }];
export const SSE_EVENTS =
  'Server-Sent Events, one per change of the job view: `event: <name>` and `data: <the job ' +
  'view as JSON>`. `progress` while queued, submitted or running; then exactly one of ' +
  '`completed`, `failed`, `cancelled`, whose `id:` is that status, and the stream ends (a ' +
  'reconnect with that Last-Event-ID answers 204). A `: heartbeat` comment keeps idle ' +
  'streams open through proxies.';

/** A signed link (the job view's `links.events`, an output's `url`) opens it without a key. */
export const signedLink = [
  {
    name: 'expires',
    in: 'query',
    required: false,
    description: 'signed link: its expiry (unix seconds); no Authorization needed with it',
    schema: { type: 'integer' },
  },
  {
    name: 'signature',
    in: 'query',
    required: false,
    description: 'signed link: HMAC-SHA256 of the job id and expiry (LINK_SECRET), base64url',
    schema: { type: 'string' },
  },
];

/** GET /v1/jobs: its query parameters and its answer. */
export const listQuery = Object.entries(
  schema(ListQuerySchema, 'input').properties as Record<string, { description?: string }>,
).map(([name, s]) => ({
  name,
  in: 'query',
  required: false,
  description: s.description,
  schema: s,
}));
export const JobListSchema = {
  type: 'object',
  required: ['jobs', 'nextCursor'],
  additionalProperties: false,
  properties: {
    jobs: { type: 'array', items: { $ref: '#/components/schemas/JobView' } },
    nextCursor: {
      type: ['string', 'null'],
      description: 'the cursor of the next page (a page may hold fewer jobs); null: no more',
    },
  },
};
