/**
 * `npm run chaos -- [--minutes N] [--jobs N] [--seed S] [--workers N] [--simulators N]`
 * The chaos scenario of test/chaos.test.ts outside jest, for longer runs: with --minutes it
 * keeps a backlog of jobs flowing for N minutes, killing workers every 2–5 s and alternating
 * a redis-server kill and a ComfyUI restart every 45 s (every N × 15 s when N < 3), then
 * drains and checks every job.
 * Without --minutes it runs the bounded 200-job scenario once. Exit code 1 on any violation.
 * `--many` runs the many-in-flight load instead (see test/chaos/many.ts).
 */
import { formatManySummary, runMany } from './many';
import { formatSummary, runChaos } from './scenario';

function parseArgs(argv: string[]): Record<string, string | true> {
  const args: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument "${a}"`);
    const [key, inline] = a.slice(2).split('=', 2);
    if (inline !== undefined) args[key] = inline;
    else if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) args[key] = argv[++i];
    else args[key] = true;
  }
  return args;
}

function num(args: Record<string, string | true>, key: string): number | undefined {
  const v = args[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || !Number.isFinite(n) || n <= 0)
    throw new Error(`--${key} needs a positive number`);
  return n;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.many) {
    const report = await runMany({ jobs: num(args, 'jobs'), instances: num(args, 'simulators') });
    console.log(formatManySummary(report));
    process.exit(report.violations.length ? 1 : 0);
  }
  const minutes = num(args, 'minutes');
  const durationMs = minutes ? minutes * 60_000 : undefined;
  const report = await runChaos({
    jobs: num(args, 'jobs'),
    durationMs,
    // a Redis kill and a ComfyUI restart, alternating, every 45 s (more often in short runs)
    disruptEveryMs: durationMs ? Math.min(90_000, durationMs / 2) : undefined,
    workers: num(args, 'workers'),
    simulators: num(args, 'simulators'),
    seed: num(args, 'seed'),
    // continuous runs drain for up to 3 minutes after producing stops
    deadlineMs: durationMs ? durationMs + 180_000 : 300_000,
  });
  console.log(formatSummary(report));
  process.exit(report.violations.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
