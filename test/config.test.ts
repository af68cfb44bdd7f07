import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { ConfigError, loadConfig, redactConfig, SECRET_ENV_VARS } from '../src/config.js';
import { removeDir, tempDir } from './helpers/harness.js';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

test('embedded defaults need no settings at all', () => {
  const config = loadConfig({ env: {} });
  expect(config.dbPath).toBe('./data/reelbot.db');
  expect(config.devices).toEqual(['cpu']);
  expect(config.quota.tiers.free?.jobsPerDay).toBe(20);
  expect(config.jobs.defaultGpuSeconds.text2video).toBe(60);
  // Longer than a real SD 1.5 step on a CPU, and than loading its 3.4 GB UNet.
  expect(config.jobs.stallTimeoutSeconds).toBe(300);
  expect(config.jobs.modelLoadTimeoutSeconds).toBe(600);
});

test('the stall and model-load deadlines are read from the environment and checked', () => {
  const config = loadConfig({ env: { REELBOT_STALL_TIMEOUT_SECONDS: '90', REELBOT_MODEL_LOAD_TIMEOUT_SECONDS: '1200' } });
  expect(config.jobs).toMatchObject({ stallTimeoutSeconds: 90, modelLoadTimeoutSeconds: 1200, timeoutSeconds: 900 });
  const problems = problemsOf(() => loadConfig({ env: { REELBOT_STALL_TIMEOUT_SECONDS: '0', REELBOT_MODEL_LOAD_TIMEOUT_SECONDS: 'long' } }));
  expect(problems).toHaveLength(2);
  expect(problems.join('\n')).toContain('REELBOT_STALL_TIMEOUT_SECONDS (jobs.stallTimeoutSeconds):');
  expect(problems.join('\n')).toContain('REELBOT_MODEL_LOAD_TIMEOUT_SECONDS: expected a number, got "long"');
});

test('environment variables are read and typed', () => {
  const config = loadConfig({
    env: {
      REELBOT_DEVICES: 'cuda:0, cuda:1',
      REELBOT_JOB_TIMEOUT_SECONDS: '120',
      REELBOT_PROMPT_BLOCKLIST: '["\\\\bgore\\\\b"]',
      REELBOT_DISCORD_ADMINS: '111,222',
      REELBOT_QUOTA_TIERS: '{"free":{"jobsPerDay":5}}',
      PATH: '/usr/bin',
    },
  });
  expect(config.devices).toEqual(['cuda:0', 'cuda:1']);
  expect(config.jobs.timeoutSeconds).toBe(120);
  expect(config.prompt.blocklist).toEqual(['\\bgore\\b']);
  expect(config.admins.discord).toEqual(['111', '222']);
  expect(config.quota.tiers.free).toEqual({ jobsPerDay: 5, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 3, maxFrames: null, maxSteps: null, cooldownSeconds: 0 });
});

test('devices set by REELBOT_DEVICES, the config file or a flag are told from the default (a coordinator with Redis runs workers only then)', () => {
  expect(loadConfig({ env: {} })).toMatchObject({ devices: ['cpu'], devicesConfigured: false });
  expect(loadConfig({ env: { REELBOT_DEVICES: 'cpu' } })).toMatchObject({ devices: ['cpu'], devicesConfigured: true });
  expect(loadConfig({ env: {}, overrides: { devices: ['cuda:0'] } })).toMatchObject({ devices: ['cuda:0'], devicesConfigured: true });
  const dir = tempDir();
  try {
    const file = join(dir, 'reelbot.json');
    writeFileSync(file, JSON.stringify({ devices: ['cuda:1'] }));
    expect(loadConfig({ file, env: {} })).toMatchObject({ devices: ['cuda:1'], devicesConfigured: true });
    // Derived, not a setting: a config file may not set it, and `reelbot config` does not print it.
    writeFileSync(file, JSON.stringify({ devicesConfigured: true }));
    expect(problemsOf(() => loadConfig({ file, env: {} }))).toEqual(['config: unknown setting "devicesConfigured"']);
    expect(redactConfig(loadConfig({ env: {} }))).not.toHaveProperty('devicesConfigured');
  } finally {
    removeDir(dir);
  }
});

test('every invalid setting is reported at once, by name, with what is expected', () => {
  const problems = problemsOf(() =>
    loadConfig({
      env: {
        REELBOT_DEVICES: 'gpu7',
        REELBOT_JOB_TIMEOUT_SECONDS: 'soon',
        REELBOT_HEARTBEAT_TIMEOUT_MS: '-5',
        REELBOT_PROMPT_BLOCKLIST: '["(unclosed"]',
        REELBOT_QUOTA_TIERS: '{"free":{"jobsPerDay":"lots"}}',
        REELBOT_LOG_LEVEL: 'loud',
        REELBOT_DEVICE: 'cpu',
      },
    }),
  );
  const text = problems.join('\n');
  expect(problems).toHaveLength(7);
  expect(text).toContain('REELBOT_DEVICES (devices.0): expected cpu, webgpu, cuda or cuda:N');
  expect(text).toContain('REELBOT_JOB_TIMEOUT_SECONDS: expected a number, got "soon"');
  expect(text).toMatch(/REELBOT_HEARTBEAT_TIMEOUT_MS \(jobs.heartbeatTimeoutMs\): .*>0/);
  expect(text).toContain('REELBOT_PROMPT_BLOCKLIST (prompt.blocklist.0): expected a valid regular expression');
  expect(text).toMatch(/REELBOT_QUOTA_TIERS \(quota.tiers.free.jobsPerDay\): .*number/);
  expect(text).toMatch(/REELBOT_LOG_LEVEL \(logLevel\): .*"info"/);
  expect(text).toContain('REELBOT_DEVICE: unknown setting');
});

test('a config file is read, checked for unknown keys, and the environment wins over it', () => {
  const dir = tempDir();
  try {
    const file = join(dir, 'reelbot.json');
    writeFileSync(file, JSON.stringify({ dbPath: '/var/lib/reelbot.db', devices: ['cuda:0'] }));
    expect(loadConfig({ env: { REELBOT_CONFIG: file, REELBOT_DEVICES: 'cpu' } })).toMatchObject({ dbPath: '/var/lib/reelbot.db', devices: ['cpu'] });

    writeFileSync(file, JSON.stringify({ dbpath: 'x', quota: { defaultTier: 'gold' } }));
    const problems = problemsOf(() => loadConfig({ file, env: {} }));
    expect([...problems].sort()).toEqual(['config: unknown setting "dbpath"', 'quota.defaultTier: defaultTier must name one of the tiers']);

    expect(problemsOf(() => loadConfig({ file: join(dir, 'missing.json'), env: {} }))[0]).toMatch(/missing.json: file not found/);
    writeFileSync(file, '{ not json');
    expect(problemsOf(() => loadConfig({ file, env: {} }))[0]).toMatch(/^config file .*reelbot.json: /);
  } finally {
    removeDir(dir);
  }
});

test('secrets never appear in messages or in the printed config', () => {
  const secret = 'xoxb-very-secret-token';
  const problems = problemsOf(() => loadConfig({ env: { REELBOT_SLACK_BOT_TOKEN: secret, REELBOT_DEVICES: 'nope' } }));
  expect(problems.join('\n')).not.toContain(secret);
  const config = loadConfig({ env: { REELBOT_DISCORD_TOKEN: secret } });
  expect(config.discordToken).toBe(secret);
  expect(JSON.stringify(redactConfig(config))).not.toContain(secret);
  expect(SECRET_ENV_VARS).toEqual(['REELBOT_DISCORD_TOKEN', 'REELBOT_SLACK_BOT_TOKEN', 'REELBOT_SLACK_APP_TOKEN', 'REELBOT_SLACK_SIGNING_SECRET', 'REELBOT_REDIS_URL', 'REELBOT_S3_SECRET_ACCESS_KEY']);
  const empty = problemsOf(() => loadConfig({ env: { REELBOT_DISCORD_TOKEN: '' } }));
  expect(empty).toEqual(['REELBOT_DISCORD_TOKEN (discordToken): must not be empty']);
});

test('an S3 bucket for the blob transport: all its settings checked, its secret key required and never printed', () => {
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  const s3 = { REELBOT_S3_ENDPOINT: 'http://minio.internal:9000', REELBOT_S3_BUCKET: 'reelbot-blobs', REELBOT_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE' };
  const config = loadConfig({ env: { ...s3, REELBOT_S3_SECRET_ACCESS_KEY: secret } });
  expect(config.s3).toEqual({ endpoint: 'http://minio.internal:9000', bucket: 'reelbot-blobs', region: 'us-east-1', accessKeyId: 'AKIAEXAMPLE' });
  expect(config.s3SecretAccessKey).toBe(secret);
  expect(JSON.stringify(redactConfig(config))).not.toContain(secret);
  expect(problemsOf(() => loadConfig({ env: s3 }))).toEqual(['s3: the bucket needs its secret key too: set REELBOT_S3_SECRET_ACCESS_KEY (s3SecretAccessKey)']);
  const bad = problemsOf(() => loadConfig({ env: { ...s3, REELBOT_S3_BUCKET: 'Not_A_Bucket', REELBOT_S3_ENDPOINT: 'ftp://x', REELBOT_S3_SECRET_ACCESS_KEY: secret } }));
  expect(bad.join('\n')).toMatch(/REELBOT_S3_BUCKET \(s3\.bucket\): expected an S3 bucket name/);
  expect(bad.join('\n')).toMatch(/REELBOT_S3_ENDPOINT \(s3\.endpoint\)/);
  expect(bad.join('\n')).not.toContain(secret);
  expect(loadConfig({ env: {} }).s3).toBeUndefined();
});
