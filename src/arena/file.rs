//! Opening, validating, creating and replacing arena files.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::format::{CopyError, Layout, RawHeader, DATA_OFFSET, HEADER_SIZE, HEADER_SLOTS};
use super::raw::{CoreWriter, Shared};
use super::reader::ArenaReader;
use super::writer::{ArenaWriter, FileState};
use super::{sys, ArenaError, ArenaParams, Durability, OpenMode};

/// An open arena: a reader, and the writer unless it was opened read-only.
#[derive(Debug)]
pub struct Arena {
    reader: ArenaReader,
    writer: Option<ArenaWriter>,
}

/// What open found (and did): for the store's log and metrics.
#[derive(Debug)]
pub struct OpenReport {
    /// A new empty file was created (none existed, or a bad one was replaced).
    pub created: bool,
    /// Why the previous file was replaced ([`Arena::open_or_replace`]); the caller rebuilds.
    pub replaced: Option<ArenaError>,
    /// Records committed in the file, now visible.
    pub committed: u64,
    /// Generation of the header used.
    pub generation: u64,
    /// The caller's sequence number stored by the last commit.
    pub user_seq: u64,
    /// The header copy used: 0 = A, 1 = B.
    pub header_copy: usize,
    /// Set when the other header copy failed validation (the reason); the file opened from the
    /// good copy and the writer's next commit overwrites the bad one.
    pub damaged_copy: Option<String>,
    /// Chunks mapped.
    pub chunks: usize,
    /// The file's parameters (its own chunk size).
    pub params: ArenaParams,
}

/// The validated header of an existing file.
struct Loaded {
    header: RawHeader,
    layout: Layout,
    newest: usize,
    damaged: Option<String>,
}

const COPY_NAMES: [&str; 2] = ["A", "B"];

impl Arena {
    /// Opens an existing arena; the file must match `params` (all but `chunk_records`).
    pub fn open(
        path: impl AsRef<Path>,
        params: &ArenaParams,
        mode: OpenMode,
    ) -> Result<(Arena, OpenReport), ArenaError> {
        open_impl(path.as_ref(), params, mode, false)
    }

    /// Opens an arena, creating an empty one if the file does not exist (read-write only).
    pub fn open_or_create(
        path: impl AsRef<Path>,
        params: &ArenaParams,
        mode: OpenMode,
    ) -> Result<(Arena, OpenReport), ArenaError> {
        open_impl(path.as_ref(), params, mode, true)
    }

    /// Opens for writing, creating the file if missing and replacing it with an empty one if it
    /// is corrupt or incompatible ([`ArenaError::needs_rebuild`]); `OpenReport::replaced` then
    /// says why, and the caller rebuilds from SQLite. Other errors (I/O, locked) are returned.
    pub fn open_or_replace(
        path: impl AsRef<Path>,
        params: &ArenaParams,
        durability: Durability,
    ) -> Result<(Arena, OpenReport), ArenaError> {
        let path = path.as_ref();
        match open_impl(path, params, OpenMode::ReadWrite(durability), true) {
            Err(e) if e.needs_rebuild() => {
                let (arena, mut report) = Arena::create_new(path, params, durability)?;
                report.replaced = Some(e);
                Ok((arena, report))
            }
            other => other,
        }
    }

    /// Creates an empty arena at `path`, atomically replacing any file there: the new file is
    /// written beside it and renamed over it, so `path` always holds either the old file or a
    /// complete new one. Fails with `Locked` while a writer holds the old file.
    pub fn create_new(
        path: impl AsRef<Path>,
        params: &ArenaParams,
        durability: Durability,
    ) -> Result<(Arena, OpenReport), ArenaError> {
        let path = path.as_ref();
        for _ in 0..8 {
            if let Some(done) = create(path, params, durability, true)? {
                return Ok(done);
            }
        }
        Err(ArenaError::io(
            format!("replacing {}", path.display()),
            io::Error::other("the file kept changing"),
        ))
    }

    /// An arena in memory (no file), with the same publication code: for tests and loom.
    pub fn heap(params: &ArenaParams) -> Result<Arena, ArenaError> {
        let (layout, _) = params.validate()?;
        let writer = ArenaWriter::new(CoreWriter::new(layout, params.clone()), None);
        Ok(Arena { reader: writer.reader(), writer: Some(writer) })
    }

    /// A reader (cheap to clone, `Send + Sync`).
    pub fn reader(&self) -> ArenaReader {
        self.reader.clone()
    }

    /// The writer, unless opened read-only.
    pub fn writer(&mut self) -> Option<&mut ArenaWriter> {
        self.writer.as_mut()
    }

    /// The reader and the writer, separately (the writer goes to the writer thread).
    pub fn into_parts(self) -> (ArenaReader, Option<ArenaWriter>) {
        (self.reader, self.writer)
    }
}

fn io_err<'a>(what: &str, path: &'a Path) -> impl FnOnce(io::Error) -> ArenaError + 'a {
    let what = what.to_string();
    move |e| ArenaError::io(format!("{what} {}", path.display()), e)
}

fn open_impl(
    path: &Path,
    params: &ArenaParams,
    mode: OpenMode,
    create_missing: bool,
) -> Result<(Arena, OpenReport), ArenaError> {
    params.validate()?;
    let durability = match mode {
        OpenMode::ReadOnly => return open_read_only(path, params),
        OpenMode::ReadWrite(d) => d,
    };
    // Retried when the file is created or replaced between our open and our lock.
    for _ in 0..8 {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create_missing => {
                match create(path, params, durability, false)? {
                    Some(done) => return Ok(done),
                    None => continue, // another process created it first: open that one
                }
            }
            Err(e) => return Err(io_err("opening", path)(e)),
        };
        if !sys::try_lock_exclusive(&file).map_err(io_err("locking", path))? {
            return Err(ArenaError::Locked(path.to_path_buf()));
        }
        if !same_file(&file, path).map_err(io_err("checking", path))? {
            continue;
        }
        let loaded = load(&file, path, params)?;
        let layout = loaded.layout;
        let committed = loaded.header.committed;
        let mut core = CoreWriter::new(layout, loaded.header.params());
        for k in 0..layout.chunks_for(committed) {
            let map = sys::map_writable(&file, layout.chunk_offset(k), layout.chunk_bytes)
                .map_err(io_err(&format!("mapping chunk {k} of"), path))?;
            core.install_mapped(map).map_err(|e| ArenaError::Corrupt(format!("{}: {e}", path.display())))?;
        }
        // Appends go into the last chunk: make sure its blocks are reserved even if the file was
        // copied sparse, so a full disk is an error here and never a SIGBUS later.
        if let Some(k) = layout.chunks_for(committed).checked_sub(1) {
            sys::allocate(&file, layout.chunk_offset(k), layout.chunk_bytes as u64)
                .map_err(io_err(&format!("reserving chunk {k} of"), path))?;
        }
        core.adopt(committed).map_err(|e| ArenaError::Corrupt(format!("{}: {e}", path.display())))?;
        let report = report(&loaded, false);
        let state = FileState {
            file,
            path: path.to_path_buf(),
            header: loaded.header,
            newest: loaded.newest,
            durability,
        };
        let writer = ArenaWriter::new(core, Some(state));
        return Ok((Arena { reader: writer.reader(), writer: Some(writer) }, report));
    }
    Err(ArenaError::io(format!("opening {}", path.display()), io::Error::other("the file kept changing")))
}

fn open_read_only(path: &Path, params: &ArenaParams) -> Result<(Arena, OpenReport), ArenaError> {
    let file = File::open(path).map_err(io_err("opening", path))?;
    // Without the lock, a read can meet a writer's header write half done; it rewrites one copy
    // per commit, so a second look finds a good one unless the file really is damaged.
    let mut loaded = load(&file, path, params);
    for _ in 0..2 {
        if !matches!(&loaded, Err(ArenaError::Corrupt(_))) {
            break;
        }
        loaded = load(&file, path, params);
    }
    let loaded = loaded?;
    let layout = loaded.layout;
    let committed = loaded.header.committed;
    let maps = (0..layout.chunks_for(committed))
        .map(|k| {
            sys::map_read_only(&file, layout.chunk_offset(k), layout.chunk_bytes)
                .map_err(io_err(&format!("mapping chunk {k} of"), path))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Shared::read_only(layout, loaded.header.params(), maps, committed)
        .map_err(|e| ArenaError::Corrupt(format!("{}: {e}", path.display())))?;
    Ok((Arena { reader: ArenaReader::new(shared), writer: None }, report(&loaded, false)))
}

fn report(l: &Loaded, created: bool) -> OpenReport {
    OpenReport {
        created,
        replaced: None,
        committed: l.header.committed,
        generation: l.header.generation,
        user_seq: l.header.user_seq,
        header_copy: l.newest,
        damaged_copy: l.damaged.clone(),
        chunks: l.layout.chunks_for(l.header.committed),
        params: l.header.params(),
    }
}

/// Whether `file` is still the file at `path` (not replaced since we opened it).
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let a = file.metadata()?;
    match fs::metadata(path) {
        Ok(b) => Ok(a.dev() == b.dev() && a.ino() == b.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads and validates both header copies, picks the newest valid one, and checks it against
/// the caller's parameters and the file's length. Never reads past the header region.
fn load(file: &File, path: &Path, params: &ArenaParams) -> Result<Loaded, ArenaError> {
    let p = path.display();
    let file_len = file.metadata().map_err(io_err("reading the size of", path))?.len();
    let mut copies = Vec::with_capacity(2);
    for &off in &HEADER_SLOTS {
        // Up to the whole 4 KiB block, so a longer header of a later version still checks out
        // (and is then reported as another version, not as damage).
        let len = file_len.saturating_sub(off).min(HEADER_SLOTS[1]) as usize;
        let copy = if len < HEADER_SIZE {
            Err(CopyError::Corrupt(format!(
                "the file is {file_len} bytes and ends inside or before this copy"
            )))
        } else {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, off).map_err(io_err("reading the header of", path))?;
            RawHeader::decode(&buf)
        };
        copies.push(copy);
    }
    // A copy with a valid checksum but another version or byte order means another program
    // has written this file: never fall back to the other copy and overwrite its work.
    if let Some(Err(CopyError::Incompatible(why))) =
        copies.iter().find(|c| matches!(c, Err(CopyError::Incompatible(_))))
    {
        return Err(ArenaError::Incompatible(format!("{p}: {why}")));
    }
    let best = (0..2)
        .filter(|&s| copies[s].is_ok())
        .max_by_key(|&s| copies[s].as_ref().map_or(0, |h| h.0.generation));
    let Some(newest) = best else {
        let why = |s: usize| copies[s].as_ref().err().map_or(String::new(), |e| e.to_string());
        return Err(ArenaError::Corrupt(format!(
            "{p}: header copy A: {}; header copy B: {}",
            why(0),
            why(1)
        )));
    };
    let other = 1 - newest;
    let damaged = copies[other].as_ref().err().map(|e| format!("header copy {}: {e}", COPY_NAMES[other]));
    let (header, layout) =
        copies.swap_remove(newest).map_err(|e| ArenaError::Corrupt(format!("{p}: {e}")))?;
    header.check_expected(params).map_err(|e| ArenaError::Incompatible(format!("{p}: {e}")))?;
    let need = layout.file_len_for(header.committed).max(DATA_OFFSET);
    if file_len < need {
        return Err(ArenaError::Corrupt(format!(
            "{p}: the file is {file_len} bytes but its {} committed records need {need}",
            header.committed
        )));
    }
    Ok(Loaded { header, layout, newest, damaged })
}

/// Writes an empty arena beside `path` and moves it into place: over the old file (`replace`,
/// holding the old file's lock meanwhile) or only where none exists. `Ok(None)`: lost a race
/// with another process (retry).
fn create(
    path: &Path,
    params: &ArenaParams,
    durability: Durability,
    replace: bool,
) -> Result<Option<(Arena, OpenReport)>, ArenaError> {
    let (layout, model) = params.validate()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| ArenaError::InvalidInput(format!("{} names no file", path.display())))?;
    // Keep the old file locked until the new one is in place, so no other writer opens it.
    let old = if replace {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => {
                if !sys::try_lock_exclusive(&f).map_err(io_err("locking", path))? {
                    return Err(ArenaError::Locked(path.to_path_buf()));
                }
                if !same_file(&f, path).map_err(io_err("checking", path))? {
                    return Ok(None);
                }
                Some(f)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("opening", path)(e)),
        }
    } else {
        None
    };
    let (file, tmp) = create_temp(&dir, name)?;
    let mut guard = RemoveOnDrop(Some(tmp.clone()));
    let tmp_err = |what: &str| io_err(what, &tmp);
    if !sys::try_lock_exclusive(&file).map_err(tmp_err("locking"))? {
        return Err(ArenaError::Locked(tmp.clone()));
    }
    file.set_len(DATA_OFFSET).map_err(tmp_err("sizing"))?;
    // Both copies valid from the start, so a damaged one never leaves the file unreadable.
    let mut header = RawHeader::new(params, &layout, model);
    for (slot, &off) in HEADER_SLOTS.iter().enumerate() {
        header.generation = slot as u64;
        file.write_all_at(&header.encode(), off).map_err(tmp_err("writing the header of"))?;
    }
    if durability == Durability::Sync {
        file.sync_all().map_err(tmp_err("syncing"))?;
    }
    if old.is_some() {
        fs::rename(&tmp, path).map_err(io_err("renaming a new arena onto", path))?;
    } else {
        // A hard link fails if a file appeared at `path` meanwhile: never clobber another
        // creator's (locked) file.
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(io_err("linking a new arena at", path)(e)),
        }
        let _ = fs::remove_file(&tmp);
    }
    guard.0 = None;
    if durability == Durability::Sync {
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err("syncing the directory of", path))?;
    }
    drop(old);
    let mut core = CoreWriter::new(layout, params.clone());
    core.adopt(0).map_err(|e| ArenaError::Corrupt(e.to_string()))?;
    let loaded = Loaded { header, layout, newest: 1, damaged: None };
    let report = report(&loaded, true);
    let state = FileState { file, path: path.to_path_buf(), header, newest: 1, durability };
    let writer = ArenaWriter::new(core, Some(state));
    Ok(Some((Arena { reader: writer.reader(), writer: Some(writer) }, report)))
}

fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> Result<(File, PathBuf), ArenaError> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    for attempt in 0..100u32 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{}.tmp", std::process::id(), nanos.wrapping_add(attempt)));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().read(true).write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating a file in", dir)(e)),
        }
    }
    Err(ArenaError::io(format!("creating a file in {}", dir.display()), io::Error::other("no free name")))
}

/// Removes a half-made temporary file on every early return.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}
