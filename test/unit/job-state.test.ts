import {
  classifyPickup,
  hasLivePrompt,
  initialState,
  isTerminal,
  onCompleted,
  onFailed,
  onHandoff,
  onMoveAbandoned,
  onMoveStarted,
  onPickup,
  onPromptChosen,
  onPromptFound,
  onPromptKnown,
  onPromptRenamed,
  onRunning,
  onSaved,
  onSubmitted,
} from '../../src/job/state';

const T0 = 1_700_000_000_000;
const CUTOFF = 600_000;

describe('JobState transitions', () => {
  test('a new job is queued with zero counters', () => {
    expect(initialState(T0)).toEqual({
      status: 'queued',
      createdAt: T0,
      attempts: 0,
      recoveries: 0,
      resubmissions: 0,
      stallsSeen: 0,
    });
  });

  test('fresh pickup: prompt chosen before submit, then submitted, running, completed', () => {
    let s = onPickup(initialState(T0), 0, T0 + 5, false);
    expect(s).toMatchObject({ attempts: 1, recoveries: 0, startedAt: T0 + 5 });
    s = onPromptChosen(s, 'p1', 'http://c', T0 + 6, false);
    expect(s).toMatchObject({
      status: 'submitting',
      promptId: 'p1',
      comfyuiUrl: 'http://c',
      submittedAt: T0 + 6,
      resubmissions: 0,
    });
    expect(hasLivePrompt(s)).toBe(true);
    s = onSubmitted(s);
    expect(s.status).toBe('submitted');
    s = onRunning(s);
    expect(s.status).toBe('running');
    s = onCompleted(s, T0 + 9);
    expect(s).toMatchObject({ status: 'completed', finishedAt: T0 + 9 });
    expect(isTerminal(s)).toBe(true);
    expect(hasLivePrompt(s)).toBe(false);
  });

  test('startedAt is kept from the first pickup', () => {
    const s = onPickup(onPickup(initialState(T0), 0, T0 + 1, false), 1, T0 + 99, true);
    expect(s).toMatchObject({ startedAt: T0 + 1, attempts: 2, recoveries: 1, stallsSeen: 1 });
  });

  test('onSubmitted and onRunning do not move a job backwards', () => {
    const running = onRunning(onSubmitted(onPromptChosen(initialState(T0), 'p', 'u', T0, false)));
    expect(onSubmitted(running).status).toBe('running');
    const done = onCompleted(running, T0);
    expect(onRunning(done).status).toBe('completed');
  });

  test('a resubmission is counted', () => {
    const s = onPromptChosen(
      onSubmitted(onPromptChosen(initialState(T0), 'p', 'u', T0, false)),
      'p',
      'u',
      T0 + 1,
      true,
    );
    expect(s.resubmissions).toBe(1);
    expect(s.status).toBe('submitting');
  });

  test('failure with code cancelled ends cancelled; others failed', () => {
    expect(onFailed(initialState(T0), { code: 'cancelled', message: 'x' }, T0).status).toBe(
      'cancelled',
    );
    expect(
      onFailed(initialState(T0), { code: 'execution_error', message: 'x', nodeId: '3' }, T0),
    ).toMatchObject({
      status: 'failed',
      error: { code: 'execution_error', nodeId: '3' },
    });
  });
});

describe('classifyPickup (DESIGN rule 2)', () => {
  const submitted = onSubmitted(
    onPromptChosen(onPickup(initialState(T0), 0, T0, false), 'p', 'u', T0, false),
  );

  test('no prompt id: fresh', () => {
    expect(classifyPickup(initialState(T0), 0, T0, CUTOFF)).toEqual({ kind: 'fresh' });
  });
  test('stalled within the cutoff: resume', () => {
    expect(classifyPickup(submitted, 1, T0 + CUTOFF - 1, CUTOFF)).toEqual({
      kind: 'resume',
      reason: 'stall',
    });
  });
  test('stalled after the cutoff: recovery_cutoff', () => {
    expect(classifyPickup(submitted, 1, T0 + CUTOFF + 1, CUTOFF)).toEqual({
      kind: 'cutoff',
      ageMs: CUTOFF + 1,
    });
  });
  test('handed off on shutdown: always resumes, however old', () => {
    const h = onHandoff(submitted, T0 + 10 * CUTOFF);
    expect(classifyPickup(h, 1, T0 + 10 * CUTOFF, CUTOFF)).toEqual({
      kind: 'resume',
      reason: 'handoff',
    });
  });
  test('a retry after a transient error (no new stall) resumes without the cutoff', () => {
    expect(classifyPickup(submitted, 0, T0 + 10 * CUTOFF, CUTOFF)).toEqual({
      kind: 'resume',
      reason: 'retry',
    });
  });
  test('a stall already seen does not count twice', () => {
    const seen = onPickup(submitted, 1, T0 + 1, true);
    expect(classifyPickup(seen, 1, T0 + 10 * CUTOFF, CUTOFF)).toEqual({
      kind: 'resume',
      reason: 'retry',
    });
    expect(classifyPickup(seen, 2, T0 + 10 * CUTOFF, CUTOFF).kind).toBe('cutoff');
  });
  test('pickup clears the hand-off mark', () => {
    expect(onPickup(onHandoff(submitted, T0), 0, T0, true).handedOffAt).toBeUndefined();
  });
});

describe('changes found while following', () => {
  const chosen = onPromptChosen(
    onPickup(initialState(T0), 0, T0, false),
    'p1',
    'http://a:8188',
    T0,
    false,
  );
  test('a prompt found on another instance is followed there, still submitting', () => {
    const found = onPromptFound(chosen, 'http://b:8188');
    expect(found).toEqual({ ...chosen, comfyuiUrl: 'http://b:8188' });
  });
  test('a server that made its own prompt id: the job follows that id', () => {
    expect(onPromptRenamed(chosen, 'p2')).toEqual({ ...chosen, promptId: 'p2' });
  });
  test('a prompt ComfyUI already knew (409) changes nothing', () => {
    expect(onPromptKnown(chosen)).toEqual(chosen);
  });
  test('a saved state carries the time of its write', () => {
    expect(onSaved(chosen, T0 + 5).updatedAt).toBe(T0 + 5);
  });
});

describe('moving a pending prompt (DESIGN "Moving a pending prompt")', () => {
  const pending = onSubmitted(
    onPromptChosen(onPickup(initialState(T0), 0, T0, false), 'p1', 'http://a', T0, false, 'c-old'),
  );

  test('the intent: submitting on the new instance, the old one (and its client id) kept', () => {
    const s = onMoveStarted(pending, 'http://b', T0 + 9, 'c-new');
    expect(s).toMatchObject({
      status: 'submitting',
      promptId: 'p1',
      comfyuiUrl: 'http://b',
      clientId: 'c-new',
      movedFrom: { url: 'http://a', clientId: 'c-old' },
      submittedAt: T0 + 9,
      moves: 1,
      resubmissions: 0,
    });
    expect(hasLivePrompt(s)).toBe(true);
  });

  test('seen on the new instance (pending or running), the old one is forgotten', () => {
    const s = onMoveStarted(pending, 'http://b', T0 + 9, 'c-new');
    expect(onSubmitted(s).movedFrom).toBeUndefined();
    expect(onRunning(s).movedFrom).toBeUndefined();
    expect(onSubmitted(s)).toMatchObject({ status: 'submitted', comfyuiUrl: 'http://b', moves: 1 });
    // submitted again on the new instance (it lost the prompt): the old one is long settled
    expect(onPromptChosen(s, 'p1', 'http://b', T0 + 20, true).movedFrom).toBeUndefined();
  });

  test('undone: followed where it was, under its client id, the move not counted', () => {
    const s = onMoveAbandoned(onMoveStarted(pending, 'http://b', T0 + 9, 'c-new'));
    expect(s).toMatchObject({
      status: 'submitted',
      comfyuiUrl: 'http://a',
      clientId: 'c-old',
      moves: 0,
    });
    expect(s.movedFrom).toBeUndefined();
    expect(onMoveAbandoned(pending)).toBe(pending); // no move under way: nothing changes
  });
});
