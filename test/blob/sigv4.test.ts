/**
 * SigV4 against AWS's published numbers: the signing-key example of the IAM guide, cases of the
 * Signature Version 4 test suite (`get-vanilla` and friends, service `service`), and the S3 guide's
 * presigned GET of examplebucket/test.txt.
 */
import { createHash } from 'node:crypto';
import { expect, test } from 'vitest';
import { amzDate, canonicalQuery, presignUrl, signingKey, signRequest, uriEncode, type SigV4Request } from '../../src/blob/sigv4.js';

const SUITE_CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');

/** A request of the test suite: GET on example.amazonaws.com at 20150830T123600Z. */
function suiteRequest(path: string, query: [string, string][] = []): SigV4Request {
  return { method: 'GET', path: uriEncode(path, true), query, headers: { Host: 'example.amazonaws.com', 'X-Amz-Date': '20150830T123600Z' }, payloadHash: EMPTY_SHA256 };
}

test('the signing key of the IAM guide\'s example (20120215, us-east-1, iam)', () => {
  expect(signingKey('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', '20120215', 'us-east-1', 'iam').toString('hex')).toBe('f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d');
});

test('get-vanilla: the canonical request, the string to sign and the signature the test suite publishes', () => {
  const signed = signRequest(suiteRequest('/'), SUITE_CREDENTIALS, 'us-east-1', 'service', '20150830T123600Z');
  expect(signed.canonicalRequest).toBe(`GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n${EMPTY_SHA256}`);
  expect(signed.stringToSign).toBe('AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63');
  expect(signed.signedHeaders).toBe('host;x-amz-date');
  expect(signed.signature).toBe('5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31');
});

test.each([
  ['get-vanilla-query-order-key-case', '/', [['Param2', 'value2'], ['Param1', 'value1']], 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500'],
  ['get-vanilla-empty-query-key', '/', [['Param1', 'value1']], 'a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb'],
  ['get-utf8', '/ሴ', [], '8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85'],
] as const)('%s', (_name, path, query, signature) => {
  expect(signRequest(suiteRequest(path, query.map(([k, v]) => [k, v])), SUITE_CREDENTIALS, 'us-east-1', 'service', '20150830T123600Z').signature).toBe(signature);
});

test('the S3 guide\'s presigned GET of examplebucket/test.txt, to the character', () => {
  const url = presignUrl({
    method: 'GET',
    origin: 'https://examplebucket.s3.amazonaws.com',
    path: '/test.txt',
    credentials: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    region: 'us-east-1',
    expiresSeconds: 86400,
    now: new Date('2013-05-24T00:00:00Z'),
  });
  expect(url).toBe(
    'https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404',
  );
});

test('encoding: only unreserved characters stay, bytes are upper-case hex, a space is %20 and never +', () => {
  expect(uriEncode('a-b_c.d~e f/g+h*ü')).toBe('a-b_c.d~e%20f%2Fg%2Bh%2A%C3%BC');
  expect(uriEncode('/jobs/1/a 1', true)).toBe('/jobs/1/a%201');
  expect(canonicalQuery([['b', '2'], ['a', 'x y'], ['A', '0']])).toBe('A=0&a=x%20y&b=2');
  expect(amzDate(new Date('2026-12-02T10:17:44.123Z'))).toBe('20261202T101744Z');
});

test('a presigned URL lives 1 s to 7 days', () => {
  const options = { method: 'GET', origin: 'http://127.0.0.1:9000', path: '/b/k', credentials: SUITE_CREDENTIALS, region: 'us-east-1', now: new Date() } as const;
  expect(() => presignUrl({ ...options, expiresSeconds: 0 })).toThrow(/1 to 604800 seconds/);
  expect(() => presignUrl({ ...options, expiresSeconds: 604801 })).toThrow(/1 to 604800 seconds/);
  expect(presignUrl({ ...options, expiresSeconds: 604800 })).toContain('X-Amz-Expires=604800');
});
