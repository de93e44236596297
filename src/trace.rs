//! Cache traces: read recorded request streams and replay them to measure hit ratios.
//!
//! A trace is a sequence of keys, one request each (weight 1). [`read_trace`] decompresses a
//! file by its extension (`.gz`, `.zst`, `.xz`; anything else is read as is) and decodes one
//! of the formats of `shared/traces/README.md` ([`TraceFormat`]). [`ExactLru`] is the
//! reference every replay is checked against: a strict LRU whose hit ratio on these files is
//! published. [`replay`] drives a [`Cache`] through a trace the way a read-through user
//! would (`get`, and `insert` on a miss) and checks the entry bound after every insert.
//!
//! ```no_run
//! use patternbank::trace::{read_trace, ExactLru, TraceFormat};
//! # fn main() -> patternbank::Result<()> {
//! let keys = read_trace("traces/lirs/gli.trace.gz".as_ref(), TraceFormat::Lirs)?;
//! let mut lru = ExactLru::new(1000);
//! keys.iter().for_each(|&k| {
//!     lru.access(k);
//! });
//! println!("LRU hit ratio {:.2} %", lru.hit_percent());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use crate::cache::{Cache, Policy};
use crate::{Error, ErrorKind, Result};

/// How the (decompressed) bytes of a trace encode its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    /// Text (LIRS traces): one decimal integer per line; empty lines and lines equal to `*`
    /// are skipped.
    Lirs,
    /// Text (ARC `.lis` traces): lines `start n ignore request_no`, each standing for `n`
    /// requests, keys `start ..= start + n - 1`.
    Arc,
    /// Binary: big-endian signed 32-bit records, one per request (Java `writeInt`).
    I32,
    /// Binary: big-endian signed 64-bit records, one per request (Java `writeLong`).
    I64,
}

impl TraceFormat {
    /// The name accepted by [`FromStr`]: `lirs`, `arc`, `i32` or `i64`.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::Lirs => "lirs",
            TraceFormat::Arc => "arc",
            TraceFormat::I32 => "i32",
            TraceFormat::I64 => "i64",
        }
    }
}

impl FromStr for TraceFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "lirs" => Ok(TraceFormat::Lirs),
            "arc" => Ok(TraceFormat::Arc),
            "i32" => Ok(TraceFormat::I32),
            "i64" => Ok(TraceFormat::I64),
            _ => Err(Error::invalid(format!("unknown trace format {s:?} (expected lirs, arc, i32 or i64)"))),
        }
    }
}

impl std::fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The keys of the trace at `path`, one per request, in order.
///
/// Decompresses by extension: `.gz` (gzip, every member), `.zst` (Zstandard, every frame),
/// `.xz`; any other file is decoded as it is. Signed binary keys are sign-extended to 64
/// bits and reinterpreted as `u64` (distinct keys stay distinct).
///
/// # Errors
///
/// [`ErrorKind::Io`] if the file cannot be read; [`ErrorKind::InvalidInput`] if the
/// compressed data is damaged, a text line does not parse (the message gives its number),
/// or a binary trace ends inside a record.
pub fn read_trace(path: &Path, format: TraceFormat) -> Result<Vec<u64>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let bytes = decompress(&raw, path)?;
    decode(&bytes, format).map_err(|e| Error::new(e.kind(), format!("{}: {}", path.display(), e.message())))
}

/// Decompresses `raw` according to the extension of `path`.
fn decompress(raw: &[u8], path: &Path) -> Result<Vec<u8>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let damaged = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| {
        Error::new(ErrorKind::InvalidInput, format!("{}: not valid {what} data: {e}", path.display()))
            .with_source(e)
    };
    let mut out = Vec::new();
    match ext {
        "gz" => {
            flate2::read::MultiGzDecoder::new(raw)
                .read_to_end(&mut out)
                .map_err(|e| damaged("gzip", e.into()))?;
        }
        "zst" => {
            let mut input = raw;
            while !input.is_empty() {
                use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
                match ruzstd::decoding::StreamingDecoder::new(&mut input) {
                    Ok(mut frame) => {
                        frame.read_to_end(&mut out).map_err(|e| damaged("zstd", e.into()))?;
                    }
                    Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                        length,
                        ..
                    })) => {
                        // A skippable frame: its header is consumed, skip its body.
                        let length = usize::try_from(length).unwrap_or(usize::MAX);
                        if length > input.len() {
                            return Err(damaged("zstd", "skippable frame runs past the end".into()));
                        }
                        input = &input[length..];
                    }
                    Err(e) => return Err(damaged("zstd", e.into())),
                }
            }
        }
        "xz" => {
            lzma_rs::xz_decompress(&mut { raw }, &mut out).map_err(|e| damaged("xz", e.into()))?;
        }
        _ => out.extend_from_slice(raw),
    }
    Ok(out)
}

/// Decodes decompressed trace bytes. Errors carry no path (the caller adds it).
fn decode(bytes: &[u8], format: TraceFormat) -> Result<Vec<u64>> {
    match format {
        TraceFormat::Lirs => decode_lirs(bytes),
        TraceFormat::Arc => decode_arc(bytes),
        TraceFormat::I32 => decode_fixed::<4>(bytes, |r| i32::from_be_bytes(r) as i64 as u64),
        TraceFormat::I64 => decode_fixed::<8>(bytes, |r| i64::from_be_bytes(r) as u64),
    }
}

/// The lines of a text trace, numbered from 1, trimmed, as UTF-8.
fn text_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Result<&str>)> {
    bytes.split(|&b| b == b'\n').enumerate().map(|(i, line)| {
        let n = i + 1;
        (
            n,
            std::str::from_utf8(line)
                .map(str::trim)
                .map_err(|_| Error::invalid(format!("line {n}: not UTF-8 text"))),
        )
    })
}

/// A decimal key: unsigned, or negative (reinterpreted as `u64`).
fn parse_key(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().or_else(|| s.parse::<i64>().ok().map(|v| v as u64))
}

fn decode_lirs(bytes: &[u8]) -> Result<Vec<u64>> {
    let mut keys = Vec::with_capacity(bytes.len() / 6);
    for (n, line) in text_lines(bytes) {
        let line = line?;
        if line.is_empty() || line == "*" {
            continue;
        }
        let key = parse_key(line).ok_or_else(|| {
            Error::invalid(format!("line {n}: expected a decimal integer or `*`, found {:?}", clip(line)))
        })?;
        keys.push(key);
    }
    Ok(keys)
}

fn decode_arc(bytes: &[u8]) -> Result<Vec<u64>> {
    let mut keys = Vec::with_capacity(bytes.len() / 8);
    for (n, line) in text_lines(bytes) {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| Error::invalid(format!("line {n}: {why} in {:?}", clip(line)));
        let mut fields = line.split_ascii_whitespace();
        let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
            return Err(bad("expected `start_block n_blocks ignore request_no`"));
        };
        let start: u64 = start.parse().map_err(|_| bad("start_block is not an unsigned integer"))?;
        let count: u64 = count.parse().map_err(|_| bad("n_blocks is not an unsigned integer"))?;
        if count > 0 && start.checked_add(count - 1).is_none() {
            return Err(bad("start_block + n_blocks overflows 64 bits"));
        }
        let count = usize::try_from(count).map_err(|_| bad("n_blocks too large"))?;
        keys.try_reserve(count).map_err(|_| bad("n_blocks too large to hold in memory"))?;
        keys.extend((0..count as u64).map(|i| start + i));
    }
    Ok(keys)
}

fn decode_fixed<const W: usize>(bytes: &[u8], key: impl Fn([u8; W]) -> u64) -> Result<Vec<u64>> {
    let records = bytes.chunks_exact(W);
    if !records.remainder().is_empty() {
        return Err(Error::invalid(format!(
            "truncated record: {} bytes is {} whole {W}-byte records and {} bytes more",
            bytes.len(),
            bytes.len() / W,
            records.remainder().len()
        )));
    }
    Ok(records.map(|r| key(r.try_into().unwrap_or([0; W]))).collect())
}

/// At most 40 characters of `s`, for error messages.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Exact LRU

const NIL: u32 = u32::MAX;

struct Node {
    key: u64,
    prev: u32,
    next: u32,
}

/// A strict LRU over `u64` keys of weight 1: the reference for hit ratios.
///
/// O(1) per access: a hash map from key to a slot of a slab, whose slots form a doubly
/// linked list in recency order. A miss inserts the key, evicting the least recently used
/// one when `capacity` keys are already held (cold start: the misses that fill the cache
/// count as misses). Holds at most `min(capacity, 2^32 - 1)` keys.
pub struct ExactLru {
    capacity: usize,
    map: HashMap<u64, u32, foldhash::fast::RandomState>,
    nodes: Vec<Node>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    hits: u64,
    requests: u64,
}

impl ExactLru {
    /// An empty LRU of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(NIL as usize);
        let reserve = capacity.min(1 << 20);
        Self {
            capacity,
            map: HashMap::with_capacity_and_hasher(reserve, Default::default()),
            nodes: Vec::with_capacity(reserve),
            head: NIL,
            tail: NIL,
            hits: 0,
            requests: 0,
        }
    }

    /// Requests `key`: returns whether it was held (a hit). On a miss it is inserted.
    pub fn access(&mut self, key: u64) -> bool {
        self.requests += 1;
        if let Some(&i) = self.map.get(&key) {
            self.hits += 1;
            if i != self.head {
                self.unlink(i);
                self.push_front(i);
            }
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        let i = if self.nodes.len() < self.capacity {
            self.nodes.push(Node { key, prev: NIL, next: NIL });
            (self.nodes.len() - 1) as u32
        } else {
            // Full: reuse the least recently used slot.
            let i = self.tail;
            self.unlink(i);
            let old = std::mem::replace(&mut self.nodes[i as usize].key, key);
            self.map.remove(&old);
            i
        };
        self.push_front(i);
        self.map.insert(key, i);
        false
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old_head = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old_head;
        }
        if old_head == NIL {
            self.tail = i;
        } else {
            self.nodes[old_head as usize].prev = i;
        }
        self.head = i;
    }

    /// Whether `key` is held (does not count as a request or change the order).
    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The key bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Hits so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Requests so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Hits / requests, in [0, 1] (0 before the first request).
    pub fn hit_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }

    /// [`hit_ratio`](Self::hit_ratio) in percent.
    pub fn hit_percent(&self) -> f64 {
        100.0 * self.hit_ratio()
    }

    /// The keys held, most recently used first (for tests and debugging).
    pub fn keys_by_recency(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.len());
        let mut i = self.head;
        while i != NIL {
            let n = &self.nodes[i as usize];
            out.push(n.key);
            i = n.next;
        }
        out
    }
}

impl std::fmt::Debug for ExactLru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactLru")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("hits", &self.hits)
            .field("requests", &self.requests)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Replaying a trace through a Cache

/// The policy names a replay accepts, in the order tools list them.
pub const POLICY_NAMES: &[&str] = &["lru", "lfu", "adaptive", "clock"];

/// The [`Policy`] called `name` (one of [`POLICY_NAMES`]).
pub fn parse_policy(name: &str) -> Option<Policy> {
    match name {
        "lru" => Some(Policy::Lru),
        "lfu" => Some(Policy::Lfu),
        "adaptive" => Some(Policy::Adaptive),
        "clock" => Some(Policy::Clock),
        _ => None,
    }
}

/// What a [`replay`] measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replay {
    /// Requests replayed.
    pub requests: u64,
    /// Requests whose `get` found the key.
    pub hits: u64,
    /// The largest `len()` seen right after an insert.
    pub max_len: usize,
}

impl Replay {
    /// Hits / requests in percent (0 for an empty trace).
    pub fn hit_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.hits as f64 / self.requests as f64
        }
    }
}

/// Replays `keys` through a new `Cache::<u64, ()>::new(capacity, policy)`: `get` each key,
/// `insert` it on a miss, and check `len() <= capacity` after every insert.
///
/// `progress` is called with the number of requests done every 65,536 requests and at the
/// end.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] (a failed check, not bad input) as soon as the cache holds
/// more than `capacity` entries: a cache that overfills scores impossibly well.
pub fn replay(
    keys: &[u64],
    capacity: usize,
    policy: Policy,
    mut progress: impl FnMut(u64),
) -> Result<Replay> {
    let cache = Cache::<u64, ()>::new(capacity, policy);
    let mut out = Replay { requests: 0, hits: 0, max_len: 0 };
    for (i, &k) in keys.iter().enumerate() {
        if cache.get(&k).is_some() {
            out.hits += 1;
        } else {
            cache.insert(k, ());
            let len = cache.len();
            out.max_len = out.max_len.max(len);
            if len > capacity {
                return Err(Error::invalid(format!(
                    "{policy:?} cache holds {len} entries after request {} (capacity {capacity})",
                    i + 1
                )));
            }
        }
        out.requests += 1;
        if out.requests.is_multiple_of(1 << 16) {
            progress(out.requests);
        }
    }
    progress(out.requests);
    Ok(out)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut { data }, &mut out).unwrap();
        out
    }

    /// Writes `bytes` to `name` in a fresh folder and reads it back as `format`.
    fn read(name: &str, bytes: &[u8], format: TraceFormat) -> Result<Vec<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        read_trace(&path, format)
    }

    #[test]
    fn format_names_round_trip() {
        for f in [TraceFormat::Lirs, TraceFormat::Arc, TraceFormat::I32, TraceFormat::I64] {
            assert_eq!(f.name().parse::<TraceFormat>().unwrap(), f);
        }
        let e = "i16".parse::<TraceFormat>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn lirs_text_skips_empty_lines_and_stars() {
        let text = b"1\n2\n\n*\n  3  \r\n1\n*\n18446744073709551615\n-1";
        let want = vec![1, 2, 3, 1, u64::MAX, u64::MAX];
        assert_eq!(read("t.trace", text, TraceFormat::Lirs).unwrap(), want);
        assert_eq!(read("t.trace.gz", &gzip(text), TraceFormat::Lirs).unwrap(), want);
        assert_eq!(read("t.trace.zst", &zstd(text), TraceFormat::Lirs).unwrap(), want);
        assert_eq!(read("t.trace.xz", &xz(text), TraceFormat::Lirs).unwrap(), want);
    }

    #[test]
    fn arc_lines_expand_to_n_requests() {
        let text = b"10 3 0 1\n7 1 0 2\n\n100 0 0 3\n11 2 0 4\n";
        let want = vec![10, 11, 12, 7, 11, 12];
        assert_eq!(read("t.lis", text, TraceFormat::Arc).unwrap(), want);
        assert_eq!(read("t.lis.zst", &zstd(text), TraceFormat::Arc).unwrap(), want);
        assert_eq!(read("t.lis.gz", &gzip(text), TraceFormat::Arc).unwrap(), want);
    }

    #[test]
    fn zstd_reads_every_frame_and_skips_skippable_ones() {
        let mut bytes = zstd(b"1 2 0 0\n");
        // A skippable frame: magic 0x184D2A50, 4-byte little-endian length, body.
        bytes.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&zstd(b"5 1 0 1\n"));
        assert_eq!(read("t.lis.zst", &bytes, TraceFormat::Arc).unwrap(), vec![1, 2, 5]);
    }

    #[test]
    fn binary_records_are_big_endian_and_signed() {
        let i32s: Vec<u8> = [1i32, -1, 0x0102_0304].iter().flat_map(|v| v.to_be_bytes()).collect();
        let want32 = vec![1, u64::MAX, 0x0102_0304];
        assert_eq!(read("t.trace", &i32s, TraceFormat::I32).unwrap(), want32);
        assert_eq!(read("t.trace.xz", &xz(&i32s), TraceFormat::I32).unwrap(), want32);
        assert_eq!(read("t.trace.gz", &gzip(&i32s), TraceFormat::I32).unwrap(), want32);

        let i64s: Vec<u8> = [7i64, -2, i64::MAX].iter().flat_map(|v| v.to_be_bytes()).collect();
        let want64 = vec![7, u64::MAX - 1, i64::MAX as u64];
        assert_eq!(read("t.trace.gz", &gzip(&i64s), TraceFormat::I64).unwrap(), want64);
        assert_eq!(read("t.trace.xz", &xz(&i64s), TraceFormat::I64).unwrap(), want64);
        assert_eq!(read("t.trace.zst", &zstd(&i64s), TraceFormat::I64).unwrap(), want64);
        assert_eq!(read("t.trace", b"", TraceFormat::I64).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn errors_name_the_line_or_the_truncated_record() {
        let e = read("t.trace", b"1\n2\nx3\n", TraceFormat::Lirs).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("line 3"), "{e}");
        assert!(e.message().contains("t.trace"), "{e}");

        let e = read("t.lis", b"1 2 0 0\n5\n", TraceFormat::Arc).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("line 2"), "{e}");
        let e = read("t.lis", b"1 -2 0 0\n", TraceFormat::Arc).unwrap_err();
        assert!(e.message().contains("line 1"), "{e}");
        let e = read("t.lis", format!("{} 2 0 0\n", u64::MAX).as_bytes(), TraceFormat::Arc).unwrap_err();
        assert!(e.message().contains("overflows"), "{e}");
        let e = read("t.lis", b"1 2 0 0\n\xff\xfe\n", TraceFormat::Arc).unwrap_err();
        assert!(e.message().contains("line 2") && e.message().contains("UTF-8"), "{e}");

        let e = read("t.trace", &[0, 0, 0, 1, 0, 0], TraceFormat::I32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("truncated record"), "{e}");
        let e = read("t.trace.gz", &gzip(&[0; 12]), TraceFormat::I64).unwrap_err();
        assert!(e.message().contains("truncated record"), "{e}");
    }

    #[test]
    fn damaged_or_missing_files_are_errors_not_panics() {
        for name in ["t.trace.gz", "t.trace.zst", "t.trace.xz"] {
            let e = read(name, b"this is not compressed data at all", TraceFormat::Lirs).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}: {e}");
            assert!(e.message().contains("not valid"), "{e}");
        }
        // A gzip stream cut short.
        let mut cut = gzip(&[7u8; 4096]);
        cut.truncate(cut.len() / 2);
        assert_eq!(read("t.trace.gz", &cut, TraceFormat::I32).unwrap_err().kind(), ErrorKind::InvalidInput);

        let e = read_trace(Path::new("/nonexistent/trace.gz"), TraceFormat::Lirs).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn exact_lru_matches_a_hand_computed_sequence() {
        // Capacity 3. Sequence and state (most recent first) after each access:
        //  1 miss [1]; 2 miss [2 1]; 3 miss [3 2 1]; 1 hit [1 3 2]; 4 miss, evicts 2 [4 1 3];
        //  2 miss, evicts 3 [2 4 1]; 1 hit [1 2 4]; 3 miss, evicts 4 [3 1 2]; 4 miss, evicts 2
        //  [4 3 1]; 1 hit [1 4 3]; 1 hit [1 4 3].
        let mut lru = ExactLru::new(3);
        let seq = [1, 2, 3, 1, 4, 2, 1, 3, 4, 1, 1];
        let hits = [false, false, false, true, false, false, true, false, false, true, true];
        for (&k, &h) in seq.iter().zip(&hits) {
            assert_eq!(lru.access(k), h, "key {k} in {:?}", lru.keys_by_recency());
            assert!(lru.len() <= 3);
        }
        assert_eq!(lru.keys_by_recency(), vec![1, 4, 3]);
        assert_eq!((lru.hits(), lru.requests()), (4, 11));
        assert!((lru.hit_percent() - 400.0 / 11.0).abs() < 1e-9);
        assert!(!lru.contains(2));

        let mut one = ExactLru::new(1);
        assert!(!one.access(5) && one.access(5) && !one.access(6) && !one.access(5));
        let mut none = ExactLru::new(0);
        assert!(!none.access(1) && !none.access(1) && none.is_empty());
        assert_eq!(ExactLru::new(9).hit_ratio(), 0.0);
    }

    #[test]
    fn exact_lru_agrees_with_a_naive_lru() {
        let mut rng = crate::workload::Rng::new(7);
        for cap in [1usize, 2, 5, 17] {
            let mut lru = ExactLru::new(cap);
            let mut naive: Vec<u64> = Vec::new(); // most recent last
            for _ in 0..5000 {
                let k = rng.next_u64() % 40;
                let want = if let Some(p) = naive.iter().position(|&x| x == k) {
                    naive.remove(p);
                    true
                } else {
                    if naive.len() == cap {
                        naive.remove(0);
                    }
                    false
                };
                naive.push(k);
                assert_eq!(lru.access(k), want);
            }
            assert_eq!(lru.keys_by_recency(), naive.iter().rev().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn replay_counts_hits_and_keeps_the_bound() {
        let keys: Vec<u64> = (0..10_000u64).map(|i| i % 100).collect();
        let mut last = 0;
        let r = replay(&keys, 1000, Policy::Adaptive, |n| last = n).unwrap();
        assert_eq!(r.requests, 10_000);
        assert_eq!(r.hits, 10_000 - 100, "every key fits: only the first pass misses");
        assert!(r.max_len <= 1000);
        assert_eq!(last, 10_000);
        assert_eq!(parse_policy("adaptive"), Some(Policy::Adaptive));
        assert_eq!(parse_policy("clock"), Some(Policy::Clock));
        assert_eq!(parse_policy("nope"), None);
    }
}
