/**
 * A node's `VALIDATE_INPUTS` (execution.py `validate_inputs` of 0.3.64): the inputs it takes
 * skip the min/max and combo checks, and it runs after the other checks with the node's
 * literal values; anything but `True` becomes `custom_validation_failed` for each of them.
 */
import type { Json, JsonObject } from './json';
import { PyError } from './py';
import { isLink } from './execution-list';

export interface CustomValidator {
  /** The argument names of `VALIDATE_INPUTS`. */
  inputs: string[];
  /** `True`, `False` or a reason; may throw a PyError like Python would. */
  validate(values: Record<string, Json>): true | false | string;
}

export type CustomValidators = Record<string, CustomValidator>;

interface CustomError {
  type: string;
  message: string;
  details: string;
  extra_info: JsonObject;
}

/** Runs the class's validator over the node's inputs; returns its errors. */
export function customErrors(
  validator: CustomValidator,
  classType: string,
  inputs: JsonObject,
): CustomError[] {
  const values: Record<string, Json> = {};
  for (const x of validator.inputs) {
    if (Object.hasOwn(inputs, x) && !isLink(inputs[x])) values[x] = inputs[x];
  }
  const given = Object.keys(values);
  const missing = validator.inputs.filter((x) => !given.includes(x));
  if (missing.length > 0) {
    const names = missing.map((x) => `'${x}'`).join(' and ');
    throw new PyError(
      'TypeError',
      `${classType}.VALIDATE_INPUTS() missing ${missing.length} required positional argument${missing.length > 1 ? 's' : ''}: ${names}`,
    );
  }
  const r = validator.validate(values);
  if (r === true) return [];
  return given.map((x) => ({
    type: 'custom_validation_failed',
    message: 'Custom validation failed for node',
    details: r === false ? x : `${x} - ${r}`,
    extra_info: { input_name: x },
  }));
}
