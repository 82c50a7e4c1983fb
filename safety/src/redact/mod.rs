//! The redaction engine (security layer 4): nothing that leaves the VPS carries a secret.
//!
//! A [`Redactor`] is built once from the vault's `(name, value)` pairs and the policy's
//! [`PatternPack`]; applying it is pure and fast. Three passes, in order:
//!
//! 1. **Known values**: one Aho-Corasick automaton (leftmost-longest) over every registered
//!    value in every form it takes in text ([`variants`]); a hit becomes `SECRET_REF(name)`.
//! 2. **Patterns**: well-known credential formats (AWS, GitHub, Stripe, private keys, JWTs, URLs
//!    with passwords...), byte regexes with Unicode classes off. One Aho-Corasick pass over the
//!    rules' keywords decides which regexes run at all. Only the secret part of a match is replaced, by `[REDACTED:rule-id]`.
//! 3. **Entropy net**: a high-entropy token right after key-like context (`KEY=`, `token:`,
//!    `Bearer `, `password`) becomes `[REDACTED:entropy]`; plain code and prose are never judged.
//!
//! Redaction is deterministic and idempotent (`redact(redact(x)) == redact(x)`), and input with
//! nothing to redact comes out byte-identical (borrowed, not copied).

mod json;
mod pack;
mod shadow;
mod variants;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};

pub use json::JsonError;
pub use pack::{PatternPack, PatternRule};

/// The shortest secret value that can be redacted without destroying ordinary text.
pub const MIN_SECRET_LEN: usize = 8;

/// A redactor could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// A secret value is too short to be matched safely.
    #[error(
        "secret `{name}` is {len} bytes; values shorter than {MIN_SECRET_LEN} bytes cannot be redacted without destroying ordinary text"
    )]
    TooShort {
        /// The secret's name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The automaton for the known values could not be built.
    #[error("cannot build the secret matcher: {0}")]
    Automaton(String),
}

/// Redacts registered secret values and credential patterns.
#[derive(Clone)]
pub struct Redactor {
    values: Option<ValueIndex>,
    /// `SECRET_REF(name)` for each automaton pattern.
    replacements: Vec<Vec<u8>>,
    pack: Arc<PatternPack>,
    secret_count: usize,
    /// The shortest text anything can be found in: the shortest registered form, the shortest
    /// match of a rule or of the entropy net. Decoding only ever shortens text (every encoded
    /// sequence is at least as long as the bytes it decodes to), so a shorter input has no
    /// secret in any supported encoding either, and is returned as is.
    min_len: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the values (or their encodings).
        f.debug_struct("Redactor")
            .field("secrets", &self.secret_count)
            .field("forms", &self.replacements.len())
            .field("rules", &self.pack.len())
            .finish()
    }
}

/// What one redaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionStats {
    /// Known secret values replaced by `SECRET_REF(name)`.
    pub secrets: usize,
    /// Pattern matches replaced by `[REDACTED:rule-id]`.
    pub patterns: usize,
    /// Entropy-net hits replaced by `[REDACTED:entropy]`.
    pub entropy: usize,
}

impl RedactionStats {
    /// Whether anything was replaced.
    pub fn any(&self) -> bool {
        self.secrets + self.patterns + self.entropy > 0
    }

    fn add(&mut self, other: &RedactionStats) {
        self.secrets += other.secrets;
        self.patterns += other.patterns;
        self.entropy += other.entropy;
    }
}

impl Redactor {
    /// Builds a redactor for these secrets (name, value) and a pattern pack.
    pub fn new<N: AsRef<str>, V: AsRef<[u8]>>(
        secrets: &[(N, V)],
        pack: Arc<PatternPack>,
    ) -> Result<Self, RedactError> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut replacements = Vec::new();
        for (name, value) in secrets {
            let (name, value) = (name.as_ref(), value.as_ref());
            if value.len() < MIN_SECRET_LEN {
                return Err(RedactError::TooShort {
                    name: name.to_owned(),
                    len: value.len(),
                });
            }
            let replacement = format!("SECRET_REF({name})").into_bytes();
            for form in variants::all_forms(value) {
                patterns.push(form);
                replacements.push(replacement.clone());
            }
        }
        let values = if patterns.is_empty() {
            None
        } else {
            Some(ValueIndex::new(&patterns)?)
        };
        let shortest_form = patterns.iter().map(Vec::len).min().unwrap_or(usize::MAX);
        let min_len = shortest_form.min(pack.min_match_len());
        Ok(Redactor {
            values,
            replacements,
            pack,
            secret_count: secrets.len(),
            min_len,
        })
    }

    /// A redactor with no registered secrets (patterns and entropy net only).
    pub fn patterns_only(pack: Arc<PatternPack>) -> Self {
        let min_len = pack.min_match_len();
        Redactor {
            values: None,
            replacements: Vec::new(),
            pack,
            secret_count: 0,
            min_len,
        }
    }

    /// The pattern pack in use.
    pub fn pack(&self) -> &PatternPack {
        &self.pack
    }

    /// Redacts bytes; borrowed when nothing changed.
    pub fn redact<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        self.redact_with_stats(input).0
    }

    /// Redacts bytes and reports what was replaced.
    pub fn redact_with_stats<'a>(&self, input: &'a [u8]) -> (Cow<'a, [u8]>, RedactionStats) {
        let mut stats = RedactionStats::default();
        let mut current: Cow<'a, [u8]> = Cow::Borrowed(input);
        if input.len() < self.min_len {
            return (current, stats);
        }
        if let Some(index) = &self.values
            && let Some(mut out) = index.replace(&self.replacements, &current, &mut stats)
        {
            // Replacing a span can only remove decodable text, never create it, so a second
            // round finds nothing; the bound is for pathological input.
            for _ in 0..VALUE_FIXPOINT_ROUNDS {
                match index.replace(&self.replacements, &out, &mut stats) {
                    Some(again) => out = again,
                    None => break,
                }
            }
            current = Cow::Owned(out);
        }
        // Patterns and the entropy net never look inside a placeholder (`SECRET_REF(name)`,
        // `[REDACTED:id]`), whether this pass wrote it or the input already had it: that keeps
        // redaction idempotent and placeholders intact.
        let candidates = self.pack.candidates(&current);
        let mut skip = None;
        if candidates.any_rule() {
            let spans = placeholder_spans(&current);
            match map_segments(&current, &spans, |seg, base| {
                self.pack
                    .replace_patterns(seg, base, &candidates, &mut stats)
            }) {
                Some(out) => current = Cow::Owned(out),
                None => skip = Some(spans),
            }
        }
        if candidates.entropy() {
            // The net starts at keyword positions; if the patterns changed the text, find them
            // again in the new text.
            let candidates = match &current {
                Cow::Owned(_) if stats.patterns > 0 => self.pack.candidates(&current),
                _ => candidates,
            };
            // Unless the patterns changed the text, its placeholders are those found above.
            let skip = skip.unwrap_or_else(|| placeholder_spans(&current));
            if let Some(out) = self
                .pack
                .replace_entropy(&current, &candidates, &skip, &mut stats)
            {
                current = Cow::Owned(out);
                // A value the net rejected as a whole (say, too long and repetitive) can pass
                // once a nested key's value inside it became a placeholder, which ends it
                // earlier. Run the net again until nothing changes, so that redacting the
                // output is a no-op. Each round only turns text into placeholders; the bound
                // is for pathological input.
                for _ in 0..ENTROPY_FIXPOINT_ROUNDS {
                    let again = self.pack.candidates(&current);
                    if !again.entropy() {
                        break;
                    }
                    let skip = placeholder_spans(&current);
                    match self
                        .pack
                        .replace_entropy(&current, &again, &skip, &mut stats)
                    {
                        Some(out) => current = Cow::Owned(out),
                        None => break,
                    }
                }
            }
        }
        (current, stats)
    }

    /// Redacts text. Replacements are ASCII and only ever replace whole matches of ASCII
    /// patterns or exact values, so valid UTF-8 stays valid.
    pub fn redact_str<'a>(&self, input: &'a str) -> Cow<'a, str> {
        match self.redact(input.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(input),
            Cow::Owned(bytes) => Cow::Owned(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// The shortest input [`Redactor::redact`] can change.
    pub(crate) fn min_len(&self) -> usize {
        self.min_len
    }

    /// Redacts every string (keys and values) of a JSON document and keeps everything else
    /// byte-identical. Invalid JSON is an error, never passed through.
    pub fn redact_json<'a>(
        &self,
        body: &'a [u8],
    ) -> Result<(Cow<'a, [u8]>, RedactionStats), JsonError> {
        json::redact_json(self, body)
    }
}

/// How many extra entropy rounds [`Redactor::redact_with_stats`] runs at most.
const ENTROPY_FIXPOINT_ROUNDS: usize = 8;

/// How many extra known-value rounds [`Redactor::redact_with_stats`] runs at most.
const VALUE_FIXPOINT_ROUNDS: usize = 4;

/// Finds registered values (every form of every secret) in text.
///
/// Aho-Corasick does the matching; a bitset over the hashed first eight bytes of every form only
/// decides *where* to ask it. Each text position whose eight-byte window hashes to a set bit gets
/// one anchored, leftmost-longest automaton search; every other position is skipped after a
/// multiply and a bit test. Every form is at least [`MIN_SECRET_LEN`] bytes, so a position where
/// a form starts always hashes to a set bit: the bitset can only cause extra searches, never a
/// missed value. Scanning left to right and taking the longest form at the first position that
/// has one is exactly leftmost-longest semantics.
///
/// The direct pass does not even hash every position: with a stride `k` (up to
/// [`MAX_STRIDE`], and at most the shortest form's length minus 7), a second bitset holds the
/// eight-byte windows at offsets `0..k` of every form, and only every `k`-th text position is
/// hashed against it. A form starting at `s` covers the sampled position `p` in `[s, s + k)`,
/// whose window is one of its own, so a form can only start in `(p - k, p]` of a sampled `p`
/// that hits; those `k` positions then get the first-window test above. Lossless like the
/// first bitset, at about an eighth of the hashing.
///
/// Why not an unanchored automaton: a DFA over ~11,000 forms (1,000 secrets) costs ~200 MB and a
/// second to build; the contiguous NFA is small but scans at half the speed. The anchored NFA
/// plus the bitset is small (a few MB), builds in ~50 ms and scans faster than the DFA.
///
/// Encodings that mix raw and escaped bytes, or break a value over lines, are found in decoded
/// shadows of the text ([`shadow`]); the same index is asked there, only at shadow positions
/// where a form could include a decoded byte, and a hit replaces the whole original span.
#[derive(Clone)]
struct ValueIndex {
    automaton: AhoCorasick,
    /// A fixed size, so that indexing it by a hash slot needs no bounds check.
    bits: Box<[u64; INDEX_WORDS]>,
    /// The eight-byte windows at offsets `0..stride` of every form.
    sampled: Box<[u64; INDEX_WORDS]>,
    /// Every `stride`-th position is hashed against `sampled` (1: every position, `bits` only).
    stride: usize,
    /// The longest form, in bytes.
    reach: usize,
}

/// log2 of the bitset size: 2^21 bits = 256 KiB, sparse enough that 11,000 forms set ~0.5%.
const INDEX_BITS: u32 = 21;
const INDEX_SHIFT: u32 = 64 - INDEX_BITS;
/// The bitset's size in 64-bit words.
const INDEX_WORDS: usize = 1 << (INDEX_BITS - 6);
/// The largest sampling stride: 8 windows per form set ~4% of the sampled bitset.
const MAX_STRIDE: usize = 8;
/// Fibonacci hashing multiplier (2^64 / golden ratio).
const INDEX_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl ValueIndex {
    fn new(forms: &[Vec<u8>]) -> Result<Self, RedactError> {
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .start_kind(StartKind::Anchored)
            .build(forms)
            .map_err(|e| RedactError::Automaton(e.to_string()))?;
        let empty = || -> Result<Box<[u64; INDEX_WORDS]>, RedactError> {
            vec![0u64; INDEX_WORDS]
                .into_boxed_slice()
                .try_into()
                .map_err(|_| RedactError::Automaton("cannot size the value bitset".to_owned()))
        };
        let mut bits = empty()?;
        let mut sampled = empty()?;
        let reach = forms.iter().map(Vec::len).max().unwrap_or(MIN_SECRET_LEN);
        let shortest = forms.iter().map(Vec::len).min().unwrap_or(MIN_SECRET_LEN);
        let stride = (shortest.saturating_sub(7)).clamp(1, MAX_STRIDE);
        for form in forms {
            let Some(window) = form.first_chunk::<8>() else {
                // Unreachable by construction (MIN_SECRET_LEN); refuse rather than miss values.
                return Err(RedactError::Automaton(format!(
                    "a secret form is shorter than {MIN_SECRET_LEN} bytes"
                )));
            };
            let h = Self::slot(window);
            bits[h >> 6] |= 1 << (h & 63);
            // Every form is at least `stride + 7` bytes long, so all these windows exist.
            for window in form.windows(8).take(stride) {
                if let Some(window) = window.first_chunk::<8>() {
                    let h = Self::slot(window);
                    sampled[h >> 6] |= 1 << (h & 63);
                }
            }
        }
        Ok(ValueIndex {
            automaton,
            bits,
            sampled,
            stride,
            reach,
        })
    }

    #[inline]
    fn slot(window: &[u8; 8]) -> usize {
        (u64::from_le_bytes(*window).wrapping_mul(INDEX_MULTIPLIER) >> INDEX_SHIFT) as usize
    }

    /// Whether a form may start with these eight bytes.
    #[inline(always)]
    fn may_start(&self, window: &[u8; 8]) -> bool {
        let h = Self::slot(window);
        // `h < 2^INDEX_BITS`, so `h >> 6 < INDEX_WORDS`: no bounds check.
        self.bits[h >> 6] & (1u64 << (h & 63)) != 0
    }

    /// The longest form starting exactly at `i`, if the bitset allows one there.
    #[inline]
    fn find_at(&self, haystack: &[u8], i: usize) -> Option<aho_corasick::Match> {
        let window = haystack.get(i..)?.first_chunk::<8>()?;
        if !self.may_start(window) {
            return None;
        }
        self.search_at(haystack, i)
    }

    /// The anchored automaton search at `i`, without the bitset test.
    #[inline]
    fn search_at(&self, haystack: &[u8], i: usize) -> Option<aho_corasick::Match> {
        let search = Input::new(haystack).range(i..).anchored(Anchored::Yes);
        self.automaton.find(search)
    }

    /// The first position at or after `from` whose eight bytes pass the bitset.
    #[inline]
    fn next_candidate(&self, input: &[u8], from: usize) -> Option<usize> {
        if self.stride <= 1 {
            let rest = input.get(from..)?;
            // A tight loop over the windows: a load, a multiply, a shift and a bit test.
            return rest
                .windows(8)
                .position(|w| w.first_chunk::<8>().is_some_and(|w| self.may_start(w)))
                .map(|k| from + k);
        }
        let k = self.stride;
        // The first sampled position that covers a start at `from`: the multiple of `k` in
        // `[from, from + k)`. Starts in `(p - k, p]` are covered by `p`.
        let mut p = from.div_ceil(k) * k;
        loop {
            let window = input.get(p..)?.first_chunk::<8>()?;
            let h = Self::slot(window);
            if self.sampled[h >> 6] & (1u64 << (h & 63)) != 0 {
                let lo = (p + 1).saturating_sub(k).max(from);
                for i in lo..=p {
                    if input
                        .get(i..)
                        .and_then(<[u8]>::first_chunk::<8>)
                        .is_some_and(|w| self.may_start(w))
                    {
                        return Some(i);
                    }
                }
            }
            p += k;
        }
    }

    /// Every (leftmost-longest, non-overlapping) form in `input`: `(start, end, pattern)`.
    fn find_direct(&self, input: &[u8], spans: &mut Vec<(usize, usize, usize)>) {
        let mut from = 0;
        while let Some(i) = self.next_candidate(input, from) {
            match self.search_at(input, i) {
                Some(m) => {
                    spans.push((i, m.end(), m.pattern().as_usize()));
                    from = m.end().max(i + 1);
                }
                None => from = i + 1,
            }
        }
    }

    /// Every form in a decoded shadow that includes a decoded byte, as original ranges.
    fn find_in_shadow(&self, shadow: &shadow::Shadow, spans: &mut Vec<(usize, usize, usize)>) {
        let bytes = &shadow.bytes;
        // A form that includes a decoded byte starts less than `reach` bytes before it.
        let mut next = 0;
        for &(start, end) in &shadow.changed {
            let from = start.saturating_sub(self.reach - 1).max(next);
            let to = end.max(start + 1).min(bytes.len());
            let mut i = from;
            while i < to {
                match self.find_at(bytes, i) {
                    Some(m) => {
                        if let Some((s, e)) = shadow.original(i, m.end()) {
                            spans.push((s, e, m.pattern().as_usize()));
                        }
                        i = m.end().max(i + 1);
                    }
                    None => i += 1,
                }
            }
            next = next.max(i);
        }
    }

    /// Replaces every form, in the text itself or in one of its decoded shadows, by its
    /// replacement; overlapping hits merge into one span, named by the first.
    fn replace(
        &self,
        replacements: &[Vec<u8>],
        input: &[u8],
        stats: &mut RedactionStats,
    ) -> Option<Vec<u8>> {
        let mut spans = Vec::new();
        self.find_direct(input, &mut spans);
        for shadow in shadow::shadows(input, self.reach) {
            self.find_in_shadow(&shadow, &mut spans);
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        let mut buf = Vec::with_capacity(input.len());
        let mut last = 0;
        let mut iter = spans.into_iter().peekable();
        while let Some((start, mut end, pattern)) = iter.next() {
            while let Some(&(s, e, _)) = iter.peek() {
                if s >= end {
                    break;
                }
                end = end.max(e);
                iter.next();
            }
            let (Some(before), Some(replacement)) =
                (input.get(last..start), replacements.get(pattern))
            else {
                continue;
            };
            buf.extend_from_slice(before);
            buf.extend_from_slice(replacement);
            last = end;
            stats.secrets += 1;
        }
        buf.extend_from_slice(input.get(last..).unwrap_or_default());
        Some(buf)
    }
}

/// The spans of placeholders in `input`: `SECRET_REF(name)` and `[REDACTED:id]`.
fn placeholder_spans(input: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    for (open, name_ok, close) in [
        (
            &b"SECRET_REF("[..],
            (|b: u8| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            }) as fn(u8) -> bool,
            b')',
        ),
        (
            &b"[REDACTED:"[..],
            (|b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')) as fn(u8) -> bool,
            b']',
        ),
    ] {
        for start in memchr::memmem::find_iter(input, open) {
            let body = &input[start + open.len()..];
            let len = body.iter().take(65).take_while(|&&b| name_ok(b)).count();
            if len > 0 && body.get(len) == Some(&close) {
                spans.push((start, start + open.len() + len + 1));
            }
        }
    }
    spans.sort_unstable();
    spans
}

/// Applies `f` to the text between placeholders (each with its offset in `input`); `None` when
/// nothing changed.
fn map_segments(
    input: &[u8],
    spans: &[(usize, usize)],
    mut f: impl FnMut(&[u8], usize) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    if spans.is_empty() {
        return f(input, 0);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut last = 0;
    for (start, end) in spans
        .iter()
        .copied()
        .chain(std::iter::once((input.len(), input.len())))
    {
        if start < last {
            continue;
        }
        let segment = &input[last..start];
        match f(segment, last) {
            Some(replaced) => {
                let buf = out.get_or_insert_with(|| input[..last].to_vec());
                buf.extend_from_slice(&replaced);
            }
            None => {
                if let Some(buf) = out.as_mut() {
                    buf.extend_from_slice(segment);
                }
            }
        }
        if let Some(buf) = out.as_mut() {
            buf.extend_from_slice(&input[start..end]);
        }
        last = end;
    }
    out
}

/// Shannon entropy of a byte string, in bits per byte.
pub(crate) fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / len;
            -p * p.log2()
        })
        .sum()
}
