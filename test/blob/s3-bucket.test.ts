/**
 * The S3 blob transport's bucket client against a fake S3 that checks presigned URLs as S3 does:
 * presigned GET and PUT work as given, any tampering or an expired URL is refused with 403, and a
 * result is kept only within its cap and with the sha256 and size the worker host reported.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { S3Bucket, S3RequestError } from '../../src/blob/s3-bucket.js';
import { FakeS3 } from '../fakes/fake-s3.js';
import { removeDir, tempDir } from '../helpers/harness.js';

const settings = { bucket: 'reelbot-blobs', region: 'eu-central-1', accessKeyId: 'AKIAFAKEEXAMPLE', secretAccessKey: 'fake/secret+KEY/for-tests' };
let s3: FakeS3;
let dir: string;
let bucket: S3Bucket;

beforeAll(async () => {
  s3 = await FakeS3.start(settings);
  dir = tempDir();
  bucket = new S3Bucket({ ...settings, endpoint: s3.endpoint });
});
afterAll(async () => {
  await s3.close();
  removeDir(dir);
});

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

test('a presigned PUT and GET work as handed out, for that one object', async () => {
  const data = Buffer.from('an mp4, as far as this test is concerned');
  const put = await fetch(bucket.url('PUT', 'reelbot/ns1/7/a1/result.mp4', 60), { method: 'PUT', body: data });
  expect(put.status).toBe(200);
  expect(s3.object('reelbot/ns1/7/a1/result.mp4')).toEqual(data);
  const get = await fetch(bucket.url('GET', 'reelbot/ns1/7/a1/result.mp4', 60));
  expect(get.status).toBe(200);
  expect(Buffer.from(await get.arrayBuffer())).toEqual(data);
  // The coordinator's own upload and download sign the same way.
  const file = join(dir, 'clip.mp4');
  writeFileSync(file, Buffer.alloc(70_000, 7));
  await bucket.upload('reelbot/ns1/8/a1/input.mp4', file);
  expect(s3.object('reelbot/ns1/8/a1/input.mp4')?.length).toBe(70_000);
  await bucket.download('reelbot/ns1/7/a1/result.mp4', join(dir, 'result.mp4'), { sha256: sha256(data), bytes: data.length }, 1024);
  expect(readFileSync(join(dir, 'result.mp4'))).toEqual(data);
  await bucket.remove('reelbot/ns1/7/a1/result.mp4');
  expect(s3.object('reelbot/ns1/7/a1/result.mp4')).toBeUndefined();
});

test('a tampered URL is refused with 403: another object, method, expiry or key', async () => {
  s3.objects.set('/reelbot-blobs/other', Buffer.from('not yours'));
  const good = bucket.url('GET', 'mine', 60);
  const status = async (url: string, method = 'GET') => {
    const response = await fetch(url, { method, ...(method === 'PUT' ? { body: 'x' } : {}) });
    return [response.status, /<Code>(\w+)<\/Code>/.exec(await response.text())?.[1]];
  };
  expect(await status(good.replace('/mine?', '/other?'))).toEqual([403, 'SignatureDoesNotMatch']);
  expect(await status(good, 'PUT')).toEqual([403, 'SignatureDoesNotMatch']);
  expect(await status(good.replace('X-Amz-Expires=60', 'X-Amz-Expires=604800'))).toEqual([403, 'SignatureDoesNotMatch']);
  expect(await status(good.replace(/X-Amz-Signature=[0-9a-f]{4}/, 'X-Amz-Signature=0000'))).toEqual([403, 'SignatureDoesNotMatch']);
  const stranger = new S3Bucket({ ...settings, endpoint: s3.endpoint, secretAccessKey: 'a guess' });
  expect(await status(stranger.url('GET', 'other', 60))).toEqual([403, 'SignatureDoesNotMatch']);
  const unknownKey = new S3Bucket({ ...settings, endpoint: s3.endpoint, accessKeyId: 'AKIANOBODY' });
  expect(await status(unknownKey.url('GET', 'other', 60))).toEqual([403, 'InvalidAccessKeyId']);
  // And the untouched URL works (a missing object: 404, past the signature check).
  expect(await status(good)).toEqual([404, 'NoSuchKey']);
});

test('an expired URL is refused with 403, as S3 does', async () => {
  const twoHoursAgo = new S3Bucket({ ...settings, endpoint: s3.endpoint }, () => Date.now() - 2 * 3600_000);
  s3.objects.set('/reelbot-blobs/old', Buffer.from('x'));
  const response = await fetch(twoHoursAgo.url('GET', 'old', 3600));
  expect(response.status).toBe(403);
  expect(await response.text()).toContain('Request has expired');
  expect((await fetch(twoHoursAgo.url('GET', 'old', 3 * 3600))).status).toBe(200);
});

test('a result is kept only with the reported sha256 and size, and within its cap; nothing is left behind otherwise', async () => {
  const data = Buffer.alloc(4096, 1);
  s3.objects.set('/reelbot-blobs/r/result.mp4', data);
  const target = join(dir, 'checked', 'result.mp4');
  mkdirSync(join(dir, 'checked'));
  const tries: [string, { sha256: string; bytes: number }, number][] = [
    ['is not what the worker host', { sha256: sha256(Buffer.alloc(4096, 2)), bytes: 4096 }, 10_000],
    ['is not what the worker host', { sha256: sha256(data), bytes: 4000 }, 10_000],
    ['larger \\(4096 bytes\\) than the cap', { sha256: sha256(data), bytes: 4096 }, 4095],
    ['declared larger', { sha256: sha256(data), bytes: 4096 * 2 }, 4096],
  ];
  for (const [why, expected, cap] of tries) {
    const error = await bucket.download('r/result.mp4', target, expected, cap).then(() => undefined, (thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(S3RequestError);
    expect((error as Error).message).toMatch(new RegExp(why));
    expect(readdirSync(join(dir, 'checked'))).toEqual([]);
  }
  expect(existsSync(target)).toBe(false);
  const missing = await bucket.download('r/none.mp4', target, { sha256: sha256(data), bytes: 1 }, 10).then(() => undefined, (thrown: unknown) => thrown);
  expect(missing).toMatchObject({ status: 404, s3Code: 'NoSuchKey' });
  // Its messages name the object and the bucket, never a signed URL or the secret.
  expect((missing as Error).message).not.toMatch(/X-Amz-Signature|fake\/secret/);
  expect((missing as Error).message).toContain(`${s3.endpoint}/reelbot-blobs`);
});
