/**
 * `npm run simulator`: the ComfyUI simulator as a process.
 * Environment: PORT (8188), HOST (127.0.0.1), SIM_OUTPUT_DIR (a temporary directory),
 * SIM_VERSION (0.3.64|current, default 0.3.64), SIM_DUPLICATE_PROMPT_IDS (accept|reject,
 * default accept; reject models unmerged pull requests), SIM_FAILURE_RATE (0..1, default 0).
 */
import { handleSignals } from '../lifecycle';
import { createSimulator } from '../simulator/server';

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

async function main(): Promise<void> {
  const env = process.env;
  const port = Number(env.PORT ?? 8188);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    fail('PORT must be an integer from 0 to 65535');
  const duplicates = env.SIM_DUPLICATE_PROMPT_IDS ?? 'accept';
  if (duplicates !== 'accept' && duplicates !== 'reject')
    fail('SIM_DUPLICATE_PROMPT_IDS must be accept or reject');
  const version = env.SIM_VERSION || '0.3.64';
  if (version !== '0.3.64' && version !== 'current') fail('SIM_VERSION must be 0.3.64 or current');
  const failureRate = Number(env.SIM_FAILURE_RATE ?? 0);
  if (!(failureRate >= 0 && failureRate <= 1))
    fail('SIM_FAILURE_RATE must be a number from 0 to 1');

  const sim = await createSimulator({
    port,
    host: env.HOST ?? '127.0.0.1',
    outputDir: env.SIM_OUTPUT_DIR || undefined,
    duplicatePromptIds: duplicates,
    version,
    failureRate,
    logger: { info: () => undefined, warn: (...a) => console.warn(...a) },
  });
  console.log(`ComfyUI simulator listening on ${sim.url}`);

  handleSignals({
    say: (message) => console.warn(message),
    async stop(signal) {
      console.log(`${signal} received, stopping the simulator`);
      await sim.close();
    },
  });
}

main().catch((err: unknown) =>
  fail(`simulator failed to start: ${err instanceof Error ? err.message : String(err)}`),
);
