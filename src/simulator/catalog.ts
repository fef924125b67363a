/**
 * The node catalogue: `object-info.json` is the real ComfyUI 0.3.64 `/object_info` body cut
 * down to the classes the simulator can run, byte for byte (so KSampler's seed max
 * 18446744073709551615 and floats like `8.0` are served exactly as ComfyUI writes them).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isObject, keysOf, parseJson, rawMembers, type Json, type JsonObject } from './json';

export interface InputInfo {
  type: Json;
  category: 'required' | 'optional' | 'hidden';
  extra: JsonObject;
}

export interface Catalog {
  /** The verbatim `GET /object_info` body. */
  readonly rawAll: string;
  classes(): string[];
  has(classType: unknown): classType is string;
  /** The verbatim info of one class (the value of `GET /object_info/{class}`). */
  rawInfo(classType: string): string;
  isOutputNode(classType: string): boolean;
  returnTypes(classType: string): string[];
  /** Declared required + optional inputs, in `input_order`. */
  validInputs(classType: string): string[];
  inputInfo(classType: string, name: string): InputInfo | undefined;
  /** Hidden inputs, name → kind (`PROMPT`, `EXTRA_PNGINFO`, `UNIQUE_ID`, …). */
  hiddenInputs(classType: string): [string, string][];
}

function catalogPath(): string {
  const candidates = [
    path.join(__dirname, 'object-info.json'),
    // compiled into dist/src/simulator: the JSON stays in src/simulator
    path.resolve(__dirname, '../../../src/simulator/object-info.json'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`object-info.json not found (looked in ${candidates.join(', ')})`);
  return found;
}

export function loadCatalog(): Catalog {
  const rawAll = readFileSync(catalogPath(), 'utf8');
  const raw = rawMembers(rawAll);
  const all = parseJson(rawAll) as JsonObject;
  const info = (c: string) => all[c] as JsonObject;
  const section = (c: string, cat: string): JsonObject => {
    const input = info(c).input;
    const s = isObject(input) ? input[cat] : undefined;
    return isObject(s) ? s : {};
  };
  return {
    rawAll,
    classes: () => keysOf(all),
    has: (c: unknown): c is string => typeof c === 'string' && Object.hasOwn(all, c),
    rawInfo: (c) => raw.get(c) ?? '{}',
    isOutputNode: (c) => info(c).output_node === true,
    returnTypes: (c) => info(c).output as string[],
    validInputs: (c) => [...keysOf(section(c, 'required')), ...keysOf(section(c, 'optional'))],
    inputInfo(c, name) {
      for (const category of ['required', 'optional', 'hidden'] as const) {
        const s = section(c, category);
        if (!Object.hasOwn(s, name)) continue;
        const spec = s[name];
        if (!Array.isArray(spec)) return { type: spec, category, extra: {} };
        const extra = spec.length > 1 && isObject(spec[1]) ? spec[1] : {};
        return { type: spec[0], category, extra };
      }
      return undefined;
    },
    hiddenInputs: (c) => Object.entries(section(c, 'hidden')).map(([k, v]) => [k, String(v)]),
  };
}
