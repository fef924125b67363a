import { promptIdFor } from '../../src/queue';

/** The prompt id is the job's own: recomputed after a lost write, it must be the same. */
describe('promptIdFor', () => {
  const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  test('is a canonical lowercase UUID, the same for the same job', () => {
    const id = promptIdFor('{comfyui}:comfyui-jobs', '42', 1_700_000_000_000);
    expect(id).toMatch(CANONICAL_UUID);
    expect(promptIdFor('{comfyui}:comfyui-jobs', '42', 1_700_000_000_000)).toBe(id);
  });

  test('differs for another queue, job id or creation time (a job id reused after retention)', () => {
    const ids = new Set([
      promptIdFor('{comfyui}:comfyui-jobs', '42', 1),
      promptIdFor('{comfyui}:other-jobs', '42', 1),
      promptIdFor('{comfyui}:comfyui-jobs', '43', 1),
      promptIdFor('{comfyui}:comfyui-jobs', '42', 2),
    ]);
    expect(ids.size).toBe(4);
  });
});
