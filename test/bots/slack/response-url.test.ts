import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { ResponseUrl } from '../../../src/bots/slack/response-url.js';

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

test('a burst of responses goes out a few at a time over kept-alive connections, and each still arrives', async () => {
  let inFlight = 0;
  let mostInFlight = 0;
  const sockets = new Set<unknown>();
  const bodies: string[] = [];
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    sockets.add(request.socket);
    inFlight++;
    mostInFlight = Math.max(mostInFlight, inFlight);
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      // Slack's hook answers after a moment: without a limit every response would be open at once.
      setTimeout(() => {
        bodies.push(body);
        inFlight--;
        response.end('ok');
      }, 20);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  close = () => new Promise((resolve) => server.close(() => resolve()));
  server.unref();
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/commands/T1/1/hook`;
  const sent = await Promise.all(
    Array.from({ length: 40 }, (_, i) => new ResponseUrl({ url, issuedAt: Date.now(), uses: 0 }).send({ text: `queued #${i}`, response_type: 'ephemeral' })),
  );
  expect(sent.every(Boolean)).toBe(true);
  expect(bodies).toHaveLength(40);
  expect(mostInFlight).toBeLessThanOrEqual(4);
  // Connections are reused: far fewer than one per response.
  expect(sockets.size).toBeLessThanOrEqual(8);
  server.closeAllConnections();
});
