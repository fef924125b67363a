/**
 * ComfyUI's `ExecutionList` (comfy_execution/graph.py): the topological order in which nodes
 * run, including its "UX friendly" pick (output nodes first, then what unblocks them), so
 * the order of `executing` events matches the real server's.
 */
import { entriesOf, isObject, type Json, type JsonObject } from './json';

/** `is_link`: `[str, int|float]`. */
export function isLink(v: Json): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number';
}

export class ExecutionList {
  private readonly pending = new Map<string, true>();
  private readonly blockCount = new Map<string, number>();
  private readonly blocking = new Map<string, Map<string, Set<number>>>();

  constructor(
    private readonly prompt: JsonObject,
    private readonly isCached: (nodeId: string) => boolean,
    private readonly isOutput: (nodeId: string) => boolean,
  ) {}

  private inputsOf(id: string): [string, Json][] {
    const node = this.prompt[id];
    const inputs = isObject(node) ? node.inputs : undefined;
    return isObject(inputs) ? entriesOf(inputs) : [];
  }

  /** Links whose source node exists (a dangling link would have failed validation). */
  private linksOf(id: string): [string, number][] {
    return this.inputsOf(id)
      .map(([, v]) => v)
      .filter(isLink)
      .filter(([from]) => Object.hasOwn(this.prompt, from));
  }

  addNode(nodeId: string): void {
    const stack = [nodeId];
    const links: [string, number, string][] = [];
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (this.pending.has(id)) continue;
      this.pending.set(id, true);
      this.blockCount.set(id, 0);
      this.blocking.set(id, new Map());
      for (const [from, socket] of this.linksOf(id)) {
        if (!this.isCached(from)) stack.push(from);
        links.push([from, socket, id]);
      }
    }
    for (const [from, socket, to] of links) this.addStrongLink(from, socket, to);
  }

  private addStrongLink(from: string, socket: number, to: string): void {
    if (this.isCached(from)) return;
    this.addNode(from);
    const blocked = this.blocking.get(from)!;
    if (!blocked.has(to)) {
      blocked.set(to, new Set());
      this.blockCount.set(to, this.blockCount.get(to)! + 1);
    }
    blocked.get(to)!.add(socket);
  }

  isEmpty(): boolean {
    return this.pending.size === 0;
  }

  /** The next node to run, or the nodes of a dependency cycle when none is ready. */
  stage(): { nodeId: string } | { cycle: string[] } {
    const ready = [...this.pending.keys()].filter((id) => this.blockCount.get(id) === 0);
    if (ready.length === 0) return { cycle: [...this.pending.keys()] };
    return { nodeId: this.pick(ready) };
  }

  private pick(ready: string[]): string {
    const blockedBy = (id: string) => [...(this.blocking.get(id)?.keys() ?? [])];
    return (
      ready.find((id) => this.isOutput(id)) ??
      ready.find((id) => blockedBy(id).some((b) => this.isOutput(b))) ??
      ready.find((id) => blockedBy(id).some((b) => blockedBy(b).some((b1) => this.isOutput(b1)))) ??
      ready[0]
    );
  }

  complete(nodeId: string): void {
    this.pending.delete(nodeId);
    for (const to of this.blocking.get(nodeId)?.keys() ?? []) {
      this.blockCount.set(to, this.blockCount.get(to)! - 1);
    }
    this.blocking.delete(nodeId);
  }
}
