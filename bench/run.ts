/**
 * `npm run bench [-- --quick] [-- --only=id,id]`: runs every figure of issue #7 against
 * its own redis-server(s), prints one table and writes bench/results.json. Every figure is a
 * ratio against a baseline measured in the same run, or an absolute number with its target.
 *
 * Figures that only wait (crash recovery, idle and per-job command counts, memory) run
 * side by side after the CPU-bound ones, each with its own Redis, so the whole run stays
 * within a few minutes. A figure that fails is reported as an error row; the run still
 * exits 0 (it is a report, not a test), except on Ctrl-C.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiBoundary } from './api-boundary';
import { apiEnqueue } from './api-enqueue';
import { backlog } from './backlog';
import { fairShare } from './fair';
import { commandsPerJob, idleCommands } from './commands';
import { latency } from './latency';
import { list } from './list';
import { errorText, machineInfo, ROOT, Scope, withTimeout } from './lib';
import type { BenchContext, Figure, Row } from './lib';
import { media } from './media';
import { memory } from './memory';
import { outage } from './outage';
import { handoffCompletion, placement } from './placement';
import { formatTable } from './report';
import { killRecovery, sigtermHandoff } from './recovery';
import { throughput } from './throughput';

interface Entry {
  id: string;
  run: Figure;
  /** the figure's own deadline, quick / full */
  budgetS: [number, number];
  /** waits rather than computes: runs in the parallel phase */
  parallel?: boolean;
}

const FIGURES: Entry[] = [
  { id: 'throughput', run: throughput, budgetS: [90, 240] },
  { id: 'api-enqueue', run: apiEnqueue, budgetS: [60, 120] },
  { id: 'api-boundary', run: apiBoundary, budgetS: [120, 180] },
  { id: 'latency', run: latency, budgetS: [150, 400] },
  { id: 'backlog', run: backlog, budgetS: [90, 300] },
  { id: 'placement', run: placement, budgetS: [150, 360] },
  { id: 'media', run: media, budgetS: [90, 180] },
  { id: 'list', run: list, budgetS: [120, 400] },
  { id: 'fair', run: fairShare, budgetS: [60, 180] },
  { id: 'memory', run: memory, budgetS: [90, 180], parallel: true },
  { id: 'commands', run: commandsPerJob, budgetS: [90, 180], parallel: true },
  { id: 'idle', run: idleCommands, budgetS: [90, 150], parallel: true },
  { id: 'kill', run: killRecovery, budgetS: [90, 240], parallel: true },
  { id: 'sigterm', run: sigtermHandoff, budgetS: [90, 150], parallel: true },
  { id: 'handoff-completion', run: handoffCompletion, budgetS: [120, 150], parallel: true },
  { id: 'outage', run: outage, budgetS: [60, 90], parallel: true },
];

async function main() {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const only = args
    .find((a) => a.startsWith('--only='))
    ?.slice('--only='.length)
    .split(',')
    .filter(Boolean);
  const unknown = only?.filter((id) => !FIGURES.some((f) => f.id === id)) ?? [];
  if (unknown.length > 0) {
    console.error(
      `unknown figure(s): ${unknown.join(', ')}; known: ${FIGURES.map((f) => f.id).join(', ')}`,
    );
    process.exit(2);
  }
  const selected = FIGURES.filter((f) => !only || only.includes(f.id));
  const started = Date.now();
  const log = (m: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0)}s] ${m}`);
  const ctx: BenchContext = { quick, log };
  const machine = machineInfo();
  log(
    `comfyui-queue benchmark (${quick ? 'quick' : 'full'}) at ${machine.commit}: ${machine.nproc} × ${machine.cpu}, node ${machine.node}, redis ${machine.redis}, load ${machine.loadavgAtStart}`,
  );

  const scopes = new Set<Scope>();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`\n${signal}: stopping every process the benchmark started…`);
    void Promise.allSettled([...scopes].map((s) => s.close())).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const runOne = async (f: Entry): Promise<Row[]> => {
    const scope = new Scope({
      stepMs: 10_000,
      onError: (what, err) => log(`  (cleanup of ${what} failed: ${errorText(err)})`),
    });
    scopes.add(scope);
    const budgetMs = (quick ? f.budgetS[0] : f.budgetS[1]) * 1000;
    const t0 = Date.now();
    log(`${f.id}: start`);
    try {
      const rows = await withTimeout(f.id, budgetMs, f.run(ctx, scope));
      log(`${f.id}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      return rows;
    } catch (err) {
      log(`${f.id}: FAILED: ${errorText(err)}`);
      return [
        {
          id: f.id,
          figure: f.id,
          value: `error: ${errorText(err).split('\n')[0].slice(0, 160)}`,
          target: '—',
          data: { error: errorText(err) },
        },
      ];
    } finally {
      await scope.close();
      scopes.delete(scope);
    }
  };

  const results = new Map<string, Row[]>();
  for (const f of selected.filter((f) => !f.parallel)) results.set(f.id, await runOne(f));
  const parallel = selected.filter((f) => f.parallel);
  if (parallel.length > 0) {
    log(`running ${parallel.map((f) => f.id).join(', ')} side by side (they wait, not compute)`);
    const rows = await Promise.all(parallel.map(runOne));
    parallel.forEach((f, i) => results.set(f.id, rows[i]));
  }
  const rows = selected.flatMap((f) => results.get(f.id) ?? []);

  console.log(`\n${formatTable(rows)}`);
  const durationS = Math.round((Date.now() - started) / 1000);
  const file = join(ROOT, 'bench', 'results.json');
  writeFileSync(
    file,
    `${JSON.stringify({ mode: quick ? 'quick' : 'full', startedAt: new Date(started).toISOString(), durationS, machine, rows }, null, 2)}\n`,
  );
  log(`wrote ${file} (${durationS} s in all)`);
  process.exit(0);
}

main().catch((err: unknown) => {
  // a bug in the orchestration itself: still a report run, so say it and exit 0
  console.error(`benchmark aborted: ${errorText(err)}`);
  process.exit(0);
});
