import { pino, type Logger } from 'pino';

import type { Config } from '../config/settings.js';

/** JSON lines for machines; pino-pretty on a terminal (or when asked), so a person can read a node's log. */
export function createLogger(config: Config['log'], name: string): Logger {
  const pretty = config.format === 'pretty' || (config.format === 'auto' && process.stdout.isTTY === true);
  return pino({
    level: config.level,
    base: { node: name },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } }
      : {}),
  });
}
