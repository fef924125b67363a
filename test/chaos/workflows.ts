import type { Workflow } from '../../src/job/data';

/**
 * EmptyImage → TestSleep{seconds} → SaveImage, never served from ComfyUI's output cache:
 * the cache reuses a node whose inputs equal the previous prompt's, so two jobs with the
 * same `sleepWorkflow(seconds)` in a row would sleep only once. `salt` (a job number) makes
 * the EmptyImage color, and so every node's cache key, differ from job to job.
 */
export function uncachedSleepWorkflow(seconds: number, prefix: string, salt: number): Workflow {
  return {
    '1': {
      class_type: 'EmptyImage',
      inputs: { width: 32, height: 32, batch_size: 1, color: salt % 0x1000000 },
    },
    '2': { class_type: 'TestSleep', inputs: { value: ['1', 0], seconds } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  };
}
