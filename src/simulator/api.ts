/**
 * ComfyUI's HTTP endpoints as functions from a parsed request to a reply (server.py of
 * 0.3.64). Python errors (a body of the wrong type, `int("x")`, …) are thrown as PyError or
 * SyntaxError and become the aiohttp 500 in the HTTP layer.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Catalog } from './catalog';
import type { CustomValidators } from './custom-validation';
import type { ComfyInstance } from './instance';
import {
  isObject,
  orderedObject,
  parseJson,
  PyFloat,
  setKey,
  stringify,
  type Json,
  type JsonObject,
} from './json';
import {
  PyError,
  pyContains,
  pyFloat,
  pyGetItem,
  pyInt,
  pyIter,
  pyStr,
  pyTruthy,
  pyTypeName,
  pyEquals,
} from './py';
import type { HistoryEntry } from './queue';
import { validatePrompt, type ComboRule } from './validation';

export type Reply =
  | { kind: 'json'; status: number; body: unknown }
  | { kind: 'empty'; status: number }
  | { kind: 'raw-json'; status: number; body: string };

const json = (body: unknown, status = 200): Reply => ({ kind: 'json', status, body });
const empty = (status = 200): Reply => ({ kind: 'empty', status });

export type DuplicatePromptIds = 'accept' | 'reject';

/**
 * Which ComfyUI the simulator plays: `0.3.64` as recorded, or `current` (the merged releases
 * after it, comfyui-api.md §13): canonical-UUID prompt ids, `create_time` in `extra_data`,
 * the jobs API. Neither rejects a duplicate prompt id (that is `duplicatePromptIds: 'reject'`).
 */
export type SimVersion = '0.3.64' | 'current';
export const SIM_VERSIONS: readonly SimVersion[] = ['0.3.64', 'current'];
/** `comfyui_version` reported by `current` (the newest release seen, §13) */
export const CURRENT_COMFYUI_VERSION = '0.38.1';

export interface PromptRules {
  version: SimVersion;
  duplicates: DuplicatePromptIds;
}

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Checkpoint names: the catalogue's list when it has one; with an empty list (no model files,
 * as in the recorded catalogue) any `*.safetensors` name is taken to exist.
 */
export const checkpointRule: ComboRule = (classType, input, value, options) =>
  classType === 'CheckpointLoaderSimple' &&
  input === 'ckpt_name' &&
  options.length === 0 &&
  typeof value === 'string' &&
  value.endsWith('.safetensors');

/** POST /prompt. */
export function postPrompt(
  inst: ComfyInstance,
  catalog: Catalog,
  body: Json,
  rules: PromptRules,
  custom: CustomValidators = {},
): Reply {
  const { duplicates } = rules;
  const canonicalOnly = duplicates === 'reject' || rules.version === 'current';
  let number: number | PyFloat;
  if (pyContains(body, 'number')) {
    number = pyFloat(pyGetItem(body, 'number'));
  } else {
    number = inst.number;
    if (pyContains(body, 'front') && pyTruthy(pyGetItem(body, 'front'))) number = -number;
    inst.number++;
  }
  if (!pyContains(body, 'prompt')) {
    const error = {
      type: 'no_prompt',
      message: 'No prompt provided',
      details: 'No prompt provided',
      extra_info: {},
    };
    return json({ error, node_errors: {} }, 400);
  }
  const req = body as JsonObject;
  const prompt = req.prompt;
  let promptId: string;
  const given = Object.hasOwn(req, 'prompt_id') ? req.prompt_id : undefined;
  if (!canonicalOnly) {
    promptId = given === undefined ? randomUUID() : pyStr(given);
  } else if (given === undefined || given === null) {
    promptId = randomUUID();
  } else if (typeof given === 'string' && CANONICAL_UUID.test(given)) {
    promptId = given;
  } else {
    const error = {
      type: 'invalid_prompt_id',
      message: 'prompt_id must be a valid UUID',
      details:
        'prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one',
      extra_info: {},
    };
    return json({ error, node_errors: {} }, 400);
  }
  const partial = Object.hasOwn(req, 'partial_execution_targets')
    ? req.partial_execution_targets
    : undefined;
  const valid = validatePrompt(catalog, prompt, partial, checkpointRule, custom);
  const extraData: Json = Object.hasOwn(req, 'extra_data') ? req.extra_data : {};
  if (Object.hasOwn(req, 'client_id')) {
    if (!isObject(extraData)) {
      throw new PyError(
        'TypeError',
        `'${pyTypeName(extraData)}' object does not support item assignment`,
      );
    }
    setKey(extraData, 'client_id', req.client_id);
  }
  if (rules.version === 'current' && isObject(extraData))
    setKey(extraData, 'create_time', Date.now());
  if (!valid.ok) return json({ error: valid.error, node_errors: valid.nodeErrors }, 400);
  if (duplicates === 'reject' && inst.queue.knows(promptId))
    return json({ error: 'prompt_id already exists' }, 409);
  inst.put([number, promptId, prompt, extraData, valid.outputs]);
  return json({ prompt_id: promptId, number, node_errors: valid.nodeErrors });
}

/** GET /prompt */
export const getPrompt = (inst: ComfyInstance): Reply => json(inst.queueInfo());

/** GET /queue */
export function getQueue(inst: ComfyInstance): Reply {
  const [running, pending] = inst.queue.current();
  return json({ queue_running: running, queue_pending: pending });
}

/** POST /queue {clear?, delete?} */
export function postQueue(inst: ComfyInstance, body: Json): Reply {
  if (pyContains(body, 'clear') && pyTruthy(pyGetItem(body, 'clear'))) inst.queue.wipeQueue();
  if (pyContains(body, 'delete')) {
    for (const id of pyIter(pyGetItem(body, 'delete')))
      inst.queue.deleteQueueItem((item) => pyEquals(item[1], id));
  }
  return empty();
}

const historyBody = (entries: Map<string, HistoryEntry>) => orderedObject([...entries]);

/** GET /history?max_items&offset */
export function getHistory(inst: ComfyInstance, query: URLSearchParams): Reply {
  const maxItems = query.has('max_items') ? Number(pyInt(query.get('max_items'))) : undefined;
  const offset = query.has('offset') ? Number(pyInt(query.get('offset'))) : undefined;
  return json(historyBody(inst.queue.getHistory({ maxItems, offset })));
}

/** GET /history/{prompt_id}: `{}` for pending, running and unknown ids. */
export const getHistoryItem = (inst: ComfyInstance, promptId: string): Reply =>
  json(historyBody(inst.queue.getHistory({ promptId })));

/** POST /history {clear?, delete?} */
export function postHistory(inst: ComfyInstance, body: Json): Reply {
  if (pyContains(body, 'clear') && pyTruthy(pyGetItem(body, 'clear'))) inst.queue.wipeHistory();
  if (pyContains(body, 'delete')) {
    for (const id of pyIter(pyGetItem(body, 'delete'))) {
      if (Array.isArray(id) || isObject(id))
        throw new PyError('TypeError', `unhashable type: '${pyTypeName(id)}'`);
      if (typeof id === 'string') inst.queue.deleteHistoryItem(id);
    }
  }
  return empty();
}

/** POST /interrupt: an empty or non-JSON body counts as `{}`. */
export function postInterrupt(inst: ComfyInstance, text: string): Reply {
  let body: Json;
  try {
    body = parseJson(text);
  } catch {
    body = {};
  }
  if (!isObject(body))
    throw new PyError('AttributeError', `'${pyTypeName(body)}' object has no attribute 'get'`);
  inst.interrupt(Object.hasOwn(body, 'prompt_id') ? body.prompt_id : null);
  return empty();
}

/** POST /free: accepted and ignored (there is no model memory to free). */
export function postFree(body: Json): Reply {
  if (!isObject(body))
    throw new PyError('AttributeError', `'${pyTypeName(body)}' object has no attribute 'get'`);
  return empty();
}

/** GET /system_stats, shaped like 0.3.64's (values of the recording machine where not real). */
export function systemStats(version: string, host: string, port: number): Reply {
  const total = os.totalmem();
  const free = os.freemem();
  return json({
    system: {
      os: 'posix',
      ram_total: total,
      ram_free: free,
      comfyui_version: version,
      required_frontend_version: '1.27.10',
      installed_templates_version: null,
      required_templates_version: '0.1.95',
      python_version: '3.11.2 (main, Apr 28 2025, 14:11:48) [GCC 12.2.0]',
      pytorch_version: '1.13.0a0',
      embedded_python: false,
      argv: ['main.py', '--cpu', '--listen', host, '--port', String(port), '--disable-api-nodes'],
    },
    devices: [
      {
        name: 'cpu',
        type: 'cpu',
        index: null,
        vram_total: total,
        vram_free: free,
        torch_vram_total: total,
        torch_vram_free: free,
      },
    ],
  });
}

/** GET /object_info/{class}: `{}` for an unknown class. */
export function objectInfoOf(catalog: Catalog, classType: string): Reply {
  if (!catalog.has(classType)) return json({});
  return {
    kind: 'raw-json',
    status: 200,
    body: `{${stringify(classType)}: ${catalog.rawInfo(classType)}}`,
  };
}
