/**
 * A preload (`node --import <this URL>`) for the processes `npm start` spawns. The
 * supervisor keeps a pipe open on their stdin; if it dies without stopping them (SIGKILL,
 * crash), the pipe closes and the child stops itself the graceful way, with SIGTERM. Its
 * stdout is gone too by then, which can leave a logger's final flush waiting forever, so a
 * watchdog thread SIGKILLs the process once SHUTDOWN_TIMEOUT_MS (+5 s) has passed.
 * A data: URL, so it needs no file and no loader in either the tsx or the compiled layout;
 * it does nothing in worker threads (pino's transport).
 */
const code = `
import { isMainThread, Worker } from 'node:worker_threads';
const stdin = process.stdin;
if (isMainThread && !stdin.isTTY) {
  stdin.on('end', () => {
    const ms = (Number(process.env.SHUTDOWN_TIMEOUT_MS) || 20000) + 5000;
    const kill = 'setTimeout(() => process.kill(' + process.pid + ', "SIGKILL"), ' + ms + ')';
    new Worker(kill, { eval: true, execArgv: [] }).unref();
    process.kill(process.pid, 'SIGTERM');
  });
  stdin.on('error', () => {});
  stdin.resume();
  stdin.unref?.();
}
`;

export const EXIT_WITH_PARENT_IMPORT = `data:text/javascript,${encodeURIComponent(code)}`;
