import pino, { type Logger } from 'pino';

export type { Logger };

/** Paths redacted in every log line, wherever a secret could travel. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'redisUrl',
  '*.redisUrl',
  'REDIS_URL',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'apiKey',
  '*.apiKey',
  'apiKeys',
  'linkSecret',
  '*.linkSecret',
  'webhookSecret',
  '*.webhookSecret',
  'posthogApiKey',
];

export interface LoggerSettings {
  logLevel: string;
  logPretty?: boolean;
  name?: string;
}

/** pino, JSON by default; pretty when asked (npm start). Secrets are redacted. */
export function createLogger(s: LoggerSettings, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level: s.logLevel,
    name: s.name,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (s.logPretty && !destination && prettyAvailable()) {
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } },
    });
  }
  return destination ? pino(options, destination) : pino(options);
}

/** pino-pretty is a development dependency: a production install logs JSON instead. */
function prettyAvailable(): boolean {
  try {
    require.resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}
