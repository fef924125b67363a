/**
 * WebSocket routing and sessions: what other clients see (other-client.json), reconnecting
 * mid-prompt (reconnect.json), prompts without client_id, feature flags, and 0.3.64's
 * same-clientId quirk.
 */
import type { Simulator } from '../src/simulator/server';
import {
  bodyFrom,
  http,
  newId,
  postTranscript,
  shape,
  simulatorPerTest,
  transcript,
  typeSequence,
  WsClient,
  type Msg,
} from './simulator-helpers';

const idle = (m: Msg) => m.type === 'status' && m.data.status.exec_info.queue_remaining === 0;

let sim: Simulator;
const { connect } = simulatorPerTest({ progressIntervalMs: 20 }, (s) => (sim = s));

it('other-client.json: only the owner gets prompt events; others get status broadcasts', async () => {
  const t = transcript('other-client');
  const [a, b, promptId] = [newId(), newId(), newId()];
  const wsA = await connect(a);
  const wsB = await connect(b);
  const anon = await connect();
  await http(
    sim.url,
    'POST',
    '/prompt',
    bodyFrom(t, 0, { client_id: a, prompt_id: promptId }, (p) => (p['2'].inputs.seconds = 0.3)),
  );
  await wsA.done(promptId);
  await Promise.all(
    [anon, wsB].map((ws) => ws.until((m) => idle(m) && m !== ws.messages[0], 'the final status')),
  );
  expect(typeSequence(wsA.messages)).toEqual(typeSequence(t.ws));
  expect(wsB.messages).toEqual(
    t.ws_other_client.map((m: { data: object }, i: number) =>
      i === 0 ? { ...m, data: { ...m.data, sid: b } } : m,
    ),
  );
  expect(shape(anon.messages)).toEqual(shape(t.ws_no_client_id));
  expect(anon.messages[0].data.sid).toMatch(/^[0-9a-f]{32}$/);
});

it('reconnect.json: status with sid, then a bare executing{node}, then live messages only', async () => {
  const t = transcript('reconnect');
  const [clientId, promptId] = [newId(), newId()];
  const first = await connect(clientId);
  await http(
    sim.url,
    'POST',
    '/prompt',
    bodyFrom(
      t,
      0,
      { client_id: clientId, prompt_id: promptId },
      (p) => (p['2'].inputs.seconds = 0.5),
    ),
  );
  await first.until((m) => m.type === 'progress', 'the first progress');
  await first.close();
  const second = await connect(clientId, '/api/ws');
  await second.done(promptId);
  expect(second.messages[0]).toEqual({
    type: 'status',
    data: { status: { exec_info: { queue_remaining: 1 } }, sid: clientId },
  });
  expect(second.messages[1]).toEqual({ type: 'executing', data: { node: '2' } });
  expect(typeSequence(second.messages)).toEqual(typeSequence(t.ws_after_reconnect));
  expect(second.messages.some((m) => m.type === 'execution_start')).toBe(false);
});

it('a prompt without client_id: only progress, progress_state and status reach sockets', async () => {
  const t = transcript('progress');
  const promptId = newId();
  const ws = await connect('someone');
  const body = bodyFrom(t, 0, { prompt_id: promptId }, (p) => (p['2'].inputs.seconds = 0.2));
  delete body.client_id;
  await http(sim.url, 'POST', '/prompt', body);
  await ws.until((m) => idle(m) && m !== ws.messages[0], 'the final status');
  expect(new Set(ws.messages.map((m) => m.type))).toEqual(
    new Set(['status', 'progress_state', 'progress']),
  );
  const h = (await http(sim.url, 'GET', `/history/${promptId}`)).json[promptId];
  expect(h.prompt[3]).toEqual({});
  expect(h.status.status_str).toBe('success');
});

it('answers feature_flags when they are the first message', async () => {
  const ws = await connect('ff');
  ws.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
  const reply = await ws.until((m) => m.type === 'feature_flags', 'the feature_flags reply');
  expect(reply.data).toEqual({ supports_preview_metadata: true, max_upload_size: 104857600 });
});

it('0.3.64 quirk: closing an old socket also unregisters a newer one with the same clientId', async () => {
  const old = await connect('same');
  const newer = await connect('same');
  await old.close();
  const { id } = await postTranscript(sim.url, 'success', 'same');
  const watcher = await connect('watcher');
  await watcher.until(
    () =>
      sim.executions()[id] === 1 &&
      watcher.messages.some((m) => m.data?.status?.exec_info?.queue_remaining === 0),
    'the prompt to finish',
  );
  expect((await http(sim.url, 'GET', `/history/${id}`)).json[id]).toBeDefined();
  expect(newer.messages).toHaveLength(1); // only its own connect-time status
});

it('refuses other upgrade paths and mismatching loopback origins', async () => {
  await expect(WsClient.connect(sim.url, 'x', '/nope')).rejects.toThrow();
  const r = await fetch(`${sim.url}/queue`, { headers: { origin: 'http://evil.example' } });
  expect(r.status).toBe(403);
  expect((await fetch(`${sim.url}/queue`, { headers: { origin: sim.url } })).status).toBe(200);
});
