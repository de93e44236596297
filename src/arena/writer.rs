//! The single writer: appends, in-place updates, publication and commits.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::format::{RawHeader, HEADER_SLOTS, MAX_CHUNKS};
use super::raw::CoreWriter;
use super::reader::ArenaReader;
use super::{sys, ArenaError, ArenaParams, Durability, RecordMeta};

/// The file behind a file-backed writer.
pub(crate) struct FileState {
    pub file: File,
    pub path: PathBuf,
    /// The newest valid header on disk, and which copy (0 = A, 1 = B) holds it.
    pub header: RawHeader,
    pub newest: usize,
    pub durability: Durability,
}

/// The only writer of an arena (per process and, through the file lock, across processes).
///
/// Appended records become visible to readers at [`publish`](Self::publish) or
/// [`commit`](Self::commit), and durable at `commit`. Dropping the writer commits nothing.
pub struct ArenaWriter {
    core: CoreWriter,
    file: Option<FileState>,
    user_seq: u64,
    /// Chunks with in-place updates since the last commit (their metadata is flushed).
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
}

impl ArenaWriter {
    pub(crate) fn new(core: CoreWriter, file: Option<FileState>) -> Self {
        let user_seq = file.as_ref().map_or(0, |f| f.header.user_seq);
        ArenaWriter { core, file, user_seq, dirty: Vec::new(), is_dirty: vec![false; MAX_CHUNKS] }
    }

    /// A reader of this arena.
    pub fn reader(&self) -> ArenaReader {
        ArenaReader::new(self.core.shared().clone())
    }

    /// The arena's parameters.
    pub fn params(&self) -> &ArenaParams {
        self.core.shared().params()
    }

    /// Records appended (published or not).
    pub fn appended(&self) -> u64 {
        self.core.appended()
    }

    /// Records visible to readers.
    pub fn published(&self) -> u64 {
        self.core.published()
    }

    /// Records durable in the file (for a heap arena: published).
    pub fn committed(&self) -> u64 {
        self.file.as_ref().map_or(self.core.published(), |f| f.header.committed)
    }

    /// The caller's sequence number stored by the last commit (or to be stored by the next).
    pub fn user_seq(&self) -> u64 {
        self.user_seq
    }

    /// Sets the sequence number that the next commit stores in the header (e.g. the last
    /// SQLite batch whose changes this arena holds), so a reopening store knows what to replay.
    pub fn set_user_seq(&mut self, seq: u64) {
        self.user_seq = seq;
    }

    /// Appends one record and returns its slot. `codes` and `originals` have `dim` values
    /// (codes are zero-padded to the stride); originals must be finite, confidence in [0, 1],
    /// the scale finite and ≥ 0. On error nothing changes.
    pub fn append(&mut self, codes: &[i8], originals: &[f32], meta: &RecordMeta) -> Result<u64, ArenaError> {
        let dim = self.params().dim as usize;
        let bad = |s: String| Err(ArenaError::InvalidInput(s));
        if codes.len() != dim || originals.len() != dim {
            return bad(format!(
                "{} codes and {} originals for dimension {dim}",
                codes.len(),
                originals.len()
            ));
        }
        if let Some(i) = originals.iter().position(|v| !v.is_finite()) {
            return bad(format!("original value {i} is {}", originals[i]));
        }
        if !(0.0..=1.0).contains(&meta.confidence) {
            return bad(format!("confidence {} is outside [0, 1]", meta.confidence));
        }
        if !(meta.scale.is_finite() && meta.scale >= 0.0) {
            return bad(format!("scale {} must be finite and ≥ 0", meta.scale));
        }
        if self.core.appended() >= self.core.capacity() {
            self.grow()?;
        }
        self.core.append(codes, originals, meta).map_err(ArenaError::InvalidInput)
    }

    fn grow(&mut self) -> Result<(), ArenaError> {
        let k = self.core.installed();
        let layout = *self.core.shared().layout();
        if k >= MAX_CHUNKS {
            return Err(ArenaError::InvalidInput(format!(
                "the arena is full ({} records)",
                layout.max_records()
            )));
        }
        let Some(fs) = &self.file else {
            return self.core.install_heap().map_err(ArenaError::InvalidInput);
        };
        let (off, len) = (layout.chunk_offset(k), layout.chunk_bytes);
        let what = |verb: &str| format!("{verb} chunk {k} ({len} bytes at {off}) of {}", fs.path.display());
        sys::allocate(&fs.file, off, len as u64).map_err(|e| ArenaError::io(what("reserving"), e))?;
        let map = sys::map_writable(&fs.file, off, len).map_err(|e| ArenaError::io(what("mapping"), e))?;
        self.core.install_mapped(map).map_err(|e| ArenaError::io(what("installing"), io::Error::other(e)))
    }

    fn mark_dirty(&mut self, chunk: usize) {
        if !self.is_dirty[chunk] {
            self.is_dirty[chunk] = true;
            self.dirty.push(chunk);
        }
    }

    /// Replaces the flags of an appended record (one atomic store; readers see it at once).
    pub fn set_flags(&mut self, slot: u64, flags: u32) -> Result<(), ArenaError> {
        let k = self.core.update_state(slot, |_, c| (flags, c)).map_err(ArenaError::InvalidInput)?;
        self.mark_dirty(k);
        Ok(())
    }

    /// Replaces the confidence (in [0, 1]) of an appended record.
    pub fn set_confidence(&mut self, slot: u64, confidence: f32) -> Result<(), ArenaError> {
        if !(0.0..=1.0).contains(&confidence) {
            return Err(ArenaError::InvalidInput(format!("confidence {confidence} is outside [0, 1]")));
        }
        let k = self.core.update_state(slot, |f, _| (f, confidence)).map_err(ArenaError::InvalidInput)?;
        self.mark_dirty(k);
        Ok(())
    }

    /// Sets the last-use time of an appended record.
    pub fn touch(&mut self, slot: u64, last_used_ms: i64) -> Result<(), ArenaError> {
        let k = self.core.set_last_used(slot, last_used_ms).map_err(ArenaError::InvalidInput)?;
        self.mark_dirty(k);
        Ok(())
    }

    /// The f32 original of record `slot` (published or not).
    pub fn original(&self, slot: u64) -> Result<&[f32], ArenaError> {
        self.core.original(slot).map_err(ArenaError::InvalidInput)
    }

    /// The metadata of an appended record, published or not.
    pub fn meta(&self, slot: u64) -> Result<RecordMeta, ArenaError> {
        self.core.meta(slot).map_err(ArenaError::InvalidInput)
    }

    /// Makes every appended record visible to readers (in memory only); returns the count.
    pub fn publish(&mut self) -> u64 {
        self.core.publish()
    }

    /// Drops the appended records not yet published (e.g. when the SQLite transaction that
    /// they mirror rolled back); returns the count kept.
    pub fn rollback(&mut self) -> u64 {
        self.core.rollback();
        self.core.appended()
    }

    /// Publishes, then makes every appended record and in-place update durable: records first,
    /// then the new header in the copy with the older generation (see the module docs).
    /// Returns the committed count. On error the previous commit stays the valid one on disk;
    /// the records stay published in memory and the next commit retries.
    pub fn commit(&mut self) -> Result<u64, ArenaError> {
        let n = self.core.publish();
        let Some(fs) = &mut self.file else { return Ok(n) };
        let header_changes = n != fs.header.committed || self.user_seq != fs.header.user_seq;
        if !header_changes && self.dirty.is_empty() {
            return Ok(n);
        }
        let what = |verb: &str| format!("{verb} {}", fs.path.display());
        if fs.durability == Durability::Sync {
            // msync(MS_ASYNC) queues the mapped writes; fdatasync then waits for them (and for
            // the file size after growth) before the header can name them.
            self.core
                .flush_async(fs.header.committed, n, &self.dirty)
                .map_err(|e| ArenaError::io(what("writing back the records of"), e))?;
            fs.file.sync_data().map_err(|e| ArenaError::io(what("syncing the records of"), e))?;
        }
        for k in self.dirty.drain(..) {
            self.is_dirty[k] = false;
        }
        if header_changes {
            let mut h = fs.header;
            h.committed = n;
            h.generation += 1;
            h.user_seq = self.user_seq;
            let slot = 1 - fs.newest;
            fs.file
                .write_all_at(&h.encode(), HEADER_SLOTS[slot])
                .map_err(|e| ArenaError::io(what("writing the header of"), e))?;
            if fs.durability == Durability::Sync {
                fs.file.sync_data().map_err(|e| ArenaError::io(what("syncing the header of"), e))?;
            }
            fs.header = h;
            fs.newest = slot;
        }
        Ok(n)
    }
}

impl Drop for ArenaWriter {
    /// Releases the writer's lock, unless readers of this arena may still see records that were
    /// published but not committed: a new writer would write those slots again under them. Then
    /// the lock stays with their mappings (which keep the locked open file alive) and goes with
    /// the last of them.
    fn drop(&mut self) {
        if let Some(fs) = &self.file {
            if self.core.published() <= fs.header.committed {
                sys::unlock(&fs.file);
            }
        }
    }
}

impl std::fmt::Debug for ArenaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArenaWriter")
            .field("path", &self.file.as_ref().map(|s| &s.path))
            .field("appended", &self.appended())
            .field("published", &self.published())
            .field("committed", &self.committed())
            .finish()
    }
}
