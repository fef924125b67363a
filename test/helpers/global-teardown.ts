import { readdirSync, readFileSync } from 'node:fs';
import { RUN_VAR, SCOPE_VAR } from './process-scope';

/** pid and command line of every live process whose environment has `<SCOPE_VAR>=<run>.…` */
function processesOfRun(run: string): Array<{ pid: number; command: string }> {
  const prefix = `${SCOPE_VAR}=${run}.`;
  const found: Array<{ pid: number; command: string }> = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      if (!env.some((v) => v.startsWith(prefix))) continue;
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      found.push({ pid, command: command.slice(0, 160) });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/**
 * After the whole suite: no process a test started may still run. Each test file's scope
 * was reaped in its teardown; anything left (a reaper that could not kill it, a process
 * that escaped) is listed, killed, and fails the run.
 */
export default async function globalTeardown(): Promise<void> {
  const run = process.env[RUN_VAR];
  if (!run) return;
  try {
    readdirSync('/proc');
  } catch {
    return; // no /proc (macOS): the reapers' process-group kill is all there is
  }
  let left = processesOfRun(run);
  // reapers may still be killing, killed processes may not be reaped yet
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = processesOfRun(run);
  }
  if (left.length === 0) return;
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  throw new Error(
    `${left.length} process(es) started by the tests outlived their test file (now killed):\n` +
      left.map((p) => `  ${p.pid} ${p.command}`).join('\n'),
  );
}
