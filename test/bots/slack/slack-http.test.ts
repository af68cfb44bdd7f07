/**
 * HTTP mode (Bolt's HTTPReceiver): a full signed `/video` request gets the ack in its response and
 * makes a job; a bad signature is refused with 401 and reaches no handler; an Events API retry
 * (`X-Slack-Retry-Num`) of a thread reply makes no second job.
 */
import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { BOT_USER_ID, FakeSlack, TEAM_ID } from '../../fakes/fake-slack.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, bob, CHANNEL, MP4_ENGINE, newAdapter, smallMp4 } from './setup.js';

const SECRET = 'test-signing-secret';

let dir: string;
let harness: Harness;
let fake: FakeSlack;
let adapter: SlackAdapter;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeSlack.start();
  adapter = newAdapter(fake, harness.service, dir, { mode: 'http', appToken: undefined, signingSecret: SECRET, port: 0, host: '127.0.0.1' });
  await adapter.start();
});

afterEach(async () => {
  await adapter.stop();
  await fake.close();
  await harness.close();
  removeDir(dir);
});

function sign(body: string, secret = SECRET, timestamp = Math.floor(Date.now() / 1000)): Record<string, string> {
  const signature = `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  return { 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': signature };
}

async function post(body: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${adapter.port}/slack/events`, { method: 'POST', body, headers });
  return { status: response.status, text: await response.text() };
}

const jobCount = () => harness.db.prepare(`SELECT count(*) FROM jobs`).pluck().get() as number;

describe('SlackAdapter in HTTP mode', () => {
  it('a validly signed /video is acked in the response and makes a job; a bad or stale signature is 401 and makes none', async () => {
    const body = new URLSearchParams(fake.slashPayload('/video', 'a signed corgi', alice) as Record<string, string>).toString();
    const form = { 'content-type': 'application/x-www-form-urlencoded' };

    const forged = await post(body, { ...form, ...sign(body, 'not-the-secret') });
    expect(forged.status).toBe(401);
    const stale = await post(body, { ...form, ...sign(body, SECRET, Math.floor(Date.now() / 1000) - 600) });
    expect(stale.status).toBe(401);
    expect(jobCount()).toBe(0);

    const valid = await post(body, { ...form, ...sign(body) });
    expect(valid.status).toBe(200);
    const ack = JSON.parse(valid.text) as { response_type: string; text: string };
    expect(ack.response_type).toBe('ephemeral');
    expect(ack.text).toMatch(/\*Job #1\* is queued/);
    expect(ack.text).toContain('a signed corgi');
    await harness.waitFor(isType('succeeded', 1), 30_000);
    await fake.waitForRequest((r) => r.method === 'files.completeUploadExternal', 30_000);
    expect(jobCount()).toBe(1);
  });

  it('an Events API retry (X-Slack-Retry-Num) of the same event_id makes no second job', async () => {
    const file = fake.addFile(smallMp4(dir), 'clip.mp4');
    const parent = fake.addMessage(CHANNEL, { user: alice.id, text: '', subtype: 'file_share', files: [file] });
    const reply = fake.addMessage(CHANNEL, { user: bob.id, text: `<@${BOT_USER_ID}> make it snowy`, thread_ts: parent.ts, parent_user_id: alice.id });
    const body = JSON.stringify({
      token: 'verification-token',
      team_id: TEAM_ID,
      api_app_id: 'A0000APP1',
      type: 'event_callback',
      event_id: 'Ev0HTTP0001',
      event_time: Math.floor(Date.now() / 1000),
      event: { ...reply, channel: CHANNEL, event_ts: reply.ts, channel_type: 'channel' },
    });
    const json = { 'content-type': 'application/json' };
    expect((await post(body, { ...json, ...sign(body) })).status).toBe(200);
    for (let retry = 1; retry <= 3; retry++) {
      expect((await post(body, { ...json, ...sign(body), 'x-slack-retry-num': String(retry), 'x-slack-retry-reason': 'http_timeout' })).status).toBe(200);
    }
    await harness.waitFor(isType('succeeded'), 30_000);
    await sleep(300);
    expect(jobCount()).toBe(1);
    expect(fake.calls('download')).toHaveLength(1);
  });
});
