import {
  JobViewSchema,
  errorFromFailedReason,
  publicStatus,
  toJobView,
  type BullState,
  type JobSnapshot,
} from '../src/job/view';
import { idempotentJobId } from '../src/api/enqueue';
import { initialState, type JobState } from '../src/job/state';
import { newJobData } from '../src/job/data';

/** The one mapping from Redis to the public view, case by case (no Redis needed). */

const T0 = Date.parse('2026-01-02T03:04:05.000Z');
const wf = { '1': { class_type: 'A', inputs: {} } };

function snap(
  bullState: BullState,
  state: Partial<JobState> = {},
  extra: Partial<JobSnapshot> = {},
): JobSnapshot {
  const data = newJobData(wf, { jobType: 'image', userId: 'u1', metadata: { a: 1 } }, T0);
  data.state = { ...initialState(T0), ...state };
  return { id: '7', bullState, data, progress: 0, returnvalue: null, timestamp: T0, ...extra };
}

describe('publicStatus', () => {
  it.each([
    ['waiting', {}, 'queued'],
    ['delayed', { status: 'submitted', promptId: 'p' }, 'queued'],
    ['prioritized', {}, 'queued'],
    ['active', { status: 'queued' }, 'queued'],
    ['active', { status: 'submitting' }, 'submitted'],
    ['active', { status: 'submitted' }, 'submitted'],
    ['active', { status: 'running' }, 'running'],
    ['active', { status: 'completed' }, 'completed'],
    ['completed', { status: 'completed' }, 'completed'],
    ['failed', { status: 'failed', error: { code: 'execution_error', message: 'x' } }, 'failed'],
    ['failed', { status: 'cancelled', error: { code: 'cancelled', message: 'x' } }, 'cancelled'],
  ] as const)('%s + %j → %s', (bull, state, expected) => {
    expect(publicStatus(snap(bull, state as Partial<JobState>))).toBe(expected);
  });

  it('a cancel mark shows cancelled before the worker acts, but not over a finished job', () => {
    const at = '2026-01-02T03:05:00.000Z';
    expect(publicStatus(snap('waiting', {}, { cancelRequestedAt: at }))).toBe('cancelled');
    expect(publicStatus(snap('active', { status: 'running' }, { cancelRequestedAt: at }))).toBe(
      'cancelled',
    );
    expect(
      publicStatus(snap('completed', { status: 'completed' }, { cancelRequestedAt: at })),
    ).toBe('completed');
    const view = toJobView(snap('waiting', {}, { cancelRequestedAt: at }));
    expect(view).toMatchObject({
      status: 'cancelled',
      finishedAt: at,
      error: { code: 'cancelled' },
    });
  });

  it('a failed job without a JobState error takes its code from the failed reason', () => {
    expect(
      publicStatus(snap('failed', {}, { failedReason: 'cancelled: cancelled by request' })),
    ).toBe('cancelled');
    const stalled = toJobView(
      snap('failed', {}, { failedReason: 'job stalled more than allowable limit' }),
    );
    expect(stalled).toMatchObject({ status: 'failed', error: { code: 'stalled' } });
    const timeout = toJobView(snap('failed', {}, { failedReason: 'timeout: ran too long' }));
    expect(timeout.error).toEqual({ code: 'timeout', message: 'ran too long' });
  });
});

describe('errorFromFailedReason', () => {
  it.each([
    ['workflow_invalid: bad node', { code: 'workflow_invalid', message: 'bad node' }],
    ['recovery_cutoff: too late', { code: 'recovery_cutoff', message: 'too late' }],
    ['not_a_code: x', { code: 'internal_error', message: 'not_a_code: x' }],
    ['Connection is closed.', { code: 'internal_error', message: 'Connection is closed.' }],
  ])('%s', (reason, expected) => {
    expect(errorFromFailedReason(reason)).toEqual(expected);
  });
});

describe('toJobView', () => {
  it('a completed job: ISO times, sorted outputs with API urls, percent 100, and a valid shape', () => {
    const outputs = [
      { nodeId: '10', filename: 'c.png', subfolder: '', type: 'output' },
      { nodeId: '9', filename: 'a.png', subfolder: 's', type: 'output' },
      { nodeId: '9', filename: 'b.png', subfolder: 's', type: 'output' },
    ];
    const s = snap(
      'completed',
      {
        status: 'completed',
        promptId: 'p1',
        startedAt: T0 + 1000,
        finishedAt: T0 + 5000,
        attempts: 1,
      },
      { returnvalue: { outputs }, progress: { percent: 80, node: '9' }, finishedOn: T0 + 5001 },
    );
    const v = toJobView(s);
    expect(JobViewSchema.parse(v)).toEqual(v);
    expect(v).toMatchObject({
      id: '7',
      status: 'completed',
      jobType: 'image',
      userId: 'u1',
      createdAt: '2026-01-02T03:04:05.000Z',
      startedAt: '2026-01-02T03:04:06.000Z',
      finishedAt: '2026-01-02T03:04:10.000Z',
      promptId: 'p1',
      progress: { percent: 100, node: '9' },
      attempts: 1,
      recoveries: 0,
      metadata: { a: 1 },
    });
    expect(v.outputs!.map((o) => `${o.nodeId}/${o.filename} ${o.url}`)).toEqual([
      '9/a.png /v1/jobs/7/outputs/0',
      '9/b.png /v1/jobs/7/outputs/1',
      '10/c.png /v1/jobs/7/outputs/2',
    ]);
    expect(v.error).toBeUndefined();
  });

  it('queue position: BullMQ position while queued, ComfyUI position while submitted, none running', () => {
    expect(toJobView(snap('waiting', {}, { queuePosition: 3 })).progress).toEqual({
      percent: 0,
      queuePosition: 3,
    });
    const submitted = snap(
      'active',
      { status: 'submitted' },
      { progress: { percent: 0, queuePosition: 2 } },
    );
    expect(toJobView(submitted).progress).toEqual({ percent: 0, queuePosition: 2 });
    const running = snap(
      'active',
      { status: 'running' },
      { progress: { percent: 40, value: 4, max: 10, node: '2', queuePosition: 1 } },
    );
    expect(toJobView(running).progress).toEqual({ percent: 40, value: 4, max: 10, node: '2' });
  });

  it('a failed job carries its error with node details; attempts is the JobState count, not BullMQ takes', () => {
    const v = toJobView(
      snap(
        'failed',
        {
          status: 'failed',
          attempts: 2,
          error: { code: 'execution_error', message: 'boom', nodeId: '2', nodeType: 'KSampler' },
        },
        // a take that found no free ComfyUI slot counts in BullMQ, not in the JobState
        { attemptsStarted: 5, finishedOn: T0 + 10 },
      ),
    );
    expect(v).toMatchObject({
      status: 'failed',
      attempts: 2,
      finishedAt: new Date(T0 + 10).toISOString(),
    });
    expect(v.error).toEqual({
      code: 'execution_error',
      message: 'boom',
      nodeId: '2',
      nodeType: 'KSampler',
    });
    expect(v.outputs).toBeUndefined();
  });

  it('never throws on malformed data', () => {
    const v = toJobView({
      id: '1',
      bullState: 'waiting',
      data: 'garbage',
      progress: 'x',
      returnvalue: 5,
      timestamp: T0,
    });
    expect(JobViewSchema.parse(v)).toMatchObject({
      status: 'queued',
      jobType: 'unknown',
      userId: null,
    });
  });
});

describe('idempotentJobId', () => {
  it('is deterministic, scoped by user, and a valid BullMQ custom id', () => {
    const a = idempotentJobId('k', 'u1');
    expect(a).toBe(idempotentJobId('k', 'u1'));
    expect(a).not.toBe(idempotentJobId('k', 'u2'));
    expect(a).not.toBe(idempotentJobId('k', undefined));
    expect(a).toMatch(/^idem-[0-9a-f]{64}$/);
  });
});
