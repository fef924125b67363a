import { createServer } from 'node:http';
import { ComfyClient } from '../../src/comfy/client';
import {
  classifyHistory,
  describeValidationError,
  extractOutputs,
  type HistoryEntry,
} from '../../src/comfy/protocol';

const entry = (
  messages: unknown[],
  outputs: Record<string, unknown> = {},
  status_str = 'success',
): HistoryEntry => ({
  outputs,
  status: { status_str, completed: status_str === 'success', messages },
});

describe('classifyHistory (comfyui-api.md §3.3)', () => {
  test('success with outputs in node-id then file order', () => {
    const out = classifyHistory(
      entry(
        [
          ['execution_start', { prompt_id: 'p' }],
          ['execution_success', { prompt_id: 'p' }],
        ],
        {
          '10': { images: [{ filename: 'c.png', subfolder: '', type: 'output' }] },
          '9': {
            images: [
              { filename: 'a.png', subfolder: 'sub', type: 'output' },
              { filename: 'b.png', subfolder: '', type: 'temp' },
            ],
            text: ['ignored'],
          },
        },
      ),
    );
    expect(out).toEqual({
      kind: 'success',
      outputs: [
        { nodeId: '9', filename: 'a.png', subfolder: 'sub', type: 'output' },
        { nodeId: '9', filename: 'b.png', subfolder: '', type: 'temp' },
        { nodeId: '10', filename: 'c.png', subfolder: '', type: 'output' },
      ],
    });
  });

  test('execution_error carries node id, type and message', () => {
    const out = classifyHistory(
      entry(
        [
          ['execution_start', { prompt_id: 'p' }],
          [
            'execution_error',
            {
              prompt_id: 'p',
              node_id: '3',
              node_type: 'SaveImage',
              exception_message: 'boom\n',
              exception_type: 'Exception',
            },
          ],
        ],
        {},
        'error',
      ),
    );
    expect(out).toEqual({
      kind: 'error',
      nodeId: '3',
      nodeType: 'SaveImage',
      message: 'boom',
      exceptionType: 'Exception',
    });
  });

  test('interrupted is told apart from error only by the terminal message', () => {
    expect(
      classifyHistory(
        entry([['execution_interrupted', { node_id: '2', node_type: 'TestSleep' }]], {}, 'error'),
      ),
    ).toEqual({
      kind: 'interrupted',
      nodeId: '2',
      nodeType: 'TestSleep',
    });
  });

  test('status_str success but an execution_error message (runtime cycle) is an error', () => {
    expect(
      classifyHistory(entry([['execution_error', { node_id: '1', exception_message: 'cycle' }]]))
        .kind,
    ).toBe('error');
  });

  test('partial success (execution_node_error) is not success', () => {
    expect(
      classifyHistory(
        entry([
          ['execution_node_error', {}],
          ['execution_success', {}],
        ]),
      ).kind,
    ).toBe('unknown');
  });

  test('old servers without status: success when outputs exist', () => {
    expect(classifyHistory({ outputs: { '1': { images: [{ filename: 'x.png' }] } } })).toEqual({
      kind: 'success',
      outputs: [{ nodeId: '1', filename: 'x.png', subfolder: '', type: 'output' }],
    });
  });

  test('malformed messages are ignored, not thrown', () => {
    expect(classifyHistory(entry(['garbage', [1, 2], ['execution_success', {}]])).kind).toBe(
      'success',
    );
  });

  test('extractOutputs skips unknown shapes', () => {
    expect(
      extractOutputs({
        '1': 'x',
        '2': { gifs: [{ filename: 'g.gif', subfolder: '', type: 'output', format: 'gif' }] },
      }),
    ).toEqual([{ nodeId: '2', filename: 'g.gif', subfolder: '', type: 'output' }]);
  });
});

describe('describeValidationError', () => {
  test('unknown node: node id parsed from details', () => {
    const d = describeValidationError({
      error: {
        type: 'invalid_prompt',
        message: 'Cannot execute because node DoesNotExist does not exist.',
        details: "Node ID '#2'",
        extra_info: {},
      },
      node_errors: {},
    });
    expect(d.nodeId).toBe('2');
    expect(d.message).toContain('DoesNotExist');
  });
  test('per-node errors are listed', () => {
    const d = describeValidationError({
      error: {
        type: 'prompt_outputs_failed_validation',
        message: 'Prompt outputs failed validation',
        details: '',
      },
      node_errors: {
        '2': {
          class_type: 'ImageInvert',
          errors: [{ message: 'Required input is missing', details: 'image' }],
        },
      },
    });
    expect(d).toEqual({
      nodeId: '2',
      message:
        'Prompt outputs failed validation | node 2 (ImageInvert): Required input is missing: image',
    });
  });
  test('newest server plain-string error', () => {
    expect(describeValidationError({ error: 'prompt_id already exists' }).message).toBe(
      'prompt_id already exists',
    );
  });
});

describe('ComfyClient.sharedQueue', () => {
  test('concurrent callers share one GET /queue, and a caller never gets an answer older than its call', async () => {
    let calls = 0;
    const server = createServer((_req, res) => {
      calls += 1;
      const n = calls;
      setTimeout(
        () =>
          res.end(JSON.stringify({ queue_running: [], queue_pending: [[n, `p${n}`, {}, {}, []]] })),
        30,
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = new ComfyClient(`http://127.0.0.1:${(server.address() as { port: number }).port}`, {
      timeoutMs: 2000,
    });
    try {
      const first = c.sharedQueue();
      const during = [c.sharedQueue(), c.sharedQueue(), c.sharedQueue()];
      const results = await Promise.all([first, ...during]);
      expect(calls).toBe(2); // one in flight, one shared by the three that came during it
      expect(results[0].pending[0].promptId).toBe('p1');
      for (const r of results.slice(1)) expect(r.pending[0].promptId).toBe('p2');
    } finally {
      await c.close();
      server.close();
    }
  });
});
