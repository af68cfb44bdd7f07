/**
 * The app manifest in the repo matches what the adapter handles: the slash commands, the
 * shortcut's callback id, Socket Mode, the message events and the scopes of platforms.md §4.
 * Plus the pure admin grammar.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAdminCommandText, parseUserRef } from '../../../src/bots/slack/admin-command.js';
import { EDIT_SHORTCUT_CALLBACK_ID } from '../../../src/bots/slack/blocks.js';

const manifest = readFileSync(fileURLToPath(new URL('../../../slack-manifest.yaml', import.meta.url)), 'utf8');
/** The YAML list under `key:` (comment lines skipped), up to the next key. */
const listAfter = (key: string) => {
  const lines = manifest.slice(manifest.indexOf(`${key}:`)).split('\n').slice(1);
  const items: string[] = [];
  for (const line of lines) {
    if (/^\s*#/.test(line)) continue;
    const item = /^\s+- ([a-z:._]+)\s*$/.exec(line);
    if (item === null) break;
    items.push(item[1]!);
  }
  return items;
};

describe('slack-manifest.yaml', () => {
  it('declares the commands, the shortcut, Socket Mode and the message events the adapter handles', () => {
    expect([...manifest.matchAll(/- command: (\S+)/g)].map((m) => m[1])).toEqual(['/video', '/reelbot', '/reelbot-admin']);
    expect(manifest).toContain(`callback_id: ${EDIT_SHORTCUT_CALLBACK_ID}`);
    expect(manifest).toMatch(/socket_mode_enabled: true/);
    expect(manifest).toMatch(/interactivity:\n\s+is_enabled: true/);
    expect(listAfter('bot_events').slice(0, 3)).toEqual(['message.channels', 'message.groups', 'message.im']);
    expect(manifest).not.toMatch(/- app_mention\s*$/m);
  });

  it('asks for exactly the scopes of platforms.md §4, and channels:read / groups:read for the membership check before admission', () => {
    expect(listAfter('bot').sort()).toEqual(['app_mentions:read', 'channels:history', 'channels:read', 'chat:write', 'commands', 'files:read', 'files:write', 'groups:history', 'groups:read', 'im:history']);
  });
});

describe('parseAdminCommandText', () => {
  it('reads users as escaped mentions or bare ids, and periods', () => {
    expect(parseUserRef('<@U0123ABC|ann>')).toBe('U0123ABC');
    expect(parseUserRef('W0123ABC')).toBe('W0123ABC');
    expect(parseUserRef('@ann')).toBeUndefined();
    expect(parseAdminCommandText('usage <@U0123ABC> month')).toEqual({ ok: true, command: { type: 'usage', userId: 'U0123ABC', period: 'month' } });
    expect(parseAdminCommandText('usage')).toEqual({ ok: true, command: { type: 'usage', period: 'today' } });
    expect(parseAdminCommandText('')).toEqual({ ok: true, command: { type: 'help' } });
  });

  it('builds quota changes, bans with reasons and queue actions', () => {
    expect(parseAdminCommandText('quota set <@U1AB> tier=pro jobs_per_day=50 gpu_seconds_per_day=none')).toEqual({
      ok: true,
      command: { type: 'quota', userId: 'U1AB', tier: 'pro', override: { jobsPerDay: 50, gpuSecondsPerDay: null } },
    });
    expect(parseAdminCommandText('quota set <@U1AB> tier=default')).toEqual({ ok: true, command: { type: 'quota', userId: 'U1AB', tier: null } });
    expect(parseAdminCommandText('ban U1AB too many corgis')).toEqual({ ok: true, command: { type: 'ban', userId: 'U1AB', reason: 'too many corgis' } });
    expect(parseAdminCommandText('QUEUE Pause')).toEqual({ ok: true, command: { type: 'queue', action: 'pause' } });
  });

  it('refuses mistakes with a reason and the usage lines', () => {
    const cases: [string, RegExp][] = [
      ['quota set <@U1AB>', /Give a tier=… or a limit/],
      ['quota set <@U1AB> speed=9', /Unknown quota setting `speed`/],
      ['quota set <@U1AB> jobs_per_day=1.5', /jobs_per_day must be a whole number/],
      ['ban', /ban needs a user/],
      ['unban <@U1AB> now', /unban takes only the user/],
      ['usage <@U1AB> <@U2CD>', /I don't understand/],
      ['stats yesterday', /stats takes one period/],
    ];
    for (const [text, message] of cases) {
      const parsed = parseAdminCommandText(text);
      expect(parsed.ok).toBe(false);
      if (!parsed.ok) {
        expect(parsed.message).toMatch(message);
        expect(parsed.message).toContain('/reelbot-admin queue pause|resume|clear');
      }
    }
  });
});
