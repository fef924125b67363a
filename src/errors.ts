/** The few named errors of the project. Messages say what to check; causes are chained. */

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** ComfyUI answered with an HTTP status we did not expect (5xx are retryable). */
export class ComfyHttpError extends Error {
  constructor(
    readonly baseUrl: string,
    readonly path: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`ComfyUI ${baseUrl} answered ${status} to ${path}`);
    this.name = 'ComfyHttpError';
  }
  get retryable(): boolean {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** ComfyUI could not be reached (connection refused, reset, timeout). Always retryable. */
export class ComfyUnreachableError extends Error {
  constructor(
    readonly baseUrl: string,
    readonly path: string,
    options: { cause?: unknown; timeoutMs?: number } = {},
  ) {
    super(
      options.timeoutMs !== undefined
        ? `ComfyUI ${baseUrl} did not answer ${path} within ${options.timeoutMs} ms`
        : `ComfyUI ${baseUrl} is unreachable (${path}): ${describeCause(options.cause)}; check COMFYUI_URL and that the server is running`,
      { cause: options.cause },
    );
    this.name = 'ComfyUnreachableError';
  }
}

/** ComfyUI answered something that is not the shape its protocol defines. */
export class ComfyProtocolError extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'ComfyProtocolError';
  }
}

/**
 * An input file could not be put on ComfyUI, or an output copied to storage (DESIGN "Media
 * in", "Media out"). `retryable`: retried with the job's backoff first (network, 5xx,
 * storage down); otherwise the job fails at once (a URL that answers 4xx, a refused address).
 */
export class MediaError extends Error {
  constructor(
    readonly code: 'input_unavailable' | 'output_unavailable',
    message: string,
    readonly retryable: boolean,
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
    this.name = 'MediaError';
  }
}

/** Public error codes of a failed job (DESIGN: "Error codes"). */
export const ERROR_CODES = [
  'workflow_invalid',
  'execution_error',
  'interrupted',
  'recovery_cutoff',
  'timeout',
  'cancelled',
  'comfyui_unreachable',
  'invalid_job_data',
  'stalled',
  'input_unavailable',
  'output_unavailable',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    const inner = (cause as { cause?: unknown }).cause;
    const innerCode = inner instanceof Error ? (inner as NodeJS.ErrnoException).code : undefined;
    return code ?? innerCode ?? cause.message;
  }
  return String(cause);
}
