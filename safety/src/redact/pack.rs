//! The pattern pack: well-known credential formats and the context-gated entropy net.

use aho_corasick::MatchKind;
use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, PatternID, meta};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

use super::{RedactionStats, shannon_entropy};
use crate::policy::PolicyError;
use crate::policy::raw::{RawEntropy, RawRedaction};

/// One credential format.
#[derive(Debug, Clone)]
pub struct PatternRule {
    /// Stable id, used in `[REDACTED:id]`.
    pub id: String,
    /// What it detects.
    pub description: String,
    regex: meta::Regex,
    /// Every match contains one of these (lowercase; matched ASCII case-insensitively).
    pub keywords: Vec<String>,
    /// `Some(b)`: every match starts at most `b` bytes before an occurrence of one of the
    /// keywords that it contains (proved from the regex at build time, see [`keyword_lead`]), so
    /// the regex is only tried, anchored, at those positions. `None`: no such bound is known
    /// (or the rule has no keywords), and the regex scans the whole text.
    lead: Option<usize>,
    /// The shortest match, in bytes.
    min_len: usize,
    secret_group: Option<usize>,
    min_entropy: Option<f64>,
    replacement: Vec<u8>,
    /// Lines this rule must redact.
    pub examples: Vec<String>,
    /// Lines that must come out unchanged.
    pub counter_examples: Vec<String>,
}

/// The entropy net: only values right after key-like context are judged.
#[derive(Debug, Clone)]
struct EntropyNet {
    /// Tried anchored at each keyword occurrence; group 1 is the value.
    context: meta::Regex,
    keywords: Vec<String>,
    min_length: usize,
    /// The shortest text the context regex matches.
    min_len: usize,
    threshold: f64,
    examples: Vec<String>,
    counter_examples: Vec<String>,
}

/// The compiled pattern pack of a policy bundle.
#[derive(Debug, Clone)]
pub struct PatternPack {
    rules: Vec<PatternRule>,
    keywords: Option<KeywordIndex>,
    entropy: Option<EntropyNet>,
}

/// The keyword prefilter (gitleaks' trick): one Aho-Corasick pass over the text finds where
/// keywords occur, and only the rules (and the entropy net) with a keyword present run their
/// regex; a rule with a known [`PatternRule::lead`] runs it only, anchored, at the few
/// positions its keywords allow. A lazy DFA over 140 alternated regexes runs at ~200 MB/s on
/// code; this pass runs at several times that.
#[derive(Debug, Clone)]
struct KeywordIndex {
    /// Driven by hand in [`KeywordIndex::scan`]: every keyword ending at each position
    /// (overlapping semantics), without the iterator machinery of `find_overlapping_iter`.
    automaton: DFA,
    /// The unanchored start state (checked at build time).
    start: aho_corasick::automaton::StateID,
    /// The longest keyword, in bytes.
    longest: usize,
    /// For each keyword, the slots it enables: rule indices, and `rules.len()` for the net.
    enables: Vec<Vec<usize>>,
    /// Slots without keywords: they always run.
    always: Vec<usize>,
}

/// Which rules, and whether the entropy net, can match a text, and where their keywords start:
/// the keyword prefilter's answer.
#[derive(Debug)]
pub(crate) struct Candidates {
    /// One flag per rule, then one for the entropy net.
    slots: Vec<bool>,
    /// Where the entropy net's keywords start, ascending.
    entropy_at: Vec<usize>,
    /// Per slot, where its keywords start, ascending (duplicates possible):
    /// `starts[offsets[slot]..offsets[slot + 1]]`.
    offsets: Vec<usize>,
    starts: Vec<usize>,
}

impl Candidates {
    pub(crate) fn any_rule(&self) -> bool {
        self.slots
            .split_last()
            .is_some_and(|(_, rules)| rules.contains(&true))
    }

    pub(crate) fn entropy(&self) -> bool {
        self.slots.last().copied().unwrap_or(false)
    }

    /// Where the keywords of `slot` start in `[from, to)`, ascending.
    fn starts_in(&self, slot: usize, from: usize, to: usize) -> &[usize] {
        let (Some(&lo), Some(&hi)) = (self.offsets.get(slot), self.offsets.get(slot + 1)) else {
            return &[];
        };
        let all = self.starts.get(lo..hi).unwrap_or_default();
        let a = all.partition_point(|&s| s < from);
        let b = all.partition_point(|&s| s < to);
        all.get(a..b).unwrap_or_default()
    }
}

const PLACEHOLDER_ENTROPY: &[u8] = b"[REDACTED:entropy]";

/// A rule's regex, configured as `regex::bytes::RegexBuilder` with Unicode off would (same
/// semantics), and its syntax tree. Errors read as the `regex` crate writes them.
fn build(pattern: &str) -> Result<(meta::Regex, Hir), String> {
    let message = || match regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(1 << 23)
        .build()
    {
        Err(e) => e.to_string(),
        Ok(_) => "cannot compile".to_owned(),
    };
    let syntax = syntax::Config::new().unicode(false).utf8(false);
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|_| message())?;
    let regex = meta::Builder::new()
        .syntax(syntax)
        .configure(
            meta::Config::new()
                .match_kind(regex_automata::MatchKind::LeftmostFirst)
                .utf8_empty(false)
                .nfa_size_limit(Some(1 << 23))
                .hybrid_cache_capacity(1 << 23),
        )
        .build_from_hir(&hir)
        .map_err(|_| message())?;
    Ok((regex, hir))
}

/// How far before a keyword occurrence it contains a match of `hir` can start, if that is
/// bounded. The regex is read as a concatenation `e1 e2 ... en` (groups flattened); at the first
/// `j` where every match of `ej ... en` begins with a literal that contains one of `keywords`
/// (ASCII case-insensitively), the bound is the longest `e1 ... e(j-1)` can be plus the furthest
/// such keyword into its literal. `\b(ghp_...)` gives 0, `https://hooks\.slack\.com/...` with
/// keyword `hooks.slack.com` gives 8, `\b([a-f0-9]{32}-us\d)` with keyword `-us` gives 32; a
/// leading `\s*` before the keyword, or no keywords, gives `None`.
fn keyword_lead(hir: &Hir, keywords: &[String]) -> Option<usize> {
    fn flatten(hir: &Hir, out: &mut Vec<Hir>) {
        match hir.kind() {
            HirKind::Concat(subs) => subs.iter().for_each(|h| flatten(h, out)),
            HirKind::Capture(c) => flatten(&c.sub, out),
            _ => out.push(hir.clone()),
        }
    }
    if keywords.is_empty() || hir.properties().minimum_len().is_none_or(|n| n == 0) {
        return None;
    }
    let mut parts = Vec::new();
    flatten(&fold_case(hir), &mut parts);
    let mut lead = 0usize;
    for j in 0..parts.len() {
        let rest = Hir::concat(parts.get(j..)?.to_vec());
        if let Some(offset) = keyword_offset(&rest, keywords) {
            return lead.checked_add(offset);
        }
        lead = lead.checked_add(parts.get(j)?.properties().maximum_len()?)?;
    }
    None
}

/// `hir` with every byte and class mapped to ASCII lowercase: it matches the lowercased matches
/// of `hir` (and is only read for its literals and lengths). `(?i)authorization` is one literal
/// instead of 8,192.
fn fold_case(hir: &Hir) -> Hir {
    use regex_syntax::hir::{Capture, ClassBytes, ClassBytesRange, Repetition};
    match hir.kind() {
        HirKind::Literal(lit) => Hir::literal(lit.0.to_ascii_lowercase()),
        HirKind::Class(regex_syntax::hir::Class::Bytes(class)) => {
            let mut lowered = ClassBytes::empty();
            for range in class.iter() {
                for b in range.start()..=range.end() {
                    let l = b.to_ascii_lowercase();
                    lowered.push(ClassBytesRange::new(l, l));
                }
            }
            Hir::class(regex_syntax::hir::Class::Bytes(lowered))
        }
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(fold_case(&rep.sub)),
        }),
        HirKind::Capture(cap) => Hir::capture(Capture {
            index: cap.index,
            name: cap.name.clone(),
            sub: Box::new(fold_case(&cap.sub)),
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(fold_case).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(fold_case).collect()),
        _ => hir.clone(),
    }
}

/// If every match of `hir` begins with a literal that contains one of `keywords`: how far into
/// its literal the first keyword starts, at most.
fn keyword_offset(hir: &Hir, keywords: &[String]) -> Option<usize> {
    let mut extractor = Extractor::new();
    extractor
        .kind(ExtractKind::Prefix)
        .limit_class(16)
        .limit_total(1024);
    let seq = extractor.extract(hir);
    let literals = seq.literals()?;
    if literals.is_empty() {
        return None;
    }
    let mut furthest = 0;
    for lit in literals {
        let lower = lit.as_bytes().to_ascii_lowercase();
        let first = keywords
            .iter()
            .filter_map(|k| memchr::memmem::find(&lower, k.as_bytes()))
            .min()?;
        furthest = furthest.max(first);
    }
    Some(furthest)
}

impl PatternPack {
    /// An empty pack (no patterns, no entropy net).
    pub fn empty() -> Self {
        PatternPack {
            rules: Vec::new(),
            keywords: None,
            entropy: None,
        }
    }

    pub(crate) fn compile(
        raw: &RawRedaction,
        file: &str,
        line_of: impl Fn(usize) -> usize,
    ) -> Result<Self, PolicyError> {
        let err = |at: usize, rule: &str, message: String| PolicyError::Invalid {
            file: file.to_owned(),
            line: line_of(at),
            rule: rule.to_owned(),
            message,
        };
        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut seen = std::collections::HashSet::new();
        for spanned in &raw.rule {
            let at = spanned.span().start;
            let r = spanned.get_ref();
            let id = format!("redaction.{}", r.id);
            if !r
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(
                    at,
                    &id,
                    "rule ids use letters, digits, `-` and `_`".into(),
                ));
            }
            if !seen.insert(r.id.clone()) {
                return Err(err(at, &id, "defined twice".into()));
            }
            let (regex, hir) = build(&r.regex).map_err(|e| {
                err(
                    at,
                    &id,
                    format!("invalid regex: {}", e.lines().last().unwrap_or("").trim()),
                )
            })?;
            if let Some(g) = r.secret_group
                && (g == 0 || g >= regex.group_info().group_len(PatternID::ZERO))
            {
                return Err(err(
                    at,
                    &id,
                    format!("secret_group {g} does not exist in the regex"),
                ));
            }
            if r.examples.is_empty() {
                return Err(err(
                    at,
                    &id,
                    "a rule needs at least one example it redacts".into(),
                ));
            }
            let keywords = check_keywords(&r.keywords, &r.examples).map_err(|m| err(at, &id, m))?;
            let lead = keyword_lead(&hir, &keywords);
            let min_len = hir.properties().minimum_len().unwrap_or(usize::MAX);
            rules.push(PatternRule {
                id: r.id.clone(),
                description: r.description.clone(),
                regex,
                keywords,
                lead,
                min_len,
                secret_group: r.secret_group,
                min_entropy: r.entropy,
                replacement: format!("[REDACTED:{}]", r.id).into_bytes(),
                examples: r.examples.clone(),
                counter_examples: r.counter_examples.clone(),
            });
        }
        let entropy = match &raw.entropy {
            None => None,
            Some(e) => Some(compile_entropy(e).map_err(|m| err(0, "redaction.entropy", m))?),
        };
        let keywords = KeywordIndex::new(&rules, entropy.as_ref()).map_err(|m| {
            err(
                0,
                "redaction",
                format!("cannot build the keyword index: {m}"),
            )
        })?;
        Ok(PatternPack {
            rules,
            keywords,
            entropy,
        })
    }

    /// Number of pattern rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the pack has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, for tests and documentation.
    pub fn rules(&self) -> &[PatternRule] {
        &self.rules
    }

    /// The entropy net's own examples and counter-examples.
    pub fn entropy_examples(&self) -> (&[String], &[String]) {
        match &self.entropy {
            Some(e) => (&e.examples, &e.counter_examples),
            None => (&[], &[]),
        }
    }

    /// The shortest text any rule or the entropy net can match (`usize::MAX`: none can).
    pub(crate) fn min_match_len(&self) -> usize {
        let rules = self.rules.iter().map(|r| r.min_len);
        let net = self.entropy.iter().map(|n| n.min_len);
        rules.chain(net).min().unwrap_or(usize::MAX)
    }

    /// One Aho-Corasick pass over the text: which rules, and whether the net, can match, and
    /// where their keywords start.
    pub(crate) fn candidates(&self, input: &[u8]) -> Candidates {
        let slot_count = self.rules.len() + 1;
        let mut slots = vec![false; slot_count];
        let mut entropy_at = Vec::new();
        let Some(index) = &self.keywords else {
            return Candidates {
                slots,
                entropy_at,
                offsets: Vec::new(),
                starts: Vec::new(),
            };
        };
        for &slot in &index.always {
            if let Some(s) = slots.get_mut(slot) {
                *s = true;
            }
        }
        // Every keyword occurrence, as (start, keyword).
        let mut hits: Vec<(usize, usize)> = Vec::new();
        index.scan(input, &mut hits);
        // Per slot, the starts of its keywords (a counting sort into one array).
        let mut offsets = vec![0usize; slot_count + 1];
        for &(_, k) in &hits {
            for &slot in index.enables.get(k).map_or(&[][..], Vec::as_slice) {
                if let Some(c) = offsets.get_mut(slot + 1) {
                    *c += 1;
                }
            }
        }
        for slot in 0..slot_count {
            let (Some(&count), Some(&before)) = (offsets.get(slot + 1), offsets.get(slot)) else {
                continue;
            };
            if count > 0
                && let Some(s) = slots.get_mut(slot)
            {
                *s = true;
            }
            if let Some(c) = offsets.get_mut(slot + 1) {
                *c = before + count;
            }
        }
        let mut starts = vec![0usize; offsets.last().copied().unwrap_or(0)];
        let mut fill: Vec<usize> = offsets.clone();
        for &(start, k) in &hits {
            for &slot in index.enables.get(k).map_or(&[][..], Vec::as_slice) {
                if let Some(at) = fill.get_mut(slot)
                    && let Some(s) = starts.get_mut(*at)
                {
                    *s = start;
                    *at += 1;
                }
            }
        }
        // The automaton reports keywords by their end; starts of keywords of different lengths
        // can come out of order, but only by less than the longest keyword: an insertion sort
        // is linear here.
        for w in offsets.windows(2) {
            if let [lo, hi] = *w
                && let Some(range) = starts.get_mut(lo..hi)
            {
                for i in 1..range.len() {
                    let mut j = i;
                    while j > 0 && range.get(j - 1) > range.get(j) {
                        range.swap(j - 1, j);
                        j -= 1;
                    }
                }
            }
        }
        let net_slot = self.rules.len();
        if self.entropy.is_some()
            && let (Some(&lo), Some(&hi)) = (offsets.get(net_slot), offsets.get(net_slot + 1))
        {
            entropy_at.extend_from_slice(starts.get(lo..hi).unwrap_or_default());
            entropy_at.dedup();
        }
        if let Some(net) = slots.last_mut() {
            *net = self.entropy.is_some() && (*net || !entropy_at.is_empty());
        }
        Candidates {
            slots,
            entropy_at,
            offsets,
            starts,
        }
    }

    /// Applies the candidate rules, in pack order, each to the previous one's output. `input`
    /// is the text `candidates` were computed for, from byte `base` on.
    pub(crate) fn replace_patterns(
        &self,
        input: &[u8],
        base: usize,
        candidates: &Candidates,
        stats: &mut RedactionStats,
    ) -> Option<Vec<u8>> {
        let mut current: Option<Vec<u8>> = None;
        // Once a rule changed the text, the keyword positions are those of the new text.
        let mut moved: Option<Candidates> = None;
        for (slot, (rule, _)) in self
            .rules
            .iter()
            .zip(&candidates.slots)
            .enumerate()
            .filter(|(_, (_, on))| **on)
        {
            let text = current.as_deref().unwrap_or(input);
            let replaced = match rule.lead {
                None => rule.replace(text, stats),
                Some(lead) => {
                    let starts = match &moved {
                        Some(c) => c.starts_in(slot, 0, text.len()),
                        None => candidates.starts_in(slot, base, base + text.len()),
                    };
                    let shift = if moved.is_some() { 0 } else { base };
                    rule.replace_at(text, starts, shift, lead, stats)
                }
            };
            if let Some(out) = replaced {
                moved = Some(self.candidates(&out));
                current = Some(out);
            }
        }
        current
    }

    /// The entropy net: the context regex, tried anchored where each of its keywords starts.
    /// `skip` holds the placeholder spans, which the net never reads or overwrites.
    pub(crate) fn replace_entropy(
        &self,
        input: &[u8],
        candidates: &Candidates,
        skip: &[(usize, usize)],
        stats: &mut RedactionStats,
    ) -> Option<Vec<u8>> {
        let net = self.entropy.as_ref()?;
        let inside = |at: usize| skip.iter().any(|&(start, end)| start <= at && at < end);
        let mut caps = net.context.create_captures();
        let mut out: Option<Vec<u8>> = None;
        let mut last = 0;
        // Without keywords, the net tries every position (slow; the default pack has keywords).
        let everywhere: Vec<usize>;
        let positions: &[usize] = if net.keywords.is_empty() {
            everywhere = (0..input.len()).collect();
            &everywhere
        } else {
            &candidates.entropy_at
        };
        for &at in positions {
            if at < last || inside(at) {
                continue;
            }
            let search = Input::new(input).range(at..).anchored(Anchored::Yes);
            net.context.search_captures(&search, &mut caps);
            let Some(value) = caps.get_group(1) else {
                continue;
            };
            let bytes = &input[value.start..value.end];
            // `x = some.method(...)` is code: a value followed by `(` is a call, not a secret.
            if input.get(value.end) == Some(&b'(') || is_identifier_chain(bytes) {
                continue;
            }
            if !looks_like_secret(bytes, net.min_length, net.threshold) {
                continue;
            }
            if skip
                .iter()
                .any(|&(start, end)| start < value.end && value.start < end)
            {
                continue;
            }
            let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
            buf.extend_from_slice(&input[last..value.start]);
            buf.extend_from_slice(PLACEHOLDER_ENTROPY);
            last = value.end;
            stats.entropy += 1;
        }
        out.map(|mut buf| {
            buf.extend_from_slice(&input[last..]);
            buf
        })
    }
}

/// Builds a rule's output: the text with each accepted match's secret part replaced.
struct Replacer<'r> {
    rule: &'r PatternRule,
    out: Option<Vec<u8>>,
    last: usize,
}

impl Replacer<'_> {
    /// One match of the rule's regex (its captures).
    fn accept(&mut self, input: &[u8], caps: &Captures, stats: &mut RedactionStats) {
        let span = match self.rule.secret_group {
            Some(g) => caps.get_group(g),
            None => caps.get_match().map(|m| m.span()),
        };
        let Some(span) = span else {
            return;
        };
        if span.start < self.last {
            return;
        }
        let Some(secret) = input.get(span.start..span.end) else {
            return;
        };
        if let Some(min) = self.rule.min_entropy
            && shannon_entropy(secret) < min
        {
            return;
        }
        let buf = self
            .out
            .get_or_insert_with(|| Vec::with_capacity(input.len()));
        buf.extend_from_slice(input.get(self.last..span.start).unwrap_or_default());
        buf.extend_from_slice(&self.rule.replacement);
        self.last = span.end;
        stats.patterns += 1;
    }

    fn finish(self, input: &[u8]) -> Option<Vec<u8>> {
        let last = self.last;
        self.out.map(|mut buf| {
            buf.extend_from_slice(input.get(last..).unwrap_or_default());
            buf
        })
    }
}

impl PatternRule {
    /// Every match in the whole text (leftmost-first, non-overlapping).
    fn replace(&self, input: &[u8], stats: &mut RedactionStats) -> Option<Vec<u8>> {
        let mut r = Replacer {
            rule: self,
            out: None,
            last: 0,
        };
        for caps in self.regex.captures_iter(input) {
            r.accept(input, &caps, stats);
        }
        r.finish(input)
    }

    /// The same matches as [`PatternRule::replace`], trying the regex anchored only where a
    /// match can start: in `[k - lead, k]` for each keyword start `k` (`starts`, ascending, in
    /// coordinates `shift` bytes ahead of `input`'s). Every match contains a keyword that
    /// starts at most `lead` bytes after it, so every match start is tried; trying them in
    /// order and going on from each match's end is what the unanchored iterator does.
    fn replace_at(
        &self,
        input: &[u8],
        starts: &[usize],
        shift: usize,
        lead: usize,
        stats: &mut RedactionStats,
    ) -> Option<Vec<u8>> {
        if starts.is_empty() {
            return None;
        }
        let mut r = Replacer {
            rule: self,
            out: None,
            last: 0,
        };
        let mut caps = self.regex.create_captures();
        // Positions before `next` were tried already, or lie inside a match.
        let mut next = 0;
        for &k in starts {
            let k = k.saturating_sub(shift);
            let mut p = k.saturating_sub(lead).max(next);
            while p <= k && p < input.len() {
                let search = Input::new(input).range(p..).anchored(Anchored::Yes);
                // Most tries fail: ask the lazy DFA alone first, captures only on a match.
                if self.regex.search_half(&search).is_none() {
                    p += 1;
                    continue;
                }
                self.regex.search_captures(&search, &mut caps);
                match caps.get_match() {
                    Some(m) => {
                        r.accept(input, &caps, stats);
                        // Rules with a lead never match empty (`keyword_lead`).
                        p = m.end().max(p + 1);
                    }
                    None => p += 1,
                }
            }
            next = next.max(p);
        }
        r.finish(input)
    }
}

impl KeywordIndex {
    fn new(rules: &[PatternRule], entropy: Option<&EntropyNet>) -> Result<Option<Self>, String> {
        if rules.is_empty() && entropy.is_none() {
            return Ok(None);
        }
        let mut keywords: Vec<String> = Vec::new();
        let mut enables: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        let net = entropy.map(|net| (rules.len(), &net.keywords));
        let slots = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (i, &r.keywords))
            .chain(net);
        for (slot, words) in slots {
            if words.is_empty() {
                always.push(slot);
            }
            for word in words {
                match keywords.iter().position(|k| k == word) {
                    Some(k) => enables[k].push(slot),
                    None => {
                        keywords.push(word.clone());
                        enables.push(vec![slot]);
                    }
                }
            }
        }
        let automaton = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(&keywords)
            .map_err(|e| e.to_string())?;
        let start = automaton
            .start_state(aho_corasick::Anchored::No)
            .map_err(|e| e.to_string())?;
        let longest = keywords.iter().map(String::len).max().unwrap_or(0);
        Ok(Some(KeywordIndex {
            automaton,
            start,
            longest,
            enables,
            always,
        }))
    }

    /// Every keyword occurrence (overlapping) as `(start, keyword)`, appended to `hits`.
    ///
    /// The automaton is a DFA: one dependent table load per byte, so a single scan is bound by
    /// load latency, not by the instructions it runs. Four scans over four quarters of the text
    /// run interleaved in one loop to overlap those latencies. A quarter's scan starts
    /// `longest keyword - 1` bytes early, so that it sees every keyword ending in its quarter
    /// whole, and it reports only those: each occurrence is reported exactly once.
    fn scan(&self, input: &[u8], hits: &mut Vec<(usize, usize)>) {
        let n = input.len();
        if n < INTERLEAVE_MIN {
            self.scan_one(input, 0, 0, n, self.start, hits);
            return;
        }
        let q = n.div_ceil(STREAMS);
        let overlap = self.longest.saturating_sub(1);
        let own: [usize; STREAMS] = std::array::from_fn(|c| (c * q).min(n));
        let from: [usize; STREAMS] = std::array::from_fn(|c| own[c].saturating_sub(overlap));
        let to: [usize; STREAMS] = std::array::from_fn(|c| ((c + 1) * q).min(n));
        let steps = (0..STREAMS).map(|c| to[c] - from[c]).min().unwrap_or(0);
        let part = |c: usize| input.get(from[c]..from[c] + steps).unwrap_or_default();
        let dfa = &self.automaton;
        let no = aho_corasick::Anchored::No;
        let mut sid = [self.start; STREAMS];
        // Each quarter's hits apart, so that the concatenation comes out by end.
        let mut found: [Vec<(usize, usize)>; STREAMS] = Default::default();
        for (k, (((&b0, &b1), &b2), &b3)) in part(0)
            .iter()
            .zip(part(1))
            .zip(part(2))
            .zip(part(3))
            .enumerate()
        {
            sid[0] = dfa.next_state(no, sid[0], b0);
            sid[1] = dfa.next_state(no, sid[1], b1);
            sid[2] = dfa.next_state(no, sid[2], b2);
            sid[3] = dfa.next_state(no, sid[3], b3);
            if dfa.is_special(sid[0])
                | dfa.is_special(sid[1])
                | dfa.is_special(sid[2])
                | dfa.is_special(sid[3])
            {
                for (c, found) in found.iter_mut().enumerate() {
                    let at = from[c] + k;
                    if at >= own[c] {
                        self.report(sid[c], at, found);
                    }
                }
            }
        }
        for (c, found) in found.iter_mut().enumerate() {
            // The starts of the later quarters were scanned only to set up their state.
            let at = from[c] + steps;
            self.scan_one(input, at, own[c], to[c], sid[c], found);
            hits.append(found);
        }
    }

    /// One scan of `input[at..to]` from state `sid`, reporting keywords that end at `own` or
    /// later.
    fn scan_one(
        &self,
        input: &[u8],
        at: usize,
        own: usize,
        to: usize,
        mut sid: aho_corasick::automaton::StateID,
        hits: &mut Vec<(usize, usize)>,
    ) {
        let dfa = &self.automaton;
        let Some(bytes) = input.get(at..to) else {
            return;
        };
        for (k, &byte) in bytes.iter().enumerate() {
            sid = dfa.next_state(aho_corasick::Anchored::No, sid, byte);
            if dfa.is_special(sid) && at + k >= own {
                self.report(sid, at + k, hits);
            }
        }
    }

    /// The keywords that end at `at` in state `sid`. Without a prefilter only the dead state and
    /// the match states are special, and an unanchored automaton never dies.
    #[cold]
    #[inline(never)]
    fn report(
        &self,
        sid: aho_corasick::automaton::StateID,
        at: usize,
        hits: &mut Vec<(usize, usize)>,
    ) {
        let dfa = &self.automaton;
        if !dfa.is_match(sid) {
            return;
        }
        for m in 0..dfa.match_len(sid) {
            let pid = dfa.match_pattern(sid, m);
            hits.push((
                (at + 1).saturating_sub(dfa.pattern_len(pid)),
                pid.as_usize(),
            ));
        }
    }
}

/// Interleaved keyword scans ([`KeywordIndex::scan`]).
const STREAMS: usize = 4;
/// Below this many bytes, one scan.
const INTERLEAVE_MIN: usize = 4096;

/// Keywords are lowercase ASCII, and every example contains one: a keyword list that would
/// hide the rule's own examples from it is an error, not a silent miss.
fn check_keywords(keywords: &[String], examples: &[String]) -> Result<Vec<String>, String> {
    let keywords: Vec<String> = keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
    if let Some(bad) = keywords.iter().find(|k| k.len() < 2 || !k.is_ascii()) {
        return Err(format!(
            "keyword `{bad}` must be at least 2 ASCII characters"
        ));
    }
    if keywords.is_empty() {
        return Ok(keywords);
    }
    for example in examples {
        let lower = example.to_ascii_lowercase();
        if !keywords.iter().any(|k| lower.contains(k.as_str())) {
            return Err(format!(
                "example `{example}` contains none of the keywords {keywords:?}, so the keyword prefilter would skip it"
            ));
        }
    }
    Ok(keywords)
}

fn compile_entropy(raw: &RawEntropy) -> Result<EntropyNet, String> {
    let keywords = check_keywords(&raw.keywords, &raw.examples)?;
    let context = meta::Builder::new()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .nfa_size_limit(Some(1 << 23)),
        )
        .build(&raw.context)
        .map_err(|e| format!("invalid context regex: {e}"))?;
    let min_len = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(&raw.context)
        .map_err(|e| format!("invalid context regex: {e}"))?
        .properties()
        .minimum_len()
        .unwrap_or(usize::MAX);
    if context
        .group_info()
        .group_len(regex_automata::PatternID::ZERO)
        < 2
    {
        return Err("the context regex needs a capture group for the value".into());
    }
    if !(0.0..=8.0).contains(&raw.threshold) {
        return Err("the threshold must be between 0 and 8 bits".into());
    }
    Ok(EntropyNet {
        context,
        keywords,
        min_length: raw.min_length,
        min_len,
        threshold: raw.threshold,
        examples: raw.examples.clone(),
        counter_examples: raw.counter_examples.clone(),
    })
}

/// `self.colon2_token.clone`, `settings.api_v2`, `x25519_check_private_key_bytes`,
/// `DOT11_DIALOG_TOKEN`, `X509CertificateTemplatePrivateKeyFlag`: dotted chains and identifiers
/// built from words are code, not secrets.
fn is_identifier_chain(bytes: &[u8]) -> bool {
    let snake_case = bytes.iter().filter(|b| **b == b'_').count() >= 2
        && bytes
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    let dotted = bytes.contains(&b'.')
        && bytes.split(|b| *b == b'.').all(|segment| {
            segment
                .first()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                && segment
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        });
    snake_case || dotted || is_word_identifier(bytes)
}

/// An identifier made of words (`CamelCase`, `SCREAMING_SNAKE`, `X509KeyUsageFlags`). Two
/// signs, either one enough: the character class (lower, upper, digit, `_`) changes between
/// fewer than 40% of adjacent bytes (a random token changes at about 60%), or at least 90% of the
/// letters sit in camel-case words of three letters or more (`Key`, `Usage`, `HTTP`). Measured
/// on random mixed-case tokens, the two together misread about 4% of 16-byte tokens as
/// identifiers, under 1% of 32-byte ones. Single-case values need an `_` to count (random
/// lowercase-and-digit keys change class rarely), and hex never counts.
fn is_word_identifier(bytes: &[u8]) -> bool {
    if bytes.len() < 2
        || !bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return false;
    }
    let mixed_case =
        bytes.iter().any(u8::is_ascii_lowercase) && bytes.iter().any(u8::is_ascii_uppercase);
    let hex = !mixed_case && bytes.iter().all(u8::is_ascii_hexdigit);
    if hex || !(mixed_case || bytes.contains(&b'_')) {
        return false;
    }
    let class = |c: &u8| match c {
        b'a'..=b'z' => 0u8,
        b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let changes = bytes
        .windows(2)
        .filter(|w| class(&w[0]) != class(&w[1]))
        .count();
    changes * 5 < (bytes.len() - 1) * 2 || word_letters(bytes) * 10 >= letters(bytes) * 9
}

fn letters(bytes: &[u8]) -> usize {
    bytes.iter().filter(|c| c.is_ascii_alphabetic()).count()
}

/// Letters in camel-case words of at least three letters: `HTTPServer` is `HTTP` + `Server`,
/// `aB3dE` is five one-letter pieces.
fn word_letters(bytes: &[u8]) -> usize {
    let run =
        |from: usize, pred: fn(&u8) -> bool| bytes[from..].iter().take_while(|c| pred(c)).count();
    let mut total = 0;
    let mut i = 0;
    let mut word = |len: usize| {
        if len >= 3 {
            total += len;
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_lowercase() {
            let n = run(i, u8::is_ascii_lowercase);
            word(n);
            i += n;
        } else if c.is_ascii_uppercase() {
            let upper = run(i, u8::is_ascii_uppercase);
            let lower = run(i + upper, u8::is_ascii_lowercase);
            if lower == 0 {
                word(upper);
            } else {
                // The last capital starts the next word: `HTTPServer`.
                word(upper - 1);
                word(1 + lower);
            }
            i += upper + lower;
        } else {
            i += 1;
        }
    }
    total
}

/// A token that is long, mixes letters and digits, and has high entropy. Identifiers
/// (`settings.SECRET_KEY`) and words have no digits and are never judged. Hex and UUID values
/// are judged like any other: right after `API_KEY=` they are usually keys.
fn looks_like_secret(bytes: &[u8], min_length: usize, threshold: f64) -> bool {
    if bytes.len() < min_length {
        return false;
    }
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_letter = bytes.iter().any(u8::is_ascii_alphabetic);
    has_digit && has_letter && shannon_entropy(bytes) >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, identifier: bool) {
        assert_eq!(is_identifier_chain(value.as_bytes()), identifier, "{value}");
    }

    #[test]
    fn identifiers_are_code_and_random_tokens_are_not() {
        check("DOT11_DIALOG_TOKEN", true);
        check("X509KeyUsageFlags", true);
        check("X509CertificateTemplatePrivateKeyFlag", true);
        check("MI_UserCredentials_0", true);
        check("HTTPServerConfig1", true);
        check("getApiKeyFromEnv2", true);
        check("self.colon2_token.clone", true);
        check("x25519_check_private_key_bytes", true);
        check("aB3dE6gH9jK2mN5p", false);
        check("7Fq2Lz9Xw4Rk8Vn3Bt6Hy1Jm", false);
        check("8f4b2c9d1e7a6f3b0c5d", false);
        check("7XK2M9QP4WZ8R3TB6YHN", false);
        check("4k9z2m7q1x8w3p6r5t0y", false);
        check("ABCDEF0123456789ABCD", false);
    }

    fn default_pack() -> std::sync::Arc<PatternPack> {
        crate::Policy::embedded_default()
            .map(|p| p.redaction())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Texts around every rule's examples: alone, repeated, glued to word characters and to
    /// other rules' examples, after and before filler, so that matches start at, before and
    /// after keyword positions and next to each other.
    fn texts(pack: &PatternPack) -> Vec<Vec<u8>> {
        let mut lines: Vec<String> = Vec::new();
        for r in pack.rules() {
            lines.extend(r.examples.iter().cloned());
            lines.extend(r.counter_examples.iter().cloned());
        }
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let next = &lines[(i + 1) % lines.len()];
            for text in [
                line.clone(),
                format!("{line}{line}"),
                format!("{line} {line}\n{next}"),
                format!("x{line}y"),
                format!("{next}{line}"),
                format!("key = {line}; token: {next}"),
                format!("{}{line}{}", "filler text ".repeat(40), " more".repeat(30)),
            ] {
                out.push(text.into_bytes());
            }
        }
        out.push(lines.join("\n").into_bytes());
        out.push(lines.concat().into_bytes());
        out
    }

    #[test]
    fn most_rules_are_tried_only_near_their_keywords() {
        let pack = default_pack();
        let leads: Vec<(&str, Option<usize>)> = pack
            .rules()
            .iter()
            .map(|r| (r.id.as_str(), r.lead))
            .collect();
        let lead = |id: &str| leads.iter().find(|(i, _)| *i == id).and_then(|(_, l)| *l);
        assert_eq!(lead("github-pat"), Some(0));
        assert_eq!(lead("aws-secret-access-key"), Some(0));
        assert_eq!(lead("mailchimp-key"), Some(32));
        assert_eq!(lead("url-password"), Some(21));
        assert_eq!(lead("slack-webhook"), Some(8));
        assert_eq!(lead("bearer-header"), Some(0));
        assert_eq!(lead("gcp-service-account-key"), Some(1));
        // No keywords: scans everything. A `\s*` or `+` before the keyword: no bound.
        assert_eq!(lead("discord-bot-token"), None);
        assert_eq!(lead("ethereum-private-key"), None);
        let without: Vec<&str> = leads
            .iter()
            .filter(|(_, l)| l.is_none())
            .map(|(i, _)| *i)
            .collect();
        assert!(without.len() <= 6, "rules without a lead: {without:?}");
    }

    #[test]
    fn anchored_tries_find_what_the_full_scan_finds() {
        let pack = default_pack();
        let mut checked = 0;
        for text in texts(&pack) {
            let candidates = pack.candidates(&text);
            for (slot, rule) in pack.rules().iter().enumerate() {
                let Some(lead) = rule.lead else {
                    continue;
                };
                let mut full = RedactionStats::default();
                let mut near = RedactionStats::default();
                let expected = rule.replace(&text, &mut full);
                let starts = candidates.starts_in(slot, 0, text.len());
                let got = rule.replace_at(&text, starts, 0, lead, &mut near);
                assert_eq!(
                    got.as_deref().map(String::from_utf8_lossy),
                    expected.as_deref().map(String::from_utf8_lossy),
                    "rule {} on {:?}",
                    rule.id,
                    String::from_utf8_lossy(&text)
                );
                assert_eq!(near, full, "rule {}", rule.id);
                checked += usize::from(expected.is_some());
            }
        }
        assert!(checked > 500, "only {checked} redactions compared");
    }

    #[test]
    fn interleaved_keyword_scan_finds_every_occurrence_once() {
        let pack = default_pack();
        let Some(index) = &pack.keywords else {
            panic!("the default pack has keywords");
        };
        let reference = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(
                pack.rules()
                    .iter()
                    .flat_map(|r| r.keywords.iter())
                    .chain(pack.entropy.iter().flat_map(|n| n.keywords.iter())),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        // Keywords everywhere, across the quarter boundaries of every length around
        // INTERLEAVE_MIN; the longest keyword straddles a boundary at some length.
        let unit = "AKIA x_key=1 pypi-AgEIcHlwaS5vcmc -----BEGIN sk-proj- Token: ";
        for len in [
            0,
            1,
            7,
            INTERLEAVE_MIN - 1,
            INTERLEAVE_MIN,
            INTERLEAVE_MIN + 3,
            9001,
            20_011,
        ] {
            let text: Vec<u8> = unit.bytes().cycle().take(len).collect();
            let mut hits = Vec::new();
            index.scan(&text, &mut hits);
            let mut got: Vec<(usize, usize)> = hits
                .iter()
                .map(|&(start, k)| {
                    (
                        start,
                        start
                            + index
                                .automaton
                                .pattern_len(aho_corasick::PatternID::new_unchecked(k)),
                    )
                })
                .collect();
            got.sort_unstable();
            let mut want: Vec<(usize, usize)> = reference
                .find_overlapping_iter(&text)
                .map(|m| (m.start(), m.end()))
                .collect();
            want.sort_unstable();
            want.dedup();
            got.dedup();
            assert_eq!(
                got.len(),
                hits.len(),
                "a keyword reported twice at length {len}"
            );
            assert_eq!(got, want, "length {len}");
        }
    }

    #[test]
    fn camel_case_words() {
        for (value, letters) in [
            ("HTTPServer", 10),
            ("aB3dE", 0),
            ("KeyUsage", 8),
            ("X509Key", 3),
            ("ABc", 0),
        ] {
            assert_eq!(word_letters(value.as_bytes()), letters, "{value}");
        }
    }
}
