import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import { pino } from 'pino';

import { LazyRequestLogger } from '../../src/http/requestLogger.js';

test('a request logger logs with its bindings, and only becomes a child when it logs', () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const parent = pino({ level: 'info' }, sink);
  let children = 0;
  const counting = Object.assign(Object.create(parent) as typeof parent, {
    child: (...args: Parameters<typeof parent.child>) => {
      children++;
      return parent.child(...args);
    },
  });
  const quiet = new LazyRequestLogger(counting, { reqId: 'req-1' }, {});
  assert.equal(children, 0);
  void quiet;
  const logger = new LazyRequestLogger(counting, { reqId: 'req-2' }, {});
  logger.debug('below the level');
  logger.error({ err: new Error('boom') }, 'request failed');
  logger.info('second line');
  assert.equal(children, 1);
  assert.equal(logger.level, 'info');
  assert.equal(lines.length, 2);
  assert.equal(lines[0]!['reqId'], 'req-2');
  assert.equal(lines[0]!['msg'], 'request failed');
  assert.equal((lines[0]!['err'] as { message: string }).message, 'boom');
  assert.equal(lines[1]!['msg'], 'second line');
});
