/**
 * comfyui-queue CLI (`npx comfyui-queue …` or `npm run cli -- …`):
 *   submit <workflow.json> [--wait] [--job-type T]   post a workflow, optionally follow it
 *   status <id>                                      print the job as JSON
 *   cancel <id>                                      cancel a queued or running job
 * Common: --api URL (COMFYUI_QUEUE_API, default http://127.0.0.1:3000),
 *         --key KEY (COMFYUI_QUEUE_API_KEY).
 * Exit codes: 0 ok, 1 the job failed or was cancelled or the API refused, 2 bad usage.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { ApiError, createApiClient, type ApiClient } from '../cli/api-client';
import type { JobView } from '../job/view';

const USAGE = `usage:
  comfyui-queue submit <workflow.json> [--wait] [--job-type TYPE]
  comfyui-queue status <job-id>
  comfyui-queue cancel <job-id>
options:
  --api URL    API base URL (env COMFYUI_QUEUE_API, default http://127.0.0.1:3000)
  --key KEY    API key, sent as a Bearer token (env COMFYUI_QUEUE_API_KEY)
  --wait       follow the job with a progress bar and print its output URLs
  --job-type   the job's jobType (default: the API's)`;

class UsageError extends Error {
  override name = 'UsageError';
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A bare API-format workflow or a request body `{ workflow, … }`, as the POST body. */
function requestBody(file: string, jobType?: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read workflow ${file}: ${(err as Error).message}`);
  }
  if (!isObject(json))
    throw new UsageError(`${file}: expected a JSON object (a workflow in API format)`);
  if (Array.isArray(json.nodes)) {
    throw new UsageError(
      `${file} is a ComfyUI UI workflow (it has "nodes"); export it in API format instead ` +
        '(ComfyUI: Workflow > Export (API), or "Save (API Format)" with dev mode on)',
    );
  }
  const wrapped = isObject(json.workflow) && json.workflow.class_type === undefined;
  const body = wrapped ? { ...json } : { workflow: json };
  return jobType ? { ...body, jobType } : body;
}

function describe(view: JobView): string {
  const p = view.progress;
  if (view.status === 'submitted' && p?.queuePosition !== undefined)
    return `waiting in ComfyUI (position ${p.queuePosition})`;
  if (view.status === 'running' && p?.node) return `running node ${p.node}`;
  return view.status;
}

async function waitFor(api: ApiClient, id: string): Promise<number> {
  const tty = process.stderr.isTTY;
  const bar = new SingleBar({
    format: ' {bar} {percentage}% | {state}',
    hideCursor: true,
    stream: process.stderr,
  });
  if (tty) bar.start(100, 0, { state: 'queued' });
  let last = '';
  const final = await api.follow(id, (view) => {
    const state = describe(view);
    if (tty) bar.update(Math.round(view.progress?.percent ?? 0), { state });
    else if (state !== last)
      process.stderr.write(`${id}: ${state} ${Math.round(view.progress?.percent ?? 0)}%\n`);
    last = state;
  });
  if (tty) {
    if (final.status === 'completed') bar.update(100, { state: 'completed' });
    bar.stop();
  }
  if (final.status !== 'completed') {
    const error = final.error ? `: ${final.error.code}: ${final.error.message}` : '';
    process.stderr.write(`job ${id} ${final.status}${error}\n`);
    return 1;
  }
  const outputs = final.outputs ?? [];
  process.stderr.write(`job ${id} completed with ${outputs.length} output(s)\n`);
  for (const o of outputs) console.log(api.absolute(o.url));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      api: { type: 'string' },
      key: { type: 'string' },
      'job-type': { type: 'string' },
      wait: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, arg] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (!arg || positionals.length > 2)
    throw new UsageError(`${command} takes one argument\n${USAGE}`);
  const api = createApiClient({
    baseUrl: values.api ?? process.env.COMFYUI_QUEUE_API ?? 'http://127.0.0.1:3000',
    apiKey: values.key ?? process.env.COMFYUI_QUEUE_API_KEY,
  });
  switch (command) {
    case 'submit': {
      const { id } = await api.submit(requestBody(arg, values['job-type']));
      console.log(id);
      if (!values.wait) return 0;
      process.on('SIGINT', () => {
        process.stderr.write(`\nstopped following; the job goes on: comfyui-queue status ${id}\n`);
        process.exit(130);
      });
      return waitFor(api, id);
    }
    case 'status':
      console.log(JSON.stringify(await api.get(arg), null, 2));
      return 0;
    case 'cancel': {
      const { status } = await api.cancel(arg);
      console.log(`${arg} ${status}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage =
      err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(
      `comfyui-queue: ${err instanceof ApiError || usage ? (err as Error).message : String(err)}\n`,
    );
    process.exit(usage ? 2 : 1);
  },
);
