import { types } from 'node:util';
import { CONNECTION_CLOSED_ERROR_MSG, ConnectionClosedError } from 'bullmq';
import { ReplyError } from 'ioredis';
// (ioredis exports this class only from its built/errors module; it has no exports map)
import { MaxRetriesPerRequestError } from 'ioredis/built/errors';

/**
 * Redis failures told apart by what they are, not by searching their messages: an error
 * reply of Redis (ioredis's `ReplyError`) by its code, the first word Redis gives it
 * (`READONLY You can't write against a read only replica.`); a socket that failed by Node's
 * `code`; ioredis's and BullMQ's own refusals by their class. Where ioredis throws a plain
 * Error (a closed connection, a command refused while offline), by its exact message, as
 * BullMQ does (`CONNECTION_CLOSED_ERROR_MSG`); test/redis-errors.test.ts produces each
 * of these errors with a real client and redis-server, so a rewording fails there.
 */

/** An Error, also one made in another realm (Node's own, seen from a test's sandbox). */
const isError = (err: unknown): err is Error => err instanceof Error || types.isNativeError(err);

/** The code of a Redis error reply (`ERR`, `EXECABORT`, `OOM`…); undefined for other errors. */
export function replyCode(err: unknown): string | undefined {
  if (!(err instanceof (ReplyError as typeof Error))) return undefined;
  return err.message.split(' ', 1)[0] || undefined;
}

/** ioredis's refusal of a command while not connected, with its offline queue disabled. */
const OFFLINE_REFUSAL = "Stream isn't writeable and enableOfflineQueue options is false";

/** Node's codes of a socket that could not connect, or broke. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
]);

/** Replies of a Redis that is up but not serving: loading, a replica, no cluster, full. */
const NOT_SERVING = new Set(['LOADING', 'READONLY', 'CLUSTERDOWN', 'TRYAGAIN', 'OOM']);

/**
 * Replies to a command Redis did not run: a MULTI discarded (EXECABORT), out of memory,
 * loading, a replica, no master, no cluster, a slot moving, an unknown script, a busy script.
 */
const NOT_RUN = new Set([
  'EXECABORT',
  'OOM',
  'LOADING',
  'READONLY',
  'MASTERDOWN',
  'CLUSTERDOWN',
  'TRYAGAIN',
  'NOSCRIPT',
  'BUSY',
]);

/** Errors that mean "Redis is not reachable or not serving". */
export function isConnectionError(err: unknown): boolean {
  if (!isError(err)) return false;
  if (err instanceof ConnectionClosedError || err instanceof MaxRetriesPerRequestError) return true;
  if (err.message === CONNECTION_CLOSED_ERROR_MSG || err.message === OFFLINE_REFUSAL) return true;
  const code = (err as NodeJS.ErrnoException).code;
  return (code !== undefined && SOCKET_CODES.has(code)) || NOT_SERVING.has(replyCode(err) ?? '');
}

/**
 * Errors that mean a write did not happen: the command never left this process (offline
 * queue disabled), or Redis answered it with an error before running it.
 */
export function notApplied(err: unknown): boolean {
  if (!isError(err)) return false;
  return err.message === OFFLINE_REFUSAL || NOT_RUN.has(replyCode(err) ?? '');
}
