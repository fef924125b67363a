import type { Dispatcher } from 'undici';

/**
 * A check that runs in the same tick as a request's first write to its socket (after any
 * wait for a free connection or a new one): the worker's fence (src/worker/fence.ts)
 * checks there that its lock proof is still fresh, so no await separates the check from
 * the write.
 */

/** Options of a request that creates work in ComfyUI. */
export interface WriteOptions {
  /**
   * Called synchronously right before the request is written to the socket; if it throws,
   * nothing is sent and the request rejects with that error.
   */
  beforeWrite?: () => void;
}

/** A `beforeWrite` threw: the request was aborted before anything was sent. */
export class WriteRefused extends Error {
  constructor(readonly reason: unknown) {
    super('request refused before it was written');
    this.name = 'WriteRefused';
  }
}

type Handler = Required<Dispatcher.DispatchHandler>;

/**
 * undici calls `onRequestStart` in the same tick as it writes the request's headers and a
 * string body (client-h1 `writeH1`); a throw there aborts the request unsent.
 */
class BeforeWriteHandler implements Dispatcher.DispatchHandler {
  constructor(
    private readonly inner: Dispatcher.DispatchHandler,
    private readonly check: () => void,
  ) {}
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    try {
      this.check();
    } catch (err) {
      controller.abort(new WriteRefused(err));
      return;
    }
    this.inner.onRequestStart?.(controller, context);
  }
  onRequestUpgrade(...a: Parameters<Handler['onRequestUpgrade']>) {
    this.inner.onRequestUpgrade?.(...a);
  }
  onResponseStart(...a: Parameters<Handler['onResponseStart']>) {
    this.inner.onResponseStart?.(...a);
  }
  onResponseData(...a: Parameters<Handler['onResponseData']>) {
    this.inner.onResponseData?.(...a);
  }
  onResponseEnd(...a: Parameters<Handler['onResponseEnd']>) {
    this.inner.onResponseEnd?.(...a);
  }
  onResponseError(...a: Parameters<Handler['onResponseError']>) {
    this.inner.onResponseError?.(...a);
  }
}

/** `dispatcher` with `check` run right before each request's first write. */
export function withBeforeWrite(dispatcher: Dispatcher, check: () => void): Dispatcher {
  return dispatcher.compose(
    (dispatch) => (opts, handler) => dispatch(opts, new BeforeWriteHandler(handler, check)),
  );
}
