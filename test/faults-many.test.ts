import { formatManySummary, runMany } from './chaos/many';

/**
 * 1,000 concurrent long jobs across 10 ComfyUI simulators on ONE worker process
 * (WORKER_CONCURRENCY=100): every job is taken at once and waits in a ComfyUI queue while
 * the simulators work through them. Prints the worker's RSS and Redis commands per minute;
 * every job must complete, each prompt run once, none left waiting for a worker slot.
 * Also `npm run chaos -- --many`.
 */
test('1,000 jobs in flight on one worker process: all complete, nothing starves', async () => {
  const report = await runMany({
    jobs: 1000,
    instances: 10,
    sleepSeconds: 0.4,
    deadlineMs: 140_000,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${formatManySummary(report)}\n`);
  expect(report.violations).toEqual([]);
  expect(report.completed).toBe(1000);
  // every job was taken by the worker while most prompts still waited in ComfyUI's queues
  // (each instance runs 100 in a row): none waited for a worker slot until others finished
  expect(report.completedWhenAllTaken).toBeLessThan(report.jobs / 2);
  expect(report.executionsPerInstance.every((n) => n >= 50)).toBe(true);
}, 170_000);
