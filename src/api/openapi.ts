import { z } from 'zod';
import { JobViewSchema, PUBLIC_STATUSES } from './job-view';
import { CreateJobSchema } from './schemas';

/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate requests
 * (3.1 uses JSON Schema 2020-12, zod's default target), so it cannot drift from the code.
 */

const ErrorSchema = z.strictObject({
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

const LinksSchema = z.strictObject({ self: z.string(), events: z.string() });
const AcceptedSchema = z.strictObject({
  id: z.string(),
  status: z.enum(PUBLIC_STATUSES),
  links: LinksSchema,
});
const CancelledSchema = z.strictObject({ id: z.string(), status: z.literal('cancelled') });
const UploadSchema = z.strictObject({
  id: z.string().describe('use as inputs.<name>.upload on POST /v1/jobs'),
  filename: z.string(),
  size: z.int().min(0).describe('bytes'),
  sha256: z.string(),
  contentType: z.string(),
});

function schema(s: z.ZodType, io: 'input' | 'output') {
  const json = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ content: { 'application/json': { schema: ref(name) } } });
const error = (description: string) => ({ description, ...json('Error') });

const jobId = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const idempotencyKey = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'IETF draft header ("…" or a bare token, ≤ 256 characters); the same as the body idempotencyKey',
  schema: { type: 'string', maxLength: 258 },
};
const common = {
  '401': error('unauthorized: missing or invalid API key'),
  '503': error(
    'queue_unavailable (nothing changed), outcome_unknown (a write Redis did not confirm; error.jobId names the job; retry with the same Idempotency-Key) or server_busy',
  ),
};

export function buildOpenApiDocument(opts: { version: string; auth: boolean }) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'comfyui-queue',
      version: opts.version,
      description: 'Crash-safe BullMQ job runner for ComfyUI workflows.',
    },
    components: {
      schemas: {
        CreateJob: schema(CreateJobSchema, 'input'),
        Accepted: schema(AcceptedSchema, 'output'),
        Cancelled: schema(CancelledSchema, 'output'),
        JobView: schema(JobViewSchema, 'output'),
        Error: schema(ErrorSchema, 'output'),
        Upload: schema(UploadSchema, 'output'),
      },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    },
    ...(opts.auth ? { security: [{ bearer: [] }] } : {}),
    paths: {
      '/v1/jobs': {
        post: {
          summary: 'Enqueue a ComfyUI workflow',
          parameters: [idempotencyKey],
          requestBody: { required: true, ...json('CreateJob') },
          responses: {
            '200': {
              description: 'the same idempotencyKey again: the existing job',
              ...json('Accepted'),
            },
            '202': { description: 'queued', ...json('Accepted') },
            '400': error('invalid_json or invalid_request (details: one entry per bad field)'),
            '413': error('payload_too_large: body over 5 MB'),
            '415': error('unsupported_media_type: the body must be application/json'),
            '422': error('idempotency_key_reuse: the key was used with a different body'),
            ...common,
            '503': error('queue_unavailable, or storage_unavailable (inputs)'),
          },
        },
      },
      '/v1/jobs/{id}': {
        get: {
          summary: 'The job view',
          parameters: [jobId],
          responses: {
            '200': { description: 'the job', ...json('JobView') },
            '404': error('not_found'),
            ...common,
          },
        },
        delete: {
          summary: 'Cancel the job',
          parameters: [jobId, idempotencyKey],
          responses: {
            '202': {
              description: 'cancel requested; the job reads as cancelled',
              ...json('Cancelled'),
            },
            '404': error('not_found'),
            '409': error('already_finished'),
            ...common,
          },
        },
      },
      '/v1/jobs/{id}/events': {
        get: {
          summary:
            'Server-Sent Events: progress, completed, failed, cancelled (data: the job view)',
          parameters: [jobId],
          responses: {
            '200': {
              description: 'an event stream ending at a terminal state',
              content: { 'text/event-stream': {} },
            },
            '404': error('not_found'),
            ...common,
          },
        },
      },
      '/v1/jobs/{id}/outputs/{n}': {
        get: {
          summary: 'The n-th output file, from storage (never from ComfyUI)',
          parameters: [
            jobId,
            { name: 'n', in: 'path', required: true, schema: { type: 'integer', minimum: 0 } },
            { name: 'Range', in: 'header', required: false, schema: { type: 'string' } },
          ],
          responses: {
            '200': { description: 'the file, with its Content-Type and Content-Length' },
            '206': { description: 'the requested byte range (Content-Range)' },
            '404': error('not_found: no such job or output, or removed by retention'),
            '416': error('range_not_satisfiable'),
            '503': error('queue_unavailable or storage_unavailable'),
            '401': common['401'],
          },
        },
      },
      '/v1/uploads': {
        post: {
          summary: 'Upload an input file (raw body, or multipart/form-data field `file`)',
          parameters: [
            { name: 'filename', in: 'query', required: false, schema: { type: 'string' } },
          ],
          requestBody: {
            required: true,
            content: {
              'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
              'multipart/form-data': {
                schema: {
                  type: 'object',
                  properties: { file: { type: 'string', format: 'binary' } },
                  required: ['file'],
                },
              },
            },
          },
          responses: {
            '201': { description: 'stored', ...json('Upload') },
            '400': error('invalid_request: a multipart body without a `file` field'),
            '413': error('payload_too_large: above UPLOAD_MAX_BYTES'),
            '503': error('storage_unavailable'),
            '401': common['401'],
          },
        },
      },
      '/healthz': {
        get: { summary: 'Liveness', security: [], responses: { '200': { description: 'alive' } } },
      },
      '/readyz': {
        get: {
          summary: 'Readiness: Redis PING within 1 s',
          security: [],
          responses: { '200': { description: 'ready' }, '503': error('queue_unavailable') },
        },
      },
    },
  };
}
