/**
 * CLIP tokenizer: the BPE algorithm on a hand-written vocabulary whose ids are derived by hand
 * (openai simple_tokenizer.py rules), and the built-in vocabulary written to and loaded from a
 * tokenizer folder.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildBpeVocab, writeTokenizerFolder, type BpeVocab } from '../../src/engine/text/bpe-vocab.js';
import { bytesToUnicode, ClipTokenizer, CLIP_MAX_LENGTH, normalizeClipText } from '../../src/engine/text/clip-tokenizer.js';

/** A vocabulary built the way openai's SimpleTokenizer builds one, from the given merges. */
function clipLayoutVocab(merges: readonly string[]): Record<string, number> {
  const chars = bytesToUnicode().map(([, c]) => c);
  const tokens = [...chars, ...chars.map((c) => `${c}</w>`), ...merges.map((m) => m.replace(' ', '')), '<|startoftext|>', '<|endoftext|>'];
  return Object.fromEntries(tokens.map((t, i) => [t, i]));
}

describe('BPE on a hand-written vocabulary (ids derived by hand)', () => {
  // Byte-unicode ids: printable ASCII c has id c − 33, and c + "</w>" has id 256 + c − 33.
  // Merges get 512 + rank: he 512, ll 513, hell 514, hello</w> 515, wo 516, rl 517, rld</w> 518,
  // world</w> 519, lo</w> 520; then <|startoftext|> 521, <|endoftext|> 522.
  const merges = ['h e', 'l l', 'he ll', 'hell o</w>', 'w o', 'r l', 'rl d</w>', 'wo rld</w>', 'l o</w>'];
  const tok = new ClipTokenizer(clipLayoutVocab(merges), merges);

  test('the layout puts bytes, bytes + </w>, merges, then the special tokens', () => {
    expect(tok.tokenToId('h')).toBe(104 - 33);
    expect(tok.tokenToId('o</w>')).toBe(256 + 111 - 33);
    expect(tok.tokenToId('Ġ')).toBe(220); // the space byte, as in the real CLIP vocabulary
    expect(tok.tokenToId('hello</w>')).toBe(515);
    expect([tok.bosId, tok.eosId, tok.padId, tok.unkId]).toEqual([521, 522, 522, 522]);
  });

  test('whole words merge by rank to single tokens', () => {
    expect(tok.tokenize('hello world')).toEqual([515, 519]);
    // h e l l o</w>: "h e" (0), then "l l" (1), "he ll" (2), "hell o</w>" (3); "l o</w>" (8) never gets its turn.
    expect(tok.bpe('hello')).toEqual(['hello</w>']);
  });

  test('the lowest rank wins and merges go left to right', () => {
    // l l o</w>: "l l" (1) beats "l o</w>" (8) → ll o</w>, and "ll o</w>" is no rule.
    expect(tok.tokenize('llo')).toEqual([513, 256 + 111 - 33]);
    // l l l</w>: only the first two l merge; "l l</w>" is not "l l".
    expect(tok.tokenize('lll')).toEqual([513, 256 + 108 - 33]);
    // h e l l</w>: he, then nothing (no "he l", no "l l</w>").
    expect(tok.tokenize('hell')).toEqual([512, 108 - 33, 256 + 108 - 33]);
    expect(tok.tokenize('lo')).toEqual([520]);
  });

  test('the CLIP regex: punctuation runs, contractions, single digits', () => {
    const comma = 256 + 44 - 33;
    const bang = 256 + 33 - 33;
    expect(tok.tokenize('Hello, World!')).toEqual([515, comma, 519, bang]);
    expect(tok.tokenize('hello!!')).toEqual([515, 0, bang]);
    expect(tok.tokenize("it's")).toEqual([105 - 33, 256 + 116 - 33, 39 - 33, 256 + 115 - 33]);
    expect(tok.tokenize('2024')).toEqual([273, 271, 273, 275]);
  });

  test('non-ASCII goes through UTF-8 bytes', () => {
    // é = C3 A9: byte 0xC3 → 'Ã' (id 127), byte 0xA9 → '©' (id 102) with </w> → 358.
    expect(tok.tokenize('é')).toEqual([127, 358]);
    expect(tok.decode(tok.tokenize('café 🎬'))).toBe('café 🎬');
  });

  test('encode wraps in bos/eos and pads with eos to 77', () => {
    const { ids, tokenCount, truncated, droppedText } = tok.encode('Hello world');
    expect(ids).toBeInstanceOf(Int32Array);
    expect(ids).toHaveLength(77);
    expect(Array.from(ids.slice(0, 4))).toEqual([521, 515, 519, 522]);
    expect(ids.slice(4).every((id) => id === 522)).toBe(true);
    expect([tokenCount, truncated, droppedText]).toEqual([2, false, '']);
    expect(tok.decode(ids)).toBe('hello world');
    expect(tok.decode(ids, { skipSpecialTokens: false })).toMatch(/^<\|startoftext\|>hello world <\|endoftext\|>/);
  });

  test('special tokens typed in the prompt stay whole (as CLIP)', () => {
    expect(tok.tokenize('<|endoftext|>')).toEqual([522]);
  });

  test('a cut inside a word reports the lost tail of that word', () => {
    // 74 one-token words, then "hexx" = he x x</w>: only "he" fits.
    const prompt = `${'a '.repeat(74)}hexx world`;
    const result = tok.encode(prompt);
    expect(result.tokenCount).toBe(74 + 3 + 1);
    expect(result.truncated).toBe(true);
    expect(result.ids[75]).toBe(512);
    expect(result.ids[76]).toBe(522);
    expect(result.droppedText).toBe('xx world');
  });

  test('exactly 75 tokens is not truncated', () => {
    const result = tok.encode('a '.repeat(75));
    expect([result.tokenCount, result.truncated, result.droppedText]).toEqual([75, false, '']);
    expect(result.ids[76]).toBe(522);
  });

  test('unknown pieces map to the unk token (<|endoftext|>)', () => {
    const small = new ClipTokenizer({ 'a</w>': 0, '<|startoftext|>': 1, '<|endoftext|>': 2 }, []);
    expect(small.tokenize('a b')).toEqual([0, 2]);
  });

  test('bad vocabularies and merges are refused', () => {
    expect(() => new ClipTokenizer({ 'a</w>': 0, '<|endoftext|>': 1 }, [])).toThrow(/no <\|startoftext\|> token/);
    expect(() => new ClipTokenizer(clipLayoutVocab([]), ['abc'])).toThrow(/rule 1 "abc"/);
    expect(() => new ClipTokenizer({ ...clipLayoutVocab([]), x: -1 }, [])).toThrow(/ids must be integers/);
  });
});

describe('the built-in vocabulary', () => {
  let built: BpeVocab;
  beforeAll(() => {
    built = buildBpeVocab();
  });

  test('has CLIP layout and one token per merge', () => {
    expect(built.merges).toHaveLength(1000);
    const size = 512 + 1000 + 2;
    expect(Object.keys(built.vocab)).toHaveLength(size);
    expect(new Set(Object.values(built.vocab)).size).toBe(size);
    // Same base ids as the real CLIP vocabulary ("a</w>" 320, "!</w>" 256).
    expect(built.vocab['a</w>']).toBe(320);
    expect(built.vocab['!</w>']).toBe(256);
    built.merges.forEach((merge, rank) => expect(built.vocab[merge.replace(' ', '')]).toBe(512 + rank));
    expect(built.vocab['<|startoftext|>']).toBe(size - 2);
    expect(built.vocab['<|endoftext|>']).toBe(size - 1);
  });

  test('is deterministic and honours the merge count', () => {
    expect(buildBpeVocab()).toEqual(built);
    const small = buildBpeVocab({ merges: 10 });
    expect(small.merges).toEqual(built.merges.slice(0, 10));
    expect(small.vocab['<|endoftext|>']).toBe(523);
    expect(() => buildBpeVocab({ merges: -1 })).toThrow(RangeError);
  });
});

describe('a tokenizer folder', () => {
  let dir: string;
  let built: BpeVocab;
  let tok: ClipTokenizer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'reelbot-clip-'));
    built = buildBpeVocab();
    await writeTokenizerFolder(join(dir, 'tokenizer'), built);
    tok = await ClipTokenizer.load(join(dir, 'tokenizer'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('is written as HF writes a CLIP tokenizer', () => {
    const folder = join(dir, 'tokenizer');
    const merges = readFileSync(join(folder, 'merges.txt'), 'utf8');
    expect(merges.startsWith('#version: 0.2\n')).toBe(true);
    expect(merges.endsWith('\n')).toBe(true);
    expect(merges.trimEnd().split('\n')).toHaveLength(1001);
    const vocabText = readFileSync(join(folder, 'vocab.json'), 'utf8');
    expect(vocabText.startsWith('{\n  "!": 0,\n  "!</w>": 256,\n')).toBe(true); // keys sorted by code point
    expect(JSON.parse(vocabText)).toEqual(built.vocab);
    const special = JSON.parse(readFileSync(join(folder, 'special_tokens_map.json'), 'utf8'));
    expect(special.pad_token).toBe('<|endoftext|>');
    expect(special.bos_token.content).toBe('<|startoftext|>');
    const config = JSON.parse(readFileSync(join(folder, 'tokenizer_config.json'), 'utf8'));
    expect(config).toMatchObject({ model_max_length: 77, pad_token: '<|endoftext|>', tokenizer_class: 'CLIPTokenizer', do_lower_case: true });
  });

  test('encodes "a corgi surfing at sunset" to bos … eos, padded with eos to 77', () => {
    const { ids, tokenCount, truncated } = tok.encode('a corgi surfing at sunset');
    const bos = built.vocab['<|startoftext|>']!;
    const eos = built.vocab['<|endoftext|>']!;
    expect(ids).toHaveLength(CLIP_MAX_LENGTH);
    expect(ids[0]).toBe(bos);
    expect(ids[1]).toBe(320); // "a</w>"
    expect(tokenCount).toBeGreaterThanOrEqual(5);
    expect(ids[1 + tokenCount]).toBe(eos);
    expect(ids.slice(2 + tokenCount).every((id) => id === eos)).toBe(true);
    expect(ids.slice(1, 1 + tokenCount).every((id) => id !== bos && id !== eos)).toBe(true);
    expect(truncated).toBe(false);
    // Frequent corpus words became single tokens.
    expect(tok.tokenize('the')).toEqual([built.vocab['the</w>']]);
    expect(tok.tokenize('sunset')).toEqual([built.vocab['sunset</w>']]);
  });

  test('decode round-trips a prompt', () => {
    for (const prompt of ['a corgi surfing at sunset', 'turn him into a marble statue', 'make it snowy']) {
      expect(tok.decode(tok.encode(prompt).ids)).toBe(prompt);
    }
    // CLIP's decode is lossy around punctuation, as the reference is.
    expect(tok.decode(tok.encode('sunset, cinematic').ids)).toBe('sunset , cinematic');
  });

  test('lower-cases and collapses whitespace', () => {
    const reference = tok.encode('a corgi surfing at sunset');
    expect(tok.encode('  A   CORGI\n\tSurfing at   SUNSET  ').ids).toEqual(reference.ids);
    expect(normalizeClipText('  A\u00a0 B\n')).toBe('a b');
  });

  test('cleans text as CLIP does: HTML-unescaped twice (Slack sends &amp;), curly quotes straightened', () => {
    expect(tok.encode('fish &amp; chips').ids).toEqual(tok.encode('fish & chips').ids);
    expect(tok.encode('fish &amp;amp; chips').ids).toEqual(tok.encode('fish & chips').ids);
    // Curly apostrophes split like straight ones ("don" + "'t"), curly double quotes become ".
    expect(tok.tokenize('don\u2019t')).toEqual(tok.tokenize("don't"));
    expect(tok.tokenize('\u201cmake it snowy\u201d')).toEqual(tok.tokenize('"make it snowy"'));
    expect(normalizeClipText('A corgi &lt;3 \u2018Surfing\u2019')).toBe("a corgi <3 'surfing'");
  });

  test('a word outside the corpus falls back to smaller pieces and decodes back', () => {
    for (const word of ['xylophone', 'quizzaciously', 'zürich']) {
      expect(built.vocab[`${word}</w>`]).toBeUndefined();
      const ids = tok.tokenize(word);
      expect(ids.length).toBeGreaterThan(1);
      expect(ids.every((id) => id !== tok.unkId)).toBe(true);
      expect(tok.decode(ids)).toBe(word);
    }
  });

  test('a 200-word prompt is truncated to 75 tokens and says what was cut', () => {
    const words = 'a corgi surfing at sunset with a marble statue in the snowy mountains'.split(' ');
    const prompt = Array.from({ length: 200 }, (_, i) => words[i % words.length]).join(' ');
    const result = tok.encode(prompt);
    expect(result.truncated).toBe(true);
    expect(result.tokenCount).toBeGreaterThan(75);
    expect(result.ids).toHaveLength(77);
    expect(result.ids[76]).toBe(tok.eosId);
    expect(result.droppedText.length).toBeGreaterThan(0);
    expect(prompt.endsWith(result.droppedText)).toBe(true);
    // Kept text + dropped text is the whole prompt (a cut may fall inside a word).
    const kept = tok.decode(result.ids);
    expect((kept + result.droppedText).replaceAll(' ', '')).toBe(prompt.replaceAll(' ', ''));
    // Re-encoding the kept text gives the kept tokens (the last may differ: a word cut in two ends in </w>).
    expect(tok.tokenize(kept).slice(0, 74)).toEqual(Array.from(result.ids.slice(1, 75)));
  });

  test('a pad token named by the folder is honoured when it is in the vocabulary', async () => {
    const other = join(dir, 'pad-bang');
    await writeTokenizerFolder(other, built);
    writeFileSync(join(other, 'special_tokens_map.json'), JSON.stringify({ pad_token: { content: '!', normalized: false } }));
    expect((await ClipTokenizer.load(other)).padId).toBe(0);
    writeFileSync(join(other, 'special_tokens_map.json'), JSON.stringify({ pad_token: '<pad>' }));
    const fallback = await ClipTokenizer.load(other);
    expect(fallback.padId).toBe(fallback.eosId);
    const { ids } = (await ClipTokenizer.load(other)).encode('a');
    expect(ids[3]).toBe(fallback.eosId);
  });

  test('missing or bad files are named', async () => {
    const broken = join(dir, 'broken');
    await writeTokenizerFolder(broken, built);
    rmSync(join(broken, 'merges.txt'));
    await expect(ClipTokenizer.load(broken)).rejects.toThrow(/merges\.txt is missing/);
    writeFileSync(join(broken, 'merges.txt'), '#version: 0.2\nh e\nbad line here\n');
    await expect(ClipTokenizer.load(broken)).rejects.toThrow(/merges\.txt line 3 "bad line here"/);
    writeFileSync(join(broken, 'merges.txt'), '#version: 0.2\nh e\n');
    writeFileSync(join(broken, 'vocab.json'), '{"a": 0');
    await expect(ClipTokenizer.load(broken)).rejects.toThrow(/vocab\.json is not valid JSON/);
    writeFileSync(join(broken, 'vocab.json'), JSON.stringify({ 'a</w>': 0 }));
    await expect(ClipTokenizer.load(broken)).rejects.toThrow(/vocab\.json.*no <\|startoftext\|> token/);
    await expect(ClipTokenizer.load(join(dir, 'nowhere'))).rejects.toThrow(/vocab\.json is missing/);
  });

  test('merges.txt without a trailing newline, with CRLF, loads the same', async () => {
    const crlf = join(dir, 'crlf');
    await writeTokenizerFolder(crlf, built);
    writeFileSync(join(crlf, 'merges.txt'), ['#version: 0.2', ...built.merges].join('\r\n'));
    const again = await ClipTokenizer.load(crlf);
    expect(again.encode('a corgi surfing at sunset').ids).toEqual(tok.encode('a corgi surfing at sunset').ids);
  });
});
