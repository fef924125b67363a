/**
 * The ComfyUI simulator: a real HTTP + WebSocket server that speaks ComfyUI 0.3.64's protocol
 * (see the shared comfyui-api.md and the recorded transcripts), runs a small node catalogue
 * (EmptyImage, LoadImage, ImageInvert, SaveImage, PreviewImage, SaveAnimatedPNG, EmptyAudio,
 * SaveAudio, PreviewAudio, TestSleep and an SDXL-style checkpoint → CLIP → KSampler → VAEDecode chain),
 * takes uploads (`/upload/image`) and can be restarted, paused and told to fail, for crash
 * and fault tests.
 */
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { DuplicatePromptIds, SimVersion } from './api';
import type { SlowPrompts } from './http';
import { loadCatalog } from './catalog';
import { createFolders } from './files';
import { createHttpHandlers } from './http';
import { ComfyInstance, type SimLogger } from './instance';

export type { SlowPrompts } from './http';

export interface SimulatorOptions {
  /** TCP port; 0 picks a free one. @defaultValue 0 */
  port?: number;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** Where SaveImage writes PNGs. @defaultValue a fresh temporary directory (removed on close) */
  outputDir?: string;
  /**
   * 'accept' = every merged ComfyUI release: the same id again is queued and run again.
   * 'reject' models the open, unmerged pull requests #16241/#16242 (no release does this):
   * prompt_id must be a canonical lowercase UUID (else 400 `invalid_prompt_id`), and an id
   * that is pending, running or in history gets 409 `{"error": "prompt_id already exists"}`.
   * @defaultValue 'accept'
   */
  duplicatePromptIds?: DuplicatePromptIds;
  /** How often TestSleep reports progress. @defaultValue 50 */
  progressIntervalMs?: number;
  /**
   * Time per KSampler step (one `progress` per step); checkpoint loading and VAE decoding
   * take two steps' time, text encoding half a step. @defaultValue 20
   */
  samplerStepMs?: number;
  /** Probability (0..1) that a prompt fails with a runtime `execution_error`. @defaultValue 0 */
  failureRate?: number;
  /**
   * '0.3.64' as recorded, or 'current': the merged releases after it (comfyui-api.md §13):
   * prompt ids must be canonical UUIDs (400 `invalid_prompt_id`), `extra_data.create_time`,
   * the jobs API (`GET /api/jobs[/{id}]`, `POST /api/jobs/{id}/cancel`); /system_stats
   * reports 0.38.1. @defaultValue '0.3.64'
   */
  version?: SimVersion;
  logger?: SimLogger;
}

export interface Simulator {
  /** e.g. http://127.0.0.1:43123 */
  readonly url: string;
  readonly port: number;
  /** The input folder (`/upload/image`, LoadImage); removed by close(). */
  readonly inputDir: string;
  /** Executions per prompt id (a prompt counts each time it starts executing); survives restart(). */
  executions(): Record<string, number>;
  /**
   * Like a ComfyUI process restart: drops the queue, the running prompt (no history), history,
   * temp files, WebSocket sessions and the node cache, resets `number` to 0; keeps the port,
   * the output directory and the executions counter. Connections are refused meanwhile.
   * Resolves with the ids of the prompts it dropped (running, pending and in history).
   */
  restart(): Promise<string[]>;
  /**
   * A fault for the POST /prompt requests read from now on (undefined: none): the prompt is
   * queued `queueAfterMs` after its request was read (a ComfyUI whose event loop is stalled)
   * and answered `answerAfterMs` after it (an answer lost in transit, a client timeout).
   */
  slowPrompts(fault: SlowPrompts | undefined): void;
  /** Stops listening (connections refused, open ones dropped) without forgetting anything. */
  pause(): Promise<void>;
  /** Listens again on the same port after pause(). */
  resume(): Promise<void>;
  close(): Promise<void>;
}

const silent: SimLogger = { info: () => undefined, warn: () => undefined };

/**
 * The HTTP server and its open connections: listens on a port that is kept across pauses;
 * stop() refuses new connections and drops the open ones (`onStop` closes the sockets' sessions).
 */
function httpListener(
  handlers: ReturnType<typeof createHttpHandlers>,
  host: string,
  firstPort: number,
  onStop: () => void,
) {
  const server: Server = createServer({ keepAliveTimeout: 75_000 }, handlers.request);
  server.on('upgrade', handlers.upgrade);
  const connections = new Set<Socket>();
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  let port = firstPort;
  let listening = false;
  return {
    port: () => port,
    listening: () => listening,
    listen: () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const addr = server.address();
          if (addr && typeof addr === 'object') port = addr.port;
          listening = true;
          resolve();
        });
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        if (!listening) return resolve();
        listening = false;
        server.close(() => resolve());
        onStop();
        for (const s of connections) s.destroy();
      }),
  };
}

export async function createSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const host = opts.host ?? '127.0.0.1';
  const failureRate = opts.failureRate ?? 0;
  if (!(failureRate >= 0 && failureRate <= 1))
    throw new RangeError('failureRate must be between 0 and 1');
  const log = opts.logger ?? silent;
  const catalog = loadCatalog();
  const folders = createFolders(opts.outputDir);
  const executions = new Map<string, number>();
  const newInstance = () =>
    new ComfyInstance({
      catalog,
      folders,
      failureRate,
      executions,
      log,
      timing: {
        progressIntervalMs: opts.progressIntervalMs ?? 50,
        samplerStepMs: opts.samplerStepMs ?? 20,
      },
    });
  let instance = newInstance();
  let closed = false;
  let slow: SlowPrompts | undefined;

  const handlers = createHttpHandlers({
    instance: () => instance,
    catalog,
    folders,
    executions,
    duplicatePromptIds: opts.duplicatePromptIds ?? 'accept',
    version: opts.version ?? '0.3.64',
    host,
    port: () => http.port(),
    slowPrompts: () => slow,
    log,
  });
  const http = httpListener(handlers, host, opts.port ?? 0, () => instance.hub.closeAll());
  await http.listen();
  const port = http.port();
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info(`ComfyUI simulator listening on ${url}`);

  return {
    url,
    port,
    inputDir: folders.input,
    executions: () => Object.fromEntries(executions),
    async restart() {
      const wasListening = http.listening();
      await http.stop();
      const dropped = instance.queue.knownIds();
      instance.dispose();
      folders.resetTemp();
      instance = newInstance();
      if (wasListening && !closed) await http.listen();
      return dropped;
    },
    slowPrompts(fault) {
      slow = fault;
    },
    pause: http.stop,
    async resume() {
      if (!http.listening() && !closed) await http.listen();
    },
    async close() {
      if (closed) return;
      closed = true;
      await http.stop();
      instance.dispose();
      handlers.close();
      folders.dispose();
    },
  };
}
