import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { EXIT_WITH_PARENT_IMPORT } from '../../src/run/exit-with-parent';
import { freePort } from '../../src/run/ports';
import { spawnScoped } from './process-scope';

/** The repository's root: the working directory of every process the tests and bench start. */
export const ROOT = join(__dirname, '..', '..');

/**
 * The arguments of `node` running `file` (relative to the repo root) with tsx, preloading
 * `exit-with-parent` (it stops itself when its parent is gone): the tests' and the bench's.
 */
export function nodeEntryArgs(file: string): string[] {
  return ['--import', 'tsx', '--import', EXIT_WITH_PARENT_IMPORT, join(ROOT, file)];
}

export interface WorkerProcess {
  proc: ChildProcess;
  /**
   * resolves when the process logged its ready line ("worker ready" for the image worker,
   * once it takes jobs: the only line containing that text); rejects if it exits first
   */
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  /** resolves when a log line containing `text` appears */
  waitForLog(text: string): Promise<void>;
}

/** The real worker entry (`workers/worker.ts`) as a child process, so tests can SIGKILL it. */
export function spawnWorker(env: Record<string, string>): WorkerProcess {
  return spawnEntry('workers/worker.ts', env, 'worker ready');
}

/** The real API entry (`src/bin/api.ts`) on a free port, ready once it listens. */
export async function spawnApi(
  env: Record<string, string>,
): Promise<WorkerProcess & { url: string }> {
  const port = await freePort();
  const api = spawnEntry('src/bin/api.ts', { ...env, PORT: String(port) }, 'api listening');
  return { ...api, url: `http://127.0.0.1:${port}` };
}

/** `node --import tsx <file>` (relative to the repo root) in the test's process scope. */
function spawnEntry(file: string, env: Record<string, string>, readyText: string): WorkerProcess {
  const proc = spawnScoped(process.execPath, nodeEntryArgs(file), {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      LOG_LEVEL: env.LOG_LEVEL === 'silent' ? 'info' : (env.LOG_LEVEL ?? 'info'),
      LOG_PRETTY: '',
    },
    // stdin: a pipe whose end (this process gone) makes the process stop itself
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  proc.stdin!.on('error', () => undefined);
  let out = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const onData = (b: Buffer) => {
    out += b.toString();
    for (const w of [...waiters]) {
      if (out.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = once(proc, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const waitForLog = (text: string) =>
    new Promise<void>((resolve, reject) => {
      if (out.includes(text)) return resolve();
      waiters.push({ text, resolve });
      void exited.then((e) =>
        reject(
          new Error(
            `${file} exited (${e.code ?? e.signal}) before logging "${text}":\n${out.slice(-3000)}`,
          ),
        ),
      );
    });
  return { proc, ready: waitForLog(readyText), exited, output: () => out, waitForLog };
}

/** whether the process has neither exited nor been killed by a signal */
export function alive(w: WorkerProcess): boolean {
  return w.proc.exitCode === null && w.proc.signalCode === null;
}

/** Empties `ws`, SIGKILLs each worker still alive and waits until every one has exited. */
export async function killAll(ws: WorkerProcess[]): Promise<void> {
  const all = ws.splice(0);
  for (const w of all) if (alive(w)) w.proc.kill('SIGKILL');
  await Promise.all(all.map((w) => w.exited));
}
