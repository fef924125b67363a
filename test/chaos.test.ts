import { formatSummary, runChaos } from './chaos/scenario';

/**
 * Chaos under starvation, bounded: 40 jobs (TestSleep 0.2–3 s) on 2 ComfyUI simulators and
 * 3 worker processes, with 2 CPU hogs (busy child processes) competing for the cores. A
 * random ready worker is SIGKILLed and restarted 6 times, and one is SIGSTOPped for 1–15 s
 * twice (its lock expires, another worker takes its jobs over, then it resumes where it
 * stood: the fence and the lock-checked writes must make that harmless); redis-server (AOF,
 * appendfsync everysec) is SIGKILLed once and restarted on its data dir, and one simulator
 * restarts once (losing its queue and history). The disruptions are paced by progress (the
 * k-th kill when k/7 of the jobs are finished) and the last 4 jobs are held back until all
 * have started, so how many happen does not depend on the machine's speed (a time-paced
 * killer once managed 4 of 5 on a fast CI machine).
 * Then every job must be terminal, none lost, none left active, each prompt executed once
 * (twice only where ComfyUI lost it, and then counted as a resubmission), failures only
 * with legitimate codes. What a Redis kill may lose and why the checks are exactly these is
 * explained in test/chaos/scenario.ts. A job whose JobState disagrees with its BullMQ state
 * (as a stale worker's late write once caused: test/faults-partition.test.ts) fails the
 * run. The longer run: `npm run chaos -- --minutes N`.
 */
test('chaos: worker SIGKILLs and SIGSTOPs under CPU hogs, a Redis kill and a ComfyUI restart lose nothing and run nothing twice', async () => {
  const report = await runChaos({
    jobs: 40,
    hogs: 2,
    kills: 6,
    pauses: 2,
    pauseMs: [1_000, 15_000],
    deadlineMs: 80_000,
    seed: process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : undefined,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${formatSummary(report)}\n`);
  expect(report.violations).toEqual([]);
  expect(report.jobs).toHaveLength(40);
  expect(report.redisRestarts).toHaveLength(1);
  expect(report.simRestarts).toHaveLength(1);
  expect(report.workerKills).toBe(6);
  expect(report.workerPauses).toBe(2);
}, 120_000);
