/**
 * A fake Discord on 127.0.0.1 for driving a real discord.js 14 Client offline: REST under
 * `/api/v10` (node:http) and the gateway (ws) on the same port. It records every request, answers
 * the routes the Discord adapter uses, and can be told to fail a route (429 with `Retry-After`,
 * 401 / 50027, 413 / 40005, any status), to drop a route's connection without an answer, or to
 * answer it late. Shapes follow what was observed in /work/shared/platforms-offline.md §1.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** Discord's epoch (2015-01-01), for snowflakes. */
const DISCORD_EPOCH = 1_420_070_400_000n;
let snowflakeCounter = 0n;

/** A fresh 18–19-digit snowflake (@discordjs/rest finds major parameters with `\d{17,19}`). */
export function snowflake(): string {
  snowflakeCounter = (snowflakeCounter + 1n) % 4096n;
  return (((BigInt(Date.now()) - DISCORD_EPOCH) << 22n) | (1n << 17n) | snowflakeCounter).toString();
}

export interface RecordedFile {
  /** Form field: `files[0]`. */
  field: string;
  name: string;
  size: number;
  contentType: string;
  /** The bytes uploaded. */
  data: Buffer;
}

export interface RecordedRequest {
  method: string;
  /** Decoded path without the query and without `/api/v10`: `/webhooks/1/tok/messages/@original`. */
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** JSON body, or the `payload_json` part of a multipart body. */
  body: unknown;
  files: RecordedFile[];
  multipart: boolean;
  /** What the fake answered. */
  status: number;
  at: number;
  /** Set once the whole answer went out to the client (a client that hung up never gets it). */
  answeredAt?: number;
}

interface SlowRule {
  method: string;
  path: RegExp;
  delayMs: number;
  uploadsOnly: boolean;
}

interface DropRule {
  method: string;
  path: RegExp;
  times: number;
  uploadsOnly: boolean;
}

export interface FailRule {
  method: string;
  path: RegExp;
  status: number;
  body: unknown;
  headers: Record<string, string>;
  /** How many more requests it applies to. */
  times: number;
  /** Only requests that upload files. */
  uploadsOnly: boolean;
}

export interface FakeUser {
  id: string;
  username: string;
}

export interface SlashOptions {
  prompt: string;
  frames?: number;
  seed?: number;
  motion?: string;
  negative?: string;
  steps?: number;
  fps?: number;
  /** A picture to animate: an attachment from {@link FakeDiscord.hostFile}. */
  image?: Record<string, unknown> & { id: string };
  duration?: number;
  aspect?: string;
  smooth?: boolean;
}

export class FakeDiscord {
  readonly applicationId = snowflake();
  readonly botUserId = snowflake();
  readonly guildId = snowflake();
  readonly channelId = snowflake();
  readonly requests: RecordedRequest[] = [];
  /** Gateway frames received from the client (IDENTIFY, heartbeats). */
  readonly gatewayFrames: { op: number; d: unknown }[] = [];
  #server: Server;
  #wss: WebSocketServer;
  #sockets = new Set<WebSocket>();
  #rules: FailRule[] = [];
  readonly #slowRules: SlowRule[] = [];
  readonly #dropRules: DropRule[] = [];
  /** DM channels opened with `POST /users/@me/channels`, by recipient id. */
  readonly dmChannels = new Map<string, string>();
  #sequence = 0;
  #waiters = new Set<() => void>();
  #commandIds = new Map<string, string>();
  /** Files served under `/attachments/…` (the fake's CDN), by path. */
  #files = new Map<string, { data: Buffer; contentType: string }>();
  /** Messages `GET /channels/:id/messages/:id` returns, by message id. */
  #messages = new Map<string, Record<string, unknown>>();
  // Gateway sessions and application commands (resume, invalid session, registration).
  /** Every dispatch sent, by sequence, for RESUME replays. */
  #dispatched: { s: number; frame: string }[] = [];
  #sessions = new Set<string>();
  #invalidateNextResume = false;
  /** When set, authenticated routes answer 401 unless `Authorization: Bot <botToken>`. */
  botToken: string | undefined;
  /** Guilds besides `guildId` the application is in (commands can be registered there). */
  readonly otherGuildIds = new Set<string>();
  /** The application commands last PUT, by scope: `global` or a guild id. */
  readonly registeredCommands = new Map<string, unknown[]>();
  /** When each interaction (by id) was last dispatched on the gateway, from `performance.now()`. */
  readonly dispatchedAt = new Map<string, number>();
  /** Sequence numbers of the dispatches replayed after a RESUME. */
  readonly replayed: number[] = [];

  private constructor(server: Server) {
    this.#server = server;
    this.#wss = new WebSocketServer({ server });
    this.#wss.on('connection', (socket) => this.#onConnection(socket));
  }

  /** Starts the fake on 127.0.0.1 with a free port. */
  static async start(): Promise<FakeDiscord> {
    let fake: FakeDiscord | undefined;
    const server = createServer((req, res) => {
      void fake!.#onRequest(req, res);
    });
    fake = new FakeDiscord(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return fake;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** The base to give discord.js as `rest.api` (it appends `/v10`). */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Makes the next `times` requests matching `method` and `path` (decoded, without `/api/v10`) fail. */
  fail(method: string, path: RegExp, status: number, body: unknown, options: { times?: number; headers?: Record<string, string>; uploadsOnly?: boolean } = {}): void {
    this.#rules.push({ method: method.toUpperCase(), path, status, body, headers: options.headers ?? {}, times: options.times ?? 1, uploadsOnly: options.uploadsOnly ?? false });
  }

  /**
   * Answers requests matching `method` and `path` normally, but only after `delayMs` (a slow
   * upload). Returns a function that ends the slowdown for later requests.
   */
  slowDown(method: string, path: RegExp, delayMs: number, options: { uploadsOnly?: boolean } = {}): () => void {
    const rule: SlowRule = { method: method.toUpperCase(), path, delayMs, uploadsOnly: options.uploadsOnly ?? false };
    this.#slowRules.push(rule);
    return () => {
      const index = this.#slowRules.indexOf(rule);
      if (index !== -1) this.#slowRules.splice(index, 1);
    };
  }

  /** Drops the connection of the next `times` matching requests once their body has arrived, with no answer (recorded with status 0). */
  dropConnection(method: string, path: RegExp, options: { times?: number; uploadsOnly?: boolean } = {}): void {
    this.#dropRules.push({ method: method.toUpperCase(), path, times: options.times ?? 1, uploadsOnly: options.uploadsOnly ?? false });
  }

  /** A 429 as Discord sends it: the `Retry-After` header (which @discordjs/rest reads) and the JSON `retry_after`. */
  rateLimit(method: string, path: RegExp, retryAfterSeconds: number, times = 1): void {
    this.fail(
      method,
      path,
      429,
      { message: 'You are being rate limited.', retry_after: retryAfterSeconds, global: false },
      {
        times,
        headers: {
          'retry-after': String(retryAfterSeconds),
          'x-ratelimit-limit': '5',
          'x-ratelimit-remaining': '0',
          'x-ratelimit-reset-after': String(retryAfterSeconds),
          'x-ratelimit-bucket': 'fake-bucket',
          'x-ratelimit-scope': 'user',
        },
      },
    );
  }

  /** An interaction token that has expired (older than 15 minutes). */
  expireToken(method: string, path: RegExp, times = 1): void {
    this.fail(method, path, 401, { message: 'Invalid Webhook Token', code: 50027 }, { times });
  }

  /** An upload over the limit (only requests that carry files are refused). */
  rejectUpload(method: string, path: RegExp, times = 1): void {
    this.fail(method, path, 413, { message: 'Request entity too large', code: 40005 }, { times, uploadsOnly: true });
  }

  /** Resolves with the first recorded request (already seen or future) that matches. */
  waitForRequest(predicate: (request: RecordedRequest) => boolean, timeoutMs = 15_000): Promise<RecordedRequest> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.requests.find(predicate);
        if (found === undefined) return false;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for a request; seen: ${this.requests.map((r) => `${r.method} ${r.path} ${r.status}`).join(', ')}`));
      }, timeoutMs);
      if (!check()) this.#waiters.add(check);
    });
  }

  /** Requests to one interaction's routes (callback and webhook), in order. */
  requestsFor(interaction: { id: string; token: string }): RecordedRequest[] {
    return this.requests.filter((r) => r.path.startsWith(`/interactions/${interaction.id}/`) || r.path.includes(`/${interaction.token}/`));
  }

  /** Dispatches INTERACTION_CREATE to every connected client. */
  sendInteraction(payload: Record<string, unknown>): void {
    this.#dispatch('INTERACTION_CREATE', payload);
  }

  /** A realistic guild member payload for `user`. */
  member(user: FakeUser): Record<string, unknown> {
    return {
      user: this.user(user),
      roles: [],
      premium_since: null,
      permissions: '2248473465835073',
      pending: false,
      nick: null,
      mute: false,
      joined_at: '2024-01-01T00:00:00.000000+00:00',
      flags: 0,
      deaf: false,
      communication_disabled_until: null,
      avatar: null,
    };
  }

  user(user: FakeUser): Record<string, unknown> {
    return { id: user.id, username: user.username, global_name: user.username, discriminator: '0', avatar: null, public_flags: 0 };
  }

  /** A `/video` slash command interaction (type 2) from `user` in the fake guild. */
  slashCommand(user: FakeUser, options: SlashOptions, extra: { attachmentSizeLimit?: number } = {}): Record<string, unknown> & { id: string; token: string } {
    const typed: { name: string; type: number; value: string | number }[] = [];
    const add = (name: string, type: number, value: string | number | undefined): void => {
      if (value !== undefined) typed.push({ name, type, value });
    };
    add('prompt', 3, options.prompt);
    add('frames', 4, options.frames);
    add('seed', 4, options.seed);
    add('motion', 3, options.motion);
    add('negative', 3, options.negative);
    add('steps', 4, options.steps);
    add('fps', 4, options.fps);
    add('image', 11, options.image?.id);
    add('duration', 10, options.duration);
    add('aspect', 3, options.aspect);
    if (options.smooth !== undefined) typed.push({ name: 'smooth', type: 5, value: options.smooth as unknown as number });
    const interaction = this.#chatInput(user, 'video', typed, extra.attachmentSizeLimit);
    if (options.image !== undefined) (interaction.data as Record<string, unknown>).resolved = { attachments: { [options.image.id]: options.image } };
    return interaction;
  }

  /**
   * Any other slash command (type 2) from `user`: `command(alice, 'history', { page: 2 })`. Strings
   * are sent as STRING options (type 3), numbers as INTEGER options (type 4); undefined ones are left out.
   */
  command(user: FakeUser, name: string, options: Record<string, string | number | undefined> = {}): Record<string, unknown> & { id: string; token: string } {
    const typed = Object.entries(options)
      .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
      .map(([option, value]) => ({ name: option, type: typeof value === 'number' ? 4 : 3, value }));
    return this.#chatInput(user, name, typed);
  }

  /**
   * A slash command with a subcommand (`path` = [sub]) or a subcommand group (`path` = [group, sub]):
   * `subcommand(admin, 'admin', ['queue', 'pause'])`, `subcommand(admin, 'admin', ['ban'], { user: bob })`.
   * Strings are STRING options (3), numbers INTEGER (4), users USER (6, resolved in `data.resolved`).
   */
  subcommand(
    user: FakeUser,
    name: string,
    path: [string] | [string, string],
    options: Record<string, string | number | FakeUser | undefined> = {},
  ): Record<string, unknown> & { id: string; token: string } {
    const users: Record<string, unknown> = {};
    const members: Record<string, unknown> = {};
    const leaves = Object.entries(options)
      .filter((entry): entry is [string, string | number | FakeUser] => entry[1] !== undefined)
      .map(([option, value]) => {
        if (typeof value === 'object') {
          users[value.id] = this.user(value);
          const { user: _user, ...member } = this.member(value);
          members[value.id] = member;
          return { name: option, type: 6, value: value.id };
        }
        return { name: option, type: typeof value === 'number' ? 4 : 3, value };
      });
    const [first, second] = path;
    const nested = second === undefined ? [{ name: first, type: 1, options: leaves }] : [{ name: first, type: 2, options: [{ name: second, type: 1, options: leaves }] }];
    const interaction = this.#chatInput(user, name, nested);
    const data = interaction.data as Record<string, unknown>;
    if (Object.keys(users).length > 0) data.resolved = { users, members };
    return interaction;
  }

  #chatInput(user: FakeUser, name: string, options: unknown[], attachmentSizeLimit?: number): Record<string, unknown> & { id: string; token: string } {
    return {
      ...this.#base(user, 2, attachmentSizeLimit),
      data: { id: this.#commandId(name), name, type: 1, options },
    };
  }

  /** A button click (type 3) by `user` on a message the bot sent. */
  button(user: FakeUser, customId: string, message: { id: string; content?: string } = { id: snowflake() }): Record<string, unknown> & { id: string; token: string } {
    return {
      ...this.#base(user, 3),
      data: { custom_id: customId, component_type: 2 },
      message: this.#message(message.id, message.content ?? '', []),
    };
  }

  // --- Clips: the fake's CDN, stored messages, /edit, "Edit clip…" and modals --------------------

  /**
   * Serves `data` as a Discord attachment at `http://127.0.0.1:PORT/attachments/…` and returns the
   * attachment object a message or a resolved option carries. `size` is what Discord declares
   * (defaults to the real size; a test may lie).
   */
  hostFile(name: string, data: Buffer, options: { contentType?: string; size?: number } = {}): Record<string, unknown> & { id: string; url: string } {
    const id = snowflake();
    const filePath = `/attachments/${this.channelId}/${id}/${name}`;
    const contentType = options.contentType ?? 'video/mp4';
    this.#files.set(filePath, { data, contentType });
    const url = `http://127.0.0.1:${this.port}${filePath}?ex=${Math.floor(Date.now() / 1000 + 86_400).toString(16)}&is=0&hm=fake`;
    return { id, filename: name, size: options.size ?? data.length, url, proxy_url: url, content_type: contentType };
  }

  /** A message by `author` in the fake channel, with attachments; `GET /channels/…/messages/:id` returns it. */
  storeMessage(author: FakeUser, attachments: Record<string, unknown>[], content = ''): Record<string, unknown> & { id: string } {
    const id = snowflake();
    const message = { ...this.#message(id, content, [], [], author.id), id, author: { ...this.user(author), bot: false }, attachments, webhook_id: undefined };
    this.#messages.set(id, message);
    return message;
  }

  /** `/edit clip:<attachment> instruction:<text>` (type 2), with the attachment in `data.resolved`. */
  editCommand(user: FakeUser, attachment: Record<string, unknown> & { id: string }, instruction: string): Record<string, unknown> & { id: string; token: string } {
    const interaction = this.#chatInput(user, 'edit', [
      { name: 'clip', type: 11, value: attachment.id },
      { name: 'instruction', type: 3, value: instruction },
    ]);
    (interaction.data as Record<string, unknown>).resolved = { attachments: { [attachment.id]: attachment } };
    return interaction;
  }

  /** A message context-menu command (type 2, command type 3) on `message`, as Apps → `name` sends it. */
  messageCommand(user: FakeUser, name: string, message: Record<string, unknown> & { id: string }): Record<string, unknown> & { id: string; token: string } {
    return {
      ...this.#base(user, 2),
      data: { id: this.#commandId(name), name, type: 3, target_id: message.id, resolved: { messages: { [message.id]: message } } },
    };
  }

  /** A modal submit (type 5) with text inputs by custom id. */
  modalSubmit(user: FakeUser, customId: string, fields: Record<string, string>): Record<string, unknown> & { id: string; token: string } {
    return {
      ...this.#base(user, 5),
      data: {
        custom_id: customId,
        components: Object.entries(fields).map(([field, value]) => ({ type: 1, components: [{ type: 4, custom_id: field, value }] })),
      },
    };
  }

  /** Stops the gateway and the HTTP server. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.terminate();
    this.#wss.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // --- Gateway ----------------------------------------------------------------------------------

  /** While true, an IDENTIFY gets no READY: the bot stays "connecting" (a slow or half-down gateway). */
  holdReady = false;

  #onConnection(socket: WebSocket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('message', (raw) => {
      let frame: { op: number; d: unknown };
      try {
        frame = JSON.parse(String(raw)) as { op: number; d: unknown };
      } catch {
        return;
      }
      this.gatewayFrames.push(frame);
      if (frame.op === 1) socket.send(JSON.stringify({ op: 11 }));
      if (frame.op === 6) this.#onResume(socket, frame.d as { session_id?: string; seq?: number | null });
      if (frame.op === 2 && !this.holdReady) {
        socket.send(
          JSON.stringify({
            op: 0,
            t: 'READY',
            s: ++this.#sequence,
            d: {
              v: 10,
              user: { id: this.botUserId, username: 'reelbot', global_name: null, discriminator: '0', avatar: null, bot: true, verified: true, flags: 0 },
              guilds: [],
              session_id: this.#newSession(),
              resume_gateway_url: this.wsUrl,
              application: { id: this.applicationId, flags: 0 },
              shard: [0, 1],
            },
          }),
        );
      }
    });
    socket.send(JSON.stringify({ op: 10, d: { heartbeat_interval: 41_250 } }));
  }

  #dispatch(type: string, data: unknown): void {
    const frame = JSON.stringify({ op: 0, t: type, s: ++this.#sequence, d: data });
    this.#dispatched.push({ s: this.#sequence, frame });
    if (type === 'INTERACTION_CREATE') this.dispatchedAt.set(String((data as { id?: unknown }).id), performance.now());
    for (const socket of this.#sockets) socket.send(frame);
  }

  // --- REST -------------------------------------------------------------------------------------

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = decodeURIComponent(url.pathname).replace(/^\/api\/v10/, '');
    const method = (req.method ?? 'GET').toUpperCase();
    const contentType = req.headers['content-type'] ?? '';
    let body: unknown;
    let files: RecordedFile[] = [];
    const multipart = contentType.startsWith('multipart/form-data');
    if (multipart) {
      const parsed = parseMultipart(raw, contentType);
      body = parsed.payload;
      files = parsed.files;
    } else if (raw.length > 0 && contentType.includes('json')) {
      body = JSON.parse(raw.toString('utf8')) as unknown;
    }
    const record: RecordedRequest = { method, path, query: url.searchParams, headers: req.headers, body, files, multipart, status: 0, at: Date.now() };
    const drop = this.#dropRules.find((rule) => rule.method === method && rule.path.test(path) && rule.times > 0 && (!rule.uploadsOnly || files.length > 0));
    if (drop !== undefined) {
      drop.times--;
      this.requests.push(record);
      for (const wake of [...this.#waiters]) wake();
      req.socket.destroy();
      return;
    }
    const { status, json, headers, raw: file } = this.#answer(method, path, body, files, req.headers);
    record.status = status;
    this.requests.push(record);
    for (const wake of [...this.#waiters]) wake();
    const slow = this.#slowRules.find((rule) => rule.method === method && rule.path.test(path) && (!rule.uploadsOnly || files.length > 0));
    if (slow !== undefined) await new Promise((resolve) => setTimeout(resolve, slow.delayMs));
    res.once('finish', () => {
      record.answeredAt = Date.now();
      for (const wake of [...this.#waiters]) wake();
    });
    if (file !== undefined) {
      res.writeHead(status, { 'content-type': file.contentType, 'content-length': String(file.data.length) });
      res.end(file.data);
      return;
    }
    res.writeHead(status, { ...(json === undefined ? {} : { 'content-type': 'application/json' }), ...headers });
    res.end(json === undefined ? undefined : JSON.stringify(json));
  }

  #answer(method: string, path: string, body: unknown, files: RecordedFile[], requestHeaders: IncomingMessage['headers'] = {}): { status: number; json?: unknown; headers?: Record<string, string>; raw?: { data: Buffer; contentType: string } } {
    const rule = this.#rules.find((candidate) => candidate.method === method && candidate.path.test(path) && candidate.times > 0 && (!candidate.uploadsOnly || files.length > 0));
    if (rule !== undefined) {
      rule.times--;
      return { status: rule.status, json: rule.body, headers: rule.headers };
    }
    const application = this.#answerApplication(method, path, body, requestHeaders);
    if (application !== undefined) return application;
    const hosted = method === 'GET' ? this.#files.get(path) : undefined;
    if (hosted !== undefined) return { status: 200, raw: hosted };
    const stored = method === 'GET' ? /^\/channels\/\d+\/messages\/(\d+)$/.exec(path) : null;
    if (stored !== null) {
      const message = this.#messages.get(stored[1]!);
      return message === undefined ? { status: 404, json: { message: 'Unknown Message', code: 10008 } } : { status: 200, json: message };
    }
    if (method === 'GET' && path === '/gateway/bot') {
      return { status: 200, json: { url: this.wsUrl, shards: 1, session_start_limit: { total: 1000, remaining: 999, reset_after: 0, max_concurrency: 1 } } };
    }
    if (method === 'PUT' && /^\/applications\/\d+(\/guilds\/\d+)?\/commands$/.test(path)) {
      const commands = Array.isArray(body) ? (body as Record<string, unknown>[]) : [];
      return {
        status: 200,
        json: commands.map((command) => ({
          ...command,
          id: this.#commandId(String(command.name)),
          application_id: this.applicationId,
          version: snowflake(),
          default_member_permissions: command.default_member_permissions ?? null,
          type: command.type ?? 1,
        })),
      };
    }
    if (method === 'POST' && /^\/interactions\/\d+\/[^/]+\/callback$/.test(path)) return { status: 204 };
    if (method === 'POST' && path === '/users/@me/channels') {
      const recipient = String((body as { recipient_id?: unknown } | undefined)?.recipient_id ?? '');
      let id = this.dmChannels.get(recipient);
      if (id === undefined) {
        id = snowflake();
        this.dmChannels.set(recipient, id);
      }
      return { status: 200, json: { id, type: 1, last_message_id: null, flags: 0, recipients: [{ id: recipient, username: 'someone', global_name: null, discriminator: '0', avatar: null }] } };
    }
    const webhook = /^\/webhooks\/(\d+)\/([^/]+)(?:\/messages\/(@original|\d+))?$/.exec(path);
    if (webhook !== null && (method === 'PATCH' || method === 'POST')) {
      const payload = (body ?? {}) as Record<string, unknown>;
      const id = webhook[3] === undefined || webhook[3] === '@original' ? snowflake() : webhook[3];
      return { status: 200, json: this.#message(id, String(payload.content ?? ''), files, payload.components, this.applicationId) };
    }
    if (webhook !== null && method === 'DELETE') return { status: 204 };
    const channel = /^\/channels\/(\d+)\/messages(?:\/(\d+))?$/.exec(path);
    // A bot may delete its own messages (and, with Manage Messages, others'); Discord answers 204.
    if (channel !== null && channel[2] !== undefined && method === 'DELETE') return { status: 204 };
    if (channel !== null && (method === 'POST' || method === 'PATCH')) {
      const payload = (body ?? {}) as Record<string, unknown>;
      return { status: 200, json: this.#message(channel[2] ?? snowflake(), String(payload.content ?? ''), files, payload.components, this.botUserId, channel[1]) };
    }
    return { status: 404, json: { message: '404: Not Found', code: 0 } };
  }

  // --- Gateway sessions (resume, invalid session) and application commands ------------------------

  /**
   * Closes every gateway connection as Discord does when it drops a session's socket. 4000
   * (unknown error) is resumable: discord.js reconnects to `resume_gateway_url` and sends RESUME.
   */
  closeGateway(code = 4000): void {
    for (const socket of this.#sockets) socket.close(code, 'fake gateway closed the connection');
  }

  /** Makes the next RESUME fail with op 9 (invalid session, not resumable): the client must IDENTIFY again. */
  invalidateNextResume(): void {
    this.#invalidateNextResume = true;
  }

  /** Gateway connections open now. */
  get gatewayConnections(): number {
    return this.#sockets.size;
  }

  /** Resolves once a client has sent `op` (2 IDENTIFY, 6 RESUME) `count` times in all. */
  async waitForGatewayFrame(op: number, count = 1, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.gatewayFrames.filter((frame) => frame.op === op).length < count) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for gateway op ${op} ×${count}; seen ops: ${this.gatewayFrames.map((f) => f.op).join(',')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** RESUME: replays what the session missed after `seq`, then RESUMED; or op 9 when the session is unknown. */
  #onResume(socket: WebSocket, resume: { session_id?: string; seq?: number | null }): void {
    if (this.#invalidateNextResume || resume.session_id === undefined || !this.#sessions.has(resume.session_id)) {
      this.#invalidateNextResume = false;
      if (resume.session_id !== undefined) this.#sessions.delete(resume.session_id);
      socket.send(JSON.stringify({ op: 9, d: false }));
      return;
    }
    const after = resume.seq ?? 0;
    for (const entry of this.#dispatched) {
      if (entry.s <= after) continue;
      socket.send(entry.frame);
      this.replayed.push(entry.s);
    }
    socket.send(JSON.stringify({ op: 0, t: 'RESUMED', s: ++this.#sequence, d: {} }));
  }

  /** A fresh session id for READY, remembered so that it can be resumed. */
  #newSession(): string {
    const sessionId = `session-${snowflake()}`;
    this.#sessions.add(sessionId);
    return sessionId;
  }

  /**
   * `GET /applications/@me`, and the checks Discord makes before `PUT …/commands`: the bot token
   * (when `botToken` is set) and, for a guild, that the application is in it (403 / 50001).
   * Undefined for other routes, and for a PUT that passes (the generic handler answers it).
   */
  #answerApplication(method: string, path: string, body: unknown, headers: IncomingMessage['headers']): { status: number; json?: unknown } | undefined {
    const commands = /^\/applications\/(\d+)(?:\/guilds\/(\d+))?\/commands$/.exec(path);
    const me = method === 'GET' && path === '/applications/@me';
    if (!me && !(commands !== null && method === 'PUT')) return undefined;
    if (this.botToken !== undefined && headers.authorization !== `Bot ${this.botToken}`) return { status: 401, json: { message: '401: Unauthorized', code: 0 } };
    if (me) {
      return {
        status: 200,
        json: {
          id: this.applicationId,
          name: 'reelbot',
          icon: null,
          description: '',
          bot_public: true,
          bot_require_code_grant: false,
          verify_key: '0'.repeat(64),
          flags: 0,
          bot: { id: this.botUserId, username: 'reelbot', global_name: null, discriminator: '0', avatar: null, bot: true },
        },
      };
    }
    if (commands![1] !== this.applicationId) return { status: 404, json: { message: 'Unknown Application', code: 10002 } };
    const guildId = commands![2];
    if (guildId !== undefined && guildId !== this.guildId && !this.otherGuildIds.has(guildId)) return { status: 403, json: { message: 'Missing Access', code: 50001 } };
    this.registeredCommands.set(guildId ?? 'global', Array.isArray(body) ? body : []);
    return undefined;
  }

  // --- Payloads ---------------------------------------------------------------------------------

  #base(user: FakeUser, type: number, attachmentSizeLimit = 10 * 1024 * 1024): Record<string, unknown> & { id: string; token: string } {
    const id = snowflake();
    return {
      id,
      application_id: this.applicationId,
      type,
      token: `aW50ZXJhY3Rpb246${id}:fake-token`,
      version: 1,
      guild_id: this.guildId,
      guild: { id: this.guildId, locale: 'en-US', features: [] },
      channel_id: this.channelId,
      channel: { id: this.channelId, type: 0, guild_id: this.guildId, name: 'videos', nsfw: false, parent_id: null, position: 0, permissions: '2248473465835073', last_message_id: null, flags: 0, rate_limit_per_user: 0, topic: null },
      member: this.member(user),
      app_permissions: '2248473465835073',
      locale: 'en-US',
      guild_locale: 'en-US',
      entitlements: [],
      authorizing_integration_owners: { '0': this.guildId },
      context: 0,
      attachment_size_limit: attachmentSizeLimit,
    };
  }

  #message(id: string, content: string, files: RecordedFile[], components: unknown = [], authorId = this.applicationId, channelId = this.channelId): Record<string, unknown> {
    return {
      id,
      type: 0,
      channel_id: channelId,
      guild_id: this.guildId,
      content,
      author: { id: authorId, username: 'reelbot', global_name: null, discriminator: '0', avatar: null, bot: true },
      attachments: files.map((file) => {
        const attachmentId = snowflake();
        return {
          id: attachmentId,
          filename: file.name,
          size: file.size,
          content_type: file.contentType,
          url: `https://cdn.discordapp.test/attachments/${channelId}/${attachmentId}/${file.name}`,
          proxy_url: `https://media.discordapp.test/attachments/${channelId}/${attachmentId}/${file.name}`,
        };
      }),
      embeds: [],
      mentions: [],
      mention_roles: [],
      mention_everyone: false,
      pinned: false,
      tts: false,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      flags: 0,
      components: Array.isArray(components) ? components : [],
      webhook_id: authorId === this.applicationId ? this.applicationId : undefined,
      application_id: this.applicationId,
    };
  }

  #commandId(name: string): string {
    let id = this.#commandIds.get(name);
    if (id === undefined) {
      id = snowflake();
      this.#commandIds.set(name, id);
    }
    return id;
  }
}

/** Splits a multipart/form-data body into its files and its `payload_json`. */
function parseMultipart(raw: Buffer, contentType: string): { files: RecordedFile[]; payload: unknown } {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const marker = boundary?.[1] ?? boundary?.[2];
  if (marker === undefined) return { files: [], payload: undefined };
  const delimiter = Buffer.from(`--${marker}`);
  const files: RecordedFile[] = [];
  let payload: unknown;
  let start = raw.indexOf(delimiter);
  while (start !== -1) {
    const next = raw.indexOf(delimiter, start + delimiter.length);
    if (next === -1) break;
    // Part = CRLF headers CRLF CRLF body CRLF
    const part = raw.subarray(start + delimiter.length + 2, next - 2);
    const split = part.indexOf('\r\n\r\n');
    if (split !== -1) {
      const head = part.subarray(0, split).toString('utf8');
      const content = part.subarray(split + 4);
      const name = /name="([^"]*)"/i.exec(head)?.[1] ?? '';
      const filename = /filename="([^"]*)"/i.exec(head)?.[1];
      const type = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim() ?? 'application/octet-stream';
      if (filename !== undefined) files.push({ field: name, name: filename, size: content.length, contentType: type, data: Buffer.from(content) });
      else if (name === 'payload_json') payload = JSON.parse(content.toString('utf8')) as unknown;
    }
    start = next;
  }
  return { files, payload };
}
