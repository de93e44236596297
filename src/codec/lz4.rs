//! An LZ4 block-format encoder whose dictionary is indexed once, not on every call.
//!
//! Why not `lz4_flex::block::compress_with_dict`: it re-hashes the dictionary on every call
//! (every third position, up to 64 KiB, before the first input byte) into a 4096-slot table,
//! so a 64 KiB dictionary costs 13 µs per item and most of it is unreachable: on D(20,000)
//! items it saves 49.0 %, against 61.5 % here with the same dictionary at a third of the time.
//!
//! Here [`DictIndex`] indexes every dictionary position once, when the [`Dictionary`] is
//! made (≈ 0.8 ms for 64 KiB), so a call costs time in proportion to its input only. At each
//! position the parser tries two hash-chain candidates in the input and one bucket of
//! dictionary candidates, and looks one byte ahead (lazy matching). Without a dictionary that
//! is 1 point denser than `lz4_flex`'s single-probe parser at 2.5–3× its time.
//!
//! The output is the standard LZ4 block format (no match spans the dictionary and the input),
//! decoded by `lz4_flex`'s safe decoder.
//!
//! [`Dictionary`]: super::Dictionary

/// LZ4's shortest match.
const MIN_MATCH: usize = 4;
/// The block format's end rules: the last 5 bytes are literals, the last match starts at
/// least 12 bytes before the end.
const LAST_LITERALS: usize = 5;
const MF_LIMIT: usize = 12;
/// Offsets are 16-bit.
const MAX_DISTANCE: usize = 65_535;
/// The input's hash table: at most 4096 buckets, fewer for short inputs (cleared per call).
const INPUT_HASH_BITS: u32 = 12;
// The search effort below was tuned on D(20,000) items with a 32 KiB dictionary (points of
// "saved"): 2 input candidates over 1, +0.3 (4: +0.03 more); buckets keyed by 5 bytes over 4,
// +0.5, over 6, +0.8; 8 ways over 4, +0.5; lazy matching, +0.9.
/// Chain candidates tried per position in the input.
const INPUT_ATTEMPTS: usize = 2;
/// Dictionary buckets are keyed by this many bytes.
const DICT_MIN_MATCH: usize = 5;
/// Candidates per dictionary bucket.
const DICT_WAYS: usize = 8;
/// Lazy matching only below this length: a long match is rarely beaten a byte later.
const LAZY_BELOW: usize = 32;
/// After 2^6 positions without a match the parser starts skipping ahead, so incompressible
/// input costs little.
const SKIP_TRIGGER: u32 = 6;

#[inline(always)]
fn read4(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w)
}

#[inline]
fn hash4(v: u32, bits: u32) -> usize {
    (v.wrapping_mul(2_654_435_761) >> (32 - bits)) as usize
}

#[inline(always)]
fn read8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Length of the common prefix of `a` and `b`.
#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let max = a.len().min(b.len());
    let mut n = 0;
    while n + 8 <= max {
        let x = read8(a, n) ^ read8(b, n);
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && a[n] == b[n] {
        n += 1;
    }
    n
}

/// A bucketed hash table over a dictionary (at most 64 KiB), built once: each bucket keeps the
/// [`DICT_WAYS`] latest positions whose next `min` bytes hash to it (later positions win: the
/// trainer puts the most valuable bytes last), each with the 4 bytes that follow its first 4.
/// One bucket read ranks every candidate; the dictionary itself is touched only to verify and
/// extend the ones that can win.
#[derive(Clone)]
pub(crate) struct DictIndex {
    buckets: Vec<Bucket>,
    bits: u32,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Position + 1 (0: empty slot), latest first.
    pos: [u16; DICT_WAYS],
    /// Dictionary bytes pos + 4 .. pos + 8, little-endian.
    tail: [u32; DICT_WAYS],
}

impl DictIndex {
    /// Indexes `dict` (its length must be at most 65,536, checked by `Dictionary::new`).
    pub(crate) fn build(dict: &[u8]) -> Self {
        // 16,384 buckets of 8 (768 KiB) for a 32 or 64 KiB dictionary: halving them cost
        // 0.35 points on D(N) items and was no faster.
        let bits = (usize::BITS - (dict.len() / 4).max(1).leading_zeros()).clamp(8, 14);
        let mut buckets = vec![Bucket::default(); 1 << bits];
        // Position 0 is left out so that 0 can mean "empty" (it is out of LZ4's reach in a full
        // 64 KiB dictionary anyway); positions need 8 readable bytes for the hash and tail.
        // Walking backwards fills each bucket latest first; a full bucket keeps the later ones.
        for q in (1..dict.len().saturating_sub(7)).rev() {
            let key = read8(dict, q);
            let bucket = &mut buckets[dict_hash(key, bits)];
            if let Some(way) = bucket.pos.iter().position(|&p| p == 0) {
                bucket.pos[way] = q as u16;
                bucket.tail[way] = (key >> 32) as u32;
            }
        }
        Self { buckets, bits }
    }
}

/// Hash of the first [`DICT_MIN_MATCH`] bytes of `key` (a little-endian load) to `bits` bits.
#[inline(always)]
fn dict_hash(key: u64, bits: u32) -> usize {
    ((key << (64 - 8 * DICT_MIN_MATCH)).wrapping_mul(0x9E37_79B1_85EB_CA87) >> (64 - bits)) as usize
}

/// A match: `len` bytes copied from `dist` bytes back in the virtual stream dictionary ‖ input.
#[derive(Clone, Copy)]
struct Match {
    len: usize,
    dist: usize,
}

/// Reusable encoder state: the input's hash table and chains.
pub(crate) struct Lz4Encoder {
    /// Latest input position + 1 per bucket (0: none); the buckets in use are cleared per
    /// call (2 KiB for a 1 KiB input).
    head: Vec<u32>,
    /// Distance to the previous input position with the same hash, by position modulo the
    /// ring size (0: none). Written before it is read, so never cleared.
    prev: Vec<u16>,
}

impl Lz4Encoder {
    pub(crate) fn new() -> Self {
        Self { head: vec![0; 1 << INPUT_HASH_BITS], prev: Vec::new() }
    }

    /// Appends the LZ4 block of `input` to `out`, matching against `dict` as an external
    /// dictionary. Returns false, with `out` partly written, as soon as the block would exceed
    /// `budget` bytes: the caller then stores the input raw.
    pub(crate) fn compress(
        &mut self,
        input: &[u8],
        dict: Option<(&[u8], &DictIndex)>,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> bool {
        let len = input.len();
        let start = out.len();
        if len <= MF_LIMIT {
            emit_last_literals(out, input);
            return out.len() - start <= budget;
        }
        // A ring covering the input (up to the 64 KiB window) and a table sized to it.
        let ring = len.next_power_of_two().min(1 << 16);
        if self.prev.len() < ring {
            self.prev = vec![0; ring];
        }
        let bits = (usize::BITS - len.leading_zeros()).clamp(8, INPUT_HASH_BITS);
        let head = &mut self.head[..1 << bits];
        head.fill(0);
        let mut m = Matcher {
            input,
            end: len - LAST_LITERALS,
            head,
            bits,
            prev: &mut self.prev[..ring],
            dict: dict.filter(|(bytes, _)| bytes.len() >= 8),
        };
        let dict_bytes = m.dict.map_or(&[][..], |(d, _)| d);
        let match_limit = len - MF_LIMIT;
        let (mut anchor, mut p) = (0, 0);
        let mut misses = 0u32;
        while p <= match_limit {
            let mut found = m.search(p);
            if found.len == 0 {
                misses += 1;
                p += 1 + (misses >> SKIP_TRIGGER) as usize;
                continue;
            }
            misses = 0;
            // One step of lazy matching: a longer match one byte later wins.
            if found.len < LAZY_BELOW && p < match_limit {
                let next = m.search(p + 1);
                if next.len > found.len {
                    p += 1;
                    found = next;
                }
            }
            // Extend backwards over pending literals, without crossing into the other source.
            while p > anchor {
                let before = if found.dist < p {
                    input[p - found.dist - 1]
                } else if found.dist > p && found.dist - p < dict_bytes.len() {
                    dict_bytes[dict_bytes.len() - (found.dist - p) - 1]
                } else {
                    break;
                };
                if before != input[p - 1] {
                    break;
                }
                p -= 1;
                found.len += 1;
            }
            emit_sequence(out, &input[anchor..p], found.dist as u16, found.len);
            if out.len() - start > budget {
                return false;
            }
            p += found.len;
            anchor = p;
            // Index a position near the end of the match, so a repeat of what follows is found.
            if p - 2 <= match_limit {
                m.insert(p - 2);
            }
        }
        emit_last_literals(out, &input[anchor..]);
        out.len() - start <= budget
    }
}

/// The match finder of one call, its tables borrowed from [`Lz4Encoder`].
struct Matcher<'a> {
    input: &'a [u8],
    /// Matches end by here (the last 5 bytes are literals).
    end: usize,
    head: &'a mut [u32],
    bits: u32,
    /// Length a power of two.
    prev: &'a mut [u16],
    dict: Option<(&'a [u8], &'a DictIndex)>,
}

impl Matcher<'_> {
    /// Adds input position `pos` to the hash chains, returning the previous head of its bucket
    /// (position + 1; 0 for none). Positions must be inserted in increasing order.
    #[inline(always)]
    fn insert(&mut self, pos: usize) -> u32 {
        let h = hash4(read4(self.input, pos), self.bits);
        let old = self.head[h];
        let mask = self.prev.len() - 1;
        // Distance to the previous occurrence; 0 when there is none or it is out of reach.
        let back = pos + 1 - old as usize;
        self.prev[pos & mask] = if old != 0 && back <= MAX_DISTANCE { back as u16 } else { 0 };
        self.head[h] = pos as u32 + 1;
        old
    }

    /// Indexes position `p`, then finds the longest match there (length 0: none): a few chain
    /// candidates in the input, then one bucket of the dictionary.
    #[inline(always)]
    fn search(&mut self, p: usize) -> Match {
        let input = self.input;
        let key = read8(input, p);
        let first4 = key as u32;
        let mut entry = self.insert(p) as usize;
        let target = &input[p..self.end];
        let mut best = Match { len: MIN_MATCH - 1, dist: 0 };
        let mask = self.prev.len() - 1;
        for _ in 0..INPUT_ATTEMPTS {
            if entry == 0 || p + 1 - entry > MAX_DISTANCE {
                break;
            }
            let c = entry - 1;
            if read4(input, c) == first4 {
                let l = MIN_MATCH + common_prefix(&input[c + MIN_MATCH..], &target[MIN_MATCH..]);
                if l > best.len {
                    best = Match { len: l, dist: p - c };
                    if l == target.len() {
                        return best;
                    }
                }
            }
            let back = self.prev[c & mask] as usize;
            if back == 0 || back > c {
                break;
            }
            entry = c - back + 1;
        }
        if let Some((bytes, index)) = self.dict {
            let bucket = &index.buckets[dict_hash(key, index.bits)];
            let next4 = (key >> 32) as u32;
            for (&q, &tail) in bucket.pos.iter().zip(&bucket.tail) {
                let q = q as usize;
                if q == 0 {
                    break;
                }
                let dist = p + bytes.len() - q;
                // How many of bytes 4..8 agree, known from the bucket alone.
                let agree = ((tail ^ next4).trailing_zeros() / 8) as usize;
                let avail = (bytes.len() - q).min(target.len());
                let bound = if agree == 4 { avail } else { (MIN_MATCH + agree).min(avail) };
                if bound <= best.len || dist > MAX_DISTANCE || read4(bytes, q) != first4 {
                    continue;
                }
                let l = if agree == 4 && avail > 8 {
                    8 + common_prefix(&bytes[q + 8..q + avail], &target[8..])
                } else {
                    bound
                };
                if l > best.len {
                    best = Match { len: l, dist };
                }
            }
        }
        if best.len < MIN_MATCH {
            best.len = 0;
        }
        best
    }
}

/// Appends a length continuation: 255s then the remainder.
#[inline]
fn put_length(out: &mut Vec<u8>, mut n: usize) {
    while n >= 255 {
        out.push(255);
        n -= 255;
    }
    out.push(n as u8);
}

#[inline]
fn emit_sequence(out: &mut Vec<u8>, literals: &[u8], offset: u16, match_len: usize) {
    let lit = literals.len();
    let ml = match_len - MIN_MATCH;
    out.push(((lit.min(15) as u8) << 4) | ml.min(15) as u8);
    if lit >= 15 {
        put_length(out, lit - 15);
    }
    out.extend_from_slice(literals);
    out.extend_from_slice(&offset.to_le_bytes());
    if ml >= 15 {
        put_length(out, ml - 15);
    }
}

#[inline]
fn emit_last_literals(out: &mut Vec<u8>, literals: &[u8]) {
    let lit = literals.len();
    out.push((lit.min(15) as u8) << 4);
    if lit >= 15 {
        put_length(out, lit - 15);
    }
    out.extend_from_slice(literals);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(enc: &mut Lz4Encoder, input: &[u8], dict: &[u8]) -> usize {
        let index = DictIndex::build(dict);
        let mut out = Vec::new();
        assert!(enc.compress(input, Some((dict, &index)), &mut out, usize::MAX));
        let mut back = vec![0; input.len()];
        let n = lz4_flex::block::decompress_into_with_dict(&out, &mut back, dict).unwrap();
        assert_eq!(n, input.len());
        assert_eq!(back, input);
        // Without the dictionary too.
        let mut plain = Vec::new();
        assert!(enc.compress(input, None, &mut plain, usize::MAX));
        assert_eq!(lz4_flex::block::decompress(&plain, input.len()).unwrap(), input);
        out.len()
    }

    #[test]
    fn blocks_decode_with_lz4_flex_at_every_size_and_reuse() {
        let text = b"the quick brown fox jumps over the lazy dog; the quick brown cat naps. ".repeat(40);
        let dict = b"over the lazy dog; the quick brown ".repeat(3);
        let mut enc = Lz4Encoder::new();
        for len in (0..200).chain([1000, 2000, text.len()]) {
            round_trip(&mut enc, &text[..len], &dict);
        }
        // Incompressible bytes and a long run.
        let mut x = 1u64;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (x >> 56) as u8
            })
            .collect();
        round_trip(&mut enc, &noise, &dict);
        round_trip(&mut enc, &[7u8; 100_000], &dict);
        // A dictionary makes the first occurrence cheap.
        let sentence = b"{\"title\":\"over the lazy dog; the quick brown\"}";
        let with = round_trip(&mut enc, sentence, &dict);
        let mut without = Vec::new();
        enc.compress(sentence, None, &mut without, usize::MAX);
        assert!(with + 20 < without.len(), "{with} vs {}", without.len());
    }

    #[test]
    fn gives_up_past_the_budget() {
        let mut enc = Lz4Encoder::new();
        let mut out = Vec::new();
        let input: Vec<u8> = (0..=255u8).cycle().take(300).map(|b| b.wrapping_mul(151)).collect();
        assert!(!enc.compress(&input[..256], None, &mut out, 100));
    }

    #[test]
    fn nothing_from_an_earlier_call_leaks_into_a_later_one() {
        let mut enc = Lz4Encoder::new();
        let long = b"abcdefgh12345678abcdefgh12345678 and some more text to pad it out".repeat(2000);
        round_trip(&mut enc, &long, b"");
        // A short input after a long one: the long one's table entries must not be used.
        round_trip(&mut enc, b"abcdefgh12345678 and some more text to pad it", b"");
        round_trip(&mut enc, &long[5..300], b"");
    }
}
