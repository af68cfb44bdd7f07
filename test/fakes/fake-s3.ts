/**
 * A fake S3-compatible store on 127.0.0.1 (node:http) for the S3 blob transport: path-style
 * objects (`/bucket/key`) kept in memory, GET, HEAD, PUT and DELETE, and only presigned requests
 * (SigV4 in the query string) let in. It checks them the way S3 does, with its own SigV4 code (not
 * src/blob/sigv4.ts): the algorithm, the credential's key, day, region and service, that `host` is
 * signed, the signature over the request as received, and the expiry; a tampered or expired URL
 * gets 403 with S3's error code. Every request is recorded.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeS3Request {
  method: string;
  /** The object's path without the query: `/bucket/key`. */
  path: string;
  status: number;
  /** S3's error code when refused: `SignatureDoesNotMatch`, `AccessDenied`, `NoSuchKey`… */
  error?: string;
}

export interface FakeS3Options {
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The store's clock (Unix ms); default Date.now. */
  now?: () => number;
}

const enc = (text: string) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();

export class FakeS3 {
  readonly options: FakeS3Options;
  readonly requests: FakeS3Request[] = [];
  /** Objects by path (`/bucket/key`). */
  readonly objects = new Map<string, Buffer>();
  /** What a PUT stores, given its path and body (default: the body): a test corrupts objects in the store with it. */
  onPut: (path: string, body: Buffer) => Buffer = (_path, body) => body;
  readonly #server: Server;

  private constructor(options: FakeS3Options) {
    this.options = options;
    this.#server = createServer((request, response) => void this.#handle(request, response));
  }

  static async start(options: FakeS3Options): Promise<FakeS3> {
    const fake = new FakeS3(options);
    fake.#server.listen(0, '127.0.0.1');
    await once(fake.#server, 'listening');
    return fake;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** The object at `key` in the bucket. */
  object(key: string): Buffer | undefined {
    return this.objects.get(`/${this.options.bucket}/${key.split('/').map(enc).join('/')}`);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const [path = '/', rawQuery = ''] = (request.url ?? '/').split('?', 2) as [string, string?];
    const record: FakeS3Request = { method: request.method ?? '', path, status: 0 };
    this.requests.push(record);
    const refuse = (status: number, code: string, message: string) => {
      record.status = status;
      record.error = code;
      request.resume();
      response.writeHead(status, { 'content-type': 'application/xml' });
      response.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`);
    };
    const denied = this.#checkPresigned(request, path, rawQuery);
    if (denied) return refuse(403, denied.code, denied.message);
    if (!path.startsWith(`/${this.options.bucket}/`)) return refuse(404, 'NoSuchBucket', 'The specified bucket does not exist');
    switch (request.method) {
      case 'PUT': {
        const chunks: Buffer[] = [];
        for await (const chunk of request) chunks.push(chunk as Buffer);
        this.objects.set(path, this.onPut(path, Buffer.concat(chunks)));
        record.status = 200;
        response.writeHead(200, { etag: `"${createHash('md5').update(Buffer.concat(chunks)).digest('hex')}"` });
        return void response.end();
      }
      case 'GET':
      case 'HEAD': {
        const data = this.objects.get(path);
        if (!data) return refuse(404, 'NoSuchKey', 'The specified key does not exist.');
        record.status = 200;
        response.writeHead(200, { 'content-length': data.length, 'content-type': 'application/octet-stream' });
        return void response.end(request.method === 'GET' ? data : undefined);
      }
      case 'DELETE':
        this.objects.delete(path);
        record.status = 204;
        response.writeHead(204);
        return void response.end();
      default:
        return refuse(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    }
  }

  /** Why S3 would refuse this request's presigned query, or undefined when it is good. */
  #checkPresigned(request: IncomingMessage, path: string, rawQuery: string): { code: string; message: string } | undefined {
    const params = new URLSearchParams(rawQuery);
    const get = (name: string) => params.get(name) ?? '';
    if (get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return { code: 'AccessDenied', message: 'Only AWS4-HMAC-SHA256 presigned requests are accepted' };
    const [accessKeyId, day, region, service, terminator] = get('X-Amz-Credential').split('/');
    const date = get('X-Amz-Date');
    if (accessKeyId !== this.options.accessKeyId) return { code: 'InvalidAccessKeyId', message: 'The AWS Access Key Id you provided does not exist in our records.' };
    if (day !== date.slice(0, 8) || region !== this.options.region || service !== 's3' || terminator !== 'aws4_request') {
      return { code: 'AuthorizationQueryParametersError', message: 'Error parsing the X-Amz-Credential parameter' };
    }
    const expires = Number(get('X-Amz-Expires'));
    if (!Number.isInteger(expires) || expires < 1 || expires > 604800) return { code: 'AuthorizationQueryParametersError', message: 'X-Amz-Expires must be 1 to 604800' };
    const signedHeaders = get('X-Amz-SignedHeaders').split(';');
    if (!signedHeaders.includes('host')) return { code: 'AuthorizationQueryParametersError', message: 'host must be signed' };
    const pairs = rawQuery
      .split('&')
      .filter((pair) => pair !== '' && !pair.startsWith('X-Amz-Signature='))
      .map((pair) => {
        const [key = '', value = ''] = pair.split('=', 2);
        return `${enc(decodeURIComponent(key))}=${enc(decodeURIComponent(value.replace(/\+/g, ' ')))}`;
      })
      .sort();
    const canonicalHeaders = signedHeaders.map((name) => `${name}:${String(request.headers[name] ?? '').trim()}\n`).join('');
    const canonical = [request.method, path, pairs.join('&'), canonicalHeaders, signedHeaders.join(';'), 'UNSIGNED-PAYLOAD'].join('\n');
    const toSign = ['AWS4-HMAC-SHA256', date, `${day}/${region}/s3/aws4_request`, createHash('sha256').update(canonical).digest('hex')].join('\n');
    const key = hmac(hmac(hmac(hmac(`AWS4${this.options.secretAccessKey}`, day), region), 's3'), 'aws4_request');
    const expected = Buffer.from(createHmac('sha256', key).update(toSign).digest('hex'));
    const given = Buffer.from(get('X-Amz-Signature'));
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      return { code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided.' };
    }
    const signedAt = Date.parse(`${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`);
    if ((this.options.now ?? Date.now)() > signedAt + expires * 1000) return { code: 'AccessDenied', message: 'Request has expired' };
    return undefined;
  }
}
