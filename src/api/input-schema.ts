import { z } from 'zod';
import type { FieldIssue } from './errors';
import type { Workflow } from '../job/data';

/**
 * The shape of `inputs` on POST /v1/jobs (DESIGN "Media in"):
 * `{ name: { upload } | { url } | { base64 } }`, and the check of the names against the
 * workflow. Pure: it runs with the rest of the body's validation (parse-job.ts).
 */

export const MAX_INPUTS = 32;
const NAME_MAX = 200;
const URL_MAX = 2048;

const InputSchema = z
  .strictObject({
    upload: z.string().max(100).optional(),
    url: z.string().max(URL_MAX, `url must be at most ${URL_MAX} characters`).optional(),
    base64: z.string().optional(),
  })
  .refine(
    (i) => [i.upload, i.url, i.base64].filter((v) => v !== undefined).length === 1,
    'an input is exactly one of { upload }, { url } or { base64 }',
  );

/** The problem with an input name, or null (the name is also a ComfyUI input value). */
function nameProblem(n: string): string | null {
  if (n.length === 0) return 'an input name must not be empty';
  if (n.length > NAME_MAX) return `an input name must be at most ${NAME_MAX} characters`;
  if (/[/\\]/.test(n) || n.includes('..'))
    return 'an input name must not contain "/", "\\" or ".."';
  return null;
}

export const InputsSchema = z
  .record(z.string(), InputSchema)
  .superRefine((r, ctx) => {
    const names = Object.keys(r);
    if (names.length > MAX_INPUTS) {
      ctx.addIssue({ code: 'custom', message: `at most ${MAX_INPUTS} inputs` });
    }
    for (const n of names) {
      const problem = nameProblem(n);
      if (problem) ctx.addIssue({ code: 'custom', path: [n], message: problem });
    }
  })
  .describe('files the workflow reads, by the name its node inputs use (e.g. LoadImage.image)');

export type InputsBody = z.infer<typeof InputsSchema>;

/** Whether some node input of the workflow has exactly this string value. */
function referenced(workflow: Workflow, name: string): boolean {
  return Object.values(workflow).some((node) =>
    Object.values(node.inputs ?? {}).some((v) => v === name),
  );
}

/**
 * Names the workflow does not use: one issue each, at `inputs.<name>`. Pure (it runs with
 * the rest of the body's validation, off the event loop: parse-job.ts).
 */
export function inputNameIssues(inputs: InputsBody, workflow: Workflow): FieldIssue[] {
  return Object.keys(inputs)
    .filter((name) => !referenced(workflow, name))
    .map((name) => ({
      path: `inputs.${name}`,
      message: `no node input of the workflow has the value "${name}"`,
    }));
}
