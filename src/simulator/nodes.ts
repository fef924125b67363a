/**
 * What each catalogued node does when it runs. Inputs arrive validated and coerced (ints as
 * numbers/bigints, floats as PyFloat, strings as strings) plus the node's hidden inputs.
 * Durations: TestSleep sleeps `seconds` with a progress tick every `progressIntervalMs`;
 * KSampler spends `samplerStepMs` per step with one progress per step; loaders and VAE
 * decoding take a couple of steps' time; image nodes are instant.
 */
import { PyFloat } from './json';
import { num, type NodeFn } from './node-util';
import { AUDIO_NODES } from './nodes-audio';
import { IMAGE_NODES } from './nodes-image';
import { PyError, pyStr, pyTypeName } from './py';
import { colorOf, hash, SimConditioning, SimImage, SimLatent, SimModel } from './values';

function expect<T>(value: unknown, cls: new (...a: never[]) => T, attr: string): T {
  if (value instanceof cls) return value;
  throw new PyError('AttributeError', `'${pyTypeName(value)}' object has no attribute '${attr}'`);
}

function expectModel(value: unknown, kind: SimModel['kind'], attr: string): SimModel {
  const m = expect(value, SimModel, attr);
  if (m.kind !== kind)
    throw new PyError('AttributeError', `'${m.kind}' object has no attribute '${attr}'`);
  return m;
}

export const NODE_FUNCTIONS: Record<string, NodeFn> = {
  ...IMAGE_NODES,
  ...AUDIO_NODES,
  async TestSleep(run, { value, seconds }) {
    const total = num(seconds);
    const start = performance.now();
    const end = start + total * 1000;
    let now = start;
    while (now < end) {
      now = performance.now();
      run.progress(new PyFloat(Math.min((now - start) / 1000, total)), new PyFloat(total));
      await run.sleep(run.timing.progressIntervalMs);
    }
    return { outputs: [value] };
  },

  async CheckpointLoaderSimple(run, { ckpt_name }) {
    await run.sleep(2 * run.timing.samplerStepMs);
    const ckpt = String(ckpt_name);
    return {
      outputs: [new SimModel('MODEL', ckpt), new SimModel('CLIP', ckpt), new SimModel('VAE', ckpt)],
    };
  },

  async CLIPTextEncode(run, { text, clip }) {
    expectModel(clip, 'CLIP', 'tokenize');
    await run.sleep(run.timing.samplerStepMs / 2);
    return { outputs: [new SimConditioning(String(text))] };
  },

  async EmptyLatentImage(_run, { width, height, batch_size }) {
    return {
      outputs: [
        new SimLatent(
          Math.floor(num(width) / 8),
          Math.floor(num(height) / 8),
          num(batch_size),
          'empty',
        ),
      ],
    };
  },

  async KSampler(run, i) {
    const model = expectModel(i.model, 'MODEL', 'model_sampling');
    const positive = expect(i.positive, SimConditioning, 'copy');
    const negative = expect(i.negative, SimConditioning, 'copy');
    const latent = expect(i.latent_image, SimLatent, 'samples');
    const steps = num(i.steps);
    for (let step = 1; step <= steps; step++) {
      await run.sleep(run.timing.samplerStepMs);
      run.progress(step, steps);
    }
    const tag = hash(
      [
        model.checkpoint,
        pyStr(i.seed),
        pyStr(i.cfg),
        pyStr(i.sampler_name),
        pyStr(i.scheduler),
        pyStr(i.denoise),
        positive.text,
        negative.text,
        latent.tag,
      ].join('\u0000'),
    );
    return { outputs: [new SimLatent(latent.width, latent.height, latent.batch, tag)] };
  },

  async VAEDecode(run, { samples, vae }) {
    const latent = expect(samples, SimLatent, 'samples');
    expectModel(vae, 'VAE', 'decode');
    await run.sleep(2 * run.timing.samplerStepMs);
    const colors = Array.from({ length: latent.batch }, (_, b) => colorOf(`${latent.tag}:${b}`));
    return { outputs: [new SimImage(latent.width * 8, latent.height * 8, colors)] };
  },
};
