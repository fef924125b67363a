/**
 * The ComfyUI simulator as a benchmark child process, so its event loop is not the
 * benchmark's. Environment: SIM_PROGRESS_INTERVAL_MS (TestSleep progress tick, default 50).
 * Prints `simulator listening on <url>`; SIGTERM/SIGINT close it.
 */
import { createSimulator } from '../src/simulator/server';

async function main() {
  const sim = await createSimulator({
    port: 0,
    progressIntervalMs: Number(process.env.SIM_PROGRESS_INTERVAL_MS ?? 50),
  });
  console.log(`simulator listening on ${sim.url}`);
  const stop = () => void sim.close().finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
