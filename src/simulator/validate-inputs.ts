/**
 * `validate_inputs` of ComfyUI 0.3.64 (execution.py) for one node and, recursively, the nodes
 * it links to: types of links, required inputs, widget coercion in place, combo lists, custom
 * VALIDATE_INPUTS. Anything Python would raise outside its own try blocks is a PyError.
 */
import type { Catalog } from './catalog';
import { customErrors, type CustomValidators } from './custom-validation';
import { isObject, setKey, type Json, type JsonObject } from './json';
import {
  PyError,
  pyContains,
  pyEquals,
  pyFloat,
  pyGetItem,
  pyInt,
  pyLess,
  pyNumber,
  pyStr,
  pyTruthy,
  pyTypeName,
} from './py';
import { COMFYUI_DIR } from './traceback';

export interface PromptError {
  type: string;
  message: string;
  details: string;
  extra_info: JsonObject;
}

/** Extra acceptance rule for combo values (e.g. checkpoint names when the list is empty). */
export type ComboRule = (classType: string, input: string, value: Json, options: Json[]) => boolean;

export type Verdict = [valid: boolean, reasons: PromptError[], id: string];

export const VALIDATE_TB = [
  `  File "${COMFYUI_DIR}/execution.py", line 1010, in validate_prompt\n    m = await validate_inputs(prompt_id, prompt, o, validated)\n`,
  `  File "${COMFYUI_DIR}/execution.py", line 788, in validate_inputs\n    o_class_type = prompt[o_id]['class_type']\n`,
];

export function err(
  type: string,
  message: string,
  details: string,
  extra: JsonObject = {},
): PromptError {
  return { type, message, details, extra_info: extra };
}

function tupleIndex(tuple: string[], index: Json): string {
  const n = pyNumber(index);
  if (
    n === undefined ||
    !(typeof index === 'number' || typeof index === 'bigint' || typeof index === 'boolean')
  ) {
    throw new PyError(
      'TypeError',
      `tuple indices must be integers or slices, not ${pyTypeName(index)}`,
    );
  }
  const i = Number(n) < 0 ? tuple.length + Number(n) : Number(n);
  if (i < 0 || i >= tuple.length) throw new PyError('IndexError', 'tuple index out of range');
  return tuple[i];
}

/** `validate_node_input`: exact match, `*` (AnyType) or an overlap of comma-separated types. */
function typesMatch(received: Json, input: Json): boolean {
  if (received === '*' || input === '*') return true;
  if (typeof received !== 'string' || typeof input !== 'string') return pyEquals(received, input);
  if (received === input) return true;
  const r = new Set(received.split(',').map((t) => t.trim()));
  return input.split(',').some((t) => r.has(t.trim()));
}

export class Validator {
  readonly validated = new Map<string, Verdict>();
  private readonly visiting = new Set<string>();

  constructor(
    private readonly catalog: Catalog,
    private readonly prompt: JsonObject,
    private readonly comboRule: ComboRule,
    private readonly custom: CustomValidators,
  ) {}

  validateInputs(id: string): Verdict {
    const done = this.validated.get(id);
    if (done) return done;
    // 0.3.64 recurses until RecursionError on a cycle; this is where that error surfaces.
    if (this.visiting.has(id))
      throw new PyError('RecursionError', 'maximum recursion depth exceeded');
    this.visiting.add(id);
    try {
      return this.check(id);
    } finally {
      this.visiting.delete(id);
    }
  }

  private check(id: string): Verdict {
    const node = pyGetItem(this.prompt, id);
    const inputs = pyGetItem(node, 'inputs');
    const classType = pyGetItem(node, 'class_type') as string;
    const errors: PromptError[] = [];
    let valid = true;
    const validator = Object.hasOwn(this.custom, classType) ? this.custom[classType] : undefined;
    for (const x of this.catalog.validInputs(classType)) {
      const { type, category, extra } = this.catalog.inputInfo(classType, x)!;
      if (!pyContains(inputs, x)) {
        if (category === 'required') {
          errors.push(
            err('required_input_missing', 'Required input is missing', x, { input_name: x }),
          );
        }
        continue;
      }
      const info: Json = [type, extra];
      let val = pyGetItem(inputs, x);
      if (Array.isArray(val)) {
        const e = this.checkLink(x, val, type, info);
        if (e === 'invalid') valid = false;
        else if (e) errors.push(e);
        continue;
      }
      try {
        if (isObject(val) && Object.hasOwn(val, '__value__')) {
          val = val.__value__;
          setKey(inputs as JsonObject, x, val);
        }
        const converted = convert(type, val);
        if (converted !== undefined) {
          val = converted;
          setKey(inputs as JsonObject, x, val);
        }
      } catch (ex) {
        if (!(ex instanceof PyError)) throw ex;
        errors.push(
          err(
            'invalid_input_type',
            `Failed to convert an input value to a ${pyStr(type)} value`,
            `${x}, ${pyStr(val)}, ${ex.message}`,
            {
              input_name: x,
              input_config: info,
              received_value: val,
              exception_message: ex.message,
            },
          ),
        );
        continue;
      }
      const skip = validator?.inputs.includes(x);
      const e = skip ? null : this.checkValue(classType, x, val, type, extra, info);
      if (e) errors.push(e);
    }
    if (validator) errors.push(...customErrors(validator, classType, inputs as JsonObject));
    const verdict: Verdict = errors.length > 0 || !valid ? [false, errors, id] : [true, [], id];
    this.validated.set(id, verdict);
    return verdict;
  }

  /** A linked input: returns an error for this node, 'invalid' if upstream failed, or null. */
  private checkLink(
    x: string,
    val: Json[],
    type: Json,
    info: Json,
  ): PromptError | 'invalid' | null {
    if (val.length !== 2) {
      return err(
        'bad_linked_input',
        'Bad linked input, must be a length-2 list of [node_id, slot_index]',
        x,
        {
          input_name: x,
          input_config: info,
          received_value: val,
        },
      );
    }
    const oId = val[0];
    const oClass = pyGetItem(pyGetItem(this.prompt, oId), 'class_type') as string;
    const received = tupleIndex(this.catalog.returnTypes(oClass), val[1]);
    if (!typesMatch(received, type)) {
      return err(
        'return_type_mismatch',
        'Return type mismatch between linked nodes',
        `${x}, received_type(${received}) mismatch input_type(${pyStr(type)})`,
        { input_name: x, input_config: info, received_type: received, linked_node: val },
      );
    }
    try {
      return this.validateInputs(oId as string)[0] ? null : 'invalid';
    } catch (ex) {
      if (!(ex instanceof PyError)) throw ex;
      const reason = err(
        'exception_during_inner_validation',
        'Exception when validating inner node',
        ex.message,
        {
          input_name: x,
          input_config: info,
          exception_message: ex.message,
          exception_type: ex.pyType,
          traceback: ex.traceback.length ? ex.traceback : VALIDATE_TB,
          linked_node: val,
        },
      );
      this.validated.set(oId as string, [false, [reason], oId as string]);
      return 'invalid';
    }
  }

  private checkValue(
    classType: string,
    x: string,
    val: Json,
    type: Json,
    extra: JsonObject,
    info: Json,
  ): PromptError | null {
    // execution.py checks min, then max (each compare may raise), with the same error shape
    for (const [bound, word, outside] of [
      ['min', 'smaller', () => pyLess(val, extra.min)],
      ['max', 'bigger', () => pyLess(extra.max, val)],
    ] as const) {
      if (!Object.hasOwn(extra, bound) || !outside()) continue;
      return err(
        `value_${word}_than_${bound}`,
        `Value ${pyStr(val)} ${word} than ${bound} of ${pyStr(extra[bound])}`,
        x,
        { input_name: x, input_config: info, received_value: val },
      );
    }
    if (!Array.isArray(type) && type !== 'COMBO') return null;
    const options = Array.isArray(type) ? type : Array.isArray(extra.options) ? extra.options : [];
    if (options.some((o) => pyEquals(o, val)) || this.comboRule(classType, x, val, options))
      return null;
    const big = options.length > 20;
    return err(
      'value_not_in_list',
      'Value not in list',
      `${x}: '${pyStr(val)}' not in ${big ? `(list of length ${options.length})` : pyStr(options)}`,
      {
        input_name: x,
        input_config: big ? null : info,
        received_value: val,
      },
    );
  }
}

function convert(type: Json, val: Json): Json | undefined {
  if (type === 'INT') return pyInt(val);
  if (type === 'FLOAT') return pyFloat(val);
  if (type === 'STRING') return pyStr(val);
  if (type === 'BOOLEAN') return pyTruthy(val);
  return undefined;
}
