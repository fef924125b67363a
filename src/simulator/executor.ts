/**
 * `PromptExecutor.execute` of ComfyUI 0.3.64: runs one prompt node by node and emits the
 * real WebSocket sequence (execution_start, execution_cached, then per node progress_state,
 * executing, [progress…], executed, progress_state; then execution_success / _error /
 * _interrupted), recording the `status.messages` that go into history.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { OutputCache, type CacheEntry } from './cache';
import type { Catalog } from './catalog';
import { ExecutionList, isLink } from './execution-list';
import type { SimFolders } from './files';
import {
  entriesOf,
  isObject,
  keysOf,
  orderedObject,
  PyFloat,
  type Json,
  type JsonObject,
} from './json';
import { changeKey } from './load-image';
import type { NodeRun, NodeTiming } from './node-util';
import { NODE_FUNCTIONS } from './nodes';
import { ProgressRegistry } from './progress';
import { PyError, pyContains, pyGetItem } from './py';
import { formatValue, nodeTraceback } from './traceback';

/** Server-wide execution state (PromptServer.client_id / last_node_id, the interrupt flag). */
export interface ExecState {
  clientId: Json;
  lastNodeId: string | null;
  interrupted: boolean;
}

export interface ExecHost {
  readonly catalog: Catalog;
  readonly folders: SimFolders;
  readonly timing: NodeTiming;
  readonly failureRate: number;
  readonly state: ExecState;
  readonly signal: AbortSignal;
  /** `send_sync(event, data, sid)`: sid null broadcasts. */
  send(type: string, data: unknown, sid: Json): void;
}

const plain = (n: number | PyFloat) => (n instanceof PyFloat ? n.value : n);

/** comfy.model_management.InterruptProcessingException */
class Interrupted extends Error {}

type NodeOutcome =
  | { ok: true }
  | { ok: false; interrupted: true; nodeId: string }
  | { ok: false; interrupted: false; nodeId: string; error: PyError; currentInputs: JsonObject };

interface PromptRun {
  promptId: string;
  prompt: JsonObject;
  extraData: Json;
  progress: ProgressRegistry;
  results: Map<string, unknown[]>;
  ui: Map<string, NonNullable<CacheEntry['ui']>>;
  executed: Set<string>;
  failAt: string | null;
}

export class PromptExecutor {
  success = true;
  statusMessages: [string, JsonObject][] = [];
  historyResult: { outputs: JsonObject; meta: JsonObject } = { outputs: {}, meta: {} };
  private readonly cache: OutputCache;

  constructor(private readonly host: ExecHost) {
    this.cache = new OutputCache(host.catalog, (c, inputs) => changeKey(host.folders, c, inputs));
  }

  private addMessage(event: string, data: JsonObject, broadcast: boolean): void {
    const full = orderedObject<Json>([...entriesOf(data), ['timestamp', Date.now()]]);
    this.statusMessages.push([event, full]);
    const { clientId } = this.host.state;
    if (clientId !== null || broadcast) this.host.send(event, full, clientId);
  }

  private isCached = (nodeId: string) => this.cache.get(nodeId) !== undefined;

  private isOutput = (prompt: JsonObject) => (nodeId: string) =>
    this.host.catalog.isOutputNode(String((prompt[nodeId] as JsonObject).class_type));

  async execute(
    prompt: JsonObject,
    promptId: string,
    extraData: Json,
    executeOutputs: string[],
  ): Promise<void> {
    const { state } = this.host;
    state.interrupted = false;
    state.clientId =
      isObject(extraData) && pyContains(extraData, 'client_id') ? extraData.client_id : null;
    this.statusMessages = [];
    this.addMessage('execution_start', { prompt_id: promptId }, false);
    const progress = new ProgressRegistry(promptId, (d) =>
      this.host.send('progress_state', d, state.clientId),
    );
    this.cache.setPrompt(prompt);
    const nodeIds = keysOf(prompt);
    this.addMessage(
      'execution_cached',
      { nodes: nodeIds.filter(this.isCached), prompt_id: promptId },
      false,
    );

    const run: PromptRun = {
      promptId,
      prompt,
      extraData,
      progress,
      results: new Map(),
      ui: new Map(),
      executed: new Set(),
      failAt:
        Math.random() < this.host.failureRate ? this.lastRealNode(prompt, executeOutputs) : null,
    };
    const list = new ExecutionList(prompt, this.isCached, this.isOutput(prompt));
    for (const o of executeOutputs) list.addNode(o);
    let failed = false;
    while (!list.isEmpty()) {
      const staged = list.stage();
      if ('cycle' in staged) {
        this.reportError(run, nodeIds, {
          ok: false,
          interrupted: false,
          nodeId: staged.cycle[0],
          error: new PyError('graph.DependencyCycleError', 'Dependency cycle detected'),
          currentInputs: {},
        });
        failed = true;
        break;
      }
      const outcome = await this.executeNode(run, staged.nodeId);
      this.success = outcome.ok;
      if (!outcome.ok) {
        this.reportError(run, nodeIds, outcome);
        failed = true;
        break;
      }
      list.complete(staged.nodeId);
    }
    if (!failed) this.addMessage('execution_success', { prompt_id: promptId }, false);
    this.historyResult = {
      outputs: orderedObject([...run.ui].map(([id, ui]) => [id, ui.output])),
      meta: orderedObject([...run.ui].map(([id, ui]) => [id, ui.meta])),
    };
    state.lastNodeId = null;
  }

  /** The last node that will really run (for failureRate): a dry run of the execution list. */
  private lastRealNode(prompt: JsonObject, outputs: string[]): string | null {
    const dry = new ExecutionList(prompt, this.isCached, this.isOutput(prompt));
    for (const o of outputs) dry.addNode(o);
    let last: string | null = null;
    while (!dry.isEmpty()) {
      const s = dry.stage();
      if ('cycle' in s) break;
      if (!this.isCached(s.nodeId)) last = s.nodeId;
      dry.complete(s.nodeId);
    }
    return last;
  }

  private send(type: string, data: JsonObject): void {
    this.host.send(type, data, this.host.state.clientId);
  }

  private async executeNode(run: PromptRun, nodeId: string): Promise<NodeOutcome> {
    const { state } = this.host;
    const classType = String((run.prompt[nodeId] as JsonObject).class_type);
    const cached = this.cache.get(nodeId);
    if (cached) {
      if (state.clientId !== null) {
        this.send('executed', {
          node: nodeId,
          display_node: nodeId,
          output: cached.ui?.output ?? null,
          prompt_id: run.promptId,
        });
      }
      if (cached.ui) run.ui.set(nodeId, cached.ui);
      run.progress.finish(nodeId);
      run.results.set(nodeId, cached.outputs);
      return { ok: true };
    }
    let inputs: Map<string, unknown> | undefined;
    try {
      run.progress.start(nodeId);
      inputs = this.inputData(run, nodeId, classType);
      if (state.clientId !== null) {
        state.lastNodeId = nodeId;
        this.send('executing', { node: nodeId, display_node: nodeId, prompt_id: run.promptId });
      }
      this.checkInterrupt();
      if (run.failAt === nodeId) {
        throw new PyError(
          'RuntimeError',
          'Simulated failure (failureRate)',
          nodeTraceback(['execution.py', 277, 'process_inputs', 'result = f(**inputs)']),
        );
      }
      const result = await NODE_FUNCTIONS[classType](
        this.nodeRun(run, nodeId),
        Object.fromEntries(inputs),
      );
      let ui: CacheEntry['ui'];
      if (result.ui && keysOf(result.ui).length > 0) {
        const meta = orderedObject<Json>([
          ['node_id', nodeId],
          ['display_node', nodeId],
          ['parent_node', null],
          ['real_node_id', nodeId],
        ]);
        ui = { meta, output: result.ui };
        run.ui.set(nodeId, ui);
        if (state.clientId !== null) {
          this.send('executed', {
            node: nodeId,
            display_node: nodeId,
            output: result.ui,
            prompt_id: run.promptId,
          });
        }
      }
      this.cache.set(nodeId, { outputs: result.outputs, ui });
      run.results.set(nodeId, result.outputs);
    } catch (ex) {
      if (this.host.signal.aborted) throw ex;
      if (ex instanceof Interrupted) return { ok: false, interrupted: true, nodeId };
      const error = ex instanceof PyError ? ex : new PyError('Exception', String(ex));
      const currentInputs = orderedObject<Json>(
        [...(inputs ?? [])].map(([k, v]) => [k, [formatValue(v) as Json]]),
      );
      return { ok: false, interrupted: false, nodeId, error, currentInputs };
    }
    run.progress.finish(nodeId);
    run.executed.add(nodeId);
    return { ok: true };
  }

  /** `get_input_data`: linked outputs, declared literals, then hidden inputs. */
  private inputData(run: PromptRun, nodeId: string, classType: string): Map<string, unknown> {
    const { catalog } = this.host;
    const node = run.prompt[nodeId] as JsonObject;
    const data = new Map<string, unknown>();
    for (const [x, v] of isObject(node.inputs) ? entriesOf(node.inputs) : []) {
      if (isLink(v)) {
        const outputs = run.results.get(v[0]) ?? this.cache.get(v[0])?.outputs;
        data.set(x, outputs && v[1] < outputs.length ? outputs[v[1]] : null);
      } else if (catalog.inputInfo(classType, x)) {
        data.set(x, v);
      }
    }
    for (const [x, kind] of catalog.hiddenInputs(classType)) {
      if (kind === 'PROMPT') data.set(x, run.prompt);
      else if (kind === 'EXTRA_PNGINFO') {
        data.set(
          x,
          isObject(run.extraData) && pyContains(run.extraData, 'extra_pnginfo')
            ? pyGetItem(run.extraData, 'extra_pnginfo')
            : null,
        );
      } else if (kind === 'UNIQUE_ID') data.set(x, nodeId);
    }
    return data;
  }

  /** `throw_exception_if_processing_interrupted`: raises once and clears the flag. */
  private checkInterrupt(): void {
    if (!this.host.state.interrupted) return;
    this.host.state.interrupted = false;
    throw new Interrupted();
  }

  private nodeRun(run: PromptRun, nodeId: string): NodeRun {
    const { signal, folders, timing, state } = this.host;
    return {
      nodeId,
      folders,
      timing,
      sleep: (ms) => sleep(Math.max(0, ms), undefined, { signal }),
      progress: (value, max) => {
        const v = plain(value) > plain(max) ? max : value;
        this.checkInterrupt();
        run.progress.update(nodeId, v, max);
        this.host.send(
          'progress',
          { value: v, max, prompt_id: run.promptId, node: nodeId },
          state.clientId,
        );
      },
    };
  }

  /** `handle_execution_error`. */
  private reportError(
    run: PromptRun,
    nodeIds: string[],
    outcome: Exclude<NodeOutcome, { ok: true }>,
  ): void {
    const nodeType = (run.prompt[outcome.nodeId] as JsonObject).class_type;
    const base = {
      prompt_id: run.promptId,
      node_id: outcome.nodeId,
      node_type: nodeType,
      executed: [...run.executed],
    };
    if (outcome.interrupted) {
      this.addMessage('execution_interrupted', base, true);
      return;
    }
    this.addMessage(
      'execution_error',
      {
        ...base,
        exception_message: `${outcome.error.message}\n`,
        exception_type: outcome.error.pyType,
        traceback: outcome.error.traceback,
        current_inputs: outcome.currentInputs,
        current_outputs: nodeIds,
      },
      false,
    );
  }
}
