//! Trajectories: an agent's run as timestamped steps, in a compact lossless columnar layout,
//! then compressed as a tagged blob.
//!
//! Layout (version 1; all integers LEB128 varints, strings a varint length then UTF-8):
//!
//! ```text
//! u8       layout version (1)
//! string   id
//! varint   pattern count, then each pattern id
//! varint   action table size, then each distinct action once, in first-use order
//! varint   step count n
//! varint   width: w + 1 when every step has w values, 0 when counts vary
//! column   timestamps: zigzag(first), then zigzag of each delta-of-delta
//! column   actions: the table index of each step's action
//! column   rewards: the index + 1 of a value seen before (among the first 127 distinct), or
//!          0 then its 4 bytes (f32 bits, little-endian)
//! [column  value counts, when width is 0]
//! columns  values: per value slot j (w columns when uniform, else step by step), the same
//!          bit-delta against the previous step's value in slot j (+0.0 when it had none)
//! ```
//!
//! Why these choices (measured on [`generate_trajectory`] output by the ignored test
//! `layout_choices`): columns put like bytes together for the back-end compressor; rewards
//! mostly repeat a few values, so most take one byte; the integer difference of f32 bit
//! patterns is small for slowly drifting values (same sign and exponent: the distance in ulps)
//! and exactly reversible for every bit pattern, NaN payloads and −0.0 included; it beat XOR
//! of the bits, and byte planes of either, except by 1 % under zlib. Delta-of-delta
//! timestamps are a third smaller than plain deltas for a steady period with jitter.

use super::{varint, Codec, CodecError, Dictionary, DictionarySet, Encoder};

const LAYOUT_VERSION: u8 = 1;
/// Distinct rewards remembered per trajectory: their indexes stay one-byte varints.
const REWARD_TABLE: usize = 127;

/// One step of a trajectory.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// Wall-clock time of the step, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// What the agent did.
    pub action: String,
    /// The reward it got.
    pub reward: f32,
    /// Observed values (metrics, features), usually a fixed number per trajectory.
    pub values: Vec<f32>,
}

/// Bit-exact equality, so NaN == NaN and −0.0 != +0.0: what a lossless round trip must keep.
impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        self.timestamp_ms == other.timestamp_ms
            && self.action == other.action
            && self.reward.to_bits() == other.reward.to_bits()
            && self.values.len() == other.values.len()
            && self.values.iter().zip(&other.values).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for Step {}

/// An agent's run: which patterns it used and what happened step by step.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trajectory {
    /// The trajectory's id.
    pub id: String,
    /// Ids of the patterns the run used.
    pub pattern_ids: Vec<String>,
    /// The steps, usually in time order.
    pub steps: Vec<Step>,
}

/// The size of `t` as JSON (`serde_json`, compact): the raw form trajectory savings are
/// quoted against, as pattern data's are against its JSON. Counts without allocating.
pub fn trajectory_json_len(t: &Trajectory) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing to a counter cannot fail; a non-finite f32 is written as `null`.
    let _ = serde_json::to_writer(&mut n, t);
    n.0
}

/// The size of `t` in a plain fixed-width binary form, a second baseline (smaller, so
/// stricter, than JSON): each string as a u32 length and its bytes
/// (every step's action in full), then per step an i64 timestamp, the action, an f32 reward, a
/// u32 value count and the f32 values.
pub fn trajectory_plain_len(t: &Trajectory) -> usize {
    4 + t.id.len()
        + 4
        + t.pattern_ids.iter().map(|p| 4 + p.len()).sum::<usize>()
        + 4
        + t.steps.iter().map(|s| 8 + 4 + s.action.len() + 4 + 4 + 4 * s.values.len()).sum::<usize>()
}

/// Encodes `t` in the columnar layout, then as a blob with `codec` and `dict` (raw when that
/// does not save [`DEFAULT_MIN_SAVING`](super::DEFAULT_MIN_SAVING) bytes). Allocates.
pub fn encode_trajectory(
    t: &Trajectory,
    codec: Codec,
    dict: Option<&Dictionary>,
) -> Result<Vec<u8>, CodecError> {
    Encoder::new(codec).encode(dict, &layout(t))
}

/// Decodes a blob made by [`encode_trajectory`], bit-exact. Allocates.
pub fn decode_trajectory(blob: &[u8], dicts: &DictionarySet) -> Result<Trajectory, CodecError> {
    parse(&super::decode(blob, dicts)?)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    varint::put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The integer difference of two f32 bit patterns, zigzagged: small for nearby values.
#[inline]
fn float_delta(prev: f32, cur: f32) -> u64 {
    varint::zigzag(i64::from(cur.to_bits().wrapping_sub(prev.to_bits()) as i32))
}

#[inline]
fn undo_float_delta(prev: f32, delta: u64) -> f32 {
    f32::from_bits(prev.to_bits().wrapping_add(varint::unzigzag(delta) as i32 as u32))
}

/// The uncompressed columnar layout of `t`.
pub(crate) fn layout(t: &Trajectory) -> Vec<u8> {
    let n = t.steps.len();
    let mut out = Vec::with_capacity(64 + n * 16);
    out.push(LAYOUT_VERSION);
    put_str(&mut out, &t.id);
    varint::put(&mut out, t.pattern_ids.len() as u64);
    for p in &t.pattern_ids {
        put_str(&mut out, p);
    }
    // Action table in first-use order; a linear scan is fastest for the handful agents use.
    let mut table: Vec<&str> = Vec::new();
    let mut indexes = Vec::with_capacity(n);
    for s in &t.steps {
        let i = table.iter().position(|a| *a == s.action).unwrap_or_else(|| {
            table.push(&s.action);
            table.len() - 1
        });
        indexes.push(i as u64);
    }
    varint::put(&mut out, table.len() as u64);
    for a in &table {
        put_str(&mut out, a);
    }
    varint::put(&mut out, n as u64);
    let width = t.steps.first().map_or(0, |s| s.values.len());
    let uniform = t.steps.iter().all(|s| s.values.len() == width);
    varint::put(&mut out, if uniform { width as u64 + 1 } else { 0 });

    let (mut prev_ts, mut prev_delta) = (0i64, 0i64);
    for s in &t.steps {
        let delta = s.timestamp_ms.wrapping_sub(prev_ts);
        varint::put(&mut out, varint::zigzag(delta.wrapping_sub(prev_delta)));
        prev_ts = s.timestamp_ms;
        prev_delta = delta;
    }
    for i in indexes {
        varint::put(&mut out, i);
    }
    let mut seen: Vec<u32> = Vec::new();
    for s in &t.steps {
        let bits = s.reward.to_bits();
        match seen.iter().position(|&r| r == bits) {
            Some(i) => varint::put(&mut out, i as u64 + 1),
            None => {
                out.push(0);
                out.extend_from_slice(&bits.to_le_bytes());
                if seen.len() < REWARD_TABLE {
                    seen.push(bits);
                }
            }
        }
    }
    if uniform {
        for j in 0..width {
            let mut prev = 0.0f32;
            for s in &t.steps {
                varint::put(&mut out, float_delta(prev, s.values[j]));
                prev = s.values[j];
            }
        }
    } else {
        for s in &t.steps {
            varint::put(&mut out, s.values.len() as u64);
        }
        let mut prev: &[f32] = &[];
        for s in &t.steps {
            for (j, &v) in s.values.iter().enumerate() {
                varint::put(&mut out, float_delta(prev.get(j).copied().unwrap_or(0.0), v));
            }
            prev = &s.values;
        }
    }
    out
}

/// A cursor over a layout, every read bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        varint::get(self.buf, &mut self.pos, what)
    }

    /// A count of items that each take at least one more byte: bounded by what is left, so a
    /// corrupt count cannot make us allocate more than the input justifies.
    fn count(&mut self, what: &'static str) -> Result<usize, CodecError> {
        let n = self.varint(what)?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(CodecError::MalformedTrajectory("a count exceeds the bytes left"));
        }
        Ok(n as usize)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        let len = self.count(what)?;
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        std::str::from_utf8(bytes).map_err(|_| CodecError::MalformedTrajectory("a string is not UTF-8"))
    }

    fn float(&mut self, prev: f32) -> Result<f32, CodecError> {
        let d = self.varint("float column")?;
        if d > u64::from(u32::MAX) {
            return Err(CodecError::MalformedTrajectory("a float delta exceeds 32 bits"));
        }
        Ok(undo_float_delta(prev, d))
    }
}

/// Parses a layout made by [`layout`].
pub(crate) fn parse(buf: &[u8]) -> Result<Trajectory, CodecError> {
    let mut r = Reader { buf, pos: 0 };
    let version = *buf.first().ok_or(CodecError::MalformedTrajectory("empty"))?;
    if version != LAYOUT_VERSION {
        return Err(CodecError::MalformedTrajectory("unknown layout version"));
    }
    r.pos = 1;
    let id = r.str("trajectory id")?.to_owned();
    let patterns = r.count("pattern count")?;
    let pattern_ids =
        (0..patterns).map(|_| r.str("pattern id").map(str::to_owned)).collect::<Result<_, _>>()?;
    let actions = r.count("action table size")?;
    let table = (0..actions).map(|_| r.str("action")).collect::<Result<Vec<_>, _>>()?;
    let n = r.count("step count")?;
    // A step takes at least three bytes (timestamp, action, reward).
    if n > (buf.len() - r.pos) / 3 {
        return Err(CodecError::MalformedTrajectory("step count exceeds the bytes left"));
    }
    let width = r.varint("width")?;
    let mut steps = vec![Step::default(); n];

    let (mut prev_ts, mut prev_delta) = (0i64, 0i64);
    for s in &mut steps {
        let delta = prev_delta.wrapping_add(varint::unzigzag(r.varint("timestamp column")?));
        s.timestamp_ms = prev_ts.wrapping_add(delta);
        prev_ts = s.timestamp_ms;
        prev_delta = delta;
    }
    for s in &mut steps {
        let i = r.varint("action column")?;
        let action = table
            .get(i as usize)
            .ok_or(CodecError::MalformedTrajectory("an action index is out of range"))?;
        s.action = (*action).to_owned();
    }
    let mut seen: Vec<u32> = Vec::new();
    for s in &mut steps {
        let bits = match r.varint("reward column")? {
            0 => {
                let bytes =
                    r.buf.get(r.pos..r.pos + 4).ok_or(CodecError::Truncated { what: "reward column" })?;
                r.pos += 4;
                let bits = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                if seen.len() < REWARD_TABLE {
                    seen.push(bits);
                }
                bits
            }
            i => *seen
                .get(i as usize - 1)
                .ok_or(CodecError::MalformedTrajectory("a reward index is out of range"))?,
        };
        s.reward = f32::from_bits(bits);
    }
    if width > 0 {
        let width = usize::try_from(width - 1)
            .ok()
            .filter(|&w| n == 0 || w <= (buf.len() - r.pos) / n)
            .ok_or(CodecError::MalformedTrajectory("width exceeds the bytes left"))?;
        for s in &mut steps {
            s.values = Vec::with_capacity(width);
        }
        for _ in 0..width {
            let mut prev = 0.0f32;
            for s in &mut steps {
                let v = r.float(prev)?;
                s.values.push(v);
                prev = v;
            }
        }
    } else {
        // Each value takes at least one byte: the counts together are bounded by what is left.
        let mut left = buf.len() - r.pos;
        for s in &mut steps {
            let count = r.varint("value count")?;
            left = left
                .checked_sub(1)
                .and_then(|l| l.checked_sub(usize::try_from(count).ok()?))
                .ok_or(CodecError::MalformedTrajectory("value counts exceed the bytes left"))?;
            s.values = vec![0.0; count as usize];
        }
        let mut prev: Vec<f32> = Vec::new();
        for s in &mut steps {
            for j in 0..s.values.len() {
                s.values[j] = r.float(prev.get(j).copied().unwrap_or(0.0))?;
            }
            prev.clone_from(&s.values);
        }
    }
    if r.pos != buf.len() {
        return Err(CodecError::MalformedTrajectory("bytes left after the last column"));
    }
    Ok(Trajectory { id, pattern_ids, steps })
}

/// SplitMix64, as in patternbank's `workload::Rng` (copied so this module stands alone).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// A 26-character time-ordered id (ULID-like, Crockford base32), as `workload::ulid_like`.
    fn ulid_like(&mut self, ms: u64) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut out = String::with_capacity(26);
        for i in (0..10).rev() {
            out.push(ALPHABET[((ms >> (5 * i)) & 31) as usize] as char);
        }
        let r = self.next_u64() as u128 | ((self.next_u64() as u128) << 64);
        for i in (0..16).rev() {
            out.push(ALPHABET[((r >> (5 * i)) & 31) as usize] as char);
        }
        out
    }
}

/// Actions an agent loop takes.
const ACTIONS: [&str; 12] = [
    "plan",
    "search_patterns",
    "read_file",
    "edit_file",
    "run_tests",
    "run_command",
    "call_tool",
    "ask_user",
    "reflect",
    "retry",
    "summarize",
    "commit",
];

/// Rewards an evaluator hands out most of the time.
const COMMON_REWARDS: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// A seeded synthetic trajectory, the standard input for trajectory benchmarks:
///
/// - id and 1–4 pattern ids: 26-character ULID-like strings;
/// - 50–500 steps (uniform); the first at a random time in the 30 days after 2025-10-09
///   (1,760,000,000,000 ms), then one every `period` ms, `period` uniform in 100–2000 per
///   trajectory, plus Gaussian jitter of σ = 5 % of the period (at least 1 ms apart);
/// - actions from a per-trajectory subset of 3–8 of 12 agent actions, skewed towards the
///   first of the subset (index = below(below(k) + 1)), and repeating the previous action
///   with probability 0.3;
/// - rewards in [0, 1]: 85 % one of {0, 0.25, 0.5, 0.75, 1}, 15 % uniform;
/// - 4–8 values per step (fixed per trajectory), each a random walk: a uniform start in
///   [−1, 1), then steps of N(0, 0.01²) (in f64, stored as f32).
pub fn generate_trajectory(seed: u64) -> Trajectory {
    let mut rng = Rng::new(seed);
    let start = 1_760_000_000_000 + rng.below(30 * 86_400_000);
    let id = rng.ulid_like(start);
    let pattern_ids = (0..1 + rng.below(4))
        .map(|_| {
            let created = start - rng.below(86_400_000);
            rng.ulid_like(created)
        })
        .collect();
    let n = 50 + rng.below(451) as usize;
    let period = 100.0 + rng.below(1901) as f64;
    let mut subset = ACTIONS.to_vec();
    for i in (1..subset.len()).rev() {
        subset.swap(i, rng.below(i as u64 + 1) as usize);
    }
    subset.truncate(3 + rng.below(6) as usize);
    let width = 4 + rng.below(5) as usize;
    let mut values: Vec<f64> = (0..width).map(|_| rng.next_f64() * 2.0 - 1.0).collect();
    let mut t = start as i64;
    let mut action = subset[0];
    let mut steps = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            t += ((period + rng.normal() * period * 0.05).round() as i64).max(1);
        }
        if rng.next_f64() >= 0.3 {
            let upto = rng.below(subset.len() as u64) + 1;
            action = subset[rng.below(upto) as usize];
        }
        let reward = if rng.next_f64() < 0.85 {
            COMMON_REWARDS[rng.below(COMMON_REWARDS.len() as u64) as usize]
        } else {
            rng.next_f64() as f32
        };
        for v in &mut values {
            *v += rng.normal() * 0.01;
        }
        steps.push(Step {
            timestamp_ms: t,
            action: action.to_owned(),
            reward,
            values: values.iter().map(|&v| v as f32).collect(),
        });
    }
    Trajectory { id, pattern_ids, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(t: i64, action: &str, reward: f32, values: &[f32]) -> Step {
        Step { timestamp_ms: t, action: action.into(), reward, values: values.to_vec() }
    }

    /// Trajectories that stress the layout: special floats, empty and odd strings, ragged
    /// widths, extreme and backwards timestamps.
    fn awkward() -> Vec<Trajectory> {
        let nan_payload = f32::from_bits(0x7FC0_1234);
        let neg_nan = f32::from_bits(0xFFFF_FFFF);
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            nan_payload,
            neg_nan,
            f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            f32::MIN,
        ];
        vec![
            Trajectory::default(),
            Trajectory {
                id: String::new(),
                pattern_ids: vec![String::new(), "é→漢字🙂".into()],
                steps: vec![Step::default()],
            },
            Trajectory {
                id: "specials".into(),
                pattern_ids: vec![],
                steps: specials
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| step(i as i64, "", v, &specials[i..]))
                    .collect(),
            },
            Trajectory {
                id: "clock".into(),
                pattern_ids: vec!["p".into()],
                steps: [i64::MIN, i64::MAX, 0, -1, i64::MIN + 1, 1_760_000_000_000, 1_759_999_999_000]
                    .iter()
                    .map(|&t| step(t, "a\0b", 0.5, &[]))
                    .collect(),
            },
            Trajectory {
                id: "ragged".into(),
                pattern_ids: vec![],
                steps: (0..40)
                    .map(|i| {
                        step(i, ["x", "y", "z"][i as usize % 3], 1.0, &vec![i as f32 * 0.1; i as usize % 5])
                    })
                    .collect(),
            },
        ]
    }

    #[test]
    fn round_trips_are_bit_exact_through_every_codec() {
        let dict = Dictionary::new(4, layout(&generate_trajectory(99))).unwrap();
        let dicts: DictionarySet = [dict.clone()].into_iter().collect();
        for t in awkward().into_iter().chain((0..20).map(generate_trajectory)) {
            assert_eq!(parse(&layout(&t)).unwrap(), t);
            for codec in [Codec::Raw, Codec::Lz4, Codec::Zlib] {
                for d in [None, Some(&dict)] {
                    let blob = encode_trajectory(&t, codec, d).unwrap();
                    let back = decode_trajectory(&blob, &dicts).unwrap();
                    assert_eq!(back, t, "{codec:?}");
                }
            }
        }
        // Bit-exact means bit-exact: -0.0 and +0.0 differ, NaN equals itself.
        assert_ne!(step(0, "", 0.0, &[]), step(0, "", -0.0, &[]));
        assert_eq!(step(0, "", f32::NAN, &[]), step(0, "", f32::NAN, &[]));
    }

    #[test]
    fn the_layout_is_compact() {
        let t = generate_trajectory(5);
        let bytes = layout(&t);
        // Actions are table indexes, timestamps a byte or two, rewards mostly one byte,
        // values about three bytes each.
        let per_step = bytes.len() as f64 / t.steps.len() as f64;
        let width = t.steps[0].values.len() as f64;
        assert!(per_step < 4.5 + 3.2 * width, "{per_step} bytes per step for {width} values");
        let table = bytes.windows(b"plan".len()).filter(|w| w == b"plan").count();
        assert!(table <= 1, "each action string is stored once");
    }

    #[test]
    fn corrupt_layouts_fail_cleanly() {
        let none = DictionarySet::new();
        for t in awkward().into_iter().chain([generate_trajectory(3)]) {
            let bytes = layout(&t);
            // Every truncation is an error.
            for cut in 0..bytes.len() {
                assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            // A flipped layout byte may parse (to anything: the blob checksum is what catches
            // it) but never panics; through a blob, it is always an error.
            for i in 0..bytes.len().min(400) {
                let mut b = bytes.clone();
                b[i] ^= 0x41;
                let _ = parse(&b);
                let blob = crate::codec::encode(Codec::Raw, None, &bytes, 0).unwrap();
                let mut bad = blob.clone();
                let at = blob.len() - bytes.len() + i;
                bad[at] ^= 0x41;
                assert!(decode_trajectory(&bad, &none).is_err());
            }
        }
        let malformed = |b: &[u8]| matches!(parse(b), Err(CodecError::MalformedTrajectory(_)));
        assert!(malformed(&[]));
        assert!(malformed(&[2]), "unknown layout version");
        assert!(malformed(&[1, 2, 0xFF, 0xFE]), "id is not UTF-8");
        // One step whose action index 5 is out of a one-entry table.
        assert!(malformed(&[1, 0, 0, 1, 1, b'a', 1, 1, 0, 5, 0]));
        // A step count far beyond the bytes left.
        assert!(malformed(&[1, 0, 0, 0, 0xFF, 0xFF, 0x03, 1]));
        // Trailing bytes after a valid empty trajectory.
        let mut empty = layout(&Trajectory::default());
        assert_eq!(parse(&empty).unwrap(), Trajectory::default());
        empty.push(0);
        assert!(malformed(&empty));
    }

    #[test]
    fn the_generator_is_seeded_and_as_documented() {
        assert_eq!(generate_trajectory(11), generate_trajectory(11));
        assert_ne!(generate_trajectory(11), generate_trajectory(12));
        for seed in 0..50 {
            let t = generate_trajectory(seed);
            assert_eq!(t.id.len(), 26);
            assert!((1..=4).contains(&t.pattern_ids.len()));
            assert!((50..=500).contains(&t.steps.len()));
            let width = t.steps[0].values.len();
            assert!((4..=8).contains(&width));
            let actions: std::collections::HashSet<&str> =
                t.steps.iter().map(|s| s.action.as_str()).collect();
            assert!(actions.len() <= 8 && actions.iter().all(|a| ACTIONS.contains(a)));
            let common = t.steps.iter().filter(|s| COMMON_REWARDS.contains(&s.reward)).count();
            assert!(common * 10 > t.steps.len() * 7, "mostly the few common rewards");
            for w in t.steps.windows(2) {
                let dt = w[1].timestamp_ms - w[0].timestamp_ms;
                assert!((1..=3000).contains(&dt), "{dt}");
                assert!((0.0..=1.0).contains(&w[1].reward));
                assert_eq!(w[1].values.len(), width);
                for (a, b) in w[0].values.iter().zip(&w[1].values) {
                    assert!((a - b).abs() < 0.08, "values drift slowly: {a} → {b}");
                }
            }
        }
    }

    /// The measurements behind the layout's choices (`cargo test --release -- --ignored
    /// layout_choices --nocapture`): bytes of the value columns and of the timestamp column
    /// over 300 generated trajectories, alone and after each back end.
    #[test]
    #[ignore]
    fn layout_choices() {
        let ts: Vec<Trajectory> = (0..300).map(generate_trajectory).collect();
        let sizes = |f: &dyn Fn(&Trajectory, &mut Vec<u8>)| {
            let (mut plain, mut lz4, mut zlib) = (0, 0, 0);
            for t in &ts {
                let mut body = Vec::new();
                f(t, &mut body);
                plain += body.len();
                lz4 += crate::codec::encode(Codec::Lz4, None, &body, 0).unwrap().len();
                zlib += crate::codec::encode(Codec::Zlib, None, &body, 0).unwrap().len();
            }
            format!("layout {plain:>8}, lz4 {lz4:>8}, zlib {zlib:>8}")
        };
        let columns = |t: &Trajectory| -> Vec<Vec<u32>> {
            (0..t.steps[0].values.len())
                .map(|j| t.steps.iter().map(|s| s.values[j].to_bits()).collect())
                .collect()
        };
        type Residual = fn(u32, u32) -> u32;
        let bit_delta: Residual = |prev, cur| varint::zigzag(i64::from(cur.wrapping_sub(prev) as i32)) as u32;
        let xor: Residual = |prev, cur| prev ^ cur;
        for (name, residual, planes) in [
            ("bit delta, varint", bit_delta, false),
            ("xor, varint", xor, false),
            ("bit delta, byte planes", bit_delta, true),
            ("xor, byte planes", xor, true),
        ] {
            let line = sizes(&|t, out| {
                for col in columns(t) {
                    let mut prev = 0;
                    let residuals: Vec<u32> = col.iter().map(|&b| (residual(prev, b), prev = b).0).collect();
                    if planes {
                        for k in (0..4).rev() {
                            out.extend(residuals.iter().map(|r| (r >> (8 * k)) as u8));
                        }
                    } else {
                        residuals.iter().for_each(|&r| varint::put(out, u64::from(r)));
                    }
                }
            });
            println!("floats {name:24} {line}");
        }
        println!(
            "floats {:24} {}",
            "plain f32",
            sizes(&|t, out| columns(t)
                .iter()
                .flatten()
                .for_each(|b| out.extend_from_slice(&b.to_le_bytes())))
        );
        for (name, scheme) in [("delta", 0), ("delta of delta", 1), ("delta − first delta", 2)] {
            let line = sizes(&|t, out| {
                let (mut prev, mut prev_delta) = (0i64, 0i64);
                let first = t.steps.get(1).map_or(0, |s| s.timestamp_ms - t.steps[0].timestamp_ms);
                for (i, s) in t.steps.iter().enumerate() {
                    let delta = s.timestamp_ms - prev;
                    let v = [delta, delta - prev_delta, if i == 0 { delta } else { delta - first }][scheme];
                    varint::put(out, varint::zigzag(v));
                    (prev, prev_delta) = (s.timestamp_ms, delta);
                }
            });
            println!("timestamps {name:20} {line}");
        }
    }
}
