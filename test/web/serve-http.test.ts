/**
 * The HTTP side of `reelbot serve` as an operator runs it (the real bin, settings from the
 * environment, Discord on the fake), and `reelbot dashboard link`.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { main } from '../../src/cli.js';
import { hashToken } from '../../src/store/dashboard-sign-in.js';
import { openDatabase } from '../../src/store/db.js';
import { FakeDiscord } from '../fakes/fake-discord.js';
import { MP4_ENGINE } from '../fakes/mp4-engine.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { startServe } from '../helpers/serve-process.js';

let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => removeDir(dir));

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(['node', 'reelbot', ...args], {
    env: { REELBOT_DB_PATH: join(dir, 'reelbot.db'), ...env },
    stdout: { write: (text: string) => (out += text) },
    stderr: { write: (text: string) => (err += text) },
  });
  return { code, out, err };
}

describe('reelbot dashboard link', () => {
  test('prints a one-time link that expires in minutes; only its hash is stored', async () => {
    expect((await cli(['db', 'migrate'], {})).code).toBe(0);
    const before = Date.now();
    const { code, out } = await cli(['dashboard', 'link'], { REELBOT_HTTP_PORT: '8123' });
    expect(code).toBe(0);
    expect(out).toMatch(/works once, for 10 minutes/);
    const url = /^(http:\/\/127\.0\.0\.1:8123\/login\?token=([A-Za-z0-9_-]{43}))$/m.exec(out);
    expect(url).not.toBeNull();
    const db = openDatabase(join(dir, 'reelbot.db'));
    try {
      const rows = db.prepare('SELECT token_hash, platform, expires_at, used_at FROM dashboard_links').all() as { token_hash: string; platform: string; expires_at: number; used_at: number | null }[];
      expect(rows).toHaveLength(1);
      expect(rows[0]!.token_hash).toBe(hashToken(url![2]!));
      expect(JSON.stringify(rows)).not.toContain(url![2]!);
      expect(rows[0]).toMatchObject({ platform: 'cli', used_at: null });
      expect(rows[0]!.expires_at - before).toBeGreaterThanOrEqual(10 * 60_000);
      expect(rows[0]!.expires_at - before).toBeLessThan(11 * 60_000);
    } finally {
      db.close();
    }
    const proxied = await cli(['dashboard', 'link'], { REELBOT_HTTP_PORT: '8123', REELBOT_HTTP_PUBLIC_URL: 'https://bot.example.org/', REELBOT_DASHBOARD_LINK_MINUTES: '3' });
    expect(proxied.out).toMatch(/^https:\/\/bot\.example\.org\/login\?token=/m);
    expect(proxied.out).toMatch(/for 3 minutes/);
  });

  test('says what to set when serve has no HTTP port', async () => {
    expect((await cli(['db', 'migrate'], {})).code).toBe(0);
    const { code, err } = await cli(['dashboard', 'link'], {});
    expect(code).toBe(78);
    expect(err).toContain('REELBOT_HTTP_PORT');
  });
});

test('serve with REELBOT_HTTP_PORT: health, readiness once Discord is connected, metrics, and sign-in pages, on 127.0.0.1', async () => {
  const fake = await FakeDiscord.start();
  const bot = startServe(dir, { REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE, REELBOT_HTTP_PORT: '0' });
  try {
    const deadline = Date.now() + 30_000;
    let base: string | undefined;
    while (!base && Date.now() < deadline) {
      base = /Health, metrics and the dashboard: (http:\/\/127\.0\.0\.1:\d+)/.exec(bot.output())?.[1];
      if (!base) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(base, bot.output()).toBeDefined();
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ ok: true });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^reelbot_platform_connected\{platform="discord"\} 1$/m);
    const login = await fetch(`${base}/`);
    expect(login.status).toBe(401);
    expect(login.headers.get('content-security-policy')).toContain("script-src 'self'");
    bot.child.kill('SIGTERM');
    expect(await bot.exited).toBe(0);
    expect(bot.output()).not.toContain('fake-bot-token');
  } finally {
    bot.child.kill('SIGKILL');
    await fake.close();
  }
});
