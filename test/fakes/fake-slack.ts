/**
 * A fake Slack on 127.0.0.1 for driving a real Bolt App offline (see
 * ../../../shared/platforms-offline.md §2 for the observed shapes it reproduces):
 *
 * - the Web API methods the adapter uses under `/api/` (auth.test, apps.connections.open,
 *   chat.postMessage / update / postEphemeral, files.getUploadURLExternal,
 *   files.completeUploadExternal, conversations.replies, views.open, users.info), with a small
 *   message store per channel so threads and their clips can be looked up;
 * - the upload URLs that uploadV2 POSTs the bytes to, `response_url` endpoints (which, like Slack,
 *   refuse a sixth response), and file downloads for `url_private_download` (Bearer token
 *   checked; a file can be made to answer with a login page or a 403);
 * - a Socket Mode WebSocket: `hello`, then envelopes the test sends; every ack is recorded with
 *   the time it arrived.
 *
 * Failure hooks: 429 with Retry-After for a method, empty `shares` from completeUploadExternal, a
 * failing upload POST (500 or a connection cut half way), channels the bot is not in.
 * Every HTTP request is recorded so tests assert on what Slack would have received.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocketServer, type WebSocket } from 'ws';

export const BOT_TOKEN = 'xoxb-fake-bot-token';
export const APP_TOKEN = 'xapp-fake-app-token';
export const BOT_USER_ID = 'UBOT00001';
export const BOT_ID = 'BBOT00001';
export const TEAM_ID = 'T0000TEAM';
export const APP_ID = 'A0000APP1';

export interface RecordedRequest {
  /** `chat.postMessage`…, or `upload`, `response`, `download`. */
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  /** Form fields (JSON fields such as `blocks` decoded) or the JSON body. */
  body: Record<string, unknown>;
  /** For uploads: the bytes of the file part. */
  bytes?: Buffer;
  status: number;
  at: number;
}

export interface SlackFile {
  id: string;
  name: string;
  title?: string;
  mimetype: string;
  filetype: string;
  size: number;
  url_private: string;
  url_private_download: string;
  [key: string]: unknown;
}

export interface StoredMessage {
  type: 'message';
  ts: string;
  text: string;
  user?: string;
  bot_id?: string;
  subtype?: string;
  thread_ts?: string;
  files?: SlackFile[];
  blocks?: unknown[];
  [key: string]: unknown;
}

export interface Ack {
  envelope_id: string;
  payload?: Record<string, unknown>;
  /** performance.now() when the fake received it. */
  at: number;
}

export interface SentEnvelope {
  envelopeId: string;
  type: string;
  /** performance.now() when the fake sent it. */
  at: number;
  ack: Promise<Ack>;
}

interface Uploading {
  fileId: string;
  filename: string;
  length: number;
  bytes?: Buffer;
}

type DownloadMode = 'ok' | 'html' | '403';

export class FakeSlack {
  readonly requests: RecordedRequest[] = [];
  readonly acks: Ack[] = [];
  readonly channels = new Map<string, StoredMessage[]>();
  /** Channels where chat.postMessage answers `not_in_channel` (and conversations.info `is_member: false`). */
  readonly notInChannel = new Set<string>();
  /** Private channels the bot is not in: conversations.info (and posting) answers `channel_not_found`. */
  readonly hiddenChannels = new Set<string>();
  /** completeUploadExternal answers with no `shares` (Slack fills them in later). */
  emptyShares = false;
  readonly #server: Server;
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #sockets = new Set<WebSocket>();
  readonly #ackWaiters = new Map<string, (ack: Ack) => void>();
  readonly #requestWaiters = new Set<() => void>();
  readonly #rateLimits = new Map<string, { times: number; retryAfter: number }>();
  readonly #uploads = new Map<string, Uploading>();
  readonly #files = new Map<string, { file: SlackFile; bytes: Buffer; mode: DownloadMode }>();
  readonly #responseUses = new Map<string, number>();
  #failingUploads: { count: number; how: 'status' | 'halfway' } = { count: 0, how: 'status' };
  #counter = 0;
  #connected: Promise<void>;
  #onConnected: () => void = () => undefined;

  private constructor() {
    this.#server = createServer((req, res) => {
      void this.#handle(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
    });
    this.#server.on('upgrade', (req, socket, head) => {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onSocket(ws));
    });
    this.#connected = new Promise((resolve) => (this.#onConnected = resolve));
  }

  static async start(): Promise<FakeSlack> {
    const fake = new FakeSlack();
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get origin(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** What Bolt's `clientOptions.slackApiUrl` should be. */
  get apiUrl(): string {
    return `${this.origin}/api/`;
  }

  /** Resolves once a Socket Mode client is connected and has been sent `hello`. */
  connected(): Promise<void> {
    return this.#connected;
  }

  async close(): Promise<void> {
    for (const ws of this.#sockets) ws.terminate();
    this.#wss.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // --- Failure hooks ----------------------------------------------------------------------------

  /** The next `times` calls of `method` answer 429 with `Retry-After: retryAfter`. */
  rateLimit(method: string, times: number, retryAfter: number): void {
    this.#rateLimits.set(method, { times, retryAfter });
  }

  /** The next `count` POSTs to an upload URL fail: with HTTP 500, or by cutting the connection half way. */
  failUploads(count: number, how: 'status' | 'halfway' = 'status'): void {
    this.#failingUploads = { count, how };
  }

  /** How a file's download answers: the video, a sign-in page, or 403. */
  setDownload(fileId: string, mode: DownloadMode): void {
    const entry = this.#files.get(fileId);
    if (entry === undefined) throw new Error(`no file ${fileId}`);
    entry.mode = mode;
  }

  // --- Store ------------------------------------------------------------------------------------

  nextTs(): string {
    this.#counter++;
    return `${1_700_000_000 + this.#counter}.${String(this.#counter).padStart(6, '0')}`;
  }

  id(prefix: string): string {
    return `${prefix}${randomBytes(5).toString('hex').toUpperCase()}`;
  }

  /** A file hosted by the fake, as Slack describes it in a message. */
  addFile(bytes: Buffer, name = 'clip.mp4', mimetype = 'video/mp4'): SlackFile {
    const id = this.id('F');
    const url = `${this.origin}/files-pri/${TEAM_ID}-${id}/download/${encodeURIComponent(name)}`;
    const file: SlackFile = {
      id,
      name,
      title: name,
      mimetype,
      filetype: name.split('.').pop() ?? 'mp4',
      size: bytes.length,
      mode: 'hosted',
      url_private: url.replace('/download/', '/'),
      url_private_download: url,
    };
    this.#files.set(id, { file, bytes, mode: 'ok' });
    return file;
  }

  /** Stores a message (as if a user posted it) and returns it. */
  addMessage(channel: string, message: Partial<StoredMessage>): StoredMessage {
    const stored: StoredMessage = { type: 'message', ts: this.nextTs(), text: '', ...message };
    this.#channel(channel).push(stored);
    return stored;
  }

  message(channel: string, ts: string): StoredMessage | undefined {
    return this.channels.get(channel)?.find((m) => m.ts === ts);
  }

  /** A new response_url on this fake. */
  responseUrl(): string {
    return `${this.origin}/response/${this.id('R')}`;
  }

  // --- Socket Mode ------------------------------------------------------------------------------

  /** Sends an envelope; `ack` resolves when the app acks it. */
  sendEnvelope(type: string, payload: Record<string, unknown>, extra: Record<string, unknown> = {}, envelopeId = this.id('env-')): SentEnvelope {
    const ack = new Promise<Ack>((resolve) => this.#ackWaiters.set(envelopeId, resolve));
    const frame = JSON.stringify({ envelope_id: envelopeId, type, payload, accepts_response_payload: type !== 'events_api', ...extra });
    const at = performance.now();
    const sockets = [...this.#sockets];
    if (sockets.length === 0) throw new Error('no Socket Mode client is connected');
    sockets[sockets.length - 1]!.send(frame);
    return { envelopeId, type, at, ack };
  }

  /** A slash command payload as Slack sends it. */
  slashPayload(command: string, text: string, user: { id: string; name?: string }, channel = 'C0000CHAN', extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      token: 'verification-token',
      team_id: TEAM_ID,
      team_domain: 'fake',
      channel_id: channel,
      channel_name: 'general',
      user_id: user.id,
      user_name: user.name ?? user.id.toLowerCase(),
      command,
      text,
      api_app_id: APP_ID,
      is_enterprise_install: 'false',
      response_url: this.responseUrl(),
      trigger_id: `${this.#counter++}.${randomBytes(6).toString('hex')}`,
      ...extra,
    };
  }

  slashCommand(command: string, text: string, user: { id: string; name?: string }, channel?: string, extra?: Record<string, unknown>): SentEnvelope & { payload: Record<string, unknown> } {
    const payload = this.slashPayload(command, text, user, channel, extra);
    return { ...this.sendEnvelope('slash_commands', payload), payload };
  }

  /** An events_api envelope around `event`; resend with the same `eventId` and `retryAttempt` ≥ 1 for a retry. */
  sendEvent(event: Record<string, unknown>, options: { eventId?: string; retryAttempt?: number } = {}): SentEnvelope & { eventId: string } {
    const eventId = options.eventId ?? this.id('Ev');
    const retry = options.retryAttempt ?? 0;
    const sent = this.sendEnvelope(
      'events_api',
      {
        token: 'verification-token',
        team_id: TEAM_ID,
        context_team_id: TEAM_ID,
        context_enterprise_id: null,
        api_app_id: APP_ID,
        event,
        type: 'event_callback',
        event_id: eventId,
        event_time: Math.floor(Date.now() / 1000),
        authorizations: [{ enterprise_id: null, team_id: TEAM_ID, user_id: BOT_USER_ID, is_bot: true, is_enterprise_install: false }],
        is_ext_shared_channel: false,
        event_context: `4-${eventId}`,
      },
      { retry_attempt: retry, retry_reason: retry > 0 ? 'timeout' : '' },
    );
    return { ...sent, eventId };
  }

  /** A user's thread reply (stored, then delivered as a `message` event). */
  threadReply(channel: string, threadTs: string, user: string, text: string, options: { files?: SlackFile[]; botId?: string; eventId?: string; retryAttempt?: number } = {}): SentEnvelope & { eventId: string; message: StoredMessage } {
    const parent = this.message(channel, threadTs);
    const message = this.addMessage(channel, {
      user,
      text,
      thread_ts: threadTs,
      parent_user_id: parent?.user ?? BOT_USER_ID,
      ...(options.files === undefined ? {} : { subtype: 'file_share', files: options.files, upload: false }),
      ...(options.botId === undefined ? {} : { bot_id: options.botId, subtype: 'bot_message' }),
      client_msg_id: randomBytes(8).toString('hex'),
    });
    const event = { ...message, channel, event_ts: message.ts, channel_type: 'channel' };
    return { ...this.sendEvent(event, { ...(options.eventId === undefined ? {} : { eventId: options.eventId }), ...(options.retryAttempt === undefined ? {} : { retryAttempt: options.retryAttempt }) }), message };
  }

  /** A click on a button of a message. */
  clickButton(user: { id: string; name?: string }, channel: string, message: StoredMessage, actionId: string, responseUrl = this.responseUrl()): SentEnvelope {
    return this.sendEnvelope('interactive', {
      type: 'block_actions',
      user: { id: user.id, username: user.name ?? user.id, team_id: TEAM_ID },
      api_app_id: APP_ID,
      token: 'verification-token',
      container: { type: 'message', message_ts: message.ts, channel_id: channel, is_ephemeral: false },
      trigger_id: `${this.#counter++}.${randomBytes(6).toString('hex')}`,
      team: { id: TEAM_ID, domain: 'fake' },
      channel: { id: channel, name: 'general' },
      message,
      response_url: responseUrl,
      actions: [{ action_id: actionId, block_id: 'b', text: { type: 'plain_text', text: 'x' }, value: '1', type: 'button', action_ts: String(Date.now() / 1000) }],
    });
  }

  /** The "Edit clip" message shortcut on a message. */
  messageShortcut(user: { id: string; name?: string }, channel: string, message: StoredMessage, callbackId = 'edit_clip'): SentEnvelope & { triggerId: string; responseUrl: string } {
    const triggerId = `${this.#counter++}.${randomBytes(6).toString('hex')}`;
    const responseUrl = this.responseUrl();
    const sent = this.sendEnvelope('interactive', {
      type: 'message_action',
      token: 'verification-token',
      action_ts: String(Date.now() / 1000),
      team: { id: TEAM_ID, domain: 'fake' },
      user: { id: user.id, username: user.name ?? user.id, team_id: TEAM_ID },
      channel: { id: channel, name: 'general' },
      is_enterprise_install: false,
      callback_id: callbackId,
      trigger_id: triggerId,
      response_url: responseUrl,
      message_ts: message.ts,
      message,
    });
    return { ...sent, triggerId, responseUrl };
  }

  /** Submits a modal opened with views.open, with `values` as its state. */
  submitView(user: { id: string; name?: string }, view: Record<string, unknown>, values: Record<string, Record<string, { type: string; value: string }>>): SentEnvelope {
    return this.sendEnvelope('interactive', {
      type: 'view_submission',
      team: { id: TEAM_ID, domain: 'fake' },
      user: { id: user.id, username: user.name ?? user.id, team_id: TEAM_ID },
      api_app_id: APP_ID,
      token: 'verification-token',
      trigger_id: `${this.#counter++}.${randomBytes(6).toString('hex')}`,
      view: { id: this.id('V'), hash: `${Date.now()}.${randomBytes(4).toString('hex')}`, team_id: TEAM_ID, type: 'modal', ...view, state: { values } },
      response_urls: [],
      is_enterprise_install: false,
    });
  }

  // --- Assertions -------------------------------------------------------------------------------

  calls(method: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method);
  }

  /** Resolves with the first recorded request (seen or future) that matches. */
  waitForRequest(predicate: (request: RecordedRequest) => boolean, timeoutMs = 20_000): Promise<RecordedRequest> {
    return this.#waitFor(() => this.requests.find(predicate), timeoutMs, () => `requests: ${this.requests.map((r) => r.method).join(' ')}`);
  }

  /** Resolves once `count` requests match. */
  waitForCount(predicate: (request: RecordedRequest) => boolean, count: number, timeoutMs = 20_000): Promise<RecordedRequest[]> {
    return this.#waitFor(
      () => {
        const found = this.requests.filter(predicate);
        return found.length >= count ? found : undefined;
      },
      timeoutMs,
      () => `requests: ${this.requests.map((r) => r.method).join(' ')}`,
    );
  }

  #waitFor<T>(find: () => T | undefined, timeoutMs: number, describe: () => string): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = find();
        if (found === undefined) return false;
        this.#requestWaiters.delete(check);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        this.#requestWaiters.delete(check);
        reject(new Error(`timed out waiting for a request; ${describe()}`));
      }, timeoutMs);
      if (!check()) this.#requestWaiters.add(check);
    });
  }

  // --- HTTP -------------------------------------------------------------------------------------

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    if (url.pathname.startsWith('/upload/') && req.method === 'POST') return this.#upload(req, res, url.pathname.slice('/upload/'.length));
    if (url.pathname.startsWith('/files-pri/') && req.method === 'GET') return this.#download(req, res, url.pathname);
    const raw = await readBody(req);
    if (url.pathname.startsWith('/response/') && req.method === 'POST') {
      const uses = (this.#responseUses.get(url.pathname) ?? 0) + 1;
      this.#responseUses.set(url.pathname, uses);
      const status = uses > 5 ? 404 : 200;
      this.#record({ method: 'response', path: url.pathname, headers: req.headers, body: parseJson(raw), status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'used_url');
      return;
    }
    if (!url.pathname.startsWith('/api/')) {
      res.writeHead(404).end();
      return;
    }
    const method = url.pathname.slice('/api/'.length);
    const body = (req.headers['content-type'] ?? '').includes('json') ? parseJson(raw) : parseForm(raw);
    const limited = this.#rateLimits.get(method);
    if (limited !== undefined && limited.times > 0) {
      limited.times--;
      this.#record({ method, path: url.pathname, headers: req.headers, body, status: 429 });
      res.writeHead(429, { 'retry-after': String(limited.retryAfter), 'content-type': 'application/json' }).end(JSON.stringify({ ok: false, error: 'ratelimited' }));
      return;
    }
    const expected = method === 'apps.connections.open' ? APP_TOKEN : BOT_TOKEN;
    const result = req.headers.authorization === `Bearer ${expected}` ? this.#api(method, body) : { ok: false, error: 'invalid_auth' };
    this.#record({ method, path: url.pathname, headers: req.headers, body, status: 200 });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
  }

  #api(method: string, body: Record<string, unknown>): Record<string, unknown> {
    switch (method) {
      case 'auth.test':
        return { ok: true, url: 'https://fake.slack.com/', team: 'fake', user: 'reelbot', team_id: TEAM_ID, user_id: BOT_USER_ID, bot_id: BOT_ID, is_enterprise_install: false };
      case 'apps.connections.open':
        return { ok: true, url: `ws://127.0.0.1:${(this.#server.address() as AddressInfo).port}/link/?ticket=${randomBytes(8).toString('hex')}&app_id=${APP_ID}` };
      case 'chat.postMessage': {
        const channel = String(body.channel ?? '');
        if (this.hiddenChannels.has(channel)) return { ok: false, error: 'channel_not_found' };
        if (this.notInChannel.has(channel)) return { ok: false, error: 'not_in_channel' };
        const message = this.addMessage(channel, {
          user: BOT_USER_ID,
          bot_id: BOT_ID,
          text: String(body.text ?? ''),
          ...(Array.isArray(body.blocks) ? { blocks: body.blocks } : {}),
          ...(typeof body.thread_ts === 'string' ? { thread_ts: body.thread_ts } : {}),
        });
        return { ok: true, channel, ts: message.ts, message };
      }
      case 'chat.update': {
        const channel = String(body.channel ?? '');
        const message = this.message(channel, String(body.ts ?? ''));
        if (message === undefined) return { ok: false, error: 'message_not_found' };
        message.text = String(body.text ?? '');
        if (Array.isArray(body.blocks)) message.blocks = body.blocks;
        return { ok: true, channel, ts: message.ts, text: message.text };
      }
      case 'chat.delete': {
        const channel = this.channels.get(String(body.channel ?? ''));
        const at = channel?.findIndex((message) => message.ts === String(body.ts ?? '')) ?? -1;
        if (channel === undefined || at < 0) return { ok: false, error: 'message_not_found' };
        channel.splice(at, 1);
        return { ok: true, channel: body.channel, ts: body.ts };
      }
      case 'files.delete': {
        const id = String(body.file ?? '');
        if (!this.#files.delete(id)) return { ok: false, error: 'file_not_found' };
        // Deleting a file takes its share messages with it, as on Slack.
        for (const messages of this.channels.values()) {
          for (let i = messages.length - 1; i >= 0; i--) if (messages[i]!.files?.some((file) => file.id === id)) messages.splice(i, 1);
        }
        return { ok: true };
      }
      case 'chat.postEphemeral':
        if (this.notInChannel.has(String(body.channel ?? ''))) return { ok: false, error: 'not_in_channel' };
        return { ok: true, message_ts: this.nextTs() };
      case 'conversations.info': {
        // As Slack answers it for a bot token: public channels show whether the bot is a member,
        // a private one the bot is not in does not exist for it, a DM has no `is_member`.
        const id = String(body.channel ?? '');
        if (this.hiddenChannels.has(id)) return { ok: false, error: 'channel_not_found' };
        if (id.startsWith('D')) return { ok: true, channel: { id, is_im: true, is_channel: false, user: 'U0', is_open: true } };
        return { ok: true, channel: { id, name: `channel-${id.toLowerCase()}`, is_channel: true, is_private: false, is_archived: false, is_member: !this.notInChannel.has(id) } };
      }
      case 'conversations.replies': {
        const channel = this.channels.get(String(body.channel ?? ''));
        if (channel === undefined) return { ok: false, error: 'channel_not_found' };
        const ts = String(body.ts ?? '');
        const thread = channel.filter((m) => m.ts === ts || m.thread_ts === ts);
        if (thread.length === 0) return { ok: false, error: 'thread_not_found' };
        const limit = Number(body.limit ?? 1000);
        return { ok: true, messages: thread.slice(0, Math.max(1, limit)), has_more: thread.length > limit };
      }
      case 'views.open':
        return { ok: true, view: { id: this.id('V'), ...(typeof body.view === 'object' && body.view !== null ? (body.view as object) : {}) } };
      case 'users.info':
        return { ok: true, user: { id: String(body.user ?? ''), name: String(body.user ?? '').toLowerCase(), is_bot: false } };
      case 'files.getUploadURLExternal': {
        const fileId = this.id('F');
        const filename = String(body.filename ?? 'file');
        this.#uploads.set(fileId, { fileId, filename, length: Number(body.length ?? 0) });
        return { ok: true, upload_url: `${this.origin}/upload/${fileId}`, file_id: fileId };
      }
      case 'files.completeUploadExternal': {
        const entries = (Array.isArray(body.files) ? body.files : []) as { id: string; title?: string }[];
        const channel = typeof body.channel_id === 'string' ? body.channel_id : undefined;
        if (channel !== undefined && this.notInChannel.has(channel)) return { ok: false, error: 'not_in_channel' };
        const files: Record<string, unknown>[] = [];
        for (const entry of entries) {
          const uploading = this.#uploads.get(entry.id);
          if (uploading?.bytes === undefined) return { ok: false, error: 'file_not_found' };
          const file = this.addFile(uploading.bytes, uploading.filename);
          // Keep the id Slack handed out for the upload.
          const stored = this.#files.get(file.id)!;
          this.#files.delete(file.id);
          const url = file.url_private_download.replace(file.id, entry.id);
          stored.file = { ...file, id: entry.id, title: entry.title ?? file.name, url_private_download: url, url_private: url.replace('/download/', '/') };
          this.#files.set(entry.id, stored);
          files.push(stored.file);
        }
        let ts: string | undefined;
        if (channel !== undefined) {
          const message = this.addMessage(channel, {
            subtype: 'file_share',
            user: BOT_USER_ID,
            bot_id: BOT_ID,
            text: String(body.initial_comment ?? ''),
            files: files as SlackFile[],
            ...(typeof body.thread_ts === 'string' ? { thread_ts: body.thread_ts } : {}),
          });
          ts = message.ts;
        }
        return {
          ok: true,
          files: files.map((file) => ({
            ...file,
            shares: this.emptyShares || channel === undefined || ts === undefined ? {} : { public: { [channel]: [{ ts, ...(typeof body.thread_ts === 'string' ? { thread_ts: body.thread_ts } : {}) }] } },
          })),
        };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  async #upload(req: IncomingMessage, res: ServerResponse, fileId: string): Promise<void> {
    const uploading = this.#uploads.get(fileId);
    if (this.#failingUploads.count > 0) {
      this.#failingUploads.count--;
      if (this.#failingUploads.how === 'halfway') {
        // Read a little, then drop the connection mid-body.
        await new Promise<void>((resolve) => req.once('data', () => resolve()));
        this.#record({ method: 'upload', path: req.url ?? '', headers: req.headers, body: {}, status: 0 });
        req.socket.destroy();
        return;
      }
      await readBody(req);
      this.#record({ method: 'upload', path: req.url ?? '', headers: req.headers, body: {}, status: 500 });
      res.writeHead(500).end('upload failed');
      return;
    }
    const raw = await readBody(req);
    const bytes = multipartFile(raw, req.headers['content-type'] ?? '') ?? raw;
    const status = uploading === undefined || req.headers.authorization !== `Bearer ${BOT_TOKEN}` ? 403 : 200;
    if (uploading !== undefined && status === 200) uploading.bytes = bytes;
    this.#record({ method: 'upload', path: req.url ?? '', headers: req.headers, body: {}, bytes, status });
    res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? `OK - ${bytes.length}` : 'forbidden');
  }

  #download(req: IncomingMessage, res: ServerResponse, pathname: string): void {
    const id = /^\/files-pri\/[^-]+-([^/]+)\//.exec(pathname)?.[1];
    const entry = id === undefined ? undefined : this.#files.get(id);
    const authorized = req.headers.authorization === `Bearer ${BOT_TOKEN}`;
    let status = 200;
    if (entry === undefined) status = 404;
    else if (entry.mode === '403') status = 403;
    else if (entry.mode === 'html' || !authorized) {
      // What Slack does when the auth header is missing: a sign-in page with status 200.
      this.#record({ method: 'download', path: pathname, headers: req.headers, body: { id }, status: 200 });
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>'.padEnd(2000, ' '));
      return;
    }
    this.#record({ method: 'download', path: pathname, headers: req.headers, body: { id }, status });
    if (status !== 200) {
      res.writeHead(status, { 'content-type': 'text/plain' }).end('forbidden');
      return;
    }
    res.writeHead(200, { 'content-type': entry!.file.mimetype, 'content-length': String(entry!.bytes.length) }).end(entry!.bytes);
  }

  #onSocket(ws: WebSocket): void {
    this.#sockets.add(ws);
    ws.on('close', () => this.#sockets.delete(ws));
    ws.on('message', (data) => {
      const at = performance.now();
      let frame: Record<string, unknown>;
      try {
        frame = JSON.parse(String(data)) as Record<string, unknown>;
      } catch {
        return;
      }
      if (typeof frame.envelope_id !== 'string') return;
      const ack: Ack = { envelope_id: frame.envelope_id, ...(typeof frame.payload === 'object' && frame.payload !== null ? { payload: frame.payload as Record<string, unknown> } : {}), at };
      this.acks.push(ack);
      this.#ackWaiters.get(frame.envelope_id)?.(ack);
      this.#ackWaiters.delete(frame.envelope_id);
    });
    ws.send(JSON.stringify({ type: 'hello', num_connections: 1, debug_info: { host: 'fake', approximate_connection_time: 18060 }, connection_info: { app_id: APP_ID } }));
    this.#onConnected();
  }

  #record(request: Omit<RecordedRequest, 'at'>): void {
    this.requests.push({ ...request, at: performance.now() });
    for (const wake of [...this.#requestWaiters]) wake();
  }

  #channel(channel: string): StoredMessage[] {
    let messages = this.channels.get(channel);
    if (messages === undefined) {
      messages = [];
      this.channels.set(channel, messages);
    }
    return messages;
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function parseJson(raw: Buffer): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(raw.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Form fields, with the ones the Web API JSON-encodes (blocks, view, files…) decoded. */
function parseForm(raw: Buffer): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(raw.toString('utf8'))) {
    if ((value.startsWith('[') || value.startsWith('{')) && ['blocks', 'attachments', 'view', 'files', 'metadata'].includes(key)) {
      try {
        body[key] = JSON.parse(value);
        continue;
      } catch {
        // keep the text
      }
    }
    body[key] = value;
  }
  return body;
}

/** The bytes of the first file part of a multipart body. */
function multipartFile(raw: Buffer, contentType: string): Buffer | undefined {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  const mark = boundary?.[1] ?? boundary?.[2];
  if (mark === undefined) return undefined;
  const delimiter = Buffer.from(`--${mark}`);
  const start = raw.indexOf(delimiter);
  if (start < 0) return undefined;
  const headerEnd = raw.indexOf('\r\n\r\n', start);
  if (headerEnd < 0) return undefined;
  const end = raw.indexOf(Buffer.from(`\r\n--${mark}`), headerEnd + 4);
  return raw.subarray(headerEnd + 4, end < 0 ? raw.length : end);
}
