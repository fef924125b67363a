import type { Workflow } from '../../src/queue';

/** EmptyImage → ImageInvert → SaveImage: finishes at once in the simulator. */
export function tinyWorkflow(
  prefix = `t-${Math.random().toString(36).slice(2)}`,
  color = 0xff0000,
): Workflow {
  return {
    '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 48, batch_size: 1, color } },
    '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  };
}

/** EmptyImage → TestSleep{seconds} → SaveImage: runs `seconds` with progress, interruptible. */
export function sleepWorkflow(
  seconds: number,
  prefix = `s-${Math.random().toString(36).slice(2)}`,
): Workflow {
  return {
    '1': { class_type: 'EmptyImage', inputs: { width: 32, height: 32, batch_size: 1, color: 255 } },
    '2': { class_type: 'TestSleep', inputs: { value: ['1', 0], seconds } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  };
}
