//! Record memory and the publication protocol. With `sys.rs`, the only `unsafe` in the arena;
//! everything this file exports is safe to call.
//!
//! ## The protocol, and the invariants this file alone upholds
//!
//! 1. One [`CoreWriter`] per [`Shared`] (it is created with it and is not `Clone`); it is the
//!    only code that writes record bytes or chunk-table entries.
//! 2. The writer writes a record's plain (non-atomic) bytes (code, scale, originals, metadata,
//!    in their four regions) only at slot `appended`, which is never below `published`; it
//!    installs chunk-table entry `k` only for `k == installed`, and
//!    `installed · C ≥ appended ≥ published`, so no published slot lies in that chunk yet.
//! 3. `published` only grows, by a `Release` store after those writes. Readers load it with
//!    `Acquire` ([`View`] does, once) and touch only slots below it and the table entries of
//!    chunks holding such a slot. So every plain write a reader can see happened before its read.
//! 4. After publication a record's plain bytes never change again. Its two mutable 8-byte words
//!    (flags + confidence, `last_used_ms`) are then accessed only atomically: loads by readers,
//!    loads and stores by the writer (single writer, so load-modify-store loses nothing).
//! 5. Chunk memory (a mapping or a heap block) is owned by its table entry, which lives as long
//!    as the `Shared`; every borrowed slice is tied to a borrow of the `Shared`.
//!
//! Under loom, every record has a model `UnsafeCell<()>` (from `crate::sync`) that the writer
//! enters with `with_mut` around its plain writes and readers with `with` before their plain
//! reads (one cell covers all of a record's plain bytes, in every region: code, scale,
//! originals, metadata), so the model checker sees each record access and reports any that (3)
//! does not order; the two atomic words live in a side table of model atomics (loom cannot
//! overlay mapped bytes).

use std::io;
use std::ops::Range;
use std::ptr::NonNull;

use memmap2::{Mmap, MmapMut};

use super::format::{
    split_state, state_word, Layout, MetaRaw, ALIGN, MAX_CHUNKS, META_CREATED, META_KIND, META_LAST_USED,
    META_ROWID, META_SIZE, META_STATE,
};
use super::{ArenaParams, RecordMeta};
use crate::sync::{Arc, AtomicU64, Ordering, UnsafeCell};

/// A 64-byte aligned line: heap chunks are slices of these, so regions are aligned as in a map.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// A zeroed heap block, owned through a raw pointer (never through a `Box` while shared, so
/// writes through the pointer do not alias a unique borrow).
struct HeapBlock {
    ptr: NonNull<Line>,
    lines: usize,
}

impl HeapBlock {
    fn new(bytes: usize) -> Self {
        let lines = bytes.div_ceil(ALIGN);
        let leaked: &'static mut [Line] = Box::leak(vec![Line([0; 64]); lines].into_boxed_slice());
        HeapBlock { ptr: NonNull::from(leaked).cast(), lines }
    }
}

impl Drop for HeapBlock {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.lines);
        // SAFETY: `ptr` and `lines` come from `Box::leak` of a `Box<[Line]>` of exactly this
        // length (`new`), freed only here, once; no borrow of it outlives the owning `Shared`.
        drop(unsafe { Box::from_raw(slice) });
    }
}

enum Backing {
    Map(MmapMut),
    MapRo(Mmap),
    Heap(HeapBlock),
}

/// One chunk's memory: `chunk_bytes` bytes, 64-byte aligned, laid out as [`Layout`] says.
pub(crate) struct Chunk {
    base: NonNull<u8>,
    len: usize,
    backing: Backing,
    #[cfg(all(loom, feature = "loom"))]
    cells: Box<[UnsafeCell<()>]>,
    #[cfg(all(loom, feature = "loom"))]
    words: Box<[AtomicU64]>,
}

// SAFETY: `base` points into memory the chunk owns (`backing`), valid on any thread until the
// chunk is dropped. Shared access follows the module's protocol: plain bytes are written only
// where no other thread may read them until a Release/Acquire pair orders the accesses, and
// the mutable words are accessed only atomically.
unsafe impl Send for Chunk {}
// SAFETY: as for `Send`.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(mut backing: Backing, layout: &Layout) -> Result<Self, String> {
        let (base, len) = match &mut backing {
            Backing::Map(m) => (m.as_mut_ptr(), m.len()),
            Backing::MapRo(m) => (m.as_ptr().cast_mut(), m.len()),
            Backing::Heap(h) => (h.ptr.as_ptr().cast::<u8>(), h.lines * ALIGN),
        };
        let base = NonNull::new(base).ok_or("null chunk mapping")?;
        // Every offset and alignment argument below rests on these two checks.
        if len < layout.chunk_bytes || !(base.as_ptr() as usize).is_multiple_of(ALIGN) {
            return Err(format!("chunk memory of {len} bytes at {base:p}: too short or misaligned"));
        }
        Ok(Chunk {
            base,
            len,
            backing,
            #[cfg(all(loom, feature = "loom"))]
            cells: (0..layout.chunk_records).map(|_| UnsafeCell::new(())).collect(),
            #[cfg(all(loom, feature = "loom"))]
            words: (0..2 * layout.chunk_records).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Runs the writer's plain writes to record `i` inside its cell's `with_mut` (loom).
    #[cfg(all(loom, feature = "loom"))]
    fn writing<R>(&self, i: usize, f: impl FnOnce() -> R) -> R {
        self.cells[i].with_mut(|_| f())
    }

    /// Runs the writer's plain writes to record `i`.
    #[cfg(not(all(loom, feature = "loom")))]
    #[inline]
    fn writing<R>(&self, _i: usize, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Marks plain reads of records `range` with their cells' `with` (loom).
    #[cfg(all(loom, feature = "loom"))]
    fn reading(&self, range: Range<usize>) {
        for c in &self.cells[range] {
            c.with(|_| ());
        }
    }

    /// Marks plain reads of records `range`: nothing to do outside loom.
    #[cfg(not(all(loom, feature = "loom")))]
    #[inline]
    fn reading(&self, _range: Range<usize>) {}

    /// # Safety
    /// `off + len ≤ self.len`, and no plain write to these bytes may run while the slice lives.
    #[inline]
    unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.len);
        // SAFETY: in bounds of the chunk's memory (caller), which lives as long as `self`;
        // free of concurrent writes (caller).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(off), len) }
    }

    /// Codes of records `i..i + n` (`n · stride` bytes).
    ///
    /// # Safety
    /// `i + n ≤ C`, and those records are published or this is the writer's thread.
    #[inline]
    unsafe fn codes(&self, l: &Layout, i: usize, n: usize) -> &[i8] {
        // SAFETY: caller's contract; `Layout` keeps the codes of `i < C` inside the chunk.
        let b = unsafe { self.bytes(i * l.stride, n * l.stride) };
        bytemuck::try_cast_slice(b).unwrap_or_default()
    }

    /// Originals of records `i..i + n` (`n · dim` f32).
    ///
    /// # Safety
    /// As for [`Chunk::codes`].
    #[inline]
    unsafe fn originals(&self, l: &Layout, i: usize, n: usize) -> &[f32] {
        // SAFETY: caller's contract; the region is inside the chunk and 64-byte aligned.
        let b = unsafe { self.bytes(l.f32_off + i * l.dim * 4, n * l.dim * 4) };
        // Cannot fail: base and region are 64-byte aligned and the length is a multiple of 4.
        bytemuck::try_cast_slice(b).unwrap_or_default()
    }

    /// Scales of records `i..i + n` (`n` f32).
    ///
    /// # Safety
    /// As for [`Chunk::codes`].
    #[inline]
    unsafe fn scales(&self, l: &Layout, i: usize, n: usize) -> &[f32] {
        // SAFETY: caller's contract; the region is inside the chunk and 64-byte aligned.
        let b = unsafe { self.bytes(l.scales_off + i * 4, n * 4) };
        // Cannot fail: base and region are 64-byte aligned and the length is a multiple of 4.
        bytemuck::try_cast_slice(b).unwrap_or_default()
    }

    /// One of record `i`'s two mutable words (`off` = `META_STATE` or `META_LAST_USED`).
    ///
    /// # Safety
    /// `i < C`, and no plain write to the record's metadata runs concurrently with the use of
    /// the returned atomic (it is published, or this is the writer's thread).
    #[cfg(not(all(loom, feature = "loom")))]
    #[inline]
    unsafe fn word(&self, l: &Layout, i: usize, off: usize) -> &AtomicU64 {
        // SAFETY: inside the chunk (`Layout`), 8-byte aligned (64-aligned base and meta region,
        // 64-byte records, word offsets 8 and 16), valid for `&self`'s lifetime, and free of
        // concurrent plain accesses (caller). On a read-only mapping we only ever do Relaxed
        // 8-byte loads, which std documents as allowed on read-only memory (64-bit targets).
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(l.meta_off + i * META_SIZE + off).cast::<u64>()) }
    }

    /// Loom: the words live in a side table of model atomics.
    ///
    /// # Safety
    /// None needed; `unsafe` only to match the mapped version.
    #[cfg(all(loom, feature = "loom"))]
    unsafe fn word(&self, _l: &Layout, i: usize, off: usize) -> &AtomicU64 {
        &self.words[2 * i + usize::from(off == META_LAST_USED)]
    }

    /// Record `i`'s metadata: the immutable fields read plainly, the two words atomically.
    ///
    /// # Safety
    /// As for [`Chunk::word`].
    unsafe fn meta(&self, l: &Layout, i: usize) -> RecordMeta {
        let m = l.meta_off + i * META_SIZE;
        // SAFETY: caller's contract; these bytes exclude the two atomic words and are never
        // written after publication.
        let (id, rest) = unsafe { (self.bytes(m + META_ROWID, 8), self.bytes(m + META_CREATED, 16)) };
        let at = |b: &[u8], o: usize| -> [u8; 8] { b[o..o + 8].try_into().unwrap_or_default() };
        let at4 = |b: &[u8], o: usize| -> [u8; 4] { b[o..o + 4].try_into().unwrap_or_default() };
        let k = META_KIND - META_CREATED;
        // SAFETY: caller's contract.
        let (state, last) = unsafe { (self.word(l, i, META_STATE), self.word(l, i, META_LAST_USED)) };
        let (flags, confidence) = split_state(state.load(Ordering::Relaxed));
        // SAFETY: caller's contract (the scale, like the metadata, is never written after
        // publication).
        let scale = unsafe { self.scales(l, i, 1) }.first().copied().unwrap_or_default();
        RecordMeta {
            rowid: i64::from_ne_bytes(at(id, 0)),
            flags,
            kind: u32::from_ne_bytes(at4(rest, k)),
            confidence,
            created_at_ms: i64::from_ne_bytes(at(rest, 0)),
            last_used_ms: last.load(Ordering::Relaxed) as i64,
            scale,
        }
    }

    /// Writes record `i` whole: code (zero-padded to the stride), scale, originals, metadata.
    ///
    /// # Safety
    /// `i < C`; the record is not published and no atomic word of it is in use; the backing is
    /// writable (the writer installs only writable chunks).
    unsafe fn write_record(
        &self,
        l: &Layout,
        i: usize,
        code_bytes: &[u8],
        scale: f32,
        f32_bytes: &[u8],
        meta: &MetaRaw,
    ) {
        debug_assert!(code_bytes.len() == l.dim && f32_bytes.len() == l.dim * 4 && i < l.chunk_records);
        let p = self.base.as_ptr();
        // SAFETY: all four ranges lie inside the chunk (`Layout`, `i < C`; lengths: stride, 4,
        // dim·4, 64); the memory is writable and no other thread reads this record (caller:
        // unpublished); the sources are caller slices or locals that cannot overlap the chunk's
        // memory (we hand out no mutable borrows of it).
        unsafe {
            let c = p.add(i * l.stride);
            std::ptr::copy_nonoverlapping(code_bytes.as_ptr(), c, l.dim);
            std::ptr::write_bytes(c.add(l.dim), 0, l.stride - l.dim);
            let sc = scale.to_ne_bytes();
            std::ptr::copy_nonoverlapping(sc.as_ptr(), p.add(l.scales_off + i * 4), 4);
            std::ptr::copy_nonoverlapping(f32_bytes.as_ptr(), p.add(l.f32_off + i * l.dim * 4), l.dim * 4);
            let m = bytemuck::bytes_of(meta);
            std::ptr::copy_nonoverlapping(m.as_ptr(), p.add(l.meta_off + i * META_SIZE), META_SIZE);
        }
    }

    fn flush_async(&self, off: usize, len: usize) -> io::Result<()> {
        match &self.backing {
            Backing::Map(m) if len > 0 => m.flush_async_range(off, len),
            _ => Ok(()),
        }
    }
}

/// What readers and the writer share: the layout, the published count and the chunk table.
pub(crate) struct Shared {
    layout: Layout,
    params: ArenaParams,
    published: AtomicU64,
    /// Entry `k` holds chunk `k` once installed; never changed or removed after that.
    table: Box<[UnsafeCell<Option<Box<Chunk>>>]>,
}

// SAFETY: the table's cells are written only by the single writer under invariant 2 and read
// under invariant 3 (module docs); the chunks are `Send + Sync`.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

impl Shared {
    fn new(layout: Layout, params: ArenaParams, mut chunks: impl Iterator<Item = Chunk>, len: u64) -> Self {
        Shared {
            layout,
            params,
            published: AtomicU64::new(len),
            table: (0..MAX_CHUNKS).map(|_| UnsafeCell::new(chunks.next().map(Box::new))).collect(),
        }
    }

    /// A read-only arena over `maps` (chunks `0..maps.len()`) with `len` records published.
    pub(crate) fn read_only(
        layout: Layout,
        params: ArenaParams,
        maps: Vec<Mmap>,
        len: u64,
    ) -> Result<Arc<Shared>, String> {
        if maps.len() > MAX_CHUNKS || len > maps.len() as u64 * layout.chunk_records as u64 {
            return Err(format!("{len} records do not fit {} chunks", maps.len()));
        }
        let chunks = maps
            .into_iter()
            .map(|m| Chunk::new(Backing::MapRo(m), &layout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Shared::new(layout, params, chunks.into_iter(), len)))
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn params(&self) -> &ArenaParams {
        &self.params
    }

    /// A consistent view: everything below the published count, loaded now (Acquire).
    #[inline]
    pub(crate) fn view(&self) -> View<'_> {
        View { shared: self, len: self.published.load(Ordering::Acquire) }
    }

    /// Chunk `k`, if installed.
    ///
    /// # Safety
    /// The caller is the writer's thread, or reached `k` through a slot below a count it loaded
    /// from `published` with Acquire (so the entry's one write happened before, invariant 3).
    #[inline]
    unsafe fn chunk(&self, k: usize) -> Option<&Chunk> {
        // SAFETY: caller's contract; entries never change after their one write, so the
        // reference stays valid for `&self`'s lifetime.
        self.table.get(k)?.with(|p| unsafe { (*p).as_deref() })
    }
}

/// The writer's half of the protocol: exactly one per [`Shared`].
pub(crate) struct CoreWriter {
    shared: Arc<Shared>,
    /// Slots written (`appended ≥ published`).
    appended: u64,
    published: u64,
    installed: usize,
}

impl CoreWriter {
    pub(crate) fn new(layout: Layout, params: ArenaParams) -> Self {
        let shared = Arc::new(Shared::new(layout, params, std::iter::empty(), 0));
        CoreWriter { shared, appended: 0, published: 0, installed: 0 }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn appended(&self) -> u64 {
        self.appended
    }

    pub(crate) fn published(&self) -> u64 {
        self.published
    }

    pub(crate) fn installed(&self) -> usize {
        self.installed
    }

    /// Records that fit the installed chunks.
    pub(crate) fn capacity(&self) -> u64 {
        self.installed as u64 * self.shared.layout.chunk_records as u64
    }

    pub(crate) fn install_mapped(&mut self, map: MmapMut) -> Result<(), String> {
        self.install(Backing::Map(map))
    }

    pub(crate) fn install_heap(&mut self) -> Result<(), String> {
        self.install(Backing::Heap(HeapBlock::new(self.shared.layout.chunk_bytes)))
    }

    fn install(&mut self, backing: Backing) -> Result<(), String> {
        let cell = self
            .shared
            .table
            .get(self.installed)
            .ok_or_else(|| format!("the arena is full ({} records)", self.shared.layout.max_records()))?;
        let chunk = Box::new(Chunk::new(backing, &self.shared.layout)?);
        // SAFETY: invariant 2: no published slot lies in chunk `installed`, so no reader reads
        // this entry until a later Release store of `published`, which follows this write.
        cell.with_mut(|p| unsafe { *p = Some(chunk) });
        self.installed += 1;
        Ok(())
    }

    /// Takes the first `n` records already in the installed chunks (a reopened file) as
    /// written, and publishes them.
    pub(crate) fn adopt(&mut self, n: u64) -> Result<(), String> {
        if self.appended != 0 || n > self.capacity() {
            return Err(format!("cannot adopt {n} records into {} slots", self.capacity()));
        }
        self.appended = n;
        self.publish();
        Ok(())
    }

    /// Writes the next record (capacity must have been installed) and returns its slot. Not
    /// visible to readers until [`CoreWriter::publish`].
    pub(crate) fn append(
        &mut self,
        codes: &[i8],
        originals: &[f32],
        meta: &RecordMeta,
    ) -> Result<u64, String> {
        let l = self.shared.layout;
        if codes.len() != l.dim || originals.len() != l.dim {
            return Err(format!(
                "vector lengths {} and {}, dimension {}",
                codes.len(),
                originals.len(),
                l.dim
            ));
        }
        let code_bytes: &[u8] = bytemuck::try_cast_slice(codes).map_err(|e| e.to_string())?;
        let f32_bytes: &[u8] = bytemuck::try_cast_slice(originals).map_err(|e| e.to_string())?;
        let raw = MetaRaw::from_meta(meta);
        let slot = self.appended;
        if slot >= self.capacity() {
            return Err("no chunk installed for the next record".into());
        }
        let (k, i) = l.split(slot);
        // SAFETY: the writer's thread.
        let chunk = unsafe { self.shared.chunk(k) }.ok_or("chunk missing")?;
        // SAFETY: `slot == appended ≥ published`: unpublished, so no reader touches it and no
        // atomic word of it is in use; writer chunks are writable; `i < C`.
        chunk.writing(i, || unsafe { chunk.write_record(&l, i, code_bytes, meta.scale, f32_bytes, &raw) });
        // SAFETY: the writer's thread; the plain write above has finished.
        let (state, last) = unsafe { (chunk.word(&l, i, META_STATE), chunk.word(&l, i, META_LAST_USED)) };
        state.store(state_word(meta.flags, meta.confidence), Ordering::Relaxed);
        last.store(meta.last_used_ms as u64, Ordering::Relaxed);
        self.appended += 1;
        Ok(slot)
    }

    /// Makes every appended record visible to readers.
    pub(crate) fn publish(&mut self) -> u64 {
        self.shared.published.store(self.appended, Ordering::Release);
        self.published = self.appended;
        self.appended
    }

    /// Forgets the appended records not yet published; their slots are written again later.
    pub(crate) fn rollback(&mut self) {
        self.appended = self.published;
    }

    fn locate(&self, slot: u64) -> Result<(&Chunk, usize), String> {
        if slot >= self.appended {
            return Err(format!("slot {slot} was never appended (the arena holds {})", self.appended));
        }
        let (k, i) = self.shared.layout.split(slot);
        // SAFETY: the writer's thread.
        let chunk = unsafe { self.shared.chunk(k) }.ok_or("chunk missing")?;
        Ok((chunk, i))
    }

    /// Replaces (flags, confidence) of an appended record in one atomic store.
    pub(crate) fn update_state(
        &mut self,
        slot: u64,
        f: impl FnOnce(u32, f32) -> (u32, f32),
    ) -> Result<usize, String> {
        let l = self.shared.layout;
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: the writer's thread, after the record's plain write.
        let w = unsafe { chunk.word(&l, i, META_STATE) };
        let (flags, conf) = split_state(w.load(Ordering::Relaxed));
        let (flags, conf) = f(flags, conf);
        w.store(state_word(flags, conf), Ordering::Relaxed);
        Ok(l.split(slot).0)
    }

    pub(crate) fn set_last_used(&mut self, slot: u64, ms: i64) -> Result<usize, String> {
        let l = self.shared.layout;
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: as in `update_state`.
        unsafe { chunk.word(&l, i, META_LAST_USED) }.store(ms as u64, Ordering::Relaxed);
        Ok(l.split(slot).0)
    }

    /// The f32 original of any appended record, published or not.
    pub(crate) fn original(&self, slot: u64) -> Result<&[f32], String> {
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: the writer's thread, after the record's plain write; originals are never
        // written after that, so shared reads cannot race a write.
        Ok(unsafe { chunk.originals(&self.shared.layout, i, 1) })
    }

    /// Metadata of any appended record, published or not.
    pub(crate) fn meta(&self, slot: u64) -> Result<RecordMeta, String> {
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: the writer's thread, after the record's plain write.
        Ok(unsafe { chunk.meta(&self.shared.layout, i) })
    }

    /// Starts write-back (msync `MS_ASYNC`) of records `from..to` (their bytes in all four
    /// regions) and of the metadata regions of chunks `meta_chunks` (in-place updates touch only
    /// the metadata); a following fdatasync waits for it.
    pub(crate) fn flush_async(&self, from: u64, to: u64, meta_chunks: &[usize]) -> io::Result<()> {
        let l = self.shared.layout;
        let c = l.chunk_records as u64;
        let (mut slot, end) = (from, to.min(self.appended));
        while slot < end {
            let (k, i) = l.split(slot);
            let n = (((k as u64 + 1) * c).min(end) - slot) as usize;
            // SAFETY: the writer's thread.
            if let Some(ch) = unsafe { self.shared.chunk(k) } {
                ch.flush_async(i * l.stride, n * l.stride)?;
                ch.flush_async(l.scales_off + i * 4, n * 4)?;
                ch.flush_async(l.f32_off + i * l.dim * 4, n * l.dim * 4)?;
                ch.flush_async(l.meta_off + i * META_SIZE, n * META_SIZE)?;
            }
            slot += n as u64;
        }
        for &k in meta_chunks {
            // SAFETY: the writer's thread.
            if let Some(ch) = unsafe { self.shared.chunk(k) } {
                ch.flush_async(l.meta_off, l.chunk_records * META_SIZE)?;
            }
        }
        Ok(())
    }
}

/// A consistent read-only view of an arena: the records below [`View::len`], fixed when the
/// view was taken. Cheap to take (one Acquire load) and `Copy`; borrows its reader or snapshot.
/// The mutable metadata (flags, confidence, last use) is read as of each call.
#[derive(Clone, Copy)]
pub struct View<'a> {
    shared: &'a Shared,
    len: u64,
}

impl<'a> View<'a> {
    /// Records visible in this view (slots `0..len`).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no record is visible.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.shared.layout.dim
    }

    /// Bytes per code vector (`dim` rounded up to 64; the padding is zero).
    pub fn stride(&self) -> usize {
        self.shared.layout.stride
    }

    fn locate(&self, slot: u64) -> Option<(&'a Chunk, usize)> {
        if slot >= self.len {
            return None;
        }
        let (k, i) = self.shared.layout.split(slot);
        // SAFETY: `slot < len`, loaded with Acquire: chunk `k` holds a published slot.
        let chunk = unsafe { self.shared.chunk(k) }?;
        chunk.reading(i..i + 1);
        Some((chunk, i))
    }

    /// The int8 code of `slot` (`stride` bytes), or `None` past the view.
    pub fn codes_of(&self, slot: u64) -> Option<&'a [i8]> {
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: `i < C`, published (locate).
        Some(unsafe { chunk.codes(&self.shared.layout, i, 1) })
    }

    /// The f32 scale of `slot` (as appended in [`RecordMeta::scale`]; also in
    /// [`ChunkView::scales`]); `None` past the view.
    pub fn scale_of(&self, slot: u64) -> Option<f32> {
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: `i < C`, published (locate).
        unsafe { chunk.scales(&self.shared.layout, i, 1) }.first().copied()
    }

    /// The f32 original of `slot` (`dim` values), for rescoring; `None` past the view.
    pub fn originals_of(&self, slot: u64) -> Option<&'a [f32]> {
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: `i < C`, published (locate).
        Some(unsafe { chunk.originals(&self.shared.layout, i, 1) })
    }

    /// The metadata of `slot` (its mutable fields as of now); `None` past the view.
    pub fn meta_of(&self, slot: u64) -> Option<RecordMeta> {
        let (chunk, i) = self.locate(slot)?;
        // SAFETY: `i < C`, published (locate).
        Some(unsafe { chunk.meta(&self.shared.layout, i) })
    }

    /// The visible records chunk by chunk, in slot order: what a scan iterates.
    pub fn chunks(&self) -> Chunks<'a> {
        Chunks { view: *self, next: 0 }
    }
}

/// Iterator over the chunks of a [`View`].
pub struct Chunks<'a> {
    view: View<'a>,
    next: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = ChunkView<'a>;

    fn next(&mut self) -> Option<ChunkView<'a>> {
        let l = &self.view.shared.layout;
        let first = self.next as u64 * l.chunk_records as u64;
        if first >= self.view.len {
            return None;
        }
        let count = (self.view.len - first).min(l.chunk_records as u64) as usize;
        // SAFETY: slot `first < len`, loaded with Acquire: the chunk holds published slots.
        let chunk = unsafe { self.view.shared.chunk(self.next) }?;
        chunk.reading(0..count);
        self.next += 1;
        Some(ChunkView {
            first_slot: first,
            count,
            // SAFETY: records `0..count` of the chunk are published.
            codes: unsafe { chunk.codes(l, 0, count) },
            // SAFETY: as above.
            scales: unsafe { chunk.scales(l, 0, count) },
            // SAFETY: as above.
            originals: unsafe { chunk.originals(l, 0, count) },
            chunk,
            layout: l,
        })
    }
}

/// The visible records of one chunk: slots `first_slot..first_slot + count`, codes contiguous.
pub struct ChunkView<'a> {
    /// Slot of the chunk's first record.
    pub first_slot: u64,
    /// Visible records in this chunk.
    pub count: usize,
    /// Their codes, `count · stride` bytes, record `i` at `i · stride`.
    pub codes: &'a [i8],
    /// Their scales ([`RecordMeta::scale`] as appended), `count` values, record `i` at `i`.
    pub scales: &'a [f32],
    /// Their f32 originals, `count · dim` values, record `i` at `i · dim`.
    pub originals: &'a [f32],
    chunk: &'a Chunk,
    layout: &'a Layout,
}

impl ChunkView<'_> {
    /// Metadata of the chunk's `i`-th record, `None` for `i ≥ count`.
    pub fn meta(&self, i: usize) -> Option<RecordMeta> {
        // SAFETY: `i < count ≤ C`, published (the view's count).
        (i < self.count).then(|| unsafe { self.chunk.meta(self.layout, i) })
    }
}

/// An owned view: one `Arc` on the arena and the published count loaded (Acquire) when taken.
/// It may be sent to another thread: the send itself orders that thread after the load.
#[derive(Clone)]
pub struct Snapshot {
    shared: Arc<Shared>,
    len: u64,
}

impl Snapshot {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        Snapshot { shared: Arc::clone(shared), len: shared.published.load(Ordering::Acquire) }
    }

    /// The records as of the snapshot.
    pub fn view(&self) -> View<'_> {
        View { shared: &self.shared, len: self.len }
    }

    /// Records visible in the snapshot.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no record is visible.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
