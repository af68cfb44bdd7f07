/**
 * What reaches a log line: real errors of discord.js and @slack/web-api, logged the way the code
 * logs them (`{ err }`, or the error alone), keep their useful fields and lose their secrets and
 * bodies. The adapters' failure paths against the fakes are in test/bots/discord/discord-logs.test.ts.
 */
import { Writable } from 'node:stream';
import { DiscordAPIError } from '@discordjs/rest';
import { WebAPIPlatformError, WebAPIRequestError } from '@slack/web-api';
import { expect, test } from 'vitest';
import { createLogger, maskSecrets, secretsFromEnv } from '../src/log.js';

const INTERACTION_TOKEN = 'aW50ZXJhY3Rpb246MTI5MDAwMDAwMDAwMDAwMDAwOkd3aGF0ZXZlcnNlY3JldA';
const BOT_TOKEN = 'MTI5MDAwMDAwMDAwMDAwMDAw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB';
const SLACK_TOKEN = 'xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx';

function capture(options?: Parameters<typeof createLogger>[2]): { logger: ReturnType<typeof createLogger>; lines(): Record<string, unknown>[]; text(): string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  const logger = createLogger('debug', stream, options);
  return { logger, text: () => text, lines: () => text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>) };
}

function discordUploadError(): DiscordAPIError {
  const bytes = Buffer.alloc(4096, 7);
  return new DiscordAPIError(
    { message: 'Invalid Form Body', code: 50035 },
    50035,
    400,
    'PATCH',
    `https://discord.com/api/v10/webhooks/129000000000000000/${INTERACTION_TOKEN}/messages/@original`,
    { files: [{ name: 'video.mp4', data: bytes }], body: { content: 'Your video' } },
  );
}

test('a DiscordAPIError keeps code, status, method and a masked URL; no token, no request body, no file bytes', () => {
  const log = capture();
  log.logger.warn({ err: discordUploadError(), jobId: 7 }, 'could not post the outcome of a job');
  log.logger.error(discordUploadError());
  const text = log.text();
  expect(text).not.toContain(INTERACTION_TOKEN);
  expect(text).not.toContain('requestBody');
  expect(text).not.toContain('7,7,7');
  expect(text).not.toContain('Your video');
  const [first, second] = log.lines();
  expect(first).toMatchObject({
    jobId: 7,
    msg: 'could not post the outcome of a job',
    err: { type: 'DiscordAPIError[50035]', code: 50035, status: 400, method: 'PATCH', url: 'https://discord.com/api/v10/webhooks/129000000000000000/***/messages/@original' },
  });
  expect(second).toMatchObject({ msg: 'Invalid Form Body', err: { code: 50035 } });
});

test('a Slack WebAPIRequestError loses the axios error with the bot token in its headers', () => {
  const axiosError = Object.assign(new Error('socket hang up'), {
    code: 'ECONNRESET',
    config: { url: 'https://slack.com/api/files.completeUploadExternal', headers: { Authorization: `Bearer ${SLACK_TOKEN}` }, data: 'token=' + SLACK_TOKEN },
    request: { _header: `POST /api/chat.update HTTP/1.1\r\nAuthorization: Bearer ${SLACK_TOKEN}` },
  });
  const log = capture();
  log.logger.error({ err: new WebAPIRequestError(axiosError) }, 'upload failed');
  const platform = new WebAPIPlatformError({ ok: false, error: 'not_in_channel', response_metadata: { messages: [`token ${SLACK_TOKEN}`] } });
  log.logger.warn({ err: platform }, 'could not post');
  const text = log.text();
  expect(text).not.toContain(SLACK_TOKEN);
  expect(text).not.toContain('xoxb-1234567890');
  const [first, second] = log.lines();
  expect(first).toMatchObject({ err: { code: 'slack_webapi_request_error', message: 'A request error occurred: socket hang up', cause: { message: 'socket hang up', code: 'ECONNRESET' } } });
  expect((first!.err as Record<string, unknown>).original).toBeUndefined();
  expect(second).toMatchObject({ err: { code: 'slack_webapi_platform_error', slackError: 'not_in_channel' } });
});

test('strings anywhere are masked: tokens, interaction URLs, response URLs, credentials, secret env values', () => {
  const log = capture({ secrets: ['s3cret-signing-value'] });
  log.logger.info(
    {
      url: `https://discord.com/api/v10/interactions/129000000000000000/${INTERACTION_TOKEN}/callback`,
      nested: { responseUrl: 'https://hooks.slack.com/actions/T0001/123456/AbCdEfGhIjKlMnOp', header: `Bot ${BOT_TOKEN}` },
      list: [`signed with s3cret-signing-value`],
      file: new Uint8Array(1000),
    },
    `token ${SLACK_TOKEN} and ${BOT_TOKEN}`,
  );
  const text = log.text();
  for (const secret of [INTERACTION_TOKEN, BOT_TOKEN, SLACK_TOKEN, 'AbCdEfGhIjKlMnOp', 's3cret-signing-value']) expect(text).not.toContain(secret);
  const [line] = log.lines();
  expect(line).toMatchObject({
    url: 'https://discord.com/api/v10/interactions/129000000000000000/***/callback',
    nested: { responseUrl: 'https://hooks.slack.com/actions/***' },
    file: '[1000 bytes]',
  });
});

test('maskSecrets leaves ordinary text alone; secretsFromEnv takes only secret-looking variables', () => {
  expect(maskSecrets('Job #12 finished in 3.2 s on cpu (/outputs/12/video.mp4)')).toBe('Job #12 finished in 3.2 s on cpu (/outputs/12/video.mp4)');
  expect(secretsFromEnv({ REELBOT_DISCORD_TOKEN: 'abcdefgh123', REELBOT_SLACK_SIGNING_SECRET: 'zzzzzzzzzz', HOME: '/root', SHORT_TOKEN: 'abc' }).sort()).toEqual(['abcdefgh123', 'zzzzzzzzzz']);
});

/** The top-level keys of a raw JSON line that appear more than once (JSON.parse would keep only the last). */
function repeatedKeys(line: string): string[] {
  const seen = new Set<string>();
  const repeated: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === '"') {
      let end = i + 1;
      while (line[end] !== '"') end += line[end] === '\\' ? 2 : 1;
      const key = line.slice(i + 1, end);
      if (depth === 1 && line[end + 1] === ':') {
        if (seen.has(key)) repeated.push(key);
        seen.add(key);
      }
      i = end;
    } else if (char === '{' || char === '[') depth++;
    else if (char === '}' || char === ']') depth--;
  }
  return repeated;
}

test('a line names each key once: child modules nest, a re-bound key replaces, a call field the logger binds is written once', async () => {
  const { logger, text } = capture();
  // As the job service makes its pool's logger.
  const pool = logger.child({ module: 'jobs' }).child({ module: 'pool' });
  pool.info({ device: 'cpu', workerPid: 42 }, 'worker started');
  // As a worker makes its logger; the ONNX session then logs the device it runs on (a real session).
  const worker = logger.child({ module: 'worker', device: 'cpu' });
  const { createSession, releaseSession } = await import('../src/engine/onnx/session.js');
  const { DataType, encodeModel, makeNode, makeValueInfo, onnx } = await import('../src/engine/onnx/proto.js');
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: onnx.GraphProto.create({ name: 'add', node: [makeNode('Add', ['a', 'a'], ['b'])], input: [makeValueInfo('a', DataType.FLOAT, [1])], output: [makeValueInfo('b', DataType.FLOAT, [1])] }),
  });
  const created = await createSession(encodeModel(model), { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true, logger: worker });
  await releaseSession(created.session);
  // A call that names a bound key with another value, and a child that binds a key again.
  worker.warn({ device: 'cuda:0' }, 'moved');
  logger.child({ platform: 'slack' }).child({ platform: 'discord', module: 'bolt' }).info('hello');

  const raw = text().trim().split('\n');
  expect(raw).toHaveLength(4);
  for (const line of raw) expect(repeatedKeys(line), line).toEqual([]);
  const [started, session, moved, hello] = raw.map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(started).toMatchObject({ module: 'jobs.pool', device: 'cpu', msg: 'worker started' });
  expect(session).toMatchObject({ module: 'worker', device: 'cpu', provider: 'cpu' });
  expect(moved).toMatchObject({ module: 'worker', device: 'cuda:0', msg: 'moved', level: 40 });
  expect(hello).toMatchObject({ platform: 'discord', module: 'bolt' });
});
