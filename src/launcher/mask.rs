//! `--mask`'s matching: which bytes of the child's output are a secret value, without
//! keeping any value. Owns the fingerprints and the per-stream matcher; the pipes, the
//! threads and the terminal are `supervise::output`'s.
//!
//! A value is remembered only as (length, fingerprint): a Rabin–Karp hash mod the Mersenne
//! prime 2^61−1 with a base drawn from the kernel's randomness once per process, so a
//! fingerprint says nothing about a value to anyone without the base, and output written
//! to match one on purpose cannot be crafted in advance. The fingerprints are computed
//! from the composed block (`Fingerprints::of_values`), each encoded form in a wiped
//! buffer dropped at once; the matcher keeps a rolling hash per distinct length over the
//! output. Two different windows of one length collide with probability about L/2^61, so
//! over N bytes and n values the expected false matches are about N·n·L/2^61 (none in the
//! benchmark's gigabyte). For speed, a window's fingerprint is computed only when a cheap
//! keyed hash of the whole window (mod 2^32, one multiply) passes a bit filter that the
//! forms set; that filter decides nothing, the fingerprint does.
//!
//! Values shorter than `MIN_LEN` are not masked: masking `a` would mask every `a`.

use base64::Engine;
use zeroize::Zeroize;

/// The field: 2^61−1, a Mersenne prime, so a product reduces with a shift and an add.
const P: u64 = (1 << 61) - 1;

/// Values shorter than this are not masked (documented in the README and `--help`).
pub const MIN_LEN: usize = 4;

/// What a masked window becomes in the output.
pub const MASK: &[u8] = b"****";

/// Bits of the membership filter in front of the sorted fingerprints: most windows miss
/// it with one load, and 2^18 bits (32 KiB) stay in the cache.
const FILTER_BITS: usize = 1 << 18;

fn mul(a: u64, b: u64) -> u64 {
    let x = u128::from(a) * u128::from(b);
    let r = (x as u64 & P) + (x >> 61) as u64;
    if r >= P {
        r - P
    } else {
        r
    }
}

fn add(a: u64, b: u64) -> u64 {
    let r = a + b;
    if r >= P {
        r - P
    } else {
        r
    }
}

fn sub(a: u64, b: u64) -> u64 {
    if a >= b {
        a - b
    } else {
        a + P - b
    }
}

/// The per-process bases: of every fingerprint (mod 2^61−1), and of the cheap 32-bit hash
/// (mod 2^32) whose filter most windows fail before a fingerprint is computed.
#[derive(Clone, Copy)]
pub struct MaskKey {
    base: u64,
    quick: u32,
}

impl MaskKey {
    /// A base drawn from the kernel, away from the small values a weak base would be.
    pub fn random() -> MaskKey {
        loop {
            let mut bytes = [0u8; 8];
            // No randomness means no masking we could trust: agent-run cannot go on.
            getrandom::fill(&mut bytes).expect("the kernel's random number generator");
            let base = u64::from_le_bytes(bytes) % P;
            if base > 1 << 16 {
                // Odd, so multiplying by it loses nothing mod 2^32.
                let quick = (u64::from_le_bytes(bytes) >> 32) as u32 | 1;
                return MaskKey { base, quick };
            }
        }
    }

    #[cfg(test)]
    fn fixed(base: u64) -> MaskKey {
        MaskKey {
            base,
            quick: base as u32 | 1,
        }
    }

    /// Bytes enter as `b + 1`, so a run of zero bytes still moves the hash.
    fn step(&self, h: u64, byte: u8) -> u64 {
        add(mul(h, self.base), u64::from(byte) + 1)
    }

    fn fingerprint(&self, bytes: &[u8]) -> u64 {
        bytes.iter().fold(0, |h, &b| self.step(h, b))
    }

    fn pow(&self, len: usize) -> u64 {
        (0..len).fold(1, |p, _| mul(p, self.base))
    }

    fn quick_step(&self, h: u32, byte: u8) -> u32 {
        h.wrapping_mul(self.quick).wrapping_add(u32::from(byte) + 1)
    }

    fn quick_hash(&self, bytes: &[u8]) -> u32 {
        bytes.iter().fold(0, |h, &b| self.quick_step(h, b))
    }

    fn quick_pow(&self, len: usize) -> u32 {
        (0..len).fold(1u32, |p, _| p.wrapping_mul(self.quick))
    }
}

/// Every fingerprint of one length, and base^length (what a window's start is scaled by).
#[derive(Clone)]
struct Length {
    len: usize,
    pow: u64,
    quick_pow: u32,
    prints: Vec<u64>,
}

/// The set the masker matches: (length, fingerprint) pairs, grouped by length. No value
/// and no part of one.
#[derive(Clone)]
pub struct Fingerprints {
    key: MaskKey,
    /// Ascending by length.
    lengths: Vec<Length>,
    filter: Vec<u64>,
    /// Some form contains a newline (a PEM key): output before a newline is then not
    /// final at once.
    newline: bool,
}

impl Fingerprints {
    pub fn empty(key: MaskKey) -> Fingerprints {
        Fingerprints {
            key,
            lengths: Vec::new(),
            filter: vec![0; FILTER_BITS / 64],
            newline: false,
        }
    }

    /// The fingerprints of `values` and of their encoded forms (see `encoded_forms`);
    /// values shorter than `MIN_LEN` are skipped.
    pub fn of_values<'a>(key: MaskKey, values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut pairs: Vec<(usize, u64, u32)> = Vec::new();
        let mut newline = false;
        for value in values {
            if value.len() < MIN_LEN {
                continue;
            }
            encoded_forms(value, |form| {
                newline |= form.contains(&b'\n');
                pairs.push((form.len(), key.fingerprint(form), key.quick_hash(form)));
            });
        }
        let mut prints = Fingerprints::empty(key);
        prints.newline = newline;
        prints.insert(
            pairs
                .into_iter()
                .map(|(len, print, quick)| (len, print, Some(quick))),
        );
        prints
    }

    /// Adds (length, fingerprint, quick hash) triples; a quick hash of `None` leaves the
    /// filter alone (`union` ORs the other filter in).
    fn insert(&mut self, entries: impl IntoIterator<Item = (usize, u64, Option<u32>)>) {
        for (len, print, quick) in entries {
            let slot = match self.lengths.binary_search_by_key(&len, |l| l.len) {
                Ok(i) => i,
                Err(i) => {
                    self.lengths.insert(
                        i,
                        Length {
                            len,
                            pow: self.key.pow(len),
                            quick_pow: self.key.quick_pow(len),
                            prints: Vec::new(),
                        },
                    );
                    i
                }
            };
            let prints = &mut self.lengths[slot].prints;
            if let Err(i) = prints.binary_search(&print) {
                prints.insert(i, print);
            }
            if let Some(quick) = quick {
                let bit = filter_bit(len, quick);
                self.filter[bit / 64] |= 1 << (bit % 64);
            }
        }
    }

    /// These and `other`'s (the same key): during a restart the old child's output and
    /// the new one's share the pipe.
    pub fn union(&self, other: &Fingerprints) -> Fingerprints {
        let mut merged = self.clone();
        merged.newline |= other.newline;
        merged.insert(
            other
                .lengths
                .iter()
                .flat_map(|l| l.prints.iter().map(move |&p| (l.len, p, None))),
        );
        for (mine, theirs) in merged.filter.iter_mut().zip(&other.filter) {
            *mine |= theirs;
        }
        merged
    }

    /// Number of distinct (length, fingerprint) pairs.
    pub fn len(&self) -> usize {
        self.lengths.iter().map(|l| l.prints.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    fn max_len(&self) -> usize {
        self.lengths.last().map_or(0, |l| l.len)
    }

    /// Whether a window of this length whose quick hash is `quick` may match.
    fn may_contain(&self, length: &Length, quick: u32) -> bool {
        let bit = filter_bit(length.len, quick);
        self.filter[bit / 64] & (1 << (bit % 64)) != 0
    }
}

fn filter_bit(len: usize, quick: u32) -> usize {
    (quick ^ (len as u32).wrapping_mul(0x9e37_79b9)) as usize % FILTER_BITS
}

/// `each` gets the value itself, its base64 (standard and URL-safe, with and without
/// padding) and its percent-encoding (upper- and lower-case hex), each in a buffer sized
/// once and wiped before the next.
fn encoded_forms(value: &[u8], mut each: impl FnMut(&[u8])) {
    each(value);
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut buf = zeroize::Zeroizing::new(vec![0u8; value.len().div_ceil(3) * 4]);
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        // The buffer fits the padded form, the longest of the four.
        if let Ok(n) = engine.encode_slice(value, &mut buf[..]) {
            each(&buf[..n]);
        }
    }
    if value.iter().all(|&b| unreserved(b)) {
        return;
    }
    let mut buf = zeroize::Zeroizing::new(vec![0u8; value.len() * 3]);
    for hex in [b"0123456789ABCDEF", b"0123456789abcdef"] {
        let mut n = 0;
        for &b in value {
            if unreserved(b) {
                buf[n] = b;
                n += 1;
            } else {
                buf[n..n + 3].copy_from_slice(&[
                    b'%',
                    hex[usize::from(b >> 4)],
                    hex[usize::from(b & 15)],
                ]);
                n += 3;
            }
        }
        each(&buf[..n]);
    }
}

/// RFC 3986's unreserved characters: what percent-encoding leaves as it is.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One output stream's matcher: bytes come in as the child writes them and go out with
/// every matched window replaced by `MASK`. It holds back what a value could still
/// complete: the last (longest length − 1) bytes, except that everything up to the last
/// newline is final when no form contains a newline. `flush` (the pipe has been idle, or
/// it ended) lets the rest out; the last bytes stay as context (never those of a matched
/// window), so a value completed after a flush still has its end masked.
#[derive(Default)]
pub struct Stream {
    /// `ctx` bytes already written out (context), then the held-back bytes.
    buf: Vec<u8>,
    ctx: usize,
    /// Prefix hashes of `buf` (as good as the bytes: wiped after each pass).
    prefix: Vec<u64>,
    quick: Vec<u32>,
    marks: Vec<(usize, usize)>,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Takes `input`, appends to `out` what is final.
    pub fn feed(&mut self, prints: &Fingerprints, input: &[u8], out: &mut Vec<u8>) {
        self.buf.extend_from_slice(input);
        self.pass(prints, out, false);
    }

    /// Appends everything still held back to `out`.
    pub fn flush(&mut self, prints: &Fingerprints, out: &mut Vec<u8>) {
        self.pass(prints, out, true);
    }

    /// Bytes held back (not yet written out).
    pub fn held(&self) -> usize {
        self.buf.len() - self.ctx
    }

    fn pass(&mut self, prints: &Fingerprints, out: &mut Vec<u8>, all: bool) {
        let n = self.buf.len();
        self.find(prints);
        let mut safe = if all {
            n
        } else {
            let by_len = (n + 1).saturating_sub(prints.max_len()).max(self.ctx);
            let by_newline = match prints.newline {
                true => self.ctx,
                false => self.buf[self.ctx..]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(self.ctx, |i| self.ctx + i + 1),
            };
            by_len.max(by_newline)
        };
        // Merged marks are disjoint and sorted: a window across the boundary moves it.
        for &(start, end) in &self.marks {
            if start < safe && end > safe {
                safe = end;
            }
        }
        let mut pos = self.ctx;
        let mut masked_to = 0;
        for &(start, end) in &self.marks {
            if start >= safe {
                break;
            }
            out.extend_from_slice(&self.buf[pos..start.max(self.ctx)]);
            out.extend_from_slice(MASK);
            pos = end;
            masked_to = end;
        }
        out.extend_from_slice(&self.buf[pos..safe]);
        // Keep what a later window could still end in, but nothing of a matched one.
        let keep_from = safe
            .saturating_sub(prints.max_len().saturating_sub(1))
            .max(masked_to);
        self.buf.copy_within(keep_from..n, 0);
        let kept = n - keep_from;
        self.buf[kept..n].zeroize();
        self.buf.truncate(kept);
        self.ctx = safe - keep_from;
    }

    /// Marks every window that ends in the held-back bytes and matches a fingerprint,
    /// merged where they overlap.
    #[inline(never)]
    fn find(&mut self, prints: &Fingerprints) {
        self.marks.clear();
        if prints.is_empty() {
            return;
        }
        let key = &prints.key;
        self.prefix.clear();
        self.prefix.reserve(self.buf.len() + 1);
        self.quick.clear();
        self.quick.reserve(self.buf.len() + 1);
        let (mut h, mut q) = (0, 0);
        self.prefix.push(h);
        self.quick.push(q);
        for &b in &self.buf {
            h = key.step(h, b);
            q = key.quick_step(q, b);
            self.prefix.push(h);
            self.quick.push(q);
        }
        // By length, then along the output: the quick hash of each window is one wrapping
        // multiply; only a window that passes the filter gets its fingerprint computed.
        let n = self.buf.len();
        for length in &prints.lengths {
            if length.len > n {
                break;
            }
            for end in (self.ctx + 1).max(length.len)..=n {
                let start = end - length.len;
                let quick =
                    self.quick[end].wrapping_sub(self.quick[start].wrapping_mul(length.quick_pow));
                if !prints.may_contain(length, quick) {
                    continue;
                }
                let window = sub(self.prefix[end], mul(self.prefix[start], length.pow));
                if length.prints.binary_search(&window).is_ok() {
                    self.marks.push((start, end));
                }
            }
        }
        self.quick.zeroize();
        self.prefix.zeroize();
        self.marks.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.marks.len());
        for &(start, end) in &self.marks {
            match merged.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.marks = merged;
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.buf.zeroize();
        self.prefix.zeroize();
        self.quick.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prints(values: &[&str]) -> Fingerprints {
        Fingerprints::of_values(MaskKey::random(), values.iter().map(|v| v.as_bytes()))
    }

    fn run(prints: &Fingerprints, chunks: &[&[u8]]) -> String {
        let mut stream = Stream::new();
        let mut out = Vec::new();
        for chunk in chunks {
            stream.feed(prints, chunk, &mut out);
        }
        stream.flush(prints, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_value_split_at_every_offset_is_masked() {
        let secret = "s3cr3t-Value_42";
        let p = prints(&[secret, "other-value"]);
        let text = format!("token={secret} and again:{secret}!\nnext line other-value end");
        let want = "token=**** and again:****!\nnext line **** end";
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                assert_eq!(
                    run(&p, &[&bytes[..i], &bytes[i..j], &bytes[j..]]),
                    want,
                    "split at {i}, {j}"
                );
            }
        }
        // One byte per read.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&p, &singles), want);
    }

    #[test]
    fn encoded_forms_are_masked() {
        let secret = "p@ss w/rd+?é";
        let p = prints(&[secret]);
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let forms = [
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            "p%40ss%20w%2Frd%2B%3F%C3%A9".to_owned(),
            "p%40ss%20w%2frd%2b%3f%c3%a9".to_owned(),
        ];
        for form in forms {
            assert_eq!(
                run(&p, &[format!("[{form}]").as_bytes()]),
                "[****]",
                "{form}"
            );
        }
    }

    #[test]
    fn short_values_and_other_text_pass_unchanged() {
        let p = prints(&["abc", "longer-secret"]);
        assert_eq!(run(&p, &[b"abc abc longer-secre"]), "abc abc longer-secre");
        assert!(
            p.len() <= 5,
            "one value: itself and at most four base64 forms"
        );
    }

    #[test]
    fn overlapping_values_are_masked_as_one() {
        let p = prints(&["abcdef", "defghi"]);
        assert_eq!(run(&p, &[b"xxabcdefghiyy"]), "xx****yy");
    }

    #[test]
    fn lines_before_the_last_newline_leave_at_once_and_the_tail_waits() {
        let p = prints(&["a-long-secret-value"]);
        let mut stream = Stream::new();
        let mut out = Vec::new();
        stream.feed(&p, b"first line\nsecond a-long", &mut out);
        assert_eq!(out, b"first line\n", "the tail waits: it may start a value");
        stream.feed(&p, b"-secret-value done\n", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "first line\nsecond **** done\n"
        );
        assert_eq!(stream.held(), 0);
    }

    #[test]
    fn a_value_completed_after_a_flush_has_its_end_masked() {
        let p = prints(&["a-long-secret-value"]);
        let mut stream = Stream::new();
        let mut out = Vec::new();
        stream.feed(&p, b"prompt: a-long-", &mut out);
        stream.flush(&p, &mut out);
        stream.feed(&p, b"secret-value\n", &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "prompt: a-long-****\n");
    }

    #[test]
    fn nothing_matches_in_random_data() {
        // 500 values, 256 KiB of random output: a false match here would be a bug, not bad
        // luck (expected ~ 2.6e5 · 3000 · 50 / 2^61 ≈ 2e-8). benches/mask.sh runs 1 GB.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let values: Vec<Vec<u8>> = (0..500)
            .map(|i| (0..8 + i % 57).map(|_| next() as u8).collect())
            .collect();
        let p = Fingerprints::of_values(MaskKey::random(), values.iter().map(|v| v.as_slice()));
        let data: Vec<u8> = (0..256 << 10).map(|_| next() as u8).collect();
        let mut stream = Stream::new();
        let mut out = Vec::new();
        for chunk in data.chunks(65536) {
            stream.feed(&p, chunk, &mut out);
        }
        stream.flush(&p, &mut out);
        assert_eq!(out, data);
    }

    #[test]
    fn the_rolling_window_equals_the_direct_fingerprint() {
        let key = MaskKey::fixed(0x1f2e_3d4c_5b6a);
        let text = b"the quick brown fox";
        let (mut prefix, mut quick) = (vec![0], vec![0]);
        for &b in text {
            prefix.push(key.step(*prefix.last().unwrap(), b));
            quick.push(key.quick_step(*quick.last().unwrap(), b));
        }
        for start in 0..text.len() {
            for end in start..=text.len() {
                let window = sub(prefix[end], mul(prefix[start], key.pow(end - start)));
                assert_eq!(window, key.fingerprint(&text[start..end]));
                let quick =
                    quick[end].wrapping_sub(quick[start].wrapping_mul(key.quick_pow(end - start)));
                assert_eq!(quick, key.quick_hash(&text[start..end]));
            }
        }
    }
}
