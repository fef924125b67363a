import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { stripVTControlCharacters } from 'node:util';

/** One process started by `npm start`: its output, its readiness line, its exit. */
export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Whether to echo a line (ANSI codes stripped) of the child's output; default: all. */
  echo?: (plainLine: string) => boolean;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedChild {
  readonly name: string;
  readonly pid: number;
  readonly exited: Promise<ChildExit>;
  isRunning(): boolean;
  /** Resolves with the first output line matching `match`; rejects if the child exits first. */
  waitForLine(match: RegExp): Promise<string>;
  /** Sends `signal`, waits up to `timeoutMs`, then SIGKILLs. Safe to call twice. */
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ChildExit>;
  /** SIGKILL now (through the child handle: never a pid that was not ours). */
  kill(): void;
  /** The last output lines, for error messages. */
  tail(): string;
}

const TAIL_LINES = 30;

/** Something `npm start` cannot start; the message says what to do. */
export class StartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartError';
  }
}

export function describeExit(e: ChildExit): string {
  return e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
}

/**
 * Spawns a child in its own process group (`detached`), so a terminal's Ctrl-C reaches only
 * the supervisor, which then stops the children in order. stdin stays an open pipe: a child
 * preloading `exit-with-parent` stops itself when that pipe closes (supervisor gone).
 */
export function spawnChild(
  spec: ChildSpec,
  print: (name: string, line: string) => void,
): ManagedChild {
  const proc = spawn(spec.command, spec.args, {
    cwd: spec.cwd,
    env: spec.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const lines: string[] = [];
  const waiters: { match: RegExp; resolve: (line: string) => void }[] = [];
  let exit: ChildExit | undefined;
  const exited = new Promise<ChildExit>((resolve) => {
    proc.once('exit', (code, signal) => resolve((exit = { code, signal })));
    proc.once('error', (err) => {
      lines.push(`${spec.command}: ${err.message}`);
      resolve((exit = { code: null, signal: null }));
    });
  });
  proc.stdin!.on('error', () => undefined);

  const onLine = (line: string) => {
    const plain = stripVTControlCharacters(line);
    lines.push(plain);
    if (lines.length > TAIL_LINES) lines.shift();
    if (!spec.echo || spec.echo(plain)) print(spec.name, line);
    for (const w of [...waiters]) {
      if (w.match.test(plain)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(plain);
      }
    }
  };
  for (const stream of [proc.stdout!, proc.stderr!]) {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', onLine);
  }

  let stopping: Promise<ChildExit> | undefined;
  return {
    name: spec.name,
    pid: proc.pid ?? -1,
    exited,
    isRunning: () => exit === undefined,
    tail: () => lines.join('\n'),
    waitForLine(match) {
      const seen = lines.find((l) => match.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ match, resolve });
        void exited.then((e) =>
          reject(new StartError(`${spec.name} stopped (${describeExit(e)}) before it was ready`)),
        );
      });
    },
    kill() {
      proc.kill('SIGKILL');
    },
    stop(signal, timeoutMs) {
      stopping ??= (async () => {
        if (exit) return exit;
        proc.kill(signal);
        const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
        const result = await exited;
        clearTimeout(timer);
        return result;
      })();
      return stopping;
    },
  };
}
