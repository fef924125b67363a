/**
 * Every process a test (or a benchmark) starts dies with it, also when the test fails,
 * times out or jest itself is SIGKILLed.
 *
 * A scope is a token in the environment, `CQ_TEST_SCOPE=<run>.<pid>.<n>`: set in this
 * process's `process.env` before a test file runs (test/helpers/jest-environment.ts), it is
 * inherited by every child, grandchild and detached descendant (redis-server, workers via
 * tsx, `npm start` and what it spawns, chromium). A reaper (a tiny `sh`, its own process
 * group, signals from a terminal ignored) holds a pipe from this process on its stdin;
 * when the pipe closes, because the test file ended (the environment's teardown closes it)
 * or because this process died in any way, it SIGKILLs the process group of every child
 * `spawnScoped` started that is still running, then every process carrying the token (read
 * from /proc/<pid>/environ, so also grandchildren in groups of their own; not on macOS).
 * SIGKILL also ends a SIGSTOPped process. The token is never in the environment this
 * process was started with, so the reaper cannot kill it. redis-server must run with
 * `--set-proc-title no`: its process title otherwise overwrites its environment.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';

export const SCOPE_VAR = 'CQ_TEST_SCOPE';
/** Set by the jest globalSetup: every scope of one run starts with `<run>.` */
export const RUN_VAR = 'CQ_TEST_RUN';

const REAPER = `
trap '' INT HUP
groups=
while read -r line; do
  case $line in
    -*) keep=; for g in $groups; do [ "$g" = "\${line#-}" ] || keep="$keep $g"; done; groups=$keep ;;
    *) groups="$groups $line" ;;
  esac
done
for pid in $groups; do kill -KILL -- "-$pid" 2>/dev/null; done
[ -r /proc/self/environ ] || exit 0
for pass in 1 2 3 4 5; do
  found=$(grep -lzxF -- "$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
  [ -z "$found" ] && exit 0
  kill -KILL $found 2>/dev/null
  sleep 0.05
done
`;

export interface Reaper {
  readonly token: string;
  /** registers a child that leads its own process group, until it exits */
  adopt(pid: number | undefined, exited: Promise<unknown>): void;
  /** kills every process of the scope and waits until the reaper is done */
  close(): Promise<void>;
}

let sequence = 0;

/** A new token: `<run>.<pid>.<n>` (the run from the globalSetup, if any). */
export function newScopeToken(): string {
  const run = process.env[RUN_VAR] ?? randomBytes(6).toString('hex');
  return `${run}.${process.pid}.${sequence++}`;
}

/** Starts the reaper of `token`; its own environment does not carry the token. */
export function startReaper(token: string): Reaper {
  const env = { ...process.env };
  delete env[SCOPE_VAR];
  const proc: ChildProcess = spawn('sh', ['-c', REAPER, 'reaper', `${SCOPE_VAR}=${token}`], {
    env,
    stdio: ['pipe', 'ignore', 'inherit'],
    detached: true,
  });
  proc.stdin!.on('error', () => undefined);
  // the reaper must not keep this process alive, nor its pipe the event loop
  proc.unref();
  (proc.stdin as unknown as { unref?: () => void }).unref?.();
  const exited = once(proc, 'exit').then(() => undefined);
  let closing: Promise<void> | undefined;
  return {
    token,
    adopt(pid, exited) {
      if (!pid || closing) return;
      proc.stdin!.write(`${pid}\n`);
      void exited.then(() => {
        if (!closing) proc.stdin!.write(`-${pid}\n`);
      });
    },
    close() {
      closing ??= (async () => {
        proc.stdin!.end();
        await exited;
      })();
      return closing;
    },
  };
}

const KEY = Symbol.for('comfyui-queue.reaper');
type WithReaper = typeof globalThis & { [KEY]?: Reaper };

/**
 * The scope of this test file (set up by the jest environment), or, outside jest (bench,
 * `npm run chaos`), one for the whole process, started on first use.
 */
export function processScope(): Reaper {
  const g = globalThis as WithReaper;
  if (!g[KEY]) {
    const reaper = startReaper(newScopeToken());
    process.env[SCOPE_VAR] = reaper.token;
    g[KEY] = reaper;
  }
  return g[KEY];
}

/** Installs `reaper` as the scope of code running against `global` (the jest environment). */
export function installScope(global: object, reaper: Reaper): void {
  (global as WithReaper)[KEY] = reaper;
}

/**
 * `spawn` inside the scope: the token in its environment, its own process group (a
 * terminal's Ctrl-C reaches only the runner, which then stops it) registered with the reaper.
 */
export function spawnScoped(
  command: string,
  args: string[],
  opts: SpawnOptions = {},
): ChildProcess {
  const scope = processScope();
  const proc = spawn(command, args, {
    ...opts,
    env: { ...(opts.env ?? process.env), [SCOPE_VAR]: scope.token },
    detached: true,
  });
  scope.adopt(proc.pid, once(proc, 'exit'));
  return proc;
}
