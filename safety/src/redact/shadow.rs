//! Decoded shadows: the text as a decoder would read it, mapped back to the original bytes.
//!
//! Real tools write a value in encodings that mix raw and escaped bytes however their escaper
//! likes (JS `encodeURIComponent` leaves `!*'()` raw, Python's `quote` leaves `/` raw, an HTML
//! escaper may write `&#39;`, `&#x27;` or `&apos;`), or break it over lines (`base64` wraps at
//! 76 columns, PEM at 64, quoted-printable with `=` soft breaks). Listing every mixture as a
//! form is hopeless; decoding is not. Each decoder here turns a stretch of text into its decoded
//! *shadow* and remembers where every shadow byte came from, so that a value found in the shadow
//! replaces the whole original span that encodes it.
//!
//! Decoding only runs where a cheap prefilter finds the decoder's own syntax (`%XX`, a valid
//! `&entity;`, `=\n`/`=XX`, an escaped backslash, a line break between long base64/hex runs),
//! and the known-value index is asked only at shadow positions where a match could include a
//! byte that decoding changed: anything else is the original text, which the direct pass has
//! already searched. One pass over the bytes ([`Sites::scan`]) finds the sites of every decoder
//! at once: 32 bytes at a time, vector compares flag every byte a decoder starts at (`%`, `&`,
//! `=`, `\\`, line feed), and each flagged byte is checked for its decoder's syntax on the
//! spot, so ordinary code (`a = &b;`, `x % 2`, `"\\n"`) opens no window and decodes nothing.

use memchr::memchr_iter;

/// A decoded stretch of text.
#[derive(Debug, Default)]
pub(crate) struct Shadow {
    /// The decoded bytes.
    pub(crate) bytes: Vec<u8>,
    /// Where each piece of `bytes` came from, in shadow order.
    pieces: Vec<Piece>,
    /// Shadow intervals `[start, end)` that differ from the original; an empty interval marks
    /// removed bytes (a line break) between `start - 1` and `start`.
    pub(crate) changed: Vec<(usize, usize)>,
}

/// A run of shadow bytes from one source range: either a verbatim copy or one decoded sequence.
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Shadow offset of the piece's first byte.
    at: usize,
    /// Original range the piece comes from.
    src: usize,
    src_end: usize,
    /// Verbatim: shadow byte `at + k` is original byte `src + k`.
    verbatim: bool,
}

impl Shadow {
    fn copy(&mut self, input: &[u8], base: usize, range: std::ops::Range<usize>) {
        let Some(bytes) = input.get(range.clone()) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        self.pieces.push(Piece {
            at: self.bytes.len(),
            src: base + range.start,
            src_end: base + range.end,
            verbatim: true,
        });
        self.bytes.extend_from_slice(bytes);
    }

    fn decoded(&mut self, base: usize, range: std::ops::Range<usize>, out: &[u8], changed: bool) {
        let at = self.bytes.len();
        if !out.is_empty() {
            self.pieces.push(Piece {
                at,
                src: base + range.start,
                src_end: base + range.end,
                verbatim: false,
            });
            self.bytes.extend_from_slice(out);
        }
        if changed {
            self.changed.push((at, self.bytes.len()));
        }
    }

    fn piece(&self, pos: usize) -> Option<&Piece> {
        let i = self.pieces.partition_point(|p| p.at <= pos);
        self.pieces.get(i.checked_sub(1)?)
    }

    /// The original range that shadow bytes `[start, end)` come from (whole decoded sequences
    /// at the edges).
    pub(crate) fn original(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let first = self.piece(start)?;
        let last = self.piece(end.checked_sub(1)?)?;
        let from = if first.verbatim {
            first.src + (start - first.at)
        } else {
            first.src
        };
        let to = if last.verbatim {
            last.src + (end - last.at)
        } else {
            last.src_end
        };
        Some((from, to))
    }
}

/// Every shadow of `input` worth searching. `reach` is the longest form the index matches, in
/// bytes: windows around each decodable sequence are wide enough for any form that includes it.
pub(crate) fn shadows(input: &[u8], reach: usize) -> Vec<Shadow> {
    let mut out = Vec::new();
    let sites = Sites::scan(input);
    if !sites.percent.is_empty() {
        percent(input, &sites.percent, reach, &mut out);
    }
    if !sites.html.is_empty() {
        html(input, &sites.html, reach, &mut out);
    }
    if !sites.qp.is_empty() {
        quoted_printable(input, &sites.qp, reach, &mut out);
    }
    if !sites.json.is_empty() {
        json_unescape(input, &sites.json, reach, &mut out);
    }
    if !sites.breaks.is_empty() {
        wrapped(input, sites.breaks, &mut out);
    }
    out
}

/// A byte some decoder's syntax starts at: `%XX`, `&entity;`, `=XX` and `=` line breaks, `\\`
/// escapes and escaped line breaks, raw line feeds (wrapped lines). Compares, not a table
/// lookup, so that a chunk of them vectorises.
#[inline(always)]
fn is_site_byte(b: u8) -> bool {
    (b == b'%') | (b == b'&') | (b == b'=') | (b == b'\\') | (b == b'\n')
}

/// Bytes [`Sites::scan`] classifies at once.
const LANES: usize = 32;

/// Every decodable sequence in a text, per decoder, as `[start, end)` in text order; for
/// wrapped lines, the line breaks (with the following indentation) between base64/hex runs.
#[derive(Debug, Default)]
struct Sites {
    percent: Vec<(usize, usize)>,
    html: Vec<(usize, usize)>,
    qp: Vec<(usize, usize)>,
    /// Escaped backslashes (`\\`), non-overlapping from the left.
    json: Vec<(usize, usize)>,
    breaks: Vec<(usize, usize)>,
}

impl Sites {
    /// One pass over `input` for all decoders.
    fn scan(input: &[u8]) -> Sites {
        let mut sites = Sites::default();
        // End of the last escaped backslash: `\\\\` is two of them, not three.
        let mut json_next = 0;
        // 32 bytes at a time: a flag per byte (vector compares), packed into a bit mask eight
        // flags per multiply, then only the set bits are visited. No per-hit search restarts,
        // which is what made one `memchr` pass per decoder slow on code, where `=` and line
        // feeds come every few dozen bytes.
        let mut chunks = input.chunks_exact(LANES);
        let mut base = 0;
        for chunk in &mut chunks {
            let mut flags = [0u8; LANES];
            for (f, &b) in flags.iter_mut().zip(chunk) {
                *f = u8::from(is_site_byte(b));
            }
            let mut mask = 0u32;
            for (k, word) in flags.chunks_exact(8).enumerate() {
                if let Some(word) = word.first_chunk::<8>() {
                    // Byte j's flag (bit 8j) lands on bit 56 + j; no two products collide.
                    let packed =
                        u64::from_le_bytes(*word).wrapping_mul(0x0102_0408_1020_4080) >> 56;
                    mask |= (packed as u32) << (8 * k);
                }
            }
            while mask != 0 {
                let i = base + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                sites.visit(input, i, &mut json_next);
            }
            base += LANES;
        }
        for (k, &b) in chunks.remainder().iter().enumerate() {
            if is_site_byte(b) {
                sites.visit(input, base + k, &mut json_next);
            }
        }
        sites
    }

    /// Checks the site byte at `input[i]` for its decoder's syntax.
    fn visit(&mut self, input: &[u8], i: usize, json_next: &mut usize) {
        let Some(&b) = input.get(i) else {
            return;
        };
        match b {
            b'%' => {
                if hex_pair(input, i + 1).is_some() {
                    self.percent.push((i, i + 3));
                }
            }
            b'&' => {
                if let Some((len, _)) = entity(input, i) {
                    self.html.push((i, i + len));
                }
            }
            b'=' => {
                if let Some(len) = qp_len(input, i) {
                    self.qp.push((i, i + len));
                }
            }
            b'\\' => match input.get(i + 1) {
                Some(b'\\') if i >= *json_next => {
                    self.json.push((i, i + 2));
                    *json_next = i + 2;
                }
                Some(b'n') => escaped_break(input, i, &mut self.breaks),
                _ => {}
            },
            _ => raw_break(input, i, &mut self.breaks),
        }
    }
}

/// Merges windows `[site - before, site_end + after)` into disjoint ranges.
fn windows(
    sites: impl Iterator<Item = (usize, usize)>,
    len: usize,
    before: usize,
    after: usize,
) -> Vec<(usize, usize)> {
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in sites {
        let lo = start.saturating_sub(before);
        let hi = end.saturating_add(after).min(len);
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `XX` at `input[i..i + 2]` as a byte.
fn hex_pair(input: &[u8], i: usize) -> Option<u8> {
    let hi = hex_val(*input.get(i)?)?;
    let lo = hex_val(*input.get(i + 1)?)?;
    Some(hi << 4 | lo)
}

/// Decodes `input[lo..hi]` with `step`, which recognises one encoded sequence at a position
/// (returning its length and decoded bytes); everything else is copied. `marker` is the byte
/// every sequence starts with.
fn decode_window(
    input: &[u8],
    (lo, hi): (usize, usize),
    marker: u8,
    mut step: impl FnMut(&[u8], usize) -> Option<(usize, Vec<u8>)>,
) -> Shadow {
    decode_window_marking(input, (lo, hi), marker, |w, i| {
        step(w, i).map(|(len, bytes)| (len, bytes, true))
    })
}

/// [`decode_window`] where `step` also tells whether a sequence counts as changed: a match in
/// the shadow is only looked for around sequences that do.
fn decode_window_marking(
    input: &[u8],
    (lo, hi): (usize, usize),
    marker: u8,
    mut step: impl FnMut(&[u8], usize) -> Option<(usize, Vec<u8>, bool)>,
) -> Shadow {
    let mut shadow = Shadow::default();
    let Some(window) = input.get(lo..hi) else {
        return shadow;
    };
    let mut copied = 0;
    for i in memchr_iter(marker, window) {
        if i < copied {
            continue;
        }
        if let Some((len, bytes, changed)) = step(window, i) {
            shadow.copy(window, lo, copied..i);
            shadow.decoded(lo, i..i + len, &bytes, changed);
            copied = i + len;
        }
    }
    shadow.copy(window, lo, copied..window.len());
    shadow
}

fn push_if_changed(out: &mut Vec<Shadow>, shadow: Shadow) {
    if !shadow.changed.is_empty() {
        out.push(shadow);
    }
}

/// Percent-encoding, whatever the encoder left raw, in either case of hex digit. Where the
/// text has `+`, a second shadow reads it as a space (HTML forms, Python's `quote_plus`).
fn percent(input: &[u8], sites: &[(usize, usize)], reach: usize, out: &mut Vec<Shadow>) {
    // A decoded byte comes from at most 3 bytes of text.
    for window in windows(sites.iter().copied(), input.len(), 3 * reach, 3 * reach) {
        let has_plus = input
            .get(window.0..window.1)
            .is_some_and(|w| w.contains(&b'+'));
        push_if_changed(
            out,
            decode_window(input, window, b'%', |w, i| {
                hex_pair(w, i + 1).map(|b| (3, vec![b]))
            }),
        );
        if has_plus {
            let mut shadow = Shadow::default();
            let Some(text) = input.get(window.0..window.1) else {
                continue;
            };
            let mut copied = 0;
            for (i, &b) in text.iter().enumerate() {
                let decoded = match b {
                    b'%' if i >= copied => hex_pair(text, i + 1).map(|b| (3, b)),
                    b'+' if i >= copied => Some((1, b' ')),
                    _ => None,
                };
                if let Some((len, byte)) = decoded {
                    shadow.copy(text, window.0, copied..i);
                    shadow.decoded(window.0, i..i + len, &[byte], true);
                    copied = i + len;
                }
            }
            shadow.copy(text, window.0, copied..text.len());
            push_if_changed(out, shadow);
        }
    }
}

/// The longest HTML character reference decoded (`&#x10FFFF;`, `&#1114111;`, `&Ntilde;`).
const MAX_ENTITY: usize = 10;

/// Named character references as escapers write them: the five of XML, Latin-1 (what PHP's
/// `htmlentities` writes) and HTML5's names for ASCII punctuation.
const NAMED: &[(&str, u32)] = &[
    ("amp", 38),
    ("lt", 60),
    ("gt", 62),
    ("quot", 34),
    ("apos", 39),
    ("excl", 33),
    ("num", 35),
    ("dollar", 36),
    ("percnt", 37),
    ("lpar", 40),
    ("rpar", 41),
    ("ast", 42),
    ("plus", 43),
    ("comma", 44),
    ("period", 46),
    ("sol", 47),
    ("colon", 58),
    ("semi", 59),
    ("equals", 61),
    ("quest", 63),
    ("commat", 64),
    ("lsqb", 91),
    ("bsol", 92),
    ("rsqb", 93),
    ("Hat", 94),
    ("lowbar", 95),
    ("grave", 96),
    ("lcub", 123),
    ("verbar", 124),
    ("rcub", 125),
    ("tilde", 732),
    ("euro", 8364),
    ("ndash", 8211),
    ("mdash", 8212),
    ("lsquo", 8216),
    ("rsquo", 8217),
    ("ldquo", 8220),
    ("rdquo", 8221),
    ("hellip", 8230),
    ("bull", 8226),
    ("trade", 8482),
];

/// Latin-1 names, U+00A0 to U+00FF in order.
const LATIN1: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
    "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
    "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
    "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
    "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc",
    "uuml", "yacute", "thorn", "yuml",
];

/// The character reference starting at `input[i]` (an `&`): its length and code point.
fn entity(input: &[u8], i: usize) -> Option<(usize, char)> {
    let rest = input.get(i + 1..)?;
    // A reference is `#` or an ASCII letter or digit, then only letters and digits up to the
    // `;`: stop at the first other byte (`&self)`, `&& x`), the usual case in code.
    let semi = rest
        .iter()
        .take(MAX_ENTITY)
        .enumerate()
        .find(|&(k, &b)| !(b.is_ascii_alphanumeric() || (k == 0 && b == b'#')))
        .filter(|&(_, &b)| b == b';')?
        .0;
    let body = rest.get(..semi)?;
    let code = match body {
        [b'#', b'x' | b'X', hex @ ..] if !hex.is_empty() => {
            u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
        }
        [b'#', dec @ ..] if !dec.is_empty() && dec.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(dec).ok()?.parse().ok()?
        }
        // Names are 2 to 8 ASCII letters and digits; most `&...;` in text are code (`&x);`).
        _ if body.len() < 2 || body.len() > 8 || !body.iter().all(u8::is_ascii_alphanumeric) => {
            return None;
        }
        _ => {
            let name = std::str::from_utf8(body).ok()?;
            NAMED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, c)| c)
                .or_else(|| {
                    LATIN1
                        .iter()
                        .position(|n| *n == name)
                        .and_then(|k| u32::try_from(k).ok())
                        .map(|k| 0xA0 + k)
                })?
        }
    };
    // `&#x+41;` would parse; only digits are a reference.
    if let [b'#', b'x' | b'X', hex @ ..] = body
        && !hex.iter().all(u8::is_ascii_hexdigit)
    {
        return None;
    }
    let c = char::from_u32(code).filter(|&c| c != '\0')?;
    Some((semi + 2, c))
}

/// HTML character references: named, decimal and hex.
fn html(input: &[u8], sites: &[(usize, usize)], reach: usize, out: &mut Vec<Shadow>) {
    // A decoded byte comes from at most MAX_ENTITY + 2 bytes of text.
    let span = (MAX_ENTITY + 2) * reach;
    for window in windows(sites.iter().copied(), input.len(), span, span) {
        push_if_changed(
            out,
            decode_window(input, window, b'&', |w, i| {
                entity(w, i).map(|(len, c)| {
                    let mut buf = [0u8; 4];
                    (len, c.encode_utf8(&mut buf).as_bytes().to_vec())
                })
            }),
        );
    }
}

/// The length of the quoted-printable sequence at `input[i]` (an `=`), if it is one.
fn qp_len(input: &[u8], i: usize) -> Option<usize> {
    match input.get(i + 1..) {
        Some([b'\r', b'\n', ..]) => Some(3),
        Some([b'\n', ..]) => Some(2),
        _ => hex_pair(input, i + 1).map(|_| 3),
    }
}

/// Quoted-printable: soft line breaks (`=\r\n`, `=\n`) removed, `=XX` decoded.
fn quoted_printable(input: &[u8], sites: &[(usize, usize)], reach: usize, out: &mut Vec<Shadow>) {
    fn step(w: &[u8], i: usize) -> Option<(usize, Vec<u8>)> {
        match w.get(i + 1..) {
            Some([b'\r', b'\n', ..]) => Some((3, Vec::new())),
            Some([b'\n', ..]) => Some((2, Vec::new())),
            _ => hex_pair(w, i + 1).map(|b| (3, vec![b])),
        }
    }
    // A decoded byte comes from at most 3 bytes, and soft breaks come at most every other byte.
    let span = 5 * reach;
    for window in windows(sites.iter().copied(), input.len(), span, span) {
        push_if_changed(out, decode_window(input, window, b'=', step));
    }
}

/// One level of JSON string escaping undone, where the text has an escaped backslash (`\\`):
/// a JSON document inside a JSON string (tool-call `arguments`) carries values escaped twice.
/// Once undone, the value is in one of the escaped forms the index knows.
fn json_unescape(input: &[u8], sites: &[(usize, usize)], reach: usize, out: &mut Vec<Shadow>) {
    fn step(w: &[u8], i: usize) -> Option<(usize, Vec<u8>)> {
        let byte = |b: u8| Some((2, vec![b]));
        match w.get(i + 1)? {
            b'\\' => byte(b'\\'),
            b'"' => byte(b'"'),
            b'/' => byte(b'/'),
            b'n' => byte(b'\n'),
            b'r' => byte(b'\r'),
            b't' => byte(b'\t'),
            b'b' => byte(0x08),
            b'f' => byte(0x0c),
            b'u' => {
                let unit = |at: usize| -> Option<u32> {
                    let hex = w.get(at..at + 4)?;
                    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
                };
                let hi = unit(i + 2)?;
                let (len, code) = if (0xD800..0xDC00).contains(&hi) {
                    let lo = match w.get(i + 6..i + 8) {
                        Some(b"\\u") => unit(i + 8)?,
                        _ => return None,
                    };
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    (12, 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                } else {
                    (6, hi)
                };
                let c = char::from_u32(code)?;
                let mut buf = [0u8; 4];
                Some((len, c.encode_utf8(&mut buf).as_bytes().to_vec()))
            }
            _ => None,
        }
    }
    // A decoded byte comes from at most 6 bytes (`\u0041`).
    let span = 6 * reach;
    for (mut lo, hi) in windows(sites.iter().copied(), input.len(), span, span) {
        // Never start inside a run of backslashes: their pairing decides what they mean.
        while lo > 0 && input.get(lo - 1) == Some(&b'\\') {
            lo -= 1;
        }
        // Only an escaped backslash marks a change: every form escaped once differs from the
        // value only in sequences that start with a backslash, which escaping twice doubles.
        push_if_changed(
            out,
            decode_window_marking(input, (lo, hi), b'\\', |w, i| {
                step(w, i).map(|(len, bytes)| (len, bytes, w.get(i + 1) == Some(&b'\\')))
            }),
        );
    }
}

/// The shortest run of base64/hex characters before a line break that counts as a wrapped
/// line: long enough that ordinary text rarely ends a line so, short enough for any real
/// wrap width (`base64` 76, PEM 64, `xxd -p` 60, `openssl` 64).
const MIN_WRAPPED_LINE: usize = 16;

/// Base64 (standard and URL-safe, with padding) and hex characters.
const B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_');
        b += 1;
    }
    t
};

fn is_b64(b: u8) -> bool {
    B64[usize::from(b)]
}

/// Records the line break whose `\n` token starts at `newline_start` and whose text goes on at
/// `after` (indentation skipped), if a base64/hex run of [`MIN_WRAPPED_LINE`] ends the line
/// before it and another starts after it.
fn consider_break(
    input: &[u8],
    newline_start: usize,
    after: usize,
    breaks: &mut Vec<(usize, usize)>,
) {
    // A `\r` token may come first.
    let start = cr_before(input, newline_start);
    let Some(line) = input.get(..start) else {
        return;
    };
    // From the end: ordinary lines fail within a few bytes.
    if line.len() < MIN_WRAPPED_LINE
        || !line.iter().rev().take(MIN_WRAPPED_LINE).all(|&b| is_b64(b))
    {
        return;
    }
    let mut end = after;
    while matches!(input.get(end), Some(b' ' | b'\t')) {
        end += 1;
    }
    if input.get(end).is_some_and(|&b| is_b64(b)) {
        breaks.push((start, end));
    }
}

/// A raw line feed at `i`.
fn raw_break(input: &[u8], i: usize, breaks: &mut Vec<(usize, usize)>) {
    // Cheap test first: most lines end in something else.
    let before = match i.checked_sub(1).and_then(|j| input.get(j)) {
        Some(b'\r') => i.checked_sub(2).and_then(|j| input.get(j)),
        other => other,
    };
    if before.is_some_and(|&b| is_b64(b)) {
        consider_break(input, i, i + 1, breaks);
    }
}

/// An escaped line feed: backslash-n at `i`, once or more escaped.
fn escaped_break(input: &[u8], i: usize, breaks: &mut Vec<(usize, usize)>) {
    let mut start = i;
    while start > 0 && input.get(start - 1) == Some(&b'\\') {
        start -= 1;
    }
    if input
        .get(start.wrapping_sub(1))
        .is_some_and(|&b| is_b64(b) || b == b'r')
    {
        consider_break(input, start, i + 2, breaks);
    }
}

/// Base64 and hex wrapped over lines, with LF or CRLF breaks, written raw or JSON-escaped
/// (`\n`, `\r\n`, `\\n`), continuation lines indented or not: the runs are joined. `breaks` are
/// the breaks [`Sites::scan`] found.
fn wrapped(input: &[u8], mut breaks: Vec<(usize, usize)>, out: &mut Vec<Shadow>) {
    if breaks.is_empty() {
        return;
    }
    breaks.sort_unstable();
    breaks.dedup_by_key(|b| b.0);
    // Group breaks into blocks: a block goes on while the line after a break is all base64
    // up to the next break.
    let mut k = 0;
    while let Some(&(first_start, _)) = breaks.get(k) {
        let mut run_start = first_start;
        while run_start > 0 && input.get(run_start - 1).is_some_and(|&b| is_b64(b)) {
            run_start -= 1;
        }
        let mut shadow = Shadow::default();
        let mut copied = run_start;
        while let Some(&(start, end)) = breaks.get(k) {
            shadow.copy(input, 0, copied..start);
            shadow.decoded(0, start..end, &[], true);
            copied = end;
            k += 1;
            let mut run_end = end;
            while input.get(run_end).is_some_and(|&b| is_b64(b)) {
                run_end += 1;
            }
            match breaks.get(k) {
                Some(&(next, _)) if next == run_end || cr_before(input, run_end) == next => {}
                _ => {
                    shadow.copy(input, 0, copied..run_end);
                    break;
                }
            }
        }
        push_if_changed(out, shadow);
    }
}

/// Where a line break token that ends at `newline` really starts: before a `\r` (raw or
/// escaped with the same backslashes as the `\n`).
fn cr_before(input: &[u8], newline: usize) -> usize {
    // Raw CR.
    if newline > 0 && input.get(newline - 1) == Some(&b'\r') {
        return newline - 1;
    }
    // Escaped: `newline` is at the first backslash of `\...\n`; look for `\...\r` before it.
    let slashes = input
        .get(newline..)
        .map_or(0, |rest| rest.iter().take_while(|&&b| b == b'\\').count());
    if slashes > 0
        && newline > slashes
        && input.get(newline - 1) == Some(&b'r')
        && input
            .get(newline - 1 - slashes..newline - 1)
            .is_some_and(|s| s.iter().all(|&b| b == b'\\'))
        && input
            .get(newline.wrapping_sub(2 + slashes))
            .is_none_or(|&b| b != b'\\')
    {
        return newline - 1 - slashes;
    }
    newline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(input: &[u8]) -> Vec<Vec<u8>> {
        shadows(input, 40).into_iter().map(|s| s.bytes).collect()
    }

    #[test]
    fn each_decoder_reads_its_syntax() {
        assert!(decoded(b"a=p%40ss%2fword&b").contains(&b"a=p@ss/word&b".to_vec()));
        assert!(decoded(b"x p%40ss+word").contains(&b"x p@ss word".to_vec()));
        assert!(decoded(b"&lt;p&#64;s&#x73;&eacute;&gt;").contains(&"<p@ssé>".as_bytes().to_vec()));
        assert!(decoded(b"abc=\r\ndef=3D").contains(&b"abcdef=".to_vec()));
        assert!(decoded(br#"{\\\"k\\\": 1}"#).contains(&br#"{\"k\": 1}"#.to_vec()));
        let b64 = "x: QUJDREVGR0hJSktMTU5PUFFS\r\n  U1RVVldYWVo=\n";
        assert!(
            decoded(b64.as_bytes()).contains(&b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=".to_vec())
        );
        let escaped = r#""QUJDREVGR0hJSktMTU5PUFFS\r\nU1RVVldYWVo=""#;
        assert!(
            decoded(escaped.as_bytes()).contains(&b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=".to_vec())
        );
    }

    #[test]
    fn shadow_ranges_map_back_to_whole_sequences() {
        let input = b"go p%40ss%2Fword!";
        let shadows = shadows(input, 40);
        let s = &shadows[0];
        let at = s.bytes.windows(3).position(|w| w == b"@ss").unwrap();
        assert_eq!(s.original(at, at + 3), Some((4, 9)));
        let end = s.bytes.len();
        assert_eq!(s.original(at - 1, end), Some((3, input.len())));
    }

    #[test]
    fn clean_text_has_no_shadow() {
        let text = b"fn main() { let a = &b; println!(\"{}\\n\", a % 2); }\nplain words\n";
        assert!(shadows(text, 40).is_empty());
    }
}
