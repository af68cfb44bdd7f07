/**
 * @file CLIP's text cleaning before tokenizing, as the reference does it: openai/CLIP
 * `simple_tokenizer.py` runs `whitespace_clean(basic_clean(text)).lower()` with
 * `basic_clean = ftfy.fix_text, then html.unescape(html.unescape(text)), strip`, and Hugging Face's
 * CLIPTokenizer runs ftfy + the same when ftfy is installed. Prompts from Slack arrive
 * HTML-escaped (`&amp;`, `&lt;`, `&gt;`), and phones type curly quotes, which CLIP's vocabulary has
 * as other tokens than `'` and `"` (`don’t` would not split as `don` + `'t`).
 *
 * Here: Python's `html.unescape` twice (its algorithm: numeric references with the HTML5 fixes for
 * C1 and invalid code points, named references longest-prefix first, the legacy names without `;`),
 * then ftfy's `uncurl_quotes`, NFC, whitespace runs to one space, trim, lower case.
 * Deviations, on purpose: the named references are HTML 4's 252 plus `&apos;` (Python knows all
 * 2,231 of HTML5; a rarer name such as `&NotEqual;` stays as written), and ftfy's other repairs
 * (mojibake, ligatures, full-width letters) are not made. ftfy uncurls before the unescaping, so
 * for a prompt containing `<` or `>` (where ftfy skips its own unescaping) `&rsquo;` stays curly in
 * the reference and becomes `'` here.
 */

// Python html.entities.name2codepoint (HTML 4) plus apos: name → code point (hex).
const NAMED = (
  'AElig:c6 Aacute:c1 Acirc:c2 Agrave:c0 Alpha:391 Aring:c5 Atilde:c3 Auml:c4 Beta:392 Ccedil:c7 ' +
  'Chi:3a7 Dagger:2021 Delta:394 ETH:d0 Eacute:c9 Ecirc:ca Egrave:c8 Epsilon:395 Eta:397 Euml:cb ' +
  'Gamma:393 Iacute:cd Icirc:ce Igrave:cc Iota:399 Iuml:cf Kappa:39a Lambda:39b Mu:39c Ntilde:d1 Nu:39d ' +
  'OElig:152 Oacute:d3 Ocirc:d4 Ograve:d2 Omega:3a9 Omicron:39f Oslash:d8 Otilde:d5 Ouml:d6 Phi:3a6 ' +
  'Pi:3a0 Prime:2033 Psi:3a8 Rho:3a1 Scaron:160 Sigma:3a3 THORN:de Tau:3a4 Theta:398 Uacute:da Ucirc:db ' +
  'Ugrave:d9 Upsilon:3a5 Uuml:dc Xi:39e Yacute:dd Yuml:178 Zeta:396 aacute:e1 acirc:e2 acute:b4 ' +
  'aelig:e6 agrave:e0 alefsym:2135 alpha:3b1 amp:26 and:2227 ang:2220 apos:27 aring:e5 asymp:2248 ' +
  'atilde:e3 auml:e4 bdquo:201e beta:3b2 brvbar:a6 bull:2022 cap:2229 ccedil:e7 cedil:b8 cent:a2 ' +
  'chi:3c7 circ:2c6 clubs:2663 cong:2245 copy:a9 crarr:21b5 cup:222a curren:a4 dArr:21d3 dagger:2020 ' +
  'darr:2193 deg:b0 delta:3b4 diams:2666 divide:f7 eacute:e9 ecirc:ea egrave:e8 empty:2205 emsp:2003 ' +
  'ensp:2002 epsilon:3b5 equiv:2261 eta:3b7 eth:f0 euml:eb euro:20ac exist:2203 fnof:192 forall:2200 ' +
  'frac12:bd frac14:bc frac34:be frasl:2044 gamma:3b3 ge:2265 gt:3e hArr:21d4 harr:2194 hearts:2665 ' +
  'hellip:2026 iacute:ed icirc:ee iexcl:a1 igrave:ec image:2111 infin:221e int:222b iota:3b9 iquest:bf ' +
  'isin:2208 iuml:ef kappa:3ba lArr:21d0 lambda:3bb lang:2329 laquo:ab larr:2190 lceil:2308 ldquo:201c ' +
  'le:2264 lfloor:230a lowast:2217 loz:25ca lrm:200e lsaquo:2039 lsquo:2018 lt:3c macr:af mdash:2014 ' +
  'micro:b5 middot:b7 minus:2212 mu:3bc nabla:2207 nbsp:a0 ndash:2013 ne:2260 ni:220b not:ac notin:2209 ' +
  'nsub:2284 ntilde:f1 nu:3bd oacute:f3 ocirc:f4 oelig:153 ograve:f2 oline:203e omega:3c9 omicron:3bf ' +
  'oplus:2295 or:2228 ordf:aa ordm:ba oslash:f8 otilde:f5 otimes:2297 ouml:f6 para:b6 part:2202 ' +
  'permil:2030 perp:22a5 phi:3c6 pi:3c0 piv:3d6 plusmn:b1 pound:a3 prime:2032 prod:220f prop:221d ' +
  'psi:3c8 quot:22 rArr:21d2 radic:221a rang:232a raquo:bb rarr:2192 rceil:2309 rdquo:201d real:211c ' +
  'reg:ae rfloor:230b rho:3c1 rlm:200f rsaquo:203a rsquo:2019 sbquo:201a scaron:161 sdot:22c5 sect:a7 ' +
  'shy:ad sigma:3c3 sigmaf:3c2 sim:223c spades:2660 sub:2282 sube:2286 sum:2211 sup:2283 sup1:b9 ' +
  'sup2:b2 sup3:b3 supe:2287 szlig:df tau:3c4 there4:2234 theta:3b8 thetasym:3d1 thinsp:2009 thorn:fe ' +
  'tilde:2dc times:d7 trade:2122 uArr:21d1 uacute:fa uarr:2191 ucirc:fb ugrave:f9 uml:a8 upsih:3d2 ' +
  'upsilon:3c5 uuml:fc weierp:2118 xi:3be yacute:fd yen:a5 yuml:ff zeta:3b6 zwj:200d zwnj:200c '
).trim();
const LEGACY = (
  'AElig AMP Aacute Acirc Agrave Aring Atilde Auml COPY Ccedil ETH Eacute Ecirc Egrave Euml GT Iacute ' +
  'Icirc Igrave Iuml LT Ntilde Oacute Ocirc Ograve Oslash Otilde Ouml QUOT REG THORN Uacute Ucirc ' +
  'Ugrave Uuml Yacute aacute acirc acute aelig agrave amp aring atilde auml brvbar ccedil cedil cent ' +
  'copy curren deg divide eacute ecirc egrave eth euml frac12 frac14 frac34 gt iacute icirc iexcl ' +
  'igrave iquest iuml laquo lt macr micro middot nbsp not ntilde oacute ocirc ograve ordf ordm oslash ' +
  'otilde ouml para plusmn pound quot raquo reg sect shy sup1 sup2 sup3 szlig thorn times uacute ucirc ' +
  'ugrave uml uuml yacute yen yuml '
).trim();

const NAMED_REFERENCES: ReadonlyMap<string, string> = (() => {
  const map = new Map<string, string>();
  for (const entry of NAMED.split(' ')) {
    const [name, hex] = entry.split(':') as [string, string];
    map.set(`${name};`, String.fromCodePoint(Number.parseInt(hex, 16)));
  }
  // The legacy names that HTML5 (and Python) also accept without a semicolon; HTML5's upper-case
  // spellings of six of them (AMP, COPY, GT, LT, QUOT, REG) with and without it.
  for (const name of LEGACY.split(' ')) {
    const value = map.get(`${name};`) ?? (map.get(`${name.toLowerCase()};`) as string);
    map.set(name, value);
    map.set(`${name};`, value);
  }
  return map;
})();

/** Python's `_invalid_charrefs`: numeric references the HTML5 parser maps elsewhere (C1 as Windows-1252). */
const INVALID_CHARREFS: ReadonlyMap<number, string> = new Map([
  [0x00, '\ufffd'], [0x0d, '\r'], [0x80, '\u20ac'], [0x81, '\x81'], [0x82, '\u201a'], [0x83, '\u0192'], [0x84, '\u201e'],
  [0x85, '\u2026'], [0x86, '\u2020'], [0x87, '\u2021'], [0x88, '\u02c6'], [0x89, '\u2030'], [0x8a, '\u0160'], [0x8b, '\u2039'],
  [0x8c, '\u0152'], [0x8d, '\x8d'], [0x8e, '\u017d'], [0x8f, '\x8f'], [0x90, '\x90'], [0x91, '\u2018'], [0x92, '\u2019'],
  [0x93, '\u201c'], [0x94, '\u201d'], [0x95, '\u2022'], [0x96, '\u2013'], [0x97, '\u2014'], [0x98, '\u02dc'], [0x99, '\u2122'],
  [0x9a, '\u0161'], [0x9b, '\u203a'], [0x9c, '\u0153'], [0x9d, '\x9d'], [0x9e, '\u017e'], [0x9f, '\u0178'],
]);

/** Python's `_invalid_codepoints`: numeric references that unescape to nothing. */
function isInvalidCodePoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) || n === 0xb || (n >= 0xe && n <= 0x1f) || (n >= 0x7f && n <= 0x9f) || (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe
  );
}

// Python's `_charref`: `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`.
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

/**
 * Python's `html.unescape(text)`: numeric and named character references replaced (named ones
 * from the HTML 4 table, see the file comment).
 * @example htmlUnescape('fish &amp;amp; chips') // 'fish &amp; chips'
 */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_match, ref: string) => {
    if (ref.startsWith('#')) {
      const hex = ref[1] === 'x' || ref[1] === 'X';
      const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
      const n = Number.parseInt(digits, hex ? 16 : 10);
      const fixed = INVALID_CHARREFS.get(n);
      if (fixed !== undefined) return fixed;
      if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return '\ufffd';
      if (isInvalidCodePoint(n)) return '';
      return String.fromCodePoint(n);
    }
    const whole = NAMED_REFERENCES.get(ref);
    if (whole !== undefined) return whole;
    // The longest name the reference starts with (as the standard defines it), the rest kept.
    for (let length = ref.length - 1; length > 1; length--) {
      const value = NAMED_REFERENCES.get(ref.slice(0, length));
      if (value !== undefined) return value + ref.slice(length);
    }
    return `&${ref}`;
  });
}

/** ftfy's `uncurl_quotes`: U+2018–U+201B → `'`, U+201C–U+201F → `"`. */
export function uncurlQuotes(text: string): string {
  return text.replace(/[\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
}

/**
 * CLIP's cleaning of a prompt before tokenizing: HTML-unescaped twice, quotes uncurled, NFC,
 * whitespace runs to one space, trimmed, lower-cased.
 * @example cleanClipText('Fish &amp;amp; chips, don’t  stop') // 'fish & chips, don\'t stop'
 */
export function cleanClipText(text: string): string {
  return uncurlQuotes(htmlUnescape(htmlUnescape(text))).normalize('NFC').replace(/\s+/gu, ' ').trim().toLowerCase();
}
