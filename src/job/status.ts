/**
 * A job's public statuses (DESIGN "HTTP API"). No imports: the CLI's API client reads them
 * without loading the API's code.
 */

export const PUBLIC_STATUSES = [
  'queued',
  'submitted',
  'running',
  'completed',
  'failed',
  'cancelled',
] as const;
export type PublicStatus = (typeof PUBLIC_STATUSES)[number];
export const TERMINAL_STATUSES: readonly PublicStatus[] = ['completed', 'failed', 'cancelled'];
export const isTerminalStatus = (s: PublicStatus) => TERMINAL_STATUSES.includes(s);
