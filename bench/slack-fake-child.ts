/**
 * The Slack side of `npm run bench:slack`, in its own process as Slack is on another machine: a
 * FakeSlack that, when told to, sends the slash commands (each followed by its redelivery) as
 * fast as it can over Socket Mode and reports each envelope's ack latency, measured here, from
 * its send to the receipt of its ack.
 */
import { FakeSlack, type Ack, type SentEnvelope } from '../test/fakes/fake-slack.js';

/** Parent → child. */
export type FakeChildCommand = { type: 'warm-up' } | { type: 'burst'; commands: number; users: number; ackWaitMs: number } | { type: 'close' };
/** Child → parent. */
export type FakeChildMessage = { type: 'ready'; apiUrl: string } | { type: 'connected' } | { type: 'warmed-up' } | { type: 'result'; latencies: number[]; lost: number; apiCalls: number };

const send = (message: FakeChildMessage) => process.send!(message);

async function ackOrTimeout(sent: SentEnvelope, ms: number): Promise<Ack | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([sent.ack, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const fake = await FakeSlack.start();
send({ type: 'ready', apiUrl: fake.apiUrl });
void fake.connected().then(() => send({ type: 'connected' }));
process.on('message', (message: FakeChildCommand) => {
  if (message.type === 'close') {
    void fake.close().then(() => process.exit(0));
    return;
  }
  if (message.type === 'warm-up') {
    // One command in the burst's channel first, as on a server where the bot is in use: the bot
    // has checked this channel (conversations.info) before the burst and remembers the answer.
    const payload = fake.slashPayload('/video', 'a corgi warming up --frames 8', { id: 'UBENCHWARM' });
    void fake.sendEnvelope('slash_commands', payload).ack.then(() => send({ type: 'warmed-up' }));
    return;
  }
  void (async () => {
    const sent: SentEnvelope[] = [];
    for (let i = 0; i < message.commands; i++) {
      const payload = fake.slashPayload('/video', `a corgi surfing, take ${i} --frames 8`, { id: `UBENCH${String(i % message.users).padStart(3, '0')}` });
      sent.push(fake.sendEnvelope('slash_commands', payload));
      sent.push(fake.sendEnvelope('slash_commands', payload, { retry_attempt: 1, retry_reason: 'timeout' }));
    }
    const acks = await Promise.all(sent.map((envelope) => ackOrTimeout(envelope, message.ackWaitMs)));
    send({
      type: 'result',
      latencies: acks.flatMap((ack, index) => (ack === undefined ? [] : [ack.at - sent[index]!.at])),
      lost: acks.filter((ack) => ack === undefined).length,
      apiCalls: fake.requests.length,
    });
  })();
});
