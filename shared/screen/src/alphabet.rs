//! Alphabet reduction for a rule set: the same matches, a far smaller automaton.
//!
//! The Latin rules are full of Unicode classes (`[^\p{L}\p{N}]+` between every two words,
//! `\w`), and each occurrence compiles to hundreds of UTF-8 states: compiling the rule table
//! as written took ~0.5 s and ~60 MiB at cold start. But a rule set can only tell characters
//! apart through the classes and literals it contains. So, once at start-up, the non-ASCII
//! characters (and the ASCII controls other than `\t \n \v \f \r`) are split into blocks whose
//! members every class and literal of the set treats alike, each block gets one byte, and
//! every class is rewritten over that byte alphabet. A text is mapped character by character
//! (one character → one byte, so counted repetitions such as `.{0,80}` count the same) and
//! matched by one `regex_automata::meta::Regex` per set ([`compile`]). Printable ASCII and `\t \n \v \f \r` map to
//! themselves, so a prompt made of those (checked by `plain`) is matched as is, without a copy.
//!
//! The result is exact, not an approximation: a character matches a rewritten class if and
//! only if it matched the original one, because its block lies wholly inside or wholly
//! outside every class of the set. Unicode word boundaries (which look at neighbouring
//! characters through tables of their own) are refused; the rule dialect uses ASCII `\b`,
//! under which every block byte is a non-word byte exactly as every non-ASCII character was.
//! A property test compares both forms on random Unicode text.
//!
//! Patterns may write the separator as [`SEPARATOR`] (a private-use character): it stands for
//! the class `[^\p{L}\p{N}]`, which is then translated once per set instead of at each of its
//! hundreds of occurrences (that translation alone was ~50 ms of start-up).

use std::borrow::Cow;
use std::collections::HashMap;

use regex_syntax::hir::{
    Capture, Class, ClassBytes, ClassBytesRange, ClassUnicode, Hir, HirKind, Look, Repetition,
};

use crate::error::ScreenError;

/// Stands for one character of `[^\p{L}\p{N}]` (neither letter nor number) in a pattern.
pub const SEPARATOR: char = '\u{E000}';

/// `[^\p{L}\p{N}]`, the class [`SEPARATOR`] stands for.
fn separator_class() -> Result<ClassUnicode, ScreenError> {
    match regex_syntax::parse(r"[^\p{L}\p{N}]")
        .map_err(|e| ScreenError::Rules(e.to_string()))?
        .kind()
    {
        HirKind::Class(Class::Unicode(c)) => Ok(c.clone()),
        _ => Err(ScreenError::Rules("separator is not a class".into())),
    }
}

/// Bytes that stand for themselves: printable ASCII and the ASCII whitespace controls.
/// Always inlined: it runs once per character of every view that is not `plain`.
#[inline(always)]
fn kept(c: u32) -> bool {
    (0x20..0x7f).contains(&c) || (0x09..=0x0d).contains(&c)
}

/// True if every byte stands for itself (`kept`): ASCII without the controls other than
/// `\t \n \v \f \r`. Eight bytes at a time: a word with no byte below 0x20 and none equal to
/// 0x7f needs no closer look (bit tricks from "Bit Twiddling Hacks", `hasless` and `haszero`).
fn plain(text: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    if !text.is_ascii() {
        return false;
    }
    let mut words = text.chunks_exact(8);
    let suspect = |w: u64| {
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let del = w ^ (ONES * 0x7f);
        let is_del = del.wrapping_sub(ONES) & !del & HIGH;
        below_space | is_del != 0
    };
    for chunk in words.by_ref() {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        if suspect(w) && !chunk.iter().all(|&b| kept(u32::from(b))) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| kept(u32::from(b)))
}

/// Bytes free to stand for a block: the other ASCII controls and every non-ASCII byte.
fn block_bytes() -> impl Iterator<Item = u8> {
    (0u8..=0xff).filter(|&b| !kept(u32::from(b)))
}

/// One set's alphabet: which byte each character maps to.
#[derive(Debug, Clone)]
pub struct Alphabet {
    /// Sorted by start: `(first code point, byte)` for every run of characters outside the
    /// kept ASCII set; a character maps to the byte of the last run starting at or before it.
    runs: Vec<(u32, u8)>,
}

impl Alphabet {
    #[inline(always)]
    fn byte(&self, c: char) -> u8 {
        let c = u32::from(c);
        if kept(c) {
            return c as u8;
        }
        let i = self.runs.partition_point(|&(start, _)| start <= c);
        // Run 0 starts at U+0000, so every character has a run (i >= 1).
        self.runs.get(i.wrapping_sub(1)).map_or(0, |&(_, b)| b)
    }

    /// `text` over this alphabet: one byte per character; borrowed when every character
    /// stands for itself (the common, ASCII case).
    pub fn map<'a>(&self, text: &'a str) -> Cow<'a, [u8]> {
        if plain(text.as_bytes()) {
            return Cow::Borrowed(text.as_bytes());
        }
        Cow::Owned(text.chars().map(|c| self.byte(c)).collect())
    }
}

/// Reduces `patterns` (Unicode-mode syntax, as `regex::RegexSet` takes them) to byte-level
/// `Hir`s (compile them with [`compile`]) plus the alphabet to map texts with.
///
/// # Errors
/// `ScreenError::Rules` when a pattern does not parse, uses a Unicode word boundary, or the
/// set tells apart more character blocks than there are free bytes.
pub fn reduce(patterns: &[String]) -> Result<(Alphabet, Vec<Hir>), ScreenError> {
    let hirs = patterns
        .iter()
        .map(|p| regex_syntax::parse(p).map_err(|e| ScreenError::Rules(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let sep = separator_class()?;
    let mut preds: Vec<ClassUnicode> = vec![sep.clone()];
    for h in &hirs {
        collect(h, &mut preds)?;
    }
    preds.sort_by(|a, b| a.ranges().cmp(b.ranges()));
    preds.dedup();
    // Elementary intervals: between any two consecutive boundaries, membership in every
    // predicate (and in the kept set) is constant.
    let mut cuts: Vec<u32> = vec![0, 0x09, 0x0e, 0x20, 0x7f, 0x11_0000];
    for p in &preds {
        for r in p.ranges() {
            cuts.push(u32::from(r.start()));
            cuts.push(u32::from(r.end()) + 1);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    // Each interval's signature (which predicates hold on it) as a bit set, filled by one sweep
    // per predicate range: every range starts and ends on a cut, so it covers whole intervals.
    let words = preds.len().div_ceil(64);
    let mut signatures = vec![0u64; cuts.len() * words];
    for (k, p) in preds.iter().enumerate() {
        for r in p.ranges() {
            let first = cuts.partition_point(|&c| c < u32::from(r.start()));
            let end = cuts.partition_point(|&c| c <= u32::from(r.end()));
            for i in first..end {
                if let Some(w) = signatures.get_mut(i * words + k / 64) {
                    *w |= 1 << (k % 64);
                }
            }
        }
    }
    let mut free = block_bytes();
    let mut by_signature: HashMap<&[u64], u8> = HashMap::new();
    // (byte, one member) per block: a block is in a class iff its member is.
    let mut samples: Vec<(u8, char)> = Vec::new();
    let mut runs: Vec<(u32, u8)> = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let (start, end) = (w[0], w[1]);
        if kept(start) {
            continue;
        }
        // Surrogates are not characters; an interval may straddle them.
        let Some(sample) = (start..end).find_map(char::from_u32) else {
            continue;
        };
        let signature = signatures
            .get(i * words..(i + 1) * words)
            .unwrap_or_default();
        let byte = match by_signature.get(signature) {
            Some(&b) => b,
            None => {
                let b = free.next().ok_or_else(|| {
                    ScreenError::Rules("rule set tells apart too many character blocks".into())
                })?;
                by_signature.insert(signature, b);
                samples.push((b, sample));
                b
            }
        };
        if runs.last().is_none_or(|&(_, b)| b != byte) {
            runs.push((start, byte));
        }
    }
    let alphabet = Alphabet { runs };
    // The separator occurs hundreds of times; its byte class is built once.
    let separator = byte_class(&sep, &samples);
    let reduced = hirs
        .iter()
        .map(|h| rewrite(h, &alphabet, &samples, &separator))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((alphabet, reduced))
}

/// Size limit of one set's NFA, in bytes (the limit `regex::RegexSetBuilder::size_limit` sets).
pub const NFA_BYTES: usize = 64 << 20;
/// Capacity of one set's lazy DFA cache, in bytes (`RegexSetBuilder::dfa_size_limit`).
pub const DFA_CACHE_BYTES: usize = 16 << 20;

/// One set over reduced patterns: all of them at once, every pattern that matches reported
/// (`MatchKind::All`, no capture groups), configured as `regex::bytes::RegexSet` configures it
/// except for the prefilter (off, see below), and built from the `Hir` directly: the patterns are
/// not printed and parsed a second time.
///
/// # Errors
/// `ScreenError::Rules` when the set outgrows [`NFA_BYTES`].
pub fn compile(hirs: &[Hir]) -> Result<regex_automata::meta::Regex, ScreenError> {
    use regex_automata::{MatchKind, meta, nfa::thompson::WhichCaptures};
    meta::Builder::new()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                .utf8_empty(false)
                .which_captures(WhichCaptures::None)
                // No literal prefilter: a set of many patterns reported with `MatchKind::All`
                // gains nothing from one (every position can start some pattern), and building
                // its Aho-Corasick automata was half of the screen's cold start. Measured
                // (probe, 30 builds): `Screener::new` 60 → 25 ms, sanitize + screen of 1 KiB
                // 245 → 160 µs at the same profile. Matches are unchanged (a prefilter only
                // skips ahead; the equivalence property tests cover it).
                .auto_prefilter(false)
                .nfa_size_limit(Some(NFA_BYTES))
                .hybrid_cache_capacity(DFA_CACHE_BYTES),
        )
        .build_many_from_hir(hirs)
        .map_err(|e| ScreenError::Rules(e.to_string()))
}

/// Indices of the patterns of `set` that match `haystack` (a text mapped by the set's alphabet).
///
/// Most texts match no pattern of a set, so a plain "any match?" search runs first and the
/// overlapping search (which reports every pattern) only when it says yes. Both ask the same
/// automaton, so the result is that of the overlapping search alone; the plain one is faster
/// because it may stop at the first match and takes the lazy DFA's unrolled loop. Measured
/// (callgrind, sanitize + screen): the seed's 1 KiB prompt 364k → 265k instructions, 1,500
/// corpus rows 9% fewer in all; `farm-bench` wall time 0.91× on the seed prompt.
pub fn matching(set: &regex_automata::meta::Regex, haystack: &[u8]) -> Vec<usize> {
    let input = regex_automata::Input::new(haystack);
    if !set.is_match(input.clone()) {
        return Vec::new();
    }
    let mut found = regex_automata::PatternSet::new(set.pattern_len());
    set.which_overlapping_matches(&input, &mut found);
    found.iter().map(|p| p.as_usize()).collect()
}

fn contains(class: &ClassUnicode, c: char) -> bool {
    let r = class.ranges();
    let i = r.partition_point(|x| x.end() < c);
    r.get(i).is_some_and(|x| x.start() <= c)
}

/// Every class and every literal character of `h`, as Unicode classes.
fn collect(h: &Hir, out: &mut Vec<ClassUnicode>) -> Result<(), ScreenError> {
    match h.kind() {
        HirKind::Empty => {}
        HirKind::Literal(lit) => {
            for c in literal_chars(&lit.0)?
                .into_iter()
                .filter(|&c| !kept(u32::from(c)))
            {
                out.push(ClassUnicode::new([
                    regex_syntax::hir::ClassUnicodeRange::new(c, c),
                ]));
            }
        }
        HirKind::Class(class) => out.push(unicode_class(class)?),
        HirKind::Look(look) => check_look(*look)?,
        HirKind::Repetition(rep) => collect(&rep.sub, out)?,
        HirKind::Capture(cap) => collect(&cap.sub, out)?,
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            for s in subs {
                collect(s, out)?;
            }
        }
    }
    Ok(())
}

fn literal_chars(bytes: &[u8]) -> Result<Vec<char>, ScreenError> {
    std::str::from_utf8(bytes)
        .map(|s| s.chars().collect())
        .map_err(|_| ScreenError::Rules("rule literal is not UTF-8".into()))
}

/// A class as Unicode ranges; byte classes (from `(?-u:...)`) only over ASCII.
fn unicode_class(class: &Class) -> Result<ClassUnicode, ScreenError> {
    match class {
        Class::Unicode(c) => Ok(c.clone()),
        Class::Bytes(c) => c
            .to_unicode_class()
            .filter(|_| c.is_ascii())
            .ok_or_else(|| ScreenError::Rules("rule has a non-ASCII byte class".into())),
    }
}

fn check_look(look: Look) -> Result<(), ScreenError> {
    match look {
        Look::WordUnicode
        | Look::WordUnicodeNegate
        | Look::WordStartUnicode
        | Look::WordEndUnicode
        | Look::WordStartHalfUnicode
        | Look::WordEndHalfUnicode => Err(ScreenError::Rules(
            "rules use ASCII word boundaries only".into(),
        )),
        _ => Ok(()),
    }
}

/// `h` over the alphabet: kept characters as themselves, every other class member as its
/// block's byte.
fn rewrite(
    h: &Hir,
    a: &Alphabet,
    samples: &[(u8, char)],
    separator: &Hir,
) -> Result<Hir, ScreenError> {
    let go = |sub: &Hir| rewrite(sub, a, samples, separator);
    Ok(match h.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(lit) => {
            // Runs of ordinary characters stay one literal; each separator becomes its class.
            let mut pieces: Vec<Hir> = Vec::new();
            let mut run: Vec<u8> = Vec::new();
            for c in literal_chars(&lit.0)? {
                if c == SEPARATOR {
                    if !run.is_empty() {
                        pieces.push(Hir::literal(std::mem::take(&mut run)));
                    }
                    pieces.push(separator.clone());
                } else {
                    run.push(a.byte(c));
                }
            }
            if !run.is_empty() {
                pieces.push(Hir::literal(run));
            }
            Hir::concat(pieces)
        }
        HirKind::Class(class) => {
            // A class that contains the placeholder (`.`, `\S`) means the character itself.
            byte_class(&unicode_class(class)?, samples)
        }
        HirKind::Look(look) => {
            check_look(*look)?;
            Hir::look(*look)
        }
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(go(&rep.sub)?),
        }),
        HirKind::Capture(cap) => Hir::capture(Capture {
            index: cap.index,
            name: cap.name.clone(),
            sub: Box::new(go(&cap.sub)?),
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(go).collect::<Result<_, _>>()?),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.iter().map(go).collect::<Result<_, _>>()?)
        }
    })
}

/// `class` over the alphabet: its kept ASCII members, and the byte of every block inside it.
fn byte_class(class: &ClassUnicode, samples: &[(u8, char)]) -> Hir {
    let mut ranges: Vec<ClassBytesRange> = Vec::new();
    for r in class.ranges() {
        let (lo, hi) = (u32::from(r.start()), u32::from(r.end()).min(0x7f));
        for c in (lo..=hi).filter(|&c| kept(c)) {
            ranges.push(ClassBytesRange::new(c as u8, c as u8));
        }
    }
    for &(b, sample) in samples {
        if contains(class, sample) {
            ranges.push(ClassBytesRange::new(b, b));
        }
    }
    // An empty class matches nothing, as the original did on this alphabet.
    Hir::class(Class::Bytes(ClassBytes::new(ranges)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn both(patterns: &[&str]) -> (regex::RegexSet, Alphabet, regex_automata::meta::Regex) {
        let owned: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        let (alphabet, reduced) = reduce(&owned).expect("reduces");
        let spelled: Vec<String> = owned
            .iter()
            .map(|p| p.replace(SEPARATOR, r"[^\p{L}\p{N}]"))
            .collect();
        let original = regex::RegexSet::new(&spelled).expect("original compiles");
        let bytes = compile(&reduced).expect("reduced compiles");
        (original, alphabet, bytes)
    }

    const SEP: &str = "\u{E000}+";

    #[test]
    fn ascii_text_is_matched_without_a_copy() {
        let (_, alphabet, _) = both(&[r"\w+"]);
        assert!(matches!(alphabet.map("plain text"), Cow::Borrowed(_)));
        assert!(matches!(alphabet.map("naïve"), Cow::Owned(_)));
    }

    #[test]
    fn separators_words_and_counts_behave_as_before() {
        let p = format!(r"(?-u:\b)ignore{SEP}(?:\w+{SEP})?rules(?-u:\b)");
        let (original, alphabet, bytes) = both(&[&p, r"a.{0,3}b", r"[^。\n]{2}x"]);
        for text in [
            "ignore — the rules",
            "ignore les règles rules",
            "ignoreérules",
            "ignore\u{00a0}rules",
            "a\u{4e16}\u{754c}\u{4e16}b",
            "a\u{4e16}\u{754c}\u{4e16}\u{754c}b",
            "。。x",
            "éé x",
        ] {
            let want: Vec<usize> = original.matches(text).into_iter().collect();
            let got = matching(&bytes, &alphabet.map(text));
            assert_eq!(want, got, "{text:?}");
        }
    }

    #[test]
    fn nested_repetitions_keep_their_meaning() {
        let (original, alphabet, bytes) = both(&[r"ab(?:\w+)?c", r"x(?:y{2})*z", r"q(?:r+?)s"]);
        for text in ["abc", "abxc", "ab", "xz", "xyyz", "xyz", "qrrs", "qs"] {
            let want: Vec<usize> = original.matches(text).into_iter().collect();
            let got = matching(&bytes, &alphabet.map(text));
            assert_eq!(want, got, "{text:?}");
        }
    }

    #[test]
    fn unicode_word_boundaries_are_refused() {
        assert!(reduce(&[r"\bword\b".to_owned()]).is_err());
    }

    proptest! {
        #[test]
        fn plain_is_every_byte_kept(bytes in proptest::collection::vec(
            proptest::sample::select(vec![0u8, 7, 9, 10, 13, 14, 31, 32, 65, 126, 127, 128, 200]),
            0..40,
        )) {
            prop_assert_eq!(plain(&bytes), bytes.iter().all(|&b| kept(u32::from(b))));
        }

        // Random text over characters the rules tell apart (letters of several scripts,
        // digits, marks, spaces of several kinds, punctuation, emoji) matches the same
        // patterns before and after reduction.
        #[test]
        fn reduction_is_exact(text in proptest::collection::vec(
            proptest::sample::select(vec![
                'a', 'e', 'i', 'g', 'n', 'o', 'r', 's', 'u', 'l', ' ', '\n', '\t', '.', '!', '_',
                '\'', '-', '0', '7', 'é', 'ß', 'ı', 'K', '\u{212a}', 'ſ', '\u{00a0}', '\u{2003}',
                '\u{3000}', '。', '、', '\u{0301}', '\u{200d}', 'и', 'ж', '世', '界', 'ع', '١',
                '😀', '\u{1}', '\u{7f}', '\u{85}', '\u{2028}', '½', '²',
            ]),
            0..40,
        ).prop_map(|v| v.into_iter().collect::<String>())) {
            let latin = format!(r"(?-u:\b)ignor\w*{SEP}(?:\S+\s+){{0,2}}rules?(?-u:\b)");
            let (original, alphabet, bytes) = both(&[
                &latin,
                r"(?i)k\w{0,3}s",
                r"[^.!?\n]{3,}[.!?]",
                r".{2,6}",
                r"\s\S\s",
                r"[^)\s]+\)",
                r"[\p{L}]{4}",
                r"世界|и\w",
            ]);
            let want: Vec<usize> = original.matches(&text).into_iter().collect();
            let got = matching(&bytes, &alphabet.map(&text));
            prop_assert_eq!(want, got);
        }
    }
}
