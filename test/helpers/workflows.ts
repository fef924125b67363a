import type { Workflow } from '../../src/job/data';

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

/**
 * The one output `tinyWorkflow(prefix)` leaves in a finished job's return value: its
 * SaveImage copied to storage under the job's key (`key` defaults to any job's).
 */
export function tinyOutput(
  prefix: string,
  key: unknown = expect.stringMatching(/^jobs\/.+\/outputs\/0$/),
): Record<string, unknown> {
  return {
    nodeId: '3',
    filename: `${prefix}_00001_.png`,
    subfolder: '',
    type: 'output',
    contentType: 'image/png',
    size: expect.any(Number),
    key,
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

/** LoadImage(`image`) → ImageInvert → SaveImage: img2img with one input file. */
export function img2imgWorkflow(prefix = 'inv', image = 'face.png'): Workflow {
  return {
    '1': { class_type: 'LoadImage', inputs: { image } },
    '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  };
}

/**
 * EmptyImage (side²) → SaveAnimatedPNG with `compress_level` 0 (stored deflate blocks, as PIL
 * writes them): a PNG of about `side · (1 + 3 · side)` bytes, a large output on demand.
 */
export function uncompressedPngWorkflow(side: number, prefix: string): Workflow {
  return {
    '1': {
      class_type: 'EmptyImage',
      inputs: { width: side, height: side, batch_size: 1, color: 0x336699 },
    },
    '2': {
      class_type: 'SaveAnimatedPNG',
      inputs: { images: ['1', 0], filename_prefix: prefix, fps: 6, compress_level: 0 },
    },
  };
}
