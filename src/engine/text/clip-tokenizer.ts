/**
 * @file CLIP byte-level BPE tokenizer, the algorithm of openai/CLIP `simple_tokenizer.py` and
 * Hugging Face `CLIPTokenizer`: HTML-unescaped, quotes uncurled, NFC, whitespace collapsed,
 * lower-cased, split by the CLIP regex, each piece turned into byte-unicode characters, then BPE
 * with a `</w>` end-of-word suffix by merge rank. Encodings are `[bos, …tokens, eos]` padded to 77 with the pad token (eos for SD 1.x).
 *
 * It reads the files of a model folder's `tokenizer/` (HF layout): `vocab.json`, `merges.txt`
 * and, when present, `special_tokens_map.json` / `tokenizer_config.json` for the pad token.
 * The text is first cleaned as openai/CLIP's `basic_clean` does: `html.unescape` twice (Slack
 * sends `&amp;`) and ftfy's curly-quote straightening; ftfy's other repairs (mojibake) are not made
 * (text/clean-text.ts says what differs).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cleanClipText } from './clean-text.js';

/** Sequence length of the SD 1.x text encoder: bos + 75 tokens + eos. */
export const CLIP_MAX_LENGTH = 77;
/** Most content tokens one encoding keeps (77 minus bos and eos). */
export const CLIP_MAX_CONTENT_TOKENS = CLIP_MAX_LENGTH - 2;
/** CLIP's begin-of-text token. */
export const CLIP_BOS_TOKEN = '<|startoftext|>';
/** CLIP's end-of-text token, also its unknown and (SD 1.x) padding token. */
export const CLIP_EOS_TOKEN = '<|endoftext|>';
/** Suffix that marks the last symbol of a word. */
export const END_OF_WORD = '</w>';

/**
 * CLIP's pre-tokenizer (openai `self.pat`, `regex` module with IGNORECASE): special tokens,
 * English contractions, letter runs, single digits, runs of other non-space characters.
 */
export const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

/**
 * GPT-2/CLIP `bytes_to_unicode`: maps each byte to a printable character. Printable Latin-1 bytes
 * map to themselves (in the order `!`…`~`, `¡`…`¬`, `®`…`ÿ`), the other 68 to U+0100 upward.
 * Returned in that order, which is the order of the first 256 vocabulary ids.
 */
export function bytesToUnicode(): Array<[byte: number, char: string]> {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.map((b) => String.fromCharCode(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(String.fromCharCode(256 + n));
      n++;
    }
  }
  return bytes.map((b, i) => [b, chars[i]!]);
}

const BYTE_ENCODER: readonly string[] = (() => {
  const table = new Array<string>(256);
  for (const [b, c] of bytesToUnicode()) table[b] = c;
  return table;
})();
const BYTE_DECODER: ReadonlyMap<string, number> = new Map(bytesToUnicode().map(([b, c]) => [c, b]));
const UTF8 = new TextEncoder();

/**
 * CLIP text normalisation, as the reference cleans a prompt: HTML-unescaped twice, curly quotes
 * straightened, NFC, runs of whitespace to one space, trimmed, lower-cased ({@link cleanClipText}).
 */
export function normalizeClipText(text: string): string {
  return cleanClipText(text);
}

/** One regex piece of a prompt: its byte-unicode form, and where it is in the normalised text. */
export interface ClipPiece {
  readonly text: string;
  readonly start: number;
  readonly end: number;
}

/** Splits normalised text with {@link CLIP_PATTERN} and maps each piece's UTF-8 bytes to byte-unicode characters. */
export function preTokenize(normalized: string): ClipPiece[] {
  const pieces: ClipPiece[] = [];
  for (const match of normalized.matchAll(CLIP_PATTERN)) {
    let text = '';
    for (const byte of UTF8.encode(match[0])) text += BYTE_ENCODER[byte]!;
    pieces.push({ text, start: match.index, end: match.index + match[0].length });
  }
  return pieces;
}

/** The result of {@link ClipTokenizer.encode}. */
export interface ClipEncoding {
  /** `[bos, …content, eos, pad…]`, always {@link CLIP_MAX_LENGTH} long. */
  readonly ids: Int32Array;
  /** Content tokens the prompt produced before truncation (bos/eos/padding not counted). */
  readonly tokenCount: number;
  /** True when `tokenCount` exceeded {@link CLIP_MAX_CONTENT_TOKENS} and the rest was cut. */
  readonly truncated: boolean;
  /** The cut part of the (normalised, lower-cased) prompt, for telling the user; '' when nothing was cut. */
  readonly droppedText: string;
}

/** Options of {@link ClipTokenizer}. */
export interface ClipTokenizerOptions {
  /** Padding token; used only when it is in the vocabulary, else eos (SD 1.x pads with eos). */
  readonly padToken?: string;
}

// Unique words seen in prompts stay small, but a long-running bot should not grow without bound.
const CACHE_LIMIT = 20_000;

/**
 * CLIP BPE tokenizer.
 *
 * @example
 * const tokenizer = await ClipTokenizer.load('models/sd15/tokenizer');
 * const { ids, truncated, droppedText } = tokenizer.encode('a corgi surfing at sunset');
 * // ids: Int32Array(77) [49406, …, 49407, 49407, …] with the real CLIP vocabulary
 */
export class ClipTokenizer {
  /** Id of `<|startoftext|>`. */
  readonly bosId: number;
  /** Id of `<|endoftext|>`. */
  readonly eosId: number;
  /** Id used for padding (eos unless the folder names another pad token that is in the vocabulary). */
  readonly padId: number;
  /** Id given to a piece missing from the vocabulary (`<|endoftext|>`, as CLIP). */
  readonly unkId: number;
  /** Number of entries in the vocabulary. */
  readonly vocabSize: number;
  readonly #encoder: ReadonlyMap<string, number>;
  readonly #decoder: ReadonlyMap<number, string>;
  readonly #ranks: ReadonlyMap<string, number>;
  readonly #cache = new Map<string, readonly string[]>();

  /**
   * @param vocab token → id (the content of `vocab.json`); must hold `<|startoftext|>` and `<|endoftext|>`
   * @param merges merge rules `"a b"` in rank order (the lines of `merges.txt` without the header)
   * @throws Error for a vocabulary without the special tokens, a bad id or a malformed merge
   */
  constructor(vocab: Readonly<Record<string, number>> | ReadonlyMap<string, number>, merges: readonly string[], options: ClipTokenizerOptions = {}) {
    const encoder = new Map<string, number>(vocab instanceof Map ? vocab : Object.entries(vocab));
    const decoder = new Map<number, string>();
    for (const [token, id] of encoder) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw new Error(`CLIP vocabulary: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}; ids must be integers from 0 up`);
      }
      decoder.set(id, token);
    }
    const special = (token: string): number => {
      const id = encoder.get(token);
      if (id === undefined) throw new Error(`CLIP vocabulary: it has no ${token} token`);
      return id;
    };
    const ranks = new Map<string, number>();
    merges.forEach((merge, rank) => {
      const parts = merge.split(' ');
      if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
        throw new Error(`CLIP merges: rule ${rank + 1} ${JSON.stringify(merge)} is not two symbols separated by one space`);
      }
      // A repeated rule keeps its last rank, as dict(zip(merges, range(len(merges)))) does.
      ranks.set(merge, rank);
    });
    this.#encoder = encoder;
    this.#decoder = decoder;
    this.#ranks = ranks;
    this.bosId = special(CLIP_BOS_TOKEN);
    this.eosId = special(CLIP_EOS_TOKEN);
    this.unkId = this.eosId;
    const pad = options.padToken === undefined ? undefined : encoder.get(options.padToken);
    this.padId = pad ?? this.eosId;
    this.vocabSize = encoder.size;
  }

  /**
   * Reads `dir/vocab.json` and `dir/merges.txt` (lines starting with `#version` and blank lines are
   * skipped), plus the pad token from `dir/special_tokens_map.json` or `dir/tokenizer_config.json`
   * when they exist (special_tokens_map wins, as in transformers).
   * @param dir a model folder's `tokenizer/` folder
   * @throws Error naming the missing or malformed file
   */
  static async load(dir: string): Promise<ClipTokenizer> {
    const vocabPath = join(dir, 'vocab.json');
    const mergesPath = join(dir, 'merges.txt');
    const vocabJson = parseJson(await readRequired(vocabPath, 'the CLIP vocabulary'), vocabPath);
    if (typeof vocabJson !== 'object' || vocabJson === null || Array.isArray(vocabJson)) {
      throw new Error(`CLIP tokenizer: ${vocabPath} must hold a JSON object of token → id`);
    }
    const mergesText = await readRequired(mergesPath, 'the CLIP BPE merges');
    const merges: string[] = [];
    mergesText.split(/\r?\n/).forEach((line, index) => {
      if (line.startsWith('#version') || line.trim() === '') return;
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 2) {
        throw new Error(`CLIP tokenizer: ${mergesPath} line ${index + 1} ${JSON.stringify(line)} is not two symbols separated by a space`);
      }
      merges.push(`${parts[0]} ${parts[1]}`);
    });

    let padToken: string | undefined;
    for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
      const path = join(dir, name);
      const text = await readOptional(path);
      if (text === undefined) continue;
      const json = parseJson(text, path);
      const named = tokenContent(typeof json === 'object' && json !== null ? (json as Record<string, unknown>)['pad_token'] : undefined);
      if (named !== undefined) padToken = named;
    }

    try {
      return new ClipTokenizer(vocabJson as Record<string, number>, merges, padToken === undefined ? {} : { padToken });
    } catch (error) {
      // Merges were checked above, so what the constructor refuses is the vocabulary.
      throw new Error(`CLIP tokenizer: ${vocabPath}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Content token ids of `text` (no bos/eos, no padding, no truncation). */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    for (const piece of preTokenize(normalizeClipText(text))) ids.push(...this.#pieceIds(piece.text));
    return ids;
  }

  /**
   * Encodes a prompt for the SD 1.x text encoder: `[bos, …tokens, eos]` padded to 77 with the pad
   * token; content past 75 tokens is cut (as HF `truncation=True, max_length=77`), and the cut text
   * is returned so the bot can tell the user.
   */
  encode(text: string): ClipEncoding {
    const normalized = normalizeClipText(text);
    const ids = new Int32Array(CLIP_MAX_LENGTH).fill(this.padId);
    ids[0] = this.bosId;
    let count = 0;
    let droppedText = '';
    for (const piece of preTokenize(normalized)) {
      const symbols = this.bpe(piece.text);
      const room = CLIP_MAX_CONTENT_TOKENS - count;
      for (let i = 0; i < Math.min(room, symbols.length); i++) ids[1 + count + i] = this.#symbolId(symbols[i]!);
      if (droppedText === '' && symbols.length > room) {
        // The cut starts in this piece: the symbols it loses (a word's tail) plus all later text.
        const head = room > 0 ? symbolsToText(symbols.slice(room).join('')) : normalized.slice(piece.start, piece.end);
        droppedText = (head + normalized.slice(piece.end)).trim();
      }
      count += symbols.length;
    }
    ids[1 + Math.min(count, CLIP_MAX_CONTENT_TOKENS)] = this.eosId;
    return { ids, tokenCount: count, truncated: count > CLIP_MAX_CONTENT_TOKENS, droppedText };
  }

  /**
   * Turns ids back into text (CLIP `decode`): tokens joined, byte-unicode mapped back to UTF-8
   * bytes, `</w>` read as a space, trimmed. Lossy where CLIP is: lower case, spaces around
   * punctuation. bos, eos and pad are skipped unless `skipSpecialTokens` is false.
   * @throws RangeError for an id that is not in the vocabulary
   */
  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    let text = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (skip && (id === this.bosId || id === this.eosId || id === this.padId)) continue;
      const token = this.#decoder.get(id);
      if (token === undefined) throw new RangeError(`CLIP decode: id ${id} is not in the vocabulary`);
      text += token;
    }
    return symbolsToText(text);
  }

  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#encoder.get(token);
  }

  #pieceIds(piece: string): number[] {
    return this.bpe(piece).map((symbol) => this.#symbolId(symbol));
  }

  #symbolId(symbol: string): number {
    return this.#encoder.get(symbol) ?? this.unkId;
  }

  /**
   * BPE of one byte-unicode piece, exactly as openai `SimpleTokenizer.bpe`: the last symbol gets
   * `</w>`, then the lowest-ranked adjacent pair is merged (every occurrence, left to right) until
   * no pair has a rank. Special tokens stay whole.
   */
  bpe(piece: string): readonly string[] {
    const cached = this.#cache.get(piece);
    if (cached !== undefined) return cached;
    let result: string[];
    if (piece === CLIP_BOS_TOKEN || piece === CLIP_EOS_TOKEN) {
      result = [piece];
    } else {
      let word = Array.from(piece);
      word[word.length - 1] += END_OF_WORD;
      while (word.length > 1) {
        let best: string | undefined;
        let bestRank = Infinity;
        for (let i = 0; i < word.length - 1; i++) {
          const rank = this.#ranks.get(`${word[i]} ${word[i + 1]}`);
          if (rank !== undefined && rank < bestRank) {
            bestRank = rank;
            best = `${word[i]} ${word[i + 1]}`;
          }
        }
        if (best === undefined) break;
        const [first, second] = best.split(' ') as [string, string];
        const merged: string[] = [];
        for (let i = 0; i < word.length; ) {
          if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
            merged.push(first + second);
            i += 2;
          } else {
            merged.push(word[i]!);
            i += 1;
          }
        }
        word = merged;
      }
      result = word;
    }
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
    this.#cache.set(piece, result);
    return result;
  }
}

/** Byte-unicode symbols back to text: bytes → UTF-8 (U+FFFD for broken sequences), `</w>` → space, trimmed. */
function symbolsToText(symbols: string): string {
  // `</w>` is made of mapped ASCII bytes, so it survives the byte round trip and is replaced after.
  const bytes: number[] = [];
  for (const ch of symbols) {
    const byte = BYTE_DECODER.get(ch);
    if (byte !== undefined) bytes.push(byte);
    else for (const b of UTF8.encode(ch)) bytes.push(b);
  }
  return new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replaceAll(END_OF_WORD, ' ').trim();
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  // HF serialises AddedToken as {"content": "...", …} (with "__type": "AddedToken" in tokenizer_config.json).
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

async function readRequired(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'is missing' : `cannot be read (${code ?? (error as Error).message})`;
    throw new Error(`CLIP tokenizer: ${path} ${reason}; it must hold ${what} (a tokenizer folder has vocab.json and merges.txt)`, { cause: error });
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`CLIP tokenizer: ${path} cannot be read`, { cause: error });
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`CLIP tokenizer: ${path} is not valid JSON (${(error as Error).message})`, { cause: error });
  }
}
