import { formatSummary, runChaos } from './chaos/scenario';

/**
 * Chaos, bounded: 200 jobs (TestSleep 0.2–3 s) on 2 ComfyUI simulators and 3 worker
 * processes; a random worker is SIGKILLed and restarted every 2–5 s, redis-server (AOF,
 * appendfsync everysec) is SIGKILLed once and restarted on its data dir, one simulator
 * restarts once (losing its queue and history). Then every job must be terminal, none lost,
 * none left active, each prompt executed once (twice only where ComfyUI lost it, and then
 * counted as a resubmission), failures only with legitimate codes. What a Redis kill may
 * lose and why the checks are exactly these is explained in test/chaos/scenario.ts.
 * A job whose JobState disagrees with its BullMQ state (as a stale worker's late write once
 * caused: test/faults-partition.test.ts) fails the run. The longer run:
 * `npm run chaos -- --minutes N`.
 */
test('chaos: worker SIGKILLs, a Redis kill and a ComfyUI restart lose nothing and run nothing twice', async () => {
  const report = await runChaos({
    jobs: 200,
    deadlineMs: 165_000,
    seed: process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : undefined,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${formatSummary(report)}\n`);
  expect(report.violations).toEqual([]);
  expect(report.jobs).toHaveLength(200);
  expect(report.redisRestarts).toHaveLength(1);
  expect(report.simRestarts).toHaveLength(1);
  expect(report.workerKills).toBeGreaterThan(5);
}, 180_000);
