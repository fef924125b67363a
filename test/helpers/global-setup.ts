import { randomBytes } from 'node:crypto';
import { RUN_VAR } from './process-scope';

/** Names this run, before jest starts its workers: every scope token starts with it. */
export default function globalSetup(): void {
  process.env[RUN_VAR] = randomBytes(6).toString('hex');
}
