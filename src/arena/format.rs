//! The on-disk format: the header copies, the chunk layout and the record metadata, as pure
//! functions over bytes (no I/O, no `unsafe`). The spec with its byte diagrams is in the
//! module docs of [`crate::arena`].

use std::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use super::{ArenaParams, QuantKind, RecordMeta};

pub(crate) const MAGIC: [u8; 8] = *b"PBARENA\0";
pub(crate) const VERSION: u32 = 1;
/// Written natively: a file from a machine of the other byte order reads `0x0403_0201`.
pub(crate) const ENDIAN_MARK: u32 = 0x0102_0304;
/// File offsets of header copies A and B: separate 4 KiB blocks, so one torn (sector-sized or
/// page-sized) write can damage at most one of them.
pub(crate) const HEADER_SLOTS: [u64; 2] = [0, 4096];
/// Bytes covered by the checksum; the checksum (u32) sits right after them.
pub(crate) const HEADER_LEN: usize = offset_of!(RawHeader, checksum);
pub(crate) const HEADER_SIZE: usize = size_of::<RawHeader>();
/// Chunk 0 starts here; every chunk starts and ends on a multiple of [`CHUNK_ALIGN`].
pub(crate) const DATA_OFFSET: u64 = 65536;
/// 64 KiB: a multiple of every page size in use (4 KiB x86, 16 KiB Apple, 64 KiB some ARM and
/// POWER kernels), so each chunk can be mapped on its own at its exact offset.
pub(crate) const CHUNK_ALIGN: u64 = 65536;
pub(crate) const MODEL_ID_LEN: usize = 64;
pub(crate) const MAX_DIM: u32 = 16384;
pub(crate) const MAX_CHUNK_RECORDS: u32 = 1 << 20;
/// One mapping stays well within a 64-bit address space and `usize` everywhere we care about.
pub(crate) const MAX_CHUNK_BYTES: u64 = 1 << 32;
/// Size of the chunk table (slots for chunk pointers, allocated at open). Under loom the
/// table's cells are model objects, so the suite keeps it tiny.
pub(crate) const MAX_CHUNKS: usize = if cfg!(all(loom, feature = "loom")) { 8 } else { 4096 };
/// Record code and region alignment: one cache line, and the widest SIMD load (AVX-512).
pub(crate) const ALIGN: usize = 64;

/// One header copy, exactly as stored (native byte order; see the spec).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct RawHeader {
    pub magic: [u8; 8],
    pub endian: u32,
    pub version: u32,
    pub header_len: u32,
    pub dim: u32,
    pub stride: u32,
    pub quant: u32,
    pub scale: f32,
    pub chunk_records: u32,
    pub model_id: [u8; MODEL_ID_LEN],
    pub chunk_bytes: u64,
    pub data_offset: u64,
    pub committed: u64,
    pub generation: u64,
    pub user_seq: u64,
    pub reserved: u32,
    pub checksum: u32,
}

/// One record's metadata, exactly as stored (64 bytes, native byte order). `flags` and
/// `confidence` form one 8-byte word, and `last_used_ms` another, that are read and written
/// only atomically once the record is published. The record's scale is not here but in the
/// chunk's scales region ([`Layout::scales_off`]), contiguous for the scan kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct MetaRaw {
    pub rowid: i64,
    pub flags: u32,
    pub confidence: f32,
    pub last_used_ms: i64,
    pub created_at_ms: i64,
    pub kind: u32,
    pub reserved: [u8; 28],
}

pub(crate) const META_SIZE: usize = size_of::<MetaRaw>();
/// Offset of the atomic (flags, confidence) word within a record's metadata.
pub(crate) const META_STATE: usize = offset_of!(MetaRaw, flags);
pub(crate) const META_LAST_USED: usize = offset_of!(MetaRaw, last_used_ms);
/// The immutable fields, read non-atomically: `rowid`, then `created_at_ms..reserved`.
pub(crate) const META_ROWID: usize = offset_of!(MetaRaw, rowid);
pub(crate) const META_CREATED: usize = offset_of!(MetaRaw, created_at_ms);
pub(crate) const META_KIND: usize = offset_of!(MetaRaw, kind);

const _: () = {
    assert!(HEADER_LEN == 148 && HEADER_SIZE == 152);
    assert!(META_SIZE == 64 && META_STATE == 8 && META_LAST_USED == 16 && META_CREATED == 24);
    assert!(offset_of!(MetaRaw, confidence) == META_STATE + 4);
    assert!(DATA_OFFSET.is_multiple_of(CHUNK_ALIGN) && HEADER_SLOTS[1] as usize >= HEADER_SIZE);
};

/// The (flags, confidence) word as the 8 bytes `flags ‖ confidence` in native order, so the
/// atomic word and the `MetaRaw` fields agree on either byte order.
pub(crate) fn state_word(flags: u32, confidence: f32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&flags.to_ne_bytes());
    b[4..].copy_from_slice(&confidence.to_bits().to_ne_bytes());
    u64::from_ne_bytes(b)
}

pub(crate) fn split_state(word: u64) -> (u32, f32) {
    let b = word.to_ne_bytes();
    let flags = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let conf = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
    (flags, f32::from_bits(conf))
}

impl MetaRaw {
    pub(crate) fn from_meta(m: &RecordMeta) -> Self {
        MetaRaw {
            rowid: m.rowid,
            flags: m.flags,
            confidence: m.confidence,
            last_used_ms: m.last_used_ms,
            created_at_ms: m.created_at_ms,
            kind: m.kind,
            reserved: [0; 28],
        }
    }
}

/// Where everything of a chunk lies, derived from `dim` and `chunk_records` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub dim: usize,
    /// Bytes per code vector: `dim` rounded up to 64, zero-padded.
    pub stride: usize,
    /// Records per chunk, a power of two.
    pub chunk_records: usize,
    shift: u32,
    /// Offset of the per-record f32 scales (one per record, contiguous) within a chunk: right
    /// after the codes, so the two regions a scan streams form one prefix of the chunk.
    pub scales_off: usize,
    /// Offset of the f32 originals (`dim` f32 per record) within a chunk.
    pub f32_off: usize,
    /// Offset of the metadata (64 bytes per record) within a chunk.
    pub meta_off: usize,
    pub chunk_bytes: usize,
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

impl Layout {
    pub(crate) fn new(dim: u32, chunk_records: u32) -> Result<Self, String> {
        if dim == 0 || dim > MAX_DIM {
            return Err(format!("dimension {dim} is outside 1..={MAX_DIM}"));
        }
        if !chunk_records.is_power_of_two() || chunk_records > MAX_CHUNK_RECORDS {
            return Err(format!(
                "chunk capacity {chunk_records} is not a power of two in 1..={MAX_CHUNK_RECORDS}"
            ));
        }
        let (d, c) = (u64::from(dim), u64::from(chunk_records));
        let a = ALIGN as u64;
        let stride = align_up(d, a).ok_or("overflow")?;
        // No overflow: c ≤ 2^20 and every per-record size ≤ 2^17.
        let scales_off = align_up(c * stride, a).ok_or("overflow")?;
        let f32_off = align_up(scales_off + c * 4, a).ok_or("overflow")?;
        let meta_off = align_up(f32_off + c * d * 4, a).ok_or("overflow")?;
        let chunk_bytes = align_up(meta_off + c * META_SIZE as u64, CHUNK_ALIGN).ok_or("overflow")?;
        if chunk_bytes > MAX_CHUNK_BYTES {
            return Err(format!(
                "a chunk of {chunk_records} records of dimension {dim} would take {chunk_bytes} bytes \
                 (at most {MAX_CHUNK_BYTES})"
            ));
        }
        let us = |v: u64| usize::try_from(v).map_err(|_| "chunk too large for this platform".to_string());
        Ok(Layout {
            dim: us(d)?,
            stride: us(stride)?,
            chunk_records: us(c)?,
            shift: chunk_records.trailing_zeros(),
            scales_off: us(scales_off)?,
            f32_off: us(f32_off)?,
            meta_off: us(meta_off)?,
            chunk_bytes: us(chunk_bytes)?,
        })
    }

    pub(crate) fn max_records(&self) -> u64 {
        (MAX_CHUNKS as u64) << self.shift
    }

    /// (chunk index, index within the chunk) of a slot below `max_records()`.
    #[inline]
    pub(crate) fn split(&self, slot: u64) -> (usize, usize) {
        ((slot >> self.shift) as usize, (slot as usize) & (self.chunk_records - 1))
    }

    /// Chunks needed to hold `n` records.
    pub(crate) fn chunks_for(&self, n: u64) -> usize {
        n.div_ceil(self.chunk_records as u64) as usize
    }

    pub(crate) fn chunk_offset(&self, k: usize) -> u64 {
        DATA_OFFSET + k as u64 * self.chunk_bytes as u64
    }

    /// The smallest file length that holds `n` committed records.
    pub(crate) fn file_len_for(&self, n: u64) -> u64 {
        self.chunk_offset(self.chunks_for(n))
    }
}

/// Why one header copy was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyError {
    Corrupt(String),
    Incompatible(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Corrupt(s) | CopyError::Incompatible(s) => f.write_str(s),
        }
    }
}

pub(crate) fn model_id_bytes(id: &str) -> Result<[u8; MODEL_ID_LEN], String> {
    let b = id.as_bytes();
    if b.len() > MODEL_ID_LEN || b.contains(&0) {
        return Err(format!("model id {id:?} must be at most {MODEL_ID_LEN} bytes without NUL"));
    }
    let mut out = [0u8; MODEL_ID_LEN];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

fn model_id_str(b: &[u8; MODEL_ID_LEN]) -> Option<&str> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(MODEL_ID_LEN);
    if b[end..].iter().any(|&c| c != 0) {
        return None;
    }
    std::str::from_utf8(&b[..end]).ok()
}

impl RawHeader {
    /// A fresh header for `params` (validated by the caller) with nothing committed.
    pub(crate) fn new(params: &ArenaParams, layout: &Layout, model_id: [u8; MODEL_ID_LEN]) -> Self {
        RawHeader {
            magic: MAGIC,
            endian: ENDIAN_MARK,
            version: VERSION,
            header_len: HEADER_LEN as u32,
            dim: params.dim,
            stride: layout.stride as u32,
            quant: params.quant as u32,
            scale: params.scale,
            chunk_records: params.chunk_records,
            model_id,
            chunk_bytes: layout.chunk_bytes as u64,
            data_offset: DATA_OFFSET,
            committed: 0,
            generation: 0,
            user_seq: 0,
            reserved: 0,
            checksum: 0,
        }
    }

    /// The stored bytes, checksum filled in.
    pub(crate) fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out.copy_from_slice(bytemuck::bytes_of(self));
        let sum = crc32fast::hash(&out[..HEADER_LEN]);
        out[HEADER_LEN..].copy_from_slice(&sum.to_ne_bytes());
        out
    }

    /// Validates one copy on its own: everything but the caller's expectations.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(RawHeader, Layout), CopyError> {
        let corrupt = |s: String| Err(CopyError::Corrupt(s));
        if bytes.len() < 16 {
            return corrupt(format!("only {} bytes", bytes.len()));
        }
        if bytes[..8] != MAGIC {
            return corrupt("bad magic (not an arena file, or overwritten)".into());
        }
        let word = |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let foreign = match word(8) {
            ENDIAN_MARK => false,
            m if m == ENDIAN_MARK.swap_bytes() => true,
            m => return corrupt(format!("bad byte-order mark {m:#010x}")),
        };
        let fix = |v: u32| if foreign { v.swap_bytes() } else { v };
        // Magic, byte-order mark, version and the checksummed length sit at the same offsets in
        // every version, so the checksum can be verified before anything else is trusted.
        let len = fix(word(16)) as usize;
        if !(20..=HEADER_SLOTS[1] as usize - 4).contains(&len) || !len.is_multiple_of(4) {
            return corrupt(format!("bad header length {len}"));
        }
        if bytes.len() < len + 4 {
            return corrupt(format!("truncated: {} of {} header bytes", bytes.len(), len + 4));
        }
        let (stored, actual) = (fix(word(len)), crc32fast::hash(&bytes[..len]));
        if stored != actual {
            return corrupt(format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"));
        }
        if foreign {
            return Err(CopyError::Incompatible(format!(
                "written on a machine of the other byte order ({} endian; this one is {} endian)",
                if cfg!(target_endian = "little") { "big" } else { "little" },
                if cfg!(target_endian = "little") { "little" } else { "big" },
            )));
        }
        let version = word(12);
        if version != VERSION {
            return Err(CopyError::Incompatible(format!(
                "format version {version}; this build reads version {VERSION}"
            )));
        }
        if len != HEADER_LEN || bytes.len() < HEADER_SIZE {
            return corrupt(format!("header length {len} for version {VERSION} (expected {HEADER_LEN})"));
        }
        let h: RawHeader = bytemuck::try_pod_read_unaligned(&bytes[..HEADER_SIZE])
            .map_err(|e| CopyError::Corrupt(format!("unreadable header: {e}")))?;
        // A copy whose checksum holds but whose fields disagree with each other was written by a
        // buggy or hostile writer: corrupt, not merely incompatible.
        let layout = Layout::new(h.dim, h.chunk_records).map_err(CopyError::Corrupt)?;
        let bad = if h.stride as usize != layout.stride {
            Some(format!("stride {} for dimension {} (expected {})", h.stride, h.dim, layout.stride))
        } else if h.chunk_bytes != layout.chunk_bytes as u64 {
            Some(format!("chunk size {} (expected {})", h.chunk_bytes, layout.chunk_bytes))
        } else if h.data_offset != DATA_OFFSET {
            Some(format!("data offset {} (expected {DATA_OFFSET})", h.data_offset))
        } else if QuantKind::from_u32(h.quant).is_none() {
            Some(format!("unknown quantization kind {}", h.quant))
        } else if !h.scale.is_finite() || h.scale < 0.0 {
            Some(format!("bad scale {}", h.scale))
        } else if h.committed > layout.max_records() {
            Some(format!("committed count {} above the maximum {}", h.committed, layout.max_records()))
        } else if model_id_str(&h.model_id).is_none() {
            Some("model id is not NUL-padded UTF-8".into())
        } else if h.reserved != 0 {
            Some("reserved field is not zero".into())
        } else {
            None
        };
        match bad {
            Some(s) => corrupt(s),
            None => Ok((h, layout)),
        }
    }

    /// Whether this (valid) header is the arena the caller expects; `Err` gives the reason.
    pub(crate) fn check_expected(&self, p: &ArenaParams) -> Result<(), String> {
        if self.dim != p.dim {
            return Err(format!("dimension {} in the file, {} expected", self.dim, p.dim));
        }
        let file_quant = QuantKind::from_u32(self.quant);
        if file_quant != Some(p.quant) {
            return Err(format!("quantization {:?} in the file, {:?} expected", file_quant, p.quant));
        }
        if p.quant == QuantKind::Global && self.scale.to_bits() != p.scale.to_bits() {
            return Err(format!("global scale {} in the file, {} expected", self.scale, p.scale));
        }
        let file_model = model_id_str(&self.model_id).unwrap_or("?");
        if file_model != p.model_id {
            return Err(format!("embedding model {file_model:?} in the file, {:?} expected", p.model_id));
        }
        Ok(())
    }

    pub(crate) fn params(&self) -> ArenaParams {
        ArenaParams {
            dim: self.dim,
            quant: QuantKind::from_u32(self.quant).unwrap_or(QuantKind::Global),
            scale: self.scale,
            model_id: model_id_str(&self.model_id).unwrap_or("").to_string(),
            chunk_records: self.chunk_records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_for_384_dims() {
        let l = Layout::new(384, 16384).unwrap();
        let (codes, scales) = (384 * 16384, 4 * 16384);
        assert_eq!(
            (l.stride, l.scales_off, l.f32_off, l.meta_off),
            (384, codes, codes + scales, codes * 5 + scales)
        );
        assert_eq!(l.chunk_bytes, (31 << 20) + (64 << 10));
        assert_eq!(l.chunks_for(1_000_000), 62);
        assert_eq!(l.split(16385), (1, 1));
    }

    #[test]
    fn odd_dimension_pads_and_aligns() {
        let l = Layout::new(3, 4).unwrap();
        assert_eq!(
            (l.stride, l.scales_off, l.f32_off, l.meta_off, l.chunk_bytes),
            (64, 256, 320, 384, 65536)
        );
        assert!(Layout::new(0, 4).is_err() && Layout::new(4, 3).is_err() && Layout::new(4, 0).is_err());
        assert!(Layout::new(MAX_DIM, MAX_CHUNK_RECORDS).is_err(), "over 4 GiB per chunk");
    }

    #[test]
    fn regions_are_aligned_disjoint_and_inside_the_chunk() {
        for dim in [1, 2, 3, 63, 64, 65, 384, 1000, MAX_DIM] {
            for c in [1, 2, 4, 8, 16, 1024, 16384] {
                let Ok(l) = Layout::new(dim, c) else { continue };
                let c = c as usize;
                let regions = [
                    (0, c * l.stride),
                    (l.scales_off, c * 4),
                    (l.f32_off, c * l.dim * 4),
                    (l.meta_off, c * META_SIZE),
                ];
                let mut end = 0;
                for (off, len) in regions {
                    assert!(off.is_multiple_of(ALIGN) && off >= end, "dim {dim} C {c}: {regions:?}");
                    end = off + len;
                }
                assert!(end <= l.chunk_bytes && (l.chunk_bytes as u64).is_multiple_of(CHUNK_ALIGN));
                assert!(l.chunk_bytes - end < CHUNK_ALIGN as usize, "no wasted 64 KiB");
            }
        }
    }

    #[test]
    fn state_word_round_trips() {
        for (f, c) in [(0u32, 0.5f32), (u32::MAX, 1.0), (7, -0.0)] {
            assert_eq!(split_state(state_word(f, c)), (f, c));
        }
        let raw = MetaRaw { flags: 9, confidence: 0.25, ..Zeroable::zeroed() };
        let b = bytemuck::bytes_of(&raw);
        let w = u64::from_ne_bytes(b[META_STATE..META_STATE + 8].try_into().unwrap());
        assert_eq!(split_state(w), (9, 0.25));
    }
}
