import type { ChildProcess } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { request } from 'node:http';
import { join } from 'node:path';
import { ComfyClient } from '../src/comfy/client';
import { EXIT_WITH_PARENT_IMPORT } from '../src/run/exit-with-parent';
import { spawnScoped } from './helpers/process-scope';
import { sleepWorkflow } from './helpers/workflows';

/**
 * The look-up that decides a resubmission, against a ComfyUI whose event loop stood still
 * (here: the simulator process SIGSTOPped) while a POST /prompt reached it on a new
 * connection and the look-up arrived after it. A server reads a new connection only after
 * accepting it, one turn of its loop later, so a look-up on a kept-alive connection is
 * answered first: "absent", and the prompt is queued right after. That is how a written
 * POST and a resubmission both ran under chaos with a starved simulator. The deciding
 * look-up goes over a connection of its own, accepted after the POST's, so it is answered
 * after the POST was queued.
 */

let sim: ChildProcess;
let url: string;

beforeAll(async () => {
  sim = spawnScoped(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      EXIT_WITH_PARENT_IMPORT,
      join(__dirname, '../src/bin/simulator.ts'),
    ],
    { env: { ...process.env, PORT: '0' }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let out = '';
  for await (const chunk of sim.stdout!) {
    out += String(chunk);
    const m = /listening on (\S+)/.exec(out);
    if (m) {
      url = m[1];
      break;
    }
  }
}, 60_000);
afterAll(async () => {
  if (sim.exitCode === null && sim.signalCode === null) {
    sim.kill('SIGKILL');
    await once(sim, 'exit');
  }
});

/** POST /prompt on a new connection; resolves once the request is handed to the kernel */
async function postOnNewConnection(promptId: string): Promise<void> {
  const body = JSON.stringify({ prompt: sleepWorkflow(5), prompt_id: promptId, client_id: 'x' });
  const req = request(`${url}/prompt`, {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json' },
  });
  req.on('error', () => undefined); // answered or dropped after the test: not its subject
  req.on('response', (res) => res.resume());
  req.end(body);
  await once(req, 'finish');
}

/** resolves when undici has written the headers of a request whose path starts with `path` */
function sent(path: string): Promise<void> {
  return new Promise((resolve) => {
    const onSend = (m: unknown) => {
      if (!(m as { request: { path: string } }).request.path.startsWith(path)) return;
      unsubscribe('undici:client:sendHeaders', onSend);
      resolve();
    };
    subscribe('undici:client:sendHeaders', onSend);
  });
}

async function lookupWhileStalled(client: ComfyClient, promptId: string, fresh: boolean) {
  sim.kill('SIGSTOP');
  try {
    await postOnNewConnection(promptId);
    const written = sent('/queue');
    const found = client.lookup(promptId, { freshConnection: fresh });
    await written;
    sim.kill('SIGCONT');
    return (await found).state;
  } finally {
    sim.kill('SIGCONT');
  }
}

test.each([
  ['on a kept-alive connection is read before the POST: absent', false, true],
  ['on a connection of its own is read after the POST: found', true, false],
])(
  'the look-up %s',
  async (_name, fresh, absent) => {
    const client = new ComfyClient(url, { timeoutMs: 10_000 });
    try {
      await client.hasJobsApi(); // asked once per client: not part of the look-up below
      await client.queue(); // a kept-alive connection in the client's pool
      const promptId = crypto.randomUUID();
      const state = await lookupWhileStalled(client, promptId, fresh);
      expect(state === 'absent').toBe(absent);
      // either way the POST was queued: a resubmission after "absent" would run it twice
      expect((await client.lookup(promptId)).state).not.toBe('absent');
      await client.cancel(promptId);
    } finally {
      await client.close();
    }
  },
  30_000,
);
