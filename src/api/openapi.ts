import { JobViewSchema } from '../job/view';
import { CreateJobSchema } from './schemas';

import {
  ErrorSchema,
  AcceptedSchema,
  CancelledSchema,
  UploadSchema,
  schema,
  json,
  error,
  jobId,
  idempotencyKey,
  common,
  bearer,
  SSE_EVENTS,
  signedLink,
  listQuery,
  JobListSchema,
} from './openapi-parts';

/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate requests
 * (3.1 uses JSON Schema 2020-12, zod's default target), so it cannot drift from the code.
 */

export interface OpenApiOptions {
  version: string;
  /** PUBLIC_URL, the API as clients see it; else the server is the document's own origin */
  publicUrl?: string;
}

/** The job collection: list and submit. */
function jobPaths() {
  return {
    '/v1/jobs': {
      get: {
        operationId: 'listJobs',
        tags: ['jobs'],
        summary: 'Jobs newest first, by user and status, a page at a time (no queuePosition)',
        security: bearer,
        parameters: listQuery,
        responses: {
          '200': { description: 'a page', ...json('JobList') },
          '400': error('invalid_request (details name the parameter)'),
          ...common,
        },
      },
      post: {
        operationId: 'createJob',
        tags: ['jobs'],
        summary: 'Enqueue a ComfyUI workflow',
        security: bearer,
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
          '429': error(
            'rate_limited, queue_full or user_queue_full (Retry-After says when to try again)',
          ),
          '503': error('queue_unavailable, or storage_unavailable (inputs)'),
        },
      },
    },
  };
}

/** One job: read, cancel, retry. */
function onePaths() {
  return {
    '/v1/jobs/{id}': {
      get: {
        operationId: 'getJob',
        tags: ['jobs'],
        summary: 'The job view',
        security: bearer,
        parameters: [jobId],
        responses: {
          '200': { description: 'the job', ...json('JobView') },
          '404': error('not_found'),
          ...common,
        },
      },
      delete: {
        operationId: 'cancelJob',
        tags: ['jobs'],
        summary: 'Cancel the job',
        security: bearer,
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
    '/v1/jobs/{id}/retry': {
      post: {
        operationId: 'retryJob',
        tags: ['jobs'],
        summary: 'Run a failed job again as a new generation (new prompt id, counters kept)',
        security: bearer,
        parameters: [jobId],
        responses: {
          '202': { description: 'queued again', ...json('JobView') },
          '404': error('not_found'),
          '409': error(
            'already_finished (completed or cancelled) or not_finished (queued or running)',
          ),
          ...common,
        },
      },
    },
  };
}

/** What streams out of a job: its events and its output files. */
function filePaths() {
  return {
    '/v1/jobs/{id}/events': {
      get: {
        operationId: 'streamJobEvents',
        tags: ['jobs'],
        summary: 'Follow the job: Server-Sent Events until it finishes',
        description: SSE_EVENTS,
        security: bearer,
        parameters: [jobId, ...signedLink],
        responses: {
          '200': {
            description: 'an event stream ending at a terminal state',
            content: {
              'text/event-stream': {
                schema: { type: 'string', description: SSE_EVENTS },
                example:
                  'event: progress\ndata: {"id":"…","status":"running","progress":{"percent":40}}\n\n',
              },
            },
          },
          '404': error('not_found'),
          ...common,
        },
      },
    },
    '/v1/jobs/{id}/outputs/{n}': {
      get: {
        operationId: 'getJobOutput',
        tags: ['jobs'],
        summary: 'The n-th output file, from storage (never from ComfyUI)',
        security: bearer,
        parameters: [
          jobId,
          { name: 'n', in: 'path', required: true, schema: { type: 'integer', minimum: 0 } },
          { name: 'Range', in: 'header', required: false, schema: { type: 'string' } },
          ...signedLink,
        ],
        responses: {
          '200': {
            description: 'the file, with its Content-Type and Content-Length',
            content: {
              'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
            },
          },
          '206': { description: 'the requested byte range (Content-Range)' },
          '404': error('not_found: no such job or output, or removed by retention'),
          '416': error('range_not_satisfiable'),
          '503': error('queue_unavailable or storage_unavailable'),
          '401': common['401'],
          '429': common['429'],
        },
      },
    },
  };
}

/** Input uploads. */
function uploadPaths() {
  return {
    '/v1/uploads': {
      post: {
        operationId: 'createUpload',
        tags: ['jobs'],
        summary: 'Upload an input file (raw body, or multipart/form-data field `file`)',
        security: bearer,
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
          '429': common['429'],
        },
      },
    },
  };
}

/** Health, readiness, metrics and this document. */
function operationPaths() {
  return {
    '/v1/openapi.json': {
      get: {
        operationId: 'getOpenApiDocument',
        tags: ['operations'],
        summary: 'This document (Swagger UI at /docs)',
        security: [],
        responses: {
          '200': { description: 'the OpenAPI document', content: { 'application/json': {} } },
        },
      },
    },
    '/healthz': {
      get: {
        operationId: 'healthz',
        tags: ['operations'],
        summary: 'Liveness',
        security: [],
        responses: { '200': { description: 'alive', content: { 'application/json': {} } } },
      },
    },
    '/readyz': {
      get: {
        operationId: 'readyz',
        tags: ['operations'],
        summary: 'Readiness: Redis PING within 1 s',
        security: [],
        responses: {
          '200': { description: 'ready', content: { 'application/json': {} } },
          '503': error('queue_unavailable'),
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        tags: ['operations'],
        summary: "Prometheus text: this process's metrics and the queue depth",
        security: [],
        responses: { '200': { description: 'Prometheus text', content: { 'text/plain': {} } } },
      },
    },
  };
}

export function buildOpenApiDocument(opts: OpenApiOptions) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'comfyui-queue',
      version: opts.version,
      description: 'Crash-safe BullMQ job runner for ComfyUI workflows.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: opts.publicUrl ?? '/', description: 'this API' }],
    components: {
      schemas: {
        CreateJob: schema(CreateJobSchema, 'input'),
        Accepted: schema(AcceptedSchema, 'output'),
        Cancelled: schema(CancelledSchema, 'output'),
        JobView: schema(JobViewSchema, 'output'),
        JobList: JobListSchema,
        Error: schema(ErrorSchema, 'output'),
        Upload: schema(UploadSchema, 'output'),
      },
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'one of API_KEYS; without API_KEYS the API accepts requests without a key',
        },
      },
    },
    tags: [
      { name: 'jobs', description: 'Submit, follow, cancel and retry ComfyUI jobs' },
      { name: 'operations', description: 'Health, readiness, metrics and this document' },
    ],
    paths: {
      ...jobPaths(),
      ...onePaths(),
      ...filePaths(),
      ...uploadPaths(),
      ...operationPaths(),
    },
  };
}
