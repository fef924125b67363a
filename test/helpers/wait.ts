import { errorText } from '../../src/lifecycle';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** An error that stops a waitFor at once (others are retried until the timeout). */
export class Fatal extends Error {
  override name = 'Fatal';
}

/**
 * Waits for a condition that has no event to await (state in another process or server).
 * Checks often and fails with a message naming what never happened. An error thrown by
 * `check` is retried, except a `Fatal` one. The tests' and the bench's one wait.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  { timeoutMs = 30_000, everyMs = 25 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false && v !== null) return v;
    } catch (err) {
      if (err instanceof Fatal) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${errorText(lastError)})` : ''}`,
      );
    }
    await sleep(everyMs);
  }
}
