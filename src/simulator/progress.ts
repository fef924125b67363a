/**
 * ComfyUI's per-prompt progress registry (comfy_execution/progress.py) and the
 * `progress_state` message its WebUI handler sends on every start/update/finish.
 */
import { orderedObject, PyFloat, type JsonObject } from './json';

type NodeState = 'pending' | 'running' | 'finished';

interface Entry {
  state: NodeState;
  value: number | PyFloat;
  max: number | PyFloat;
}

export class ProgressRegistry {
  private readonly nodes = new Map<string, Entry>();

  constructor(
    private readonly promptId: string,
    private readonly emit: (progressState: JsonObject) => void,
  ) {}

  private entry(nodeId: string): Entry {
    let e = this.nodes.get(nodeId);
    if (!e) {
      e = { state: 'pending', value: 0, max: 1 };
      this.nodes.set(nodeId, e);
    }
    return e;
  }

  start(nodeId: string): void {
    Object.assign(this.entry(nodeId), {
      state: 'running',
      value: new PyFloat(0),
      max: new PyFloat(1),
    });
    this.send();
  }

  update(nodeId: string, value: number | PyFloat, max: number | PyFloat): void {
    Object.assign(this.entry(nodeId), { state: 'running', value, max });
    this.send();
  }

  finish(nodeId: string): void {
    const e = this.entry(nodeId);
    Object.assign(e, { state: 'finished', value: e.max });
    this.send();
  }

  private send(): void {
    const nodes = orderedObject(
      [...this.nodes]
        .filter(([, e]) => e.state !== 'pending')
        .map(([id, e]) => [
          id,
          {
            value: e.value,
            max: e.max,
            state: e.state,
            node_id: id,
            prompt_id: this.promptId,
            display_node_id: id,
            parent_node_id: null,
            real_node_id: id,
          },
        ]),
    );
    this.emit({ prompt_id: this.promptId, nodes });
  }
}
