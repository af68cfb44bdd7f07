/**
 * CLIP's text cleaning against Python: the expected strings are `html.unescape(html.unescape(s))`
 * as Python 3's `html` module prints them (recorded here, no Python at test time).
 */
import { describe, expect, test } from 'vitest';
import { cleanClipText, htmlUnescape, uncurlQuotes } from '../../src/engine/text/clean-text.js';

// [input, Python's html.unescape(html.unescape(input))]
const PYTHON: [string, string][] = [
  ['fish &amp; chips', 'fish & chips'],
  ['fish &amp;amp; chips', 'fish & chips'],
  ['&lt;3 &gt;_&lt;', '<3 >_<'],
  ['&quot;hi&quot; &apos;x&apos;', '"hi" \'x\''],
  ['caf&eacute; &Eacute;T&Eacute;', 'café ÉTÉ'],
  ['&notit; &not;', '¬it; ¬'],
  ['&amp', '&'],
  ['&AMP; &COPY &copy;', '& © ©'],
  ['&#39;s &#x27;t &#X41; &#65', "'s 't A A"],
  ['&#128;&#150;&#0;&#x110000;&#xD800;&#1;&#x10FFFF;&#xFFFE;', '€–\ufffd\ufffd\ufffd'],
  ['&nbsp;x&nbsp;', '\u00a0x\u00a0'],
  ['&unknown; & &; &#; &#x;', '&unknown; & &; &#; &#x;'],
  ['&hellip;', '…'],
  ['a&ampb &ampere; &amp;lt;', 'a&b &ere; <'],
  ['&copy2024 &frac12x', '©2024 ½x'],
];

describe('htmlUnescape twice is Python html.unescape twice', () => {
  test.each(PYTHON)('%s', (input, expected) => {
    expect(htmlUnescape(htmlUnescape(input))).toBe(expected);
  });
  test('text without & comes back as it is', () => {
    const text = 'a corgi surfing';
    expect(htmlUnescape(text)).toBe(text);
  });
});

describe('cleanClipText', () => {
  test('straightens curly quotes as ftfy does (U+2018–U+201B, U+201C–U+201F)', () => {
    expect(uncurlQuotes('\u201chere\u2019s a test\u201d \u201a\u201b \u201e\u201f')).toBe('"here\'s a test" \'\' ""');
  });
  test('unescapes, uncurls, NFC, collapses whitespace, trims and lower-cases', () => {
    expect(cleanClipText('  Fish &amp;amp; Chips,\n\tdon\u2019t  STOP  ')).toBe("fish & chips, don't stop");
    expect(cleanClipText('Cafe\u0301')).toBe('café');
    expect(cleanClipText('it&rsquo;s')).toBe("it's"); // unescaped to ’, then straightened, as ftfy + html.unescape give
    expect(cleanClipText('&NotEqual;')).toBe('&notequal;'); // an HTML5-only name is kept (see the file comment)
  });
});
