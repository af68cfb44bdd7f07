/**
 * The S3-compatible option of the blob transport (REELBOT_S3_*): the coordinator puts a job's clip
 * into the bucket and hands the worker host presigned, expiring URLs of that one job's objects (a
 * GET of its clip, a PUT of its result), so neither the coordinator's HTTP port nor the secret key
 * leaves the coordinator. A presigned PUT cannot cap or check what is put, so the coordinator
 * fetches the result itself and keeps it only when it is within the cap and has the sha256 and size
 * the worker host reported.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { presignUrl, uriEncode } from './sigv4.js';

export interface S3BucketSettings {
  /** `https://s3.eu-west-1.amazonaws.com`, `http://minio.internal:9000`; objects are addressed path-style, `endpoint/bucket/key`. */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export type S3Method = 'GET' | 'PUT' | 'HEAD' | 'DELETE';

/** A request the store refused or could not answer; its message names the object and S3's error code, never a URL (a presigned URL is a credential). */
export class S3RequestError extends Error {
  readonly status: number | undefined;
  readonly s3Code: string | undefined;
  constructor(message: string, status?: number, s3Code?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'S3RequestError';
    this.status = status;
    this.s3Code = s3Code;
  }
}

export class S3Bucket {
  readonly #settings: S3BucketSettings;
  readonly #origin: string;
  /** The endpoint's own path (usually empty) and the bucket: every key's path starts with it. */
  readonly #bucketPath: string;
  readonly #now: () => number;

  constructor(settings: S3BucketSettings, now: () => number = Date.now) {
    this.#settings = settings;
    const endpoint = new URL(settings.endpoint);
    this.#origin = endpoint.origin;
    this.#bucketPath = `${endpoint.pathname.replace(/\/+$/, '')}/${uriEncode(settings.bucket)}`;
    this.#now = now;
  }

  /** Where it is, for logs and messages: the endpoint and bucket, no credentials. */
  get label(): string {
    return `${this.#origin}${this.#bucketPath}`;
  }

  /** A presigned URL for one request on one object, good for `expiresSeconds`. */
  url(method: S3Method, key: string, expiresSeconds: number): string {
    return presignUrl({
      method,
      origin: this.#origin,
      path: `${this.#bucketPath}/${uriEncode(key, true)}`,
      credentials: { accessKeyId: this.#settings.accessKeyId, secretAccessKey: this.#settings.secretAccessKey },
      region: this.#settings.region,
      expiresSeconds,
      now: new Date(this.#now()),
    });
  }

  /** Puts a local file into the bucket as `key`. */
  async upload(key: string, file: string): Promise<void> {
    const { size } = await stat(file);
    const response = await this.#request('PUT', key, {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: Readable.toWeb(createReadStream(file)) as never,
      duplex: 'half',
    } as RequestInit);
    await response.arrayBuffer();
  }

  /**
   * Fetches `key` into `path` when it is at most `maxBytes` and has the `expected` sha256 and size;
   * otherwise nothing is written and it throws. The file appears only complete (written beside it, then renamed).
   */
  async download(key: string, path: string, expected: { sha256: string; bytes: number }, maxBytes: number): Promise<void> {
    if (expected.bytes > maxBytes) throw new S3RequestError(`${key} is declared larger (${expected.bytes} bytes) than the cap of ${maxBytes}.`);
    const response = await this.#request('GET', key, {});
    const length = Number(response.headers.get('content-length'));
    if (Number.isFinite(length) && length > maxBytes) {
      await response.body?.cancel();
      throw new S3RequestError(`${key} is larger (${length} bytes) than the cap of ${maxBytes}.`);
    }
    const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.part`);
    const hash = createHash('sha256');
    let bytes = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        if (bytes > maxBytes) return callback(new S3RequestError(`${key} runs past the cap of ${maxBytes} bytes.`));
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), counter, createWriteStream(temp));
      const sha256 = hash.digest('hex');
      if (sha256 !== expected.sha256 || bytes !== expected.bytes) {
        throw new S3RequestError(`${key} is not what the worker host put there (${bytes} bytes, sha256 ${sha256.slice(0, 12)}…; it reported ${expected.bytes} bytes, ${expected.sha256.slice(0, 12)}…).`);
      }
      await rename(temp, path);
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Deletes `key` (an object that is not there is not an error: S3 answers 204 either way). */
  async remove(key: string): Promise<void> {
    const response = await this.#request('DELETE', key, {});
    await response.arrayBuffer();
  }

  /** One request through a short-lived presigned URL (the coordinator's own requests sign the same way as the hosts'). */
  async #request(method: S3Method, key: string, init: RequestInit): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(this.url(method, key, 300), { ...init, method });
    } catch (error) {
      throw new S3RequestError(`${method} ${key} on ${this.label} failed: ${(error as Error).message}`, undefined, undefined, { cause: error });
    }
    if (response.ok) return response;
    const body = await response.text().catch(() => '');
    const s3Code = /<Code>([^<]{1,100})<\/Code>/.exec(body)?.[1];
    throw new S3RequestError(`${method} ${key} on ${this.label}: HTTP ${response.status}${s3Code ? ` ${s3Code}` : ''}.`, response.status, s3Code);
  }
}
