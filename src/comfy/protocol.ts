import { z } from 'zod';
import type { JobOutput } from '../job/state';

/**
 * ComfyUI's response shapes (see the shared comfyui-api.md beside this project), parsed
 * tolerantly: unknown keys are kept or ignored, optional fields may be missing (older
 * servers), numbers may be floats.
 */

/** `[number, prompt_id, graph, extra_data, outputs_to_execute]` (newest servers keep 5 too). */
export const QueueEntrySchema = z
  .array(z.unknown())
  .min(2)
  .transform((e) => ({ number: Number(e[0]), promptId: String(e[1]) }));
export type QueueEntry = z.infer<typeof QueueEntrySchema>;

export const QueueSchema = z.object({
  queue_running: z.array(QueueEntrySchema).default([]),
  queue_pending: z.array(QueueEntrySchema).default([]),
});

const MessageSchema = z.tuple([z.string(), z.record(z.string(), z.unknown())]).rest(z.unknown());

export const HistoryEntrySchema = z.object({
  outputs: z.record(z.string(), z.unknown()).default({}),
  status: z
    .object({
      status_str: z.string().optional(),
      completed: z.boolean().optional(),
      messages: z.array(z.unknown()).default([]),
    })
    .loose()
    .optional(),
});
export type HistoryEntry = z.infer<typeof HistoryEntrySchema>;

/** `GET /api/jobs/{id}` (servers after 0.3.64): the fields a look-up needs. */
export const JobSchema = z
  .object({
    id: z.string(),
    status: z.enum(['pending', 'in_progress', 'completed', 'failed', 'cancelled']),
    outputs: z.record(z.string(), z.unknown()).optional(),
    execution_status: z.unknown().optional(),
  })
  .loose();

/** `GET /api/jobs`: only its shape is checked (it tells the jobs API is there). */
export const JobListSchema = z.object({ jobs: z.array(z.unknown()) }).loose();

export const SubmitOkSchema = z
  .object({
    prompt_id: z.string(),
    number: z.number().optional(),
    node_errors: z.record(z.string(), z.unknown()).default({}),
  })
  .loose();

export const SubmitErrorSchema = z
  .object({
    error: z.union([
      z.string(),
      z
        .object({
          type: z.string().optional(),
          message: z.string().optional(),
          details: z.unknown().optional(),
        })
        .loose(),
    ]),
    node_errors: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();

export type Outcome =
  | { kind: 'success'; outputs: JobOutput[] }
  | { kind: 'error'; nodeId?: string; nodeType?: string; message: string; exceptionType?: string }
  | { kind: 'interrupted'; nodeId?: string; nodeType?: string }
  | { kind: 'unknown'; message: string };

const TERMINAL = new Set(['execution_success', 'execution_error', 'execution_interrupted']);

/** Classifies a finished prompt by its terminal message (comfyui-api.md §3.3). */
export function classifyHistory(entry: HistoryEntry): Outcome {
  const messages = (entry.status?.messages ?? [])
    .map((m) => MessageSchema.safeParse(m))
    .filter((r) => r.success)
    .map((r) => r.data);
  const terminal = [...messages].reverse().find(([event]) => TERMINAL.has(event));
  const str = (v: unknown) =>
    typeof v === 'string' ? v : v === undefined || v === null ? undefined : String(v);
  if (terminal?.[0] === 'execution_interrupted') {
    return {
      kind: 'interrupted',
      nodeId: str(terminal[1].node_id),
      nodeType: str(terminal[1].node_type),
    };
  }
  if (terminal?.[0] === 'execution_error') {
    const d = terminal[1];
    return {
      kind: 'error',
      nodeId: str(d.node_id),
      nodeType: str(d.node_type),
      message: (str(d.exception_message) ?? 'node raised an error').trim(),
      exceptionType: str(d.exception_type),
    };
  }
  const nodeErrors = messages.some(([event]) => event === 'execution_node_error');
  if (terminal?.[0] === 'execution_success' && !nodeErrors) {
    return { kind: 'success', outputs: extractOutputs(entry.outputs) };
  }
  if (!terminal && entry.status?.status_str === 'success' && entry.status.completed) {
    return { kind: 'success', outputs: extractOutputs(entry.outputs) };
  }
  if (!entry.status) {
    const outputs = extractOutputs(entry.outputs);
    if (outputs.length > 0) return { kind: 'success', outputs };
  }
  return {
    kind: 'unknown',
    message: nodeErrors
      ? 'ComfyUI finished the prompt with node errors (partial success)'
      : `ComfyUI finished the prompt without a recognised outcome (status ${entry.status?.status_str ?? 'missing'})`,
  };
}

const FileSchema = z
  .object({
    filename: z.string(),
    subfolder: z.string().default(''),
    type: z.string().default('output'),
  })
  .loose();

/** compares node ids numerically when both are numbers ("2" < "10"), else as strings */
export function compareNodeIds(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Every file any output node produced, in node-id then file order. Unknown keys are skipped. */
export function extractOutputs(outputs: Record<string, unknown>): JobOutput[] {
  const result: JobOutput[] = [];
  for (const nodeId of Object.keys(outputs).sort(compareNodeIds)) {
    const ui = outputs[nodeId];
    if (!ui || typeof ui !== 'object') continue;
    for (const value of Object.values(ui as Record<string, unknown>)) {
      if (!Array.isArray(value)) continue;
      for (const item of value) {
        const f = FileSchema.safeParse(item);
        if (f.success) {
          result.push({
            nodeId,
            filename: f.data.filename,
            subfolder: f.data.subfolder,
            type: f.data.type,
          });
        }
      }
    }
  }
  return result;
}

/** A one-line summary of a 400 from POST /prompt, naming the nodes and inputs at fault. */
export function describeValidationError(body: unknown): { message: string; nodeId?: string } {
  const parsed = SubmitErrorSchema.safeParse(body);
  if (!parsed.success) return { message: 'ComfyUI rejected the workflow' };
  const { error, node_errors: nodeErrors = {} } = parsed.data;
  const head =
    typeof error === 'string'
      ? error
      : [error.message, typeof error.details === 'string' ? error.details : '']
          .filter((s) => s)
          .join(': ');
  const parts: string[] = [];
  for (const [nodeId, ne] of Object.entries(nodeErrors)) {
    // tolerate any shape: a malformed 400 is still a permanent workflow error
    const n = (ne && typeof ne === 'object' ? ne : {}) as {
      class_type?: unknown;
      errors?: unknown;
    };
    const errs = (Array.isArray(n.errors) ? n.errors : []).map((e) => {
      const x = (e && typeof e === 'object' ? e : {}) as { message?: unknown; details?: unknown };
      return [x.message, x.details].filter((v) => typeof v === 'string' && v !== '').join(': ');
    });
    const cls = typeof n.class_type === 'string' ? ` (${n.class_type})` : '';
    parts.push(`node ${nodeId}${cls}: ${errs.join('; ')}`);
  }
  let nodeId: string | undefined = Object.keys(nodeErrors)[0];
  if (!nodeId && typeof error !== 'string' && typeof error.details === 'string') {
    nodeId = /#([^']+)'/.exec(error.details)?.[1];
  }
  return { message: [head || 'ComfyUI rejected the workflow', ...parts].join(' | '), nodeId };
}
