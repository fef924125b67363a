/** Small pieces shared by the node implementations. */
import type { SimFolders } from './files';
import { orderedObject, stringify, type Json, type JsonObject, type PyFloat } from './json';
import { pyGetItem, pyIter, pyNumber, pyStr } from './py';

/** A Python int/float/bool input as a JS number (NaN for anything else). */
export const num = (v: unknown) => Number(pyNumber(v) ?? NaN);

/**
 * The metadata output nodes embed: `prompt` as JSON, then one entry per `extra_pnginfo` key
 * (PNG `tEXt` chunks for images, container tags for audio).
 */
export function metadataTexts(prompt: unknown, extraPnginfo: unknown): [string, string][] {
  const texts: [string, string][] = [];
  if (prompt !== null && prompt !== undefined) texts.push(['prompt', stringify(prompt)]);
  if (extraPnginfo !== null && extraPnginfo !== undefined) {
    for (const k of pyIter(extraPnginfo as Json))
      texts.push([pyStr(k), stringify(pyGetItem(extraPnginfo, k))]);
  }
  return texts;
}

const TEMP_LETTERS = 'abcdefghijklmnopqrstupvxyz'; // sic, as in ComfyUI

/** The 5 random letters of PreviewImage's / PreviewAudio's temp file names. */
export const tempTag = () =>
  Array.from(
    { length: 5 },
    () => TEMP_LETTERS[Math.floor(Math.random() * TEMP_LETTERS.length)],
  ).join('');

/** One `{filename, subfolder, type}` entry of a node's UI output. */
export const fileEntry = (filename: string, subfolder: string, type: string): JsonObject =>
  orderedObject<Json>([
    ['filename', filename],
    ['subfolder', subfolder],
    ['type', type],
  ]);

export interface NodeTiming {
  progressIntervalMs: number;
  samplerStepMs: number;
}

/** What a running node may do. */
export interface NodeRun {
  readonly nodeId: string;
  readonly folders: SimFolders;
  readonly timing: NodeTiming;
  /** Abortable sleep (rejects when the simulator restarts or closes). */
  sleep(ms: number): Promise<void>;
  /** `ProgressBar.update_absolute`: checks for an interrupt, then reports progress. */
  progress(value: number | PyFloat, max: number | PyFloat): void;
}

export interface NodeResult {
  outputs: unknown[];
  /** The node's UI output (`{"images": [...]}`) for `executed` and history. */
  ui?: JsonObject;
}

export type Inputs = Record<string, unknown>;
export type NodeFn = (run: NodeRun, inputs: Inputs) => Promise<NodeResult>;
