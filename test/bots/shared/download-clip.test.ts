/**
 * The shared clip downloader against a real HTTP server on 127.0.0.1 (allowed as the configured
 * extra origin, as a REST proxy or the fakes are).
 */
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { downloadClip, isAllowedClipUrl, type DownloadClipOptions } from '../../../src/bots/shared/download-clip.js';
import { removeDir, tempDir } from '../../helpers/harness.js';

/** The first bytes of an MP4 (an `ftyp` box), padded to a clip of `size` bytes. */
function mp4(size: number): Buffer {
  const data = Buffer.alloc(size, 7);
  Buffer.from([0, 0, 0, 24, ...Buffer.from('ftypisom')]).copy(data);
  return data;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let handler: Handler;
const seen: IncomingMessage[] = [];
let server: Server;
let origin: string;
let dir: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

afterEach(() => {
  seen.length = 0;
  if (dir !== undefined) removeDir(dir);
});

function options(path: string, extra: Partial<DownloadClipOptions> = {}): DownloadClipOptions {
  dir = tempDir();
  return { url: `${origin}${path}`, allowedHosts: ['files.slack.com'], extraOrigins: [origin], maxBytes: 64 * 1024, destDir: join(dir, 'clips'), platformName: 'Slack', fileName: 'clip.MP4', ...extra };
}

const files = (): string[] => (existsSync(join(dir, 'clips')) ? readdirSync(join(dir, 'clips')) : []);

describe('downloadClip', () => {
  it('saves the clip with its extension and sends the given headers to the clip host', async () => {
    const body = mp4(10_000);
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'video/mp4' }).end(body);
    const clip = await downloadClip(options('/files/a', { headers: { authorization: 'Bearer xoxb-secret' } }));
    expect(clip).toMatchObject({ bytes: 10_000, container: 'mov' });
    expect(clip.file.endsWith('.mp4')).toBe(true);
    expect(readFileSync(clip.file).equals(body)).toBe(true);
    expect(seen[0]!.headers.authorization).toBe('Bearer xoxb-secret');
  });

  it('follows a redirect on an allowed origin, but refuses one that leaves the allowed hosts', async () => {
    handler = (req, res) => {
      if (req.url === '/a') res.writeHead(302, { location: '/b' }).end();
      else if (req.url === '/b') res.writeHead(200, { 'content-type': 'video/mp4' }).end(mp4(2000));
      else res.writeHead(302, { location: 'https://attacker.example.com/steal' }).end();
    };
    expect((await downloadClip(options('/a'))).bytes).toBe(2000);
    await expect(downloadClip(options('/elsewhere'))).rejects.toMatchObject({ code: 'input_host_not_allowed' });
    expect(files()).toEqual([]);
  });

  it('refuses a body larger than the limit while streaming, even without a Content-Length', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'transfer-encoding': 'chunked' });
      for (let i = 0; i < 10; i++) res.write(mp4(16 * 1024));
      res.end();
    };
    await expect(downloadClip(options('/big'))).rejects.toMatchObject({ code: 'input_file_too_large' });
    expect(files()).toEqual([]);
  });

  it('refuses a declared Content-Length over the limit before reading the body', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(200 * 1024) }).end(mp4(200 * 1024));
    await expect(downloadClip(options('/big'))).rejects.toMatchObject({ code: 'input_file_too_large' });
  });

  it.each([
    ['a login page', 200, 'text/html; charset=utf-8', Buffer.from('<!DOCTYPE html><title>Sign in to Slack</title>'), 'input_download_failed', /web page/],
    ['HTML sent as a download', 200, 'application/octet-stream', Buffer.from('<!DOCTYPE html><title>Sign in to Slack</title>'.padEnd(600, ' ')), 'input_not_video', /web page/],
    ['a 403', 403, 'text/plain', Buffer.from('forbidden'), 'input_download_failed', /refused to share the clip/],
    ['a 404', 404, 'text/plain', Buffer.from('gone'), 'input_download_failed', /no longer has that clip/],
    ['a PNG', 200, 'image/png', Buffer.concat([Buffer.from([0x89]), Buffer.from('PNG\r\n'), Buffer.alloc(100)]), 'input_not_video', /PNG image/],
  ])('refuses %s with a clear message and leaves no file', async (_label, status, type, body, code, message) => {
    handler = (_req, res) => res.writeHead(status, { 'content-type': type }).end(body);
    await expect(downloadClip(options('/x'))).rejects.toMatchObject({ code, userMessage: expect.stringMatching(message) });
    expect(files()).toEqual([]);
  });

  it('refuses a declared size over the limit without any request', async () => {
    handler = (_req, res) => res.writeHead(200).end(mp4(10));
    await expect(downloadClip(options('/x', { declaredBytes: 10 * 1024 * 1024 }))).rejects.toMatchObject({ code: 'input_file_too_large', userMessage: expect.stringMatching(/10\.0 MiB/) });
    expect(seen).toHaveLength(0);
  });

  it('accepts only https on the allowed hosts, or the extra origin exactly', () => {
    const allowed = { allowedHosts: ['cdn.discordapp.com'], extraOrigins: ['http://127.0.0.1:8080/api'] };
    expect(isAllowedClipUrl('https://cdn.discordapp.com/attachments/1/2/a.mp4?ex=1', allowed)).toBe(true);
    expect(isAllowedClipUrl('http://cdn.discordapp.com/attachments/1/2/a.mp4', allowed)).toBe(false);
    expect(isAllowedClipUrl('https://cdn.discordapp.com:8443/a.mp4', allowed)).toBe(false);
    expect(isAllowedClipUrl('https://cdn.discordapp.com.evil.com/a.mp4', allowed)).toBe(false);
    expect(isAllowedClipUrl('https://user:pw@cdn.discordapp.com/a.mp4', allowed)).toBe(false);
    expect(isAllowedClipUrl('http://127.0.0.1:8080/attachments/a.mp4', allowed)).toBe(true);
    expect(isAllowedClipUrl('http://127.0.0.1:8081/attachments/a.mp4', allowed)).toBe(false);
    expect(isAllowedClipUrl('file:///etc/passwd', allowed)).toBe(false);
    expect(isAllowedClipUrl('not a url', allowed)).toBe(false);
  });
});
