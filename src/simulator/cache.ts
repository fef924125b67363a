/**
 * ComfyUI's default ("classic") output cache: a node is cached when its class and inputs,
 * recursively through its links, equal those of a node in the previous prompt (TestSleep's
 * hidden UNIQUE_ID makes its node id part of the key). Entries not used by the current
 * prompt are dropped when it starts, so the cache remembers only the previous prompt.
 */
import type { Catalog } from './catalog';
import { isLink } from './execution-list';
import { entriesOf, isObject, stringify, type Json, type JsonObject } from './json';

export interface CacheEntry {
  outputs: unknown[];
  /** `{meta, output}` of a node with UI output (SaveImage, PreviewImage). */
  ui?: { meta: JsonObject; output: JsonObject };
}

export class OutputCache {
  private readonly entries = new Map<string, CacheEntry>();
  private signatures = new Map<string, string>();

  constructor(
    private readonly catalog: Catalog,
    /** `IS_CHANGED`: a value that changes when the node's result would (a file's hash). */
    private readonly changeKey: (classType: string, inputs: Json) => string | undefined = () =>
      undefined,
  ) {}

  /** `set_prompt` + `clean_unused`. */
  setPrompt(prompt: JsonObject): void {
    const sigs = new Map<string, string>();
    const visiting = new Set<string>();
    const signature = (id: string): string => {
      const known = sigs.get(id);
      if (known !== undefined) return known;
      if (visiting.has(id)) return `cycle:${id}`;
      visiting.add(id);
      const node = prompt[id] as JsonObject;
      const classType = String(node.class_type);
      const inputs = isObject(node.inputs) ? entriesOf(node.inputs) : [];
      const perNode =
        this.catalog.has(classType) &&
        this.catalog.hiddenInputs(classType).some(([, k]) => k === 'UNIQUE_ID');
      const parts = inputs
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) =>
          isLink(v) && Object.hasOwn(prompt, v[0])
            ? [k, 'link', signature(v[0]), v[1]]
            : [k, stringify(v)],
        );
      const changed = this.changeKey(classType, node.inputs) ?? null;
      const sig = JSON.stringify([classType, perNode ? id : null, parts, changed]);
      visiting.delete(id);
      sigs.set(id, sig);
      return sig;
    };
    for (const id of Object.keys(prompt)) signature(id);
    this.signatures = sigs;
    const used = new Set(sigs.values());
    for (const key of [...this.entries.keys()]) if (!used.has(key)) this.entries.delete(key);
  }

  get(nodeId: string): CacheEntry | undefined {
    const sig = this.signatures.get(nodeId);
    return sig === undefined ? undefined : this.entries.get(sig);
  }

  set(nodeId: string, entry: CacheEntry): void {
    const sig = this.signatures.get(nodeId);
    if (sig !== undefined) this.entries.set(sig, entry);
  }
}
