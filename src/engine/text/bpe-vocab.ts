/**
 * @file A small CLIP-format BPE vocabulary for the project's built-in models. The real CLIP
 * vocabulary (49,408 tokens) cannot be fetched offline, so the tiny model sets are paired with a
 * vocabulary learned here, deterministically, from an embedded corpus of video prompts.
 *
 * The layout is CLIP's (openai `SimpleTokenizer.__init__`): ids 0–255 are the byte-unicode
 * characters, 256–511 the same characters with `</w>`, then one token per merge in rank order,
 * then `<|startoftext|>` and `<|endoftext|>` as the last two ids. So "a" is 320 and "!" is 256,
 * as in the real vocabulary; merged tokens differ. {@link writeTokenizerFolder} writes it in the
 * Hugging Face folder layout that {@link ClipTokenizer.load} reads.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bytesToUnicode, CLIP_BOS_TOKEN, CLIP_EOS_TOKEN, CLIP_MAX_LENGTH, END_OF_WORD, normalizeClipText, preTokenize } from './clip-tokenizer.js';
import type { ClipTokenizer } from './clip-tokenizer.js';

/**
 * The training text: prompts and edit instructions of the kind the bot receives. Changing it
 * changes every learned id, so the built-in text encoders would need rebuilding.
 */
export const BPE_TRAINING_CORPUS = `
a corgi surfing at sunset, cinematic, high quality
a cat playing the piano in a jazz club, dramatic lighting
an astronaut riding a horse on the moon, 4k, highly detailed
a panda eating bamboo in a misty forest, soft light
a teddy bear walking in new york city, slow motion
a dog running on the beach at sunrise, golden hour
a drone shot flying over snowy mountains at dawn
a timelapse of clouds moving over a quiet lake
a goldfish swimming in a glass bowl, macro shot
a horse galloping across a green field, wide angle
a robot dancing in the rain, neon lights, cyberpunk city
a man walking on the street at night, film grain
a woman reading a book by the window, warm light
a little girl blowing bubbles in the garden
a boy riding a bicycle down the hill, summer afternoon
an old fisherman on a wooden boat, foggy morning
a dragon flying over a medieval castle, epic fantasy
a spaceship landing on a red planet, science fiction
a waterfall in a tropical jungle, lush vegetation
a fireplace with burning logs in a cozy cabin
waves crashing on rocks, stormy sky, lightning
a hot air balloon floating above the desert
a train passing through a snowy valley, steam
cherry blossoms falling in a japanese temple garden
a butterfly landing on a flower, shallow depth of field
a busy market in the old town, people walking
fireworks exploding over the river at midnight
a sailboat on the ocean, blue sky, white clouds
a squirrel gathering nuts in an autumn park
a bird flying over the sea at sunset
a lion resting in the savanna, documentary style
an owl sitting on a branch under the full moon
a penguin sliding on the ice, funny, cute
a monkey climbing a tree in the rainforest
a chef cooking pasta in a modern kitchen
a barista pouring latte art, close up
a skateboarder doing a trick in the park
a dancer spinning on a stage, spotlight, smoke
a knight in shining armor holding a sword
a wizard casting a spell, glowing magic particles
a city skyline at night with traffic lights, long exposure
a car driving on a coastal road, aerial view
a motorcycle racing through the desert, dust
a candle flickering in a dark room
a snowman in a winter village, christmas lights
a polar bear walking on the frozen tundra
a whale jumping out of the water, splash
a jellyfish glowing in the deep ocean
a koala sleeping on a eucalyptus tree
a fox running through the snow, winter forest
make it snowy
make it rainy
make it look like winter
make it look like a painting
make it night time
make the sky purple
turn him into a marble statue
turn her into a bronze sculpture
turn the dog into a tiger
turn the car into a spaceship
turn it into a cartoon
turn the video into an oil painting
change the season to autumn
change the background to a beach
change the weather to a thunderstorm
replace the cat with a fox
add fireworks in the sky
add snow falling
add a rainbow over the hills
remove the people from the street
make him wear sunglasses
make her hair blue
make the house look abandoned
make the water look like lava
make it look old and vintage
in the style of van gogh, starry night
in the style of a watercolor painting
in the style of an anime film
in the style of a pixar movie, 3d render
in the style of ukiyo-e, woodblock print
pencil sketch, black and white
oil painting, impressionist, thick brush strokes
photorealistic, ultra realistic, 8k, hdr
trending on artstation, concept art, unreal engine
high quality, hd, 8k, trending on artstation, high focus, dramatic lighting
masterpiece, best quality, sharp focus, intricate details
beautiful, stunning, gorgeous, elegant
dark, moody, mysterious atmosphere
bright, colorful, vibrant, cheerful
soft pastel colors, dreamy, ethereal
low angle shot, tracking shot, camera panning left
zoom in slowly, smooth camera movement
handheld camera, documentary, natural light
studio lighting, product shot, white background
portrait of a young woman smiling, bokeh
portrait of an old man with a beard, wrinkles
close up of an eye, reflection
a cup of coffee on a wooden table, steam rising
a bowl of fruit, still life, renaissance painting
a field of sunflowers swaying in the wind
a path through a bamboo forest, sunlight through leaves
northern lights dancing over a frozen lake
a volcano erupting, lava flowing, smoke and ash
a sandstorm in the sahara
a lighthouse on a cliff during a storm
a rainy street in tokyo at night, reflections on the wet road
a futuristic city with flying cars
an underwater city with glowing coral
a ghost walking through an abandoned house, horror
a cute puppy playing with a ball of yarn
a kitten chasing a laser pointer
two friends laughing at a party
a couple dancing under the stars
a crowd cheering at a concert, confetti
a soccer player kicking the ball, stadium
a basketball going through the hoop, slow motion
a runner crossing the finish line
children playing in the snow, sledding
a farmer driving a tractor in the wheat field
a blacksmith hammering hot iron, sparks flying
a painter painting on a canvas in the studio
a musician playing guitar on the street
a singer on stage with a microphone
a scientist working in a laboratory
a doctor walking through the hospital corridor
a pilot in the cockpit of an airplane
a ship sailing through the ice
a submarine exploring the ocean floor
a rocket launching into space, flames
planets orbiting a star, galaxy, nebula
a black hole bending light, space
a clock ticking, gears turning, steampunk
a flower blooming, time lapse
leaves falling from the trees in autumn
ice melting in the sun
a mirror shattering into pieces
paint splashing in slow motion
ink dropping into water, swirling
smoke rising from a chimney
a campfire under the stars
a tent in the mountains, morning mist
a bridge over the river, golden gate
the eiffel tower in paris at sunset
the pyramids of egypt in the desert
the great wall of china covered in snow
a gondola in venice, canals
a tuk tuk driving through the streets of bangkok
a yellow taxi in manhattan
a red double decker bus in london
a windmill in the netherlands, tulip fields
a camel walking in the dunes
an elephant spraying water
a giraffe eating leaves
a zebra running with the herd
a shark swimming near the surface
a turtle swimming over a coral reef
a frog jumping into a pond
a snake slithering on the sand
a bee collecting pollen from a flower
a spider spinning a web, morning dew
a peacock spreading its feathers
a parrot talking, colorful feathers
a hamster running in a wheel
a rabbit hopping in the meadow
a deer drinking water from a stream
a wolf howling at the moon
an eagle soaring above the canyon
a hummingbird hovering near a flower
very detailed, realistic textures, volumetric lighting
wide shot, establishing shot, epic scale
vertical video, short clip, loop
`;

/** A CLIP-format vocabulary: token → id and the merge rules in rank order (`"a b"`). */
export interface BpeVocab {
  readonly vocab: Record<string, number>;
  readonly merges: string[];
}

/** Options of {@link buildBpeVocab}. */
export interface BuildBpeVocabOptions {
  /** How many merges to learn (default 1000); fewer when the corpus has no pair left. */
  readonly merges?: number;
  /** Training text (default {@link BPE_TRAINING_CORPUS}). */
  readonly corpus?: string;
}

/**
 * Learns a BPE vocabulary in CLIP's layout from the embedded corpus. Deterministic: the same
 * options always give the same ids. Training counts adjacent symbol pairs over the corpus words
 * (CLIP-normalised and pre-tokenized, `</w>` on the last symbol), merges the most frequent pair
 * (ties: the smaller `"a b"` string), and repeats. A pair whose concatenation is already a token
 * is never merged, so every merge adds exactly one new token.
 *
 * @throws RangeError unless `merges` is an integer from 0 up
 * @example
 * const { vocab, merges } = buildBpeVocab();   // 512 + ~1000 + 2 tokens
 * vocab['a</w>'] === 320; vocab['<|endoftext|>'] === merges.length + 513;
 */
export function buildBpeVocab(options: BuildBpeVocabOptions = {}): BpeVocab {
  const target = options.merges ?? 1000;
  if (!Number.isInteger(target) || target < 0) {
    throw new RangeError(`buildBpeVocab: \`merges\` must be an integer from 0 up, got ${target}`);
  }

  const tokens: string[] = [];
  const base = bytesToUnicode().map(([, char]) => char);
  tokens.push(...base, ...base.map((char) => char + END_OF_WORD));
  const known = new Set(tokens);

  // Unique words with their counts, in order of first appearance (keeps training deterministic).
  const counts = new Map<string, number>();
  for (const piece of preTokenize(normalizeClipText(options.corpus ?? BPE_TRAINING_CORPUS))) {
    counts.set(piece.text, (counts.get(piece.text) ?? 0) + 1);
  }
  const words = [...counts].map(([text, count]) => {
    const symbols = Array.from(text);
    symbols[symbols.length - 1] += END_OF_WORD;
    return { symbols, count };
  });

  const merges: string[] = [];
  while (merges.length < target) {
    const pairs = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i < symbols.length - 1; i++) {
        const a = symbols[i]!;
        const b = symbols[i + 1]!;
        if (known.has(a + b)) continue;
        const key = `${a} ${b}`;
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, count] of pairs) {
      if (count > bestCount || (count === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === undefined) break;
    const [first, second] = best.split(' ') as [string, string];
    for (const word of words) word.symbols = mergePair(word.symbols, first, second);
    merges.push(best);
    tokens.push(first + second);
    known.add(first + second);
  }

  tokens.push(CLIP_BOS_TOKEN, CLIP_EOS_TOKEN);
  const vocab: Record<string, number> = {};
  tokens.forEach((token, id) => {
    vocab[token] = id;
  });
  return { vocab, merges };
}

// Same left-to-right rule as the tokenizer's BPE loop, so training and encoding agree.
function mergePair(symbols: string[], first: string, second: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; ) {
    if (symbols[i] === first && i < symbols.length - 1 && symbols[i + 1] === second) {
      out.push(first + second);
      i += 2;
    } else {
      out.push(symbols[i]!);
      i += 1;
    }
  }
  return out;
}

/** How HF writes a special token in special_tokens_map.json (and, with `__type`, in tokenizer_config.json). */
function addedToken(content: string, withType: boolean): Record<string, unknown> {
  return { ...(withType ? { __type: 'AddedToken' } : {}), content, lstrip: false, normalized: true, rstrip: false, single_word: false };
}

/** `json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)` for a flat token → id object. */
function pythonSortedJson(vocab: Readonly<Record<string, number>>): string {
  // Written by hand: JS objects put integer-like keys ("0"…"9") first, Python sorts by code point.
  const keys = Object.keys(vocab).sort();
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((key) => `  ${JSON.stringify(key)}: ${vocab[key]!}`).join(',\n')}\n}`;
}

/**
 * Writes a tokenizer folder as Hugging Face's `CLIPTokenizer.save_pretrained` does for
 * openai/clip-vit-large-patch14 (SD 1.x `tokenizer/`): `vocab.json` (keys sorted, indent 2),
 * `merges.txt` (`#version: 0.2` header, one rule per line), `special_tokens_map.json` and
 * `tokenizer_config.json` (model_max_length 77, pad_token `<|endoftext|>`). Creates `dir` if needed.
 *
 * @param vocab the result of {@link buildBpeVocab} (or any CLIP-format vocabulary)
 * @throws Error for a vocabulary without `<|startoftext|>`/`<|endoftext|>` or a malformed merge rule
 * @example
 * await writeTokenizerFolder('models/tiny/tokenizer', buildBpeVocab());
 * const tokenizer = await ClipTokenizer.load('models/tiny/tokenizer');
 */
export async function writeTokenizerFolder(dir: string, vocab: BpeVocab): Promise<void> {
  for (const token of [CLIP_BOS_TOKEN, CLIP_EOS_TOKEN]) {
    if (!(token in vocab.vocab)) throw new Error(`writeTokenizerFolder: the vocabulary has no ${token} token`);
  }
  vocab.merges.forEach((merge, index) => {
    if (!/^\S+ \S+$/u.test(merge)) throw new Error(`writeTokenizerFolder: merge ${index + 1} ${JSON.stringify(merge)} is not two symbols separated by one space`);
  });
  const special = {
    bos_token: addedToken(CLIP_BOS_TOKEN, false),
    eos_token: addedToken(CLIP_EOS_TOKEN, false),
    pad_token: CLIP_EOS_TOKEN,
    unk_token: addedToken(CLIP_EOS_TOKEN, false),
  };
  const config = {
    add_prefix_space: false,
    bos_token: addedToken(CLIP_BOS_TOKEN, true),
    do_lower_case: true,
    eos_token: addedToken(CLIP_EOS_TOKEN, true),
    errors: 'replace',
    model_max_length: CLIP_MAX_LENGTH,
    name_or_path: 'reelbot/builtin-clip-bpe',
    pad_token: CLIP_EOS_TOKEN,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: addedToken(CLIP_EOS_TOKEN, true),
  };
  await mkdir(dir, { recursive: true });
  await Promise.all([
    writeFile(join(dir, 'vocab.json'), `${pythonSortedJson(vocab.vocab)}\n`),
    writeFile(join(dir, 'merges.txt'), ['#version: 0.2', ...vocab.merges].join('\n') + '\n'),
    writeFile(join(dir, 'special_tokens_map.json'), `${JSON.stringify(special, null, 2)}\n`),
    writeFile(join(dir, 'tokenizer_config.json'), `${JSON.stringify(config, null, 2)}\n`),
  ]);
}
