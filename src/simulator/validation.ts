/**
 * `validate_prompt` / `validate_inputs` of ComfyUI 0.3.64 (execution.py), with the same error
 * types, messages, `dependent_outputs` bookkeeping and in-place coercion of widget values
 * (the queued graph holds `int(…)`/`float(…)` results, like the real one).
 * Anything Python would raise outside its own try blocks is thrown as a PyError (→ HTTP 500).
 */
import { orderedObject, setKey, isObject, type Json, type JsonObject } from './json';
import { PyError, pyContains, pyGetItem, pyIter, pyStr, pyTypeName } from './py';
import type { Catalog } from './catalog';
import type { CustomValidators } from './custom-validation';
import {
  err,
  VALIDATE_TB,
  Validator,
  type ComboRule,
  type PromptError,
  type Verdict,
} from './validate-inputs';

export type { ComboRule, PromptError } from './validate-inputs';

export interface NodeError {
  errors: PromptError[];
  dependent_outputs: string[];
  class_type: Json;
}

export interface Validation {
  ok: boolean;
  /** Set when !ok: the top-level `error` of the 400 body. */
  error?: PromptError;
  /** Output node ids that validated (`outputs_to_execute`). */
  outputs: string[];
  nodeErrors: Record<string, NodeError>;
}

const failed = (error: PromptError): Validation => ({
  ok: false,
  error,
  outputs: [],
  nodeErrors: {},
});

/** The first loop of `validate_prompt`: every node has a known class; the output nodes targeted. */
function outputNodes(catalog: Catalog, prompt: Json, partialTargets: Json | undefined) {
  const outputs: string[] = [];
  for (const x of pyIter(prompt)) {
    const node = pyGetItem(prompt, x);
    const nodeRef = `Node ID '#${pyStr(x)}'`;
    if (!pyContains(node, 'class_type')) {
      const error = err(
        'invalid_prompt',
        'Cannot execute because a node is missing the class_type property.',
        nodeRef,
      );
      return failed(error);
    }
    const classType = pyGetItem(node, 'class_type');
    if (Array.isArray(classType) || isObject(classType)) {
      throw new PyError('TypeError', `unhashable type: '${pyTypeName(classType)}'`);
    }
    if (!catalog.has(classType)) {
      const error = err(
        'invalid_prompt',
        `Cannot execute because node ${pyStr(classType)} does not exist.`,
        nodeRef,
      );
      return failed(error);
    }
    if (!catalog.isOutputNode(classType)) continue;
    const targeted =
      partialTargets === undefined || partialTargets === null || pyContains(partialTargets, x);
    if (targeted && !outputs.includes(x as string)) outputs.push(x as string);
  }
  if (outputs.length === 0) return failed(err('prompt_no_outputs', 'Prompt has no outputs', ''));
  return outputs;
}

/** `validate_prompt(prompt_id, prompt, partial_execution_targets)`. Throws PyError → 500. */
export function validatePrompt(
  catalog: Catalog,
  prompt: Json,
  partialTargets: Json | undefined,
  comboRule: ComboRule = () => false,
  custom: CustomValidators = {},
): Validation {
  const outputs = outputNodes(catalog, prompt, partialTargets);
  if (!Array.isArray(outputs)) return outputs;
  const v = new Validator(catalog, prompt as JsonObject, comboRule, custom);
  const good: string[] = [];
  const failures: [string, PromptError[]][] = [];
  const nodeErrors: Record<string, NodeError> = orderedObject([]);
  for (const o of outputs) {
    let verdict: Verdict;
    try {
      verdict = v.validateInputs(o);
    } catch (ex) {
      if (!(ex instanceof PyError)) throw ex;
      const reason = err(
        'exception_during_validation',
        'Exception when validating node',
        ex.message,
        {
          exception_type: ex.pyType,
          traceback: ex.traceback.length ? ex.traceback : VALIDATE_TB,
        },
      );
      verdict = [false, [reason], o];
      v.validated.set(o, verdict);
    }
    if (verdict[0]) {
      good.push(o);
      continue;
    }
    failures.push([o, verdict[1]]);
    // Python walks every validated node after each failed output, so a node that failed
    // earlier collects this output too.
    for (const [nodeId, [ok, reasons]] of v.validated) {
      if (ok || reasons.length === 0) continue;
      if (!Object.hasOwn(nodeErrors, nodeId)) {
        const classType = pyGetItem(pyGetItem(prompt, nodeId), 'class_type');
        setKey(nodeErrors, nodeId, {
          errors: reasons,
          dependent_outputs: [],
          class_type: classType,
        });
      }
      nodeErrors[nodeId].dependent_outputs.push(o);
    }
  }
  if (good.length === 0) {
    const details = failures
      .flatMap(([, reasons]) => reasons.map((r) => `${r.message}: ${r.details}`))
      .join('\n');
    const error = err(
      'prompt_outputs_failed_validation',
      'Prompt outputs failed validation',
      details,
    );
    return { ok: false, error, outputs: [], nodeErrors };
  }
  return { ok: true, outputs: good, nodeErrors };
}
