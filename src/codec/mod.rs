//! Payload compression and dedup: tagged blobs (raw, LZ4 or DEFLATE, optionally with a trained
//! dictionary), a dictionary trainer, a compact trajectory layout, and a 128-bit content hash.
//!
//! # Blob format (version 1)
//!
//! Every stored value is one self-describing blob, so rows written under an old dictionary or
//! codec stay readable after a retrain or a configuration change:
//!
//! ```text
//! byte 0        format byte: high nibble = format version (1), low nibble = codec id
//!               (0 raw, 1 lz4, 2 zlib); 0x10..=0x12 today, never a byte a JSON text starts with
//! varint        dictionary id (LEB128 u32; 0 = none; 1 byte below 128)
//! varint        uncompressed length (LEB128; at most MAX_VALUE_LEN = 64 MiB)
//! 4 bytes       checksum: low 32 bits of xxh3-64 of the uncompressed bytes, little-endian
//! rest          body: the bytes themselves (raw), an LZ4 block (lz4), or a raw DEFLATE
//!               stream, RFC 1951, without zlib's header and Adler-32 (zlib)
//! ```
//!
//! A typical header is 8 bytes (1 + 1 + 2 + 4). The checksum makes decoding all-or-nothing: a
//! flipped bit in a raw body or an LZ4 literal, which no decoder would notice, is an error, not
//! a wrong value. It costs one xxh3 pass per encode and per decode (70 ns median for a D(N)
//! item: 1–1.5 % of an LZ4 encode, 10–16 % of an LZ4 decode) and lets zlib drop its own 6–10 bytes
//! of framing. Decoding also refuses a declared length over [`MAX_VALUE_LEN`] or beyond what
//! the body could expand to, before allocating.
//!
//! # Choosing a codec
//!
//! Measured on D(20,000) `data` items (mean 899 bytes) on a shared 2-core AMD EPYC VM,
//! dictionaries trained on 2,000 of the items; saved = 1 − stored / raw over all items,
//! headers included; times are per-item medians, first as the items come one after another,
//! then the fastest of three runs of the same item:
//!
//! | codec | saved | encode | decode |
//! |---|---|---|---|
//! | lz4 | 25.5 % | 4.9 / 2.3 µs | 0.46 / 0.22 µs |
//! | lz4 + 32 KiB dictionary | 57.9 % | 4.3 / 2.8 µs | 0.75 / 0.44 µs |
//! | lz4 + 64 KiB dictionary ([`DEFAULT_CODEC`], [`DEFAULT_DICT_LEN`]) | 60.6 % | 4.2 / 2.8 µs | 0.77 / 0.45 µs |
//! | zlib-6 | 47.0 % | 18.7 / 14.1 µs | 4.7 / 3.2 µs |
//! | zlib-6 + 32 KiB dictionary | 63.3 % | 51 / 45 µs | 4.0 / 2.7 µs |
//! | zlib-9 + 32 KiB dictionary ([`DEFAULT_ZLIB_LEVEL`]) | 63.9 % | 63 / 55 µs | 4.0 / 2.7 µs |
//!
//! (Same run, `lz4_flex`'s own block encoder: 24.4 % at 1.5 / 0.9 µs without a dictionary,
//! 49.0 % at 14.3 / 13.3 µs with the 64 KiB one.)
//!
//! An encoder stores the value raw whenever compression would not save at least `min_saving`
//! bytes ([`DEFAULT_MIN_SAVING`]). Keep every [`Dictionary`] that stored blobs name (the
//! [`DictionarySet`]): a retrain adds one, new writes use the latest.
#![forbid(unsafe_code)]

mod dict;
mod error;
mod lz4;
mod trajectory;
mod varint;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub use dict::{train_dictionary, train_dictionary_with, TrainParams, MAX_TRAIN_BYTES};
pub use error::CodecError;
pub use trajectory::{
    decode_trajectory, encode_trajectory, generate_trajectory, trajectory_json_len, trajectory_plain_len,
    Step, Trajectory,
};

/// The blob format version written in the high nibble of byte 0.
pub const FORMAT_VERSION: u8 = 1;
/// Largest value a blob may hold: a header declaring more is refused before any allocation.
pub const MAX_VALUE_LEN: usize = 64 << 20;
/// Largest dictionary: LZ4 offsets reach 65,535 bytes back (DEFLATE uses only the last 32 KiB).
pub const MAX_DICT_LEN: usize = 64 << 10;
/// DEFLATE's window: the part of a dictionary that zlib can use.
const ZLIB_WINDOW: usize = 32 << 10;
/// Default `min_saving`: compress only when it saves at least this many bytes. Below that the
/// decode cost on every read buys next to nothing (16 bytes is under 2 % of a typical 900-byte
/// item), and tiny values, which rarely compress, skip the decoder entirely.
pub const DEFAULT_MIN_SAVING: usize = 16;
/// The default codec: LZ4 with a 64 KiB dictionary saves 60.6 % on D(20,000) items, with a
/// median encode of 2.8–4.2 µs and decode of 0.45–0.8 µs; DEFLATE with a dictionary saves
/// 63.3–63.9 % but takes 12–16× longer to encode and 5× longer to decode.
pub const DEFAULT_CODEC: Codec = Codec::Lz4;
/// Default dictionary size: LZ4 saves 55.0 / 57.9 / 60.6 % with 16 / 32 / 64 KiB on D(20,000)
/// items at about the same speed; DEFLATE uses the last 32 KiB of it.
pub const DEFAULT_DICT_LEN: usize = MAX_DICT_LEN;
/// Samples worth training on: on D(20,000) through the Store, a 64 KiB dictionary trained on
/// the latest 5,000 items saves 60.7 %, on 2,000 60.2 %; reading, decoding and training on
/// 5,000 takes 0.6–1.3 s here, off the hot path.
pub const DEFAULT_TRAIN_SAMPLES: usize = 5_000;
/// Default DEFLATE level. DEFLATE is the density option, and with a dictionary loading its
/// window dominates the encode time (≈ 27 of 48 µs per item), so level 9's extra 0.6 points
/// over level 6 cost only ≈ 20 % more encode time; decoding is as fast.
pub const DEFAULT_ZLIB_LEVEL: u32 = 9;

/// How a blob's body is stored. The discriminant is the id written in the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// The bytes as they are.
    Raw = 0,
    /// An LZ4 block: fastest to decode.
    Lz4 = 1,
    /// A raw DEFLATE stream (zlib's algorithm without its framing): densest.
    Zlib = 2,
}

impl Codec {
    /// The codec with blob id `id`.
    pub fn from_id(id: u8) -> Result<Self, CodecError> {
        match id {
            0 => Ok(Self::Raw),
            1 => Ok(Self::Lz4),
            2 => Ok(Self::Zlib),
            _ => Err(CodecError::UnknownCodec(id)),
        }
    }

    /// The codec's name, as used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Lz4 => "lz4",
            Self::Zlib => "zlib",
        }
    }
}

/// A 128-bit content hash (xxh3-128) for dedup: at 128 bits an accidental collision among
/// billions of values is out of the question, which 32 or 64 bits cannot promise.
pub fn content_hash(data: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot(data)
}

/// The blob checksum: xxh3-64 truncated to 32 bits (a 1-in-4-billion miss on corruption).
#[inline]
fn checksum(data: &[u8]) -> u32 {
    twox_hash::XxHash3_64::oneshot(data) as u32
}

/// A shared dictionary: bytes that precede every value it compresses, so an item's first
/// occurrence of a common phrase is already a match. Immutable; its LZ4 index is built once
/// here, which is why the fields are private.
#[derive(Clone)]
pub struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    lz4: lz4::DictIndex,
}

impl Dictionary {
    /// A dictionary with `id` (not 0, which means "none") and `bytes` (at most
    /// [`MAX_DICT_LEN`]). Indexes the bytes for LZ4 (≈ 0.6 ms for 64 KiB). Allocates.
    pub fn new(id: u32, bytes: Vec<u8>) -> Result<Self, CodecError> {
        if id == 0 {
            return Err(CodecError::InvalidDictionary("id 0 is reserved for \"no dictionary\""));
        }
        if bytes.len() > MAX_DICT_LEN {
            return Err(CodecError::InvalidDictionary("longer than MAX_DICT_LEN (64 KiB)"));
        }
        let lz4 = lz4::DictIndex::build(&bytes);
        Ok(Self { id, bytes, lz4 })
    }

    /// Trains a dictionary of at most `max_size` bytes on `samples` ([`train_dictionary`]).
    pub fn train(id: u32, samples: &[&[u8]], max_size: usize) -> Result<Self, CodecError> {
        Self::new(id, train_dictionary(samples, max_size.min(MAX_DICT_LEN)))
    }

    /// The id written in blobs compressed with it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The dictionary bytes, to persist next to the data.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The tail that DEFLATE's 32 KiB window can reach.
    fn zlib_window(&self) -> &[u8] {
        &self.bytes[self.bytes.len().saturating_sub(ZLIB_WINDOW)..]
    }
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary").field("id", &self.id).field("len", &self.bytes.len()).finish()
    }
}

/// The dictionaries a decoder may need, by id. Keep every dictionary any stored blob names:
/// after a retrain, old blobs still name the old one.
#[derive(Clone, Debug, Default)]
pub struct DictionarySet {
    /// Sorted by id.
    dicts: Vec<Dictionary>,
}

impl DictionarySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `dict`, returning the one it replaces if the id was taken.
    pub fn insert(&mut self, dict: Dictionary) -> Option<Dictionary> {
        match self.dicts.binary_search_by_key(&dict.id, |d| d.id) {
            Ok(i) => Some(std::mem::replace(&mut self.dicts[i], dict)),
            Err(i) => {
                self.dicts.insert(i, dict);
                None
            }
        }
    }

    /// The dictionary with `id`, if loaded.
    pub fn get(&self, id: u32) -> Option<&Dictionary> {
        self.dicts.binary_search_by_key(&id, |d| d.id).ok().map(|i| &self.dicts[i])
    }

    /// The dictionary with the highest id: the one new writes should use if ids only grow.
    pub fn latest(&self) -> Option<&Dictionary> {
        self.dicts.last()
    }

    /// Number of dictionaries.
    pub fn len(&self) -> usize {
        self.dicts.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.dicts.is_empty()
    }
}

impl FromIterator<Dictionary> for DictionarySet {
    fn from_iter<I: IntoIterator<Item = Dictionary>>(iter: I) -> Self {
        let mut set = Self::new();
        for d in iter {
            set.insert(d);
        }
        set
    }
}

/// A parsed blob header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// How the body is stored.
    pub codec: Codec,
    /// The dictionary the body needs (0: none).
    pub dict_id: u32,
    /// Uncompressed length.
    pub len: usize,
    /// Low 32 bits of xxh3-64 of the uncompressed bytes.
    pub checksum: u32,
    /// Where the body starts.
    pub body_offset: usize,
}

/// Reads and checks a blob's header without touching its body: enough to find which
/// dictionary a row needs, or its size. Never allocates.
pub fn read_header(blob: &[u8]) -> Result<Header, CodecError> {
    let first = *blob.first().ok_or(CodecError::Truncated { what: "format byte" })?;
    if first >> 4 != FORMAT_VERSION {
        return Err(CodecError::UnsupportedVersion(first >> 4));
    }
    let codec = Codec::from_id(first & 0x0F)?;
    let mut pos = 1;
    let dict_id = u32::try_from(varint::get(blob, &mut pos, "dictionary id")?)
        .map_err(|_| CodecError::MalformedHeader("dictionary id over u32"))?;
    let len = varint::get(blob, &mut pos, "uncompressed length")?;
    if len > MAX_VALUE_LEN as u64 {
        return Err(CodecError::TooLarge { len });
    }
    let sum = blob.get(pos..pos + 4).ok_or(CodecError::Truncated { what: "checksum" })?;
    let checksum = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
    if codec == Codec::Raw && dict_id != 0 {
        return Err(CodecError::MalformedHeader("a raw blob names a dictionary"));
    }
    Ok(Header { codec, dict_id, len: len as usize, checksum, body_offset: pos + 4 })
}

fn write_header(out: &mut Vec<u8>, codec: Codec, dict_id: u32, len: usize, checksum: u32) {
    out.push((FORMAT_VERSION << 4) | codec as u8);
    varint::put(out, u64::from(dict_id));
    varint::put(out, len as u64);
    out.extend_from_slice(&checksum.to_le_bytes());
}

/// Encodes values into blobs, keeping its LZ4 tables and DEFLATE state between calls: keep one
/// per writer thread. Not `Sync`; cheap to move.
pub struct Encoder {
    codec: Codec,
    zlib_level: u32,
    min_saving: usize,
    lz4: Option<lz4::Lz4Encoder>,
    deflate: Option<Compress>,
}

impl Encoder {
    /// An encoder for `codec` with [`DEFAULT_MIN_SAVING`] and [`DEFAULT_ZLIB_LEVEL`]. Does not
    /// allocate until the first encode.
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            zlib_level: DEFAULT_ZLIB_LEVEL,
            min_saving: DEFAULT_MIN_SAVING,
            lz4: None,
            deflate: None,
        }
    }

    /// Sets the DEFLATE level (0–9, clamped).
    pub fn with_zlib_level(mut self, level: u32) -> Self {
        self.zlib_level = level.min(9);
        self.deflate = None;
        self
    }

    /// Stores raw unless compression saves at least `bytes` bytes (0: whenever not larger).
    pub fn with_min_saving(mut self, bytes: usize) -> Self {
        self.min_saving = bytes;
        self
    }

    /// The codec this encoder tries.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Encodes `input` into `out` (cleared first), compressed with this encoder's codec and
    /// `dict` when that saves at least `min_saving` bytes, raw otherwise. Returns the codec
    /// used. Reuses `out`'s capacity and this encoder's state; the first LZ4 call allocates
    /// ≈ 16 KiB of tables, the first zlib call zlib's state (≈ 300 KiB).
    pub fn encode_into(
        &mut self,
        dict: Option<&Dictionary>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Codec, CodecError> {
        if input.len() > MAX_VALUE_LEN {
            return Err(CodecError::TooLarge { len: input.len() as u64 });
        }
        out.clear();
        let sum = checksum(input);
        if self.codec != Codec::Raw {
            let dict_id = dict.map_or(0, |d| d.id);
            write_header(out, self.codec, dict_id, input.len(), sum);
            let header_len = out.len();
            // What the raw blob would take (its header names no dictionary), and so the most
            // the compressed body may take.
            let raw_total = header_len - varint::len(u64::from(dict_id)) + varint::len(0) + input.len();
            let budget = raw_total.saturating_sub(self.min_saving).saturating_sub(header_len);
            let fits = match self.codec {
                Codec::Lz4 => self.lz4.get_or_insert_with(lz4::Lz4Encoder::new).compress(
                    input,
                    dict.map(|d| (&d.bytes[..], &d.lz4)),
                    out,
                    budget,
                ),
                _ => self.deflate(dict, input, out, budget)?,
            };
            if fits && raw_total.saturating_sub(out.len()) >= self.min_saving {
                return Ok(self.codec);
            }
            out.clear();
        }
        write_header(out, Codec::Raw, 0, input.len(), sum);
        out.extend_from_slice(input);
        Ok(Codec::Raw)
    }

    /// [`encode_into`](Self::encode_into) a new `Vec`.
    pub fn encode(&mut self, dict: Option<&Dictionary>, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(input.len() + 16);
        self.encode_into(dict, input, &mut out)?;
        Ok(out)
    }

    /// Appends the raw DEFLATE stream of `input` to `out`; false if it needs over `budget` bytes.
    fn deflate(
        &mut self,
        dict: Option<&Dictionary>,
        input: &[u8],
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Result<bool, CodecError> {
        let level = self.zlib_level;
        let z = self.deflate.get_or_insert_with(|| Compress::new(Compression::new(level), false));
        z.reset();
        if let Some(d) = dict {
            z.set_dictionary(d.zlib_window()).map_err(|e| CodecError::Compress(e.to_string()))?;
        }
        let start = out.len();
        // Exactly `budget` bytes of room: a stream that does not fit is not worth storing.
        out.resize(start + budget, 0);
        let status = z
            .compress(input, &mut out[start..], FlushCompress::Finish)
            .map_err(|e| CodecError::Compress(e.to_string()))?;
        out.truncate(start + z.total_out() as usize);
        Ok(status == Status::StreamEnd)
    }
}

/// Encodes `input` with `codec` and `dict`, raw unless that saves `min_saving` bytes. Builds
/// encoder state for this one call: hot paths keep an [`Encoder`].
pub fn encode(
    codec: Codec,
    dict: Option<&Dictionary>,
    input: &[u8],
    min_saving: usize,
) -> Result<Vec<u8>, CodecError> {
    Encoder::new(codec).with_min_saving(min_saving).encode(dict, input)
}

/// Decodes blobs, keeping zlib's inflate state between calls. LZ4 and raw blobs need no state.
#[derive(Default)]
pub struct Decoder {
    inflate: Option<Decompress>,
}

impl Decoder {
    /// A decoder; allocates nothing until the first zlib blob.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `blob` into `out` (cleared first), looking dictionaries up in `dicts`. On any
    /// error `out` is left empty: a value is returned whole and verified, or not at all.
    /// Allocates only to grow `out` (and zlib's state on first use).
    pub fn decode_into(
        &mut self,
        blob: &[u8],
        dicts: &DictionarySet,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        out.clear();
        let result = self.decode_unchecked(blob, dicts, out);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn decode_unchecked(
        &mut self,
        blob: &[u8],
        dicts: &DictionarySet,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let h = read_header(blob)?;
        let body = &blob[h.body_offset..];
        let dict = match h.dict_id {
            0 => None,
            id => Some(dicts.get(id).ok_or(CodecError::UnknownDictionary(id))?),
        };
        // A body expands only so far (LZ4 at most 255:1, DEFLATE 1032:1): refuse a corrupt
        // length before allocating for it.
        let expansion = match h.codec {
            Codec::Raw => None,
            Codec::Lz4 => Some(256),
            Codec::Zlib => Some(1040),
        };
        if let Some(most) = expansion.map(|x| body.len().saturating_mul(x).saturating_add(64)) {
            if h.len > most {
                return Err(CodecError::LengthMismatch { declared: h.len, actual: most });
            }
        }
        // One spare byte tells "exactly the declared length" from "more than declared".
        let room = h.len + 1;
        let produced = match h.codec {
            Codec::Raw => {
                out.extend_from_slice(body);
                body.len()
            }
            Codec::Lz4 => {
                out.resize(room, 0);
                let result = match dict {
                    Some(d) => lz4_flex::block::decompress_into_with_dict(body, out, &d.bytes),
                    None => lz4_flex::block::decompress_into(body, out),
                };
                match result {
                    Ok(n) => n,
                    Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => room,
                    Err(e) => return Err(CodecError::Corrupt { codec: "lz4", reason: e.to_string() }),
                }
            }
            Codec::Zlib => self.inflate(dict, body, out, room)?,
        };
        if produced != h.len {
            return Err(CodecError::LengthMismatch { declared: h.len, actual: produced });
        }
        out.truncate(h.len);
        let actual = checksum(out);
        if actual != h.checksum {
            return Err(CodecError::ChecksumMismatch { expected: h.checksum, actual });
        }
        Ok(())
    }

    /// Inflates `body` into `out[..room]`, returning the bytes produced.
    fn inflate(
        &mut self,
        dict: Option<&Dictionary>,
        body: &[u8],
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<usize, CodecError> {
        let corrupt = |reason: String| CodecError::Corrupt { codec: "zlib", reason };
        let z = self.inflate.get_or_insert_with(|| Decompress::new(false));
        z.reset(false);
        if let Some(d) = dict {
            z.set_dictionary(d.zlib_window()).map_err(|e| corrupt(e.to_string()))?;
        }
        out.resize(room, 0);
        let status = z.decompress(body, out, FlushDecompress::Finish).map_err(|e| corrupt(e.to_string()))?;
        let produced = z.total_out() as usize;
        match status {
            Status::StreamEnd if (z.total_in() as usize) < body.len() => {
                Err(corrupt("bytes after the end of the DEFLATE stream".into()))
            }
            Status::StreamEnd => Ok(produced),
            // Out of room: the stream holds more than declared.
            _ if produced == room => Ok(produced),
            _ => Err(corrupt("DEFLATE stream ends early".into())),
        }
    }

    /// [`decode_into`](Self::decode_into) a new `Vec`.
    pub fn decode(&mut self, blob: &[u8], dicts: &DictionarySet) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.decode_into(blob, dicts, &mut out)?;
        Ok(out)
    }
}

/// Decodes `blob`, looking dictionaries up in `dicts`. Verified all-or-nothing (length and
/// checksum). Builds decoder state for this one call: hot paths keep a [`Decoder`].
pub fn decode(blob: &[u8], dicts: &DictionarySet) -> Result<Vec<u8>, CodecError> {
    Decoder::new().decode(blob, dicts)
}

#[cfg(test)]
mod tests;
