import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/**
 * The import graph of src/ and dashboard/ has no cycle (issue #16: no arrow back up, e.g. the
 * config importing webhooks while webhooks import the config). Imports are read with
 * TypeScript's own pre-processor, type-only imports included: a type cycle is still a
 * cycle for a reader.
 */

const ROOT = join(__dirname, '..', '..');
const files = ['src', 'dashboard'].flatMap((dir) =>
  (readdirSync(join(ROOT, dir), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .map((f) => resolve(ROOT, dir, f)),
);

function resolveImport(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = resolve(dirname(from), spec);
  return [`${base}.ts`, join(base, 'index.ts')].find((f) => existsSync(f));
}

const graph = new Map(
  files.map((file) => {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, false);
    const deps = importedFiles.flatMap((i) => resolveImport(file, i.fileName) ?? []);
    return [file, deps] as const;
  }),
);

/** One cycle through each strongly connected part of the graph (depth-first search). */
function cycles(): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    path.push(file);
    for (const dep of graph.get(file) ?? []) {
      if (state.get(dep) === 'open') found.push(path.slice(path.indexOf(dep)).concat(dep));
      else if (!state.has(dep)) visit(dep);
    }
    path.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found.map((c) => c.map((f) => relative(ROOT, f)));
}

test('the graph was read: entries reach the modules they wire', () => {
  const worker = graph.get(resolve(ROOT, 'src/bin/worker.ts')) ?? [];
  expect(worker.map((f) => relative(ROOT, f))).toContain('src/config/index.ts');
  expect(graph.size).toBeGreaterThan(100);
});

test('no module imports, directly or through others, a module that imports it', () => {
  expect(cycles()).toEqual([]);
});
