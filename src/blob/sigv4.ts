/**
 * AWS Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html)
 * with node:crypto, for the S3-compatible blob transport: the canonical request, the string to
 * sign, the derived key and the signature, and on top of them presigned URLs (the signature in the
 * query string, `UNSIGNED-PAYLOAD`, only `host` signed), which any S3-compatible store accepts
 * (AWS S3, MinIO, Ceph RGW, Cloudflare R2, Garage…). Checked against AWS's published test vectors
 * (test/blob/sigv4.test.ts).
 */
import { createHash, createHmac } from 'node:crypto';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
/** The payload hash of a presigned request: the body is not part of the signature. */
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/** S3 refuses presigned URLs that live longer than seven days. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface SigV4Request {
  method: string;
  /** The canonical URI: the path exactly as sent, each segment already {@link uriEncode}d. */
  path: string;
  /** Query parameters, not yet encoded (the canonical form encodes and sorts them). */
  query: readonly (readonly [string, string])[];
  /** The headers to sign (at least `host`). */
  headers: Readonly<Record<string, string>>;
  /** Hex sha256 of the body, or {@link UNSIGNED_PAYLOAD}. */
  payloadHash: string;
}

export interface SigV4Signed {
  canonicalRequest: string;
  stringToSign: string;
  /** `host;x-amz-date`: the lower-case names of the signed headers, sorted. */
  signedHeaders: string;
  /** `20150830/us-east-1/service/aws4_request`. */
  scope: string;
  signature: string;
}

/**
 * RFC 3986 percent-encoding as SigV4 wants it: everything but `A-Z a-z 0-9 - . _ ~` becomes `%XX`
 * (upper-case hex, of the UTF-8 bytes); `/` too unless `keepSlash`.
 */
export function uriEncode(text: string, keepSlash = false): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(char) || (keepSlash && char === '/')) out += char;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** `20130524T000000Z`: the X-Amz-Date form of a time. */
export function amzDate(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** The key that signs a day's requests for one region and service: HMAC chain over the secret. */
export function signingKey(secretAccessKey: string, dateStamp: string, region: string, service: string): Buffer {
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, dateStamp), region), service), 'aws4_request');
}

/** The sorted, encoded query string of the canonical request (and of a presigned URL). */
export function canonicalQuery(query: readonly (readonly [string, string])[]): string {
  return query
    .map(([key, value]) => [uriEncode(key), uriEncode(value)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
}

/** Signs a request at `date` (an {@link amzDate} string) for `region` and `service`. */
export function signRequest(request: SigV4Request, credentials: SigV4Credentials, region: string, service: string, date: string): SigV4Signed {
  const headers = Object.entries(request.headers)
    .map(([name, value]) => [name.toLowerCase(), value.trim().replace(/\s+/g, ' ')] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const signedHeaders = headers.map(([name]) => name).join(';');
  const canonicalRequest = [
    request.method.toUpperCase(),
    request.path,
    canonicalQuery(request.query),
    headers.map(([name, value]) => `${name}:${value}\n`).join(''),
    signedHeaders,
    request.payloadHash,
  ].join('\n');
  const dateStamp = date.slice(0, 8);
  const scope = `${dateStamp}/${region}/${service}/aws4_request`;
  const stringToSign = [SIGV4_ALGORITHM, date, scope, createHash('sha256').update(canonicalRequest, 'utf8').digest('hex')].join('\n');
  const signature = createHmac('sha256', signingKey(credentials.secretAccessKey, dateStamp, region, service)).update(stringToSign, 'utf8').digest('hex');
  return { canonicalRequest, stringToSign, signedHeaders, scope, signature };
}

export interface PresignOptions {
  method: 'GET' | 'PUT' | 'HEAD' | 'DELETE';
  /** `https://host[:port]` with no path: the store's endpoint. */
  origin: string;
  /** The object's path, each segment already {@link uriEncode}d: `/bucket/jobs/1/result.mp4`. */
  path: string;
  credentials: SigV4Credentials;
  region: string;
  /** 1 to {@link MAX_PRESIGN_SECONDS}. */
  expiresSeconds: number;
  now: Date;
  service?: string;
}

/**
 * A presigned URL: whoever holds it may make this one request on this one object until it
 * expires, and nothing else (another method, object or expiry breaks the signature).
 *
 * @example
 * presignUrl({ method: 'GET', origin: 'https://examplebucket.s3.amazonaws.com', path: '/test.txt', credentials, region: 'us-east-1', expiresSeconds: 86400, now });
 */
export function presignUrl(options: PresignOptions): string {
  if (!Number.isInteger(options.expiresSeconds) || options.expiresSeconds < 1 || options.expiresSeconds > MAX_PRESIGN_SECONDS) {
    throw new RangeError(`A presigned URL lives 1 to ${MAX_PRESIGN_SECONDS} seconds, got ${options.expiresSeconds}.`);
  }
  const service = options.service ?? 's3';
  const date = amzDate(options.now);
  const query: [string, string][] = [
    ['X-Amz-Algorithm', SIGV4_ALGORITHM],
    ['X-Amz-Credential', `${options.credentials.accessKeyId}/${date.slice(0, 8)}/${options.region}/${service}/aws4_request`],
    ['X-Amz-Date', date],
    ['X-Amz-Expires', String(options.expiresSeconds)],
    ['X-Amz-SignedHeaders', 'host'],
  ];
  const host = new URL(options.origin).host;
  const { signature } = signRequest({ method: options.method, path: options.path, query, headers: { host }, payloadHash: UNSIGNED_PAYLOAD }, options.credentials, options.region, service, date);
  return `${options.origin}${options.path}?${canonicalQuery(query)}&X-Amz-Signature=${signature}`;
}
