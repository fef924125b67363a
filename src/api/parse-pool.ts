import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import { Piscina } from 'piscina';
import { BodyParserBusyError } from './errors';
import { parseJobBody, type ParsedJob } from './parse-job';

/**
 * Parses and validates job bodies off the event loop: bodies up to INLINE_PARSE_BYTES are
 * parsed inline (well under a millisecond, whatever their shape); larger ones in a pool of
 * worker threads (piscina), so a 5 MB body of any shape never delays other requests.
 * The pool has `availableParallelism() - 1` threads (at least 1) and a bounded queue: past
 * it, `parse` rejects with BodyParserBusyError (a 503 that changed nothing).
 */

export const INLINE_PARSE_BYTES = 64 * 1024;

export interface BodyParser {
  parse(bytes: Uint8Array): Promise<ParsedJob>;
  close(): Promise<void>;
}

export function createBodyParser(opts: { threads?: number } = {}): BodyParser {
  const threads = opts.threads ?? Math.max(1, availableParallelism() - 1);
  // .ts under tsx and ts-jest (the thread loads tsx itself), .js once built
  const ext = extname(__filename);
  const pool = new Piscina({
    filename: join(__dirname, `parse-worker${ext}`),
    minThreads: 1,
    maxThreads: threads,
    maxQueue: threads * 16,
    idleTimeout: 60_000,
    execArgv: ext === '.ts' ? ['--require', require.resolve('tsx/cjs')] : [],
  });
  let closed: Promise<void> | undefined;
  return {
    async parse(bytes) {
      if (bytes.byteLength <= INLINE_PARSE_BYTES) return parseJobBody(bytes);
      if (pool.queueSize >= threads * 16) throw new BodyParserBusyError();
      return (await pool.run(bytes)) as ParsedJob;
    },
    close: () => (closed ??= pool.destroy()),
  };
}
