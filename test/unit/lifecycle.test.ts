import { every, Scope, TimeoutError, withTimeout } from '../../src/lifecycle';

describe('withTimeout', () => {
  test('passes the value or the rejection of work that ends in time', async () => {
    await expect(withTimeout('x', 1_000, Promise.resolve(7))).resolves.toBe(7);
    await expect(withTimeout('x', 1_000, Promise.reject(new Error('no')))).rejects.toThrow('no');
  });
  test('rejects with a TimeoutError naming the wait when the work never ends', async () => {
    const never = new Promise<never>(() => undefined);
    const err = await withTimeout('the answer', 20, never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toBe('the answer: timed out after 20 ms');
  });
});

describe('Scope', () => {
  test('releases in reverse order, each step run even when one fails or hangs', async () => {
    const done: string[] = [];
    const failed: string[] = [];
    const scope = new Scope({ stepMs: 20, onError: (what) => failed.push(what) });
    scope.defer('first', () => done.push('first'));
    scope.defer('hangs', () => new Promise(() => undefined));
    scope.defer('fails', () => Promise.reject(new Error('boom')));
    scope.defer('last', () => done.push('last'));
    await scope.close();
    expect(done).toEqual(['last', 'first']);
    expect(failed).toEqual(['fails', 'hangs']);
  });
  test('close twice is one close; a step deferred after close runs at once', async () => {
    let runs = 0;
    const scope = new Scope({ stepMs: 1_000 });
    scope.defer('count', () => runs++);
    const first = scope.close();
    expect(scope.close()).toBe(first);
    await first;
    expect(scope.closed).toBe(true);
    const late = new Promise<void>((resolve) => scope.defer('late', resolve));
    await late;
    expect(runs).toBe(1);
  });
});

describe('every', () => {
  afterEach(() => jest.useRealTimers());
  test('runs at once and each interval, never two at once; a failure is logged and retried', async () => {
    jest.useFakeTimers();
    const warned: string[] = [];
    const log = { warn: (_o: object, msg: string) => void warned.push(msg) };
    let runs = 0;
    let release: (() => void) | undefined;
    const stop = every(
      1000,
      'sweep',
      async () => {
        runs += 1;
        if (runs === 1) throw new Error('redis down');
        await new Promise<void>((r) => (release = r));
      },
      log,
    );
    await jest.advanceTimersByTimeAsync(0);
    expect({ runs, warned }).toEqual({ runs: 1, warned: ['sweep failed; will retry'] });
    await jest.advanceTimersByTimeAsync(1000);
    expect(runs).toBe(2); // the retry, now hanging
    await jest.advanceTimersByTimeAsync(3000);
    expect(runs).toBe(2); // ticks while it runs are skipped
    release?.();
    await jest.advanceTimersByTimeAsync(1000);
    expect(runs).toBe(3);
    stop();
    release?.();
    await jest.advanceTimersByTimeAsync(5000);
    expect(runs).toBe(3);
  });
});
