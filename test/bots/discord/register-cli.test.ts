/**
 * `reelbot discord register` against the fake Discord: the command line in-process through
 * `main()` (as test/cli.test.ts runs it), and once as the real `bin/reelbot.js` child process.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { allCommandData } from '../../../src/bots/discord/commands.js';
import { main } from '../../../src/cli.js';
import { describeCommand } from '../../../src/cli-discord.js';
import { FakeDiscord, snowflake } from '../../fakes/fake-discord.js';
import { removeDir, tempDir } from '../../helpers/harness.js';

const BIN = fileURLToPath(new URL('../../../bin/reelbot.js', import.meta.url));
const TOKEN = 'fake-bot-token';

let dir: string;
let fake: FakeDiscord;
beforeEach(async () => {
  dir = tempDir();
  fake = await FakeDiscord.start();
  fake.botToken = TOKEN;
});
afterEach(async () => {
  await fake.close();
  removeDir(dir);
});

async function register(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'reelbot', 'discord', 'register', ...args], {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: { REELBOT_DB_PATH: `${dir}/reelbot.db`, REELBOT_DISCORD_TOKEN: TOKEN, REELBOT_DISCORD_API_URL: fake.apiUrl, ...env },
  });
  return { code, stdout, stderr };
}

const names = () => allCommandData().map((command) => command.name);
const puts = () => fake.requests.filter((r) => r.method === 'PUT');

describe('reelbot discord register', () => {
  it('--guild overwrites the server\'s commands in one PUT with the bot token, and names them', async () => {
    const run = await register(['--guild', fake.guildId]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const [me, put] = fake.requests;
    expect(me).toMatchObject({ method: 'GET', path: '/applications/@me', status: 200 });
    expect(put).toMatchObject({ method: 'PUT', path: `/applications/${fake.applicationId}/guilds/${fake.guildId}/commands`, status: 200 });
    expect(put!.headers.authorization).toBe(`Bot ${TOKEN}`);
    expect((put!.body as { name: string }[]).map((c) => c.name)).toEqual(names());
    expect(puts()).toHaveLength(1);
    expect((fake.registeredCommands.get(fake.guildId) ?? []).length).toBe(names().length);
    expect(fake.registeredCommands.has('global')).toBe(false);
    expect(run.stdout).toContain(`Registered ${names().length} commands of reelbot (${fake.applicationId}) in server ${fake.guildId}`);
    for (const command of allCommandData()) expect(run.stdout).toContain(describeCommand(command));
    expect(run.stdout).toMatch(/show in that server at once/);
    expect(run.stdout + run.stderr).not.toContain(TOKEN);
  });

  it('without --guild registers globally and says it can take up to an hour', async () => {
    const run = await register([]);
    expect(run.code).toBe(0);
    expect(puts().map((r) => r.path)).toEqual([`/applications/${fake.applicationId}/commands`]);
    expect((fake.registeredCommands.get('global') ?? []).length).toBe(names().length);
    expect(run.stdout).toContain(`globally: ${allCommandData().map(describeCommand).join(', ')}.`);
    expect(run.stdout).toContain('/video, ');
    expect(run.stdout).toMatch(/up to an hour/);
  });

  it('--clear empties the server\'s commands, and the global ones', async () => {
    expect((await register(['--guild', fake.guildId])).code).toBe(0);
    const cleared = await register(['--guild', fake.guildId, '--clear']);
    expect(cleared.code).toBe(0);
    expect(fake.registeredCommands.get(fake.guildId)).toEqual([]);
    expect(cleared.stdout).toContain(`Removed the commands of reelbot (${fake.applicationId}) in server ${fake.guildId}.`);
    const global = await register(['--clear']);
    expect(global.code).toBe(0);
    expect(fake.registeredCommands.get('global')).toEqual([]);
    expect(puts().at(-1)!.body).toEqual([]);
  });

  it('names slash commands with a slash and context menus by their kind', () => {
    expect(describeCommand({ name: 'video', type: 1 })).toBe('/video');
    expect(describeCommand({ name: 'queue' })).toBe('/queue');
    expect(describeCommand({ name: 'Edit clip…', type: 3 })).toBe('Edit clip… (message menu)');
    expect(describeCommand({ name: 'Profile', type: 2 })).toBe('Profile (user menu)');
  });

  it('without REELBOT_DISCORD_TOKEN says what to set and exits 78 without calling Discord', async () => {
    const run = await register(['--guild', fake.guildId], { REELBOT_DISCORD_TOKEN: undefined });
    expect(run.code).toBe(78);
    expect(run.stderr).toMatch(/No Discord bot token: set REELBOT_DISCORD_TOKEN/);
    expect(fake.requests).toHaveLength(0);
  });

  it('a token Discord refuses (401) is explained, and nothing is registered', async () => {
    const run = await register(['--guild', fake.guildId], { REELBOT_DISCORD_TOKEN: 'a-wrong-token' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/Discord refused the bot token \(401 Unauthorized\)\. Check REELBOT_DISCORD_TOKEN/);
    expect(run.stderr).not.toContain('a-wrong-token');
    expect(fake.requests.map((r) => [r.method, r.status])).toEqual([['GET', 401]]);
    expect(fake.registeredCommands.size).toBe(0);
  });

  it('a server the bot is not in (50001) and an unknown server (10004) are explained', async () => {
    const stranger = snowflake();
    const missing = await register(['--guild', stranger]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`no access to server ${stranger} (Discord error 50001 Missing Access). Invite the bot`);
    expect(puts()[0]!.status).toBe(403);

    fake.fail('PUT', /\/guilds\/\d+\/commands$/, 404, { message: 'Unknown Guild', code: 10004 });
    const unknown = await register(['--guild', stranger]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(`Discord knows no server ${stranger} (error 10004 Unknown Guild)`);
    expect(fake.registeredCommands.size).toBe(0);
  });

  it('a REST base that does not answer, and a malformed server id, are refused clearly', async () => {
    const closed = await FakeDiscord.start();
    const deadUrl = closed.apiUrl;
    await closed.close();
    const run = await register(['--guild', fake.guildId], { REELBOT_DISCORD_API_URL: deadUrl });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`Could not reach Discord at ${deadUrl}`);
    expect(run.stderr).toMatch(/Check REELBOT_DISCORD_API_URL/);

    const bad = await register(['--guild', 'my-server']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--guild must be a server id/);
    expect(fake.requests).toHaveLength(0);
  });

  it('runs as the real bin and exits once registered', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'discord', 'register', '--guild', fake.guildId], {
      env: { PATH: process.env.PATH, REELBOT_DISCORD_TOKEN: TOKEN, REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_LOG_LEVEL: 'silent' },
      timeout: 20_000,
    });
    expect(stdout).toContain(`Registered ${names().length} commands`);
    expect((fake.registeredCommands.get(fake.guildId) ?? []).length).toBe(names().length);
  });
});
