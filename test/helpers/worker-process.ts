import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

export interface WorkerProcess {
  proc: ChildProcess;
  /** resolves when the worker logged "worker ready" */
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  /** resolves when a log line containing `text` appears */
  waitForLog(text: string): Promise<void>;
}

/** The real worker entry (`workers/worker.ts`) as a child process, so tests can SIGKILL it. */
export function spawnWorker(env: Record<string, string>): WorkerProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'workers', 'worker.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      LOG_LEVEL: env.LOG_LEVEL === 'silent' ? 'info' : (env.LOG_LEVEL ?? 'info'),
      LOG_PRETTY: '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
            `worker exited (${e.code ?? e.signal}) before logging "${text}":\n${out.slice(-3000)}`,
          ),
        ),
      );
    });
  return { proc, ready: waitForLog('worker ready'), exited, output: () => out, waitForLog };
}
