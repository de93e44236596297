//! System calls: the writer's lock, block reservation, and the chunk mappings. With `raw.rs`,
//! the only `unsafe` in the arena.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` if another open file
/// description (another process, or another open of the file in this one) holds it. Released
/// when the file is closed; the kernel drops it when the process dies, even by `kill -9`.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: `flock` on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Releases the lock. Closing `file` alone would not: mappings made through it keep its open
/// file description, and with it the lock, alive until they are unmapped (readers' chunks).
pub(crate) fn unlock(file: &File) {
    // SAFETY: `flock` on a descriptor we own; no memory is passed. Failure leaves the lock to
    // be released with the last mapping, which is still correct.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}

/// Reserves the blocks of `offset..offset + len` (extending the file if needed), so a full disk
/// is this error now rather than a SIGBUS on a later store into the mapping: `ftruncate` alone
/// makes a sparse hole whose blocks are only found, or not, at write-back.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t");
    let off = libc::off_t::try_from(offset).map_err(|_| too_big())?;
    let len = libc::off_t::try_from(len).map_err(|_| too_big())?;
    loop {
        // SAFETY: `posix_fallocate` on a descriptor we own; no memory is passed. It returns the
        // error number instead of setting errno. (glibc emulates it by writing zeros on file
        // systems without `fallocate`.)
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), off, len) } {
            0 => return Ok(()),
            libc::EINTR => continue,
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Reserves the blocks by writing zeros where `posix_fallocate` is missing (macOS).
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + at)?;
        at += n as u64;
    }
    Ok(())
}

/// Maps `len` bytes of `file` at `offset` (a multiple of the page size) read-write, shared.
pub(crate) fn map_writable(file: &File, offset: u64, len: usize) -> io::Result<MmapMut> {
    // SAFETY: the mapping covers blocks we reserved (`allocate`) in a file this process holds
    // the writer's lock on; this arena never shrinks a file it maps, and other writers are
    // excluded by the lock. The remaining hazard, another program truncating the file, would
    // raise SIGBUS on access: the same as for every mapped file, and outside our contract.
    unsafe { MmapOptions::new().offset(offset).len(len).map_mut(file) }
}

/// Maps `len` bytes of `file` at `offset` read-only, shared (sees the writer's later in-place
/// updates of flags, confidence and last use).
pub(crate) fn map_read_only(file: &File, offset: u64, len: usize) -> io::Result<Mmap> {
    // SAFETY: as for `map_writable`; the caller checked the file is long enough; arena writers
    // never shrink the file (a rebuild replaces it by rename, leaving this inode intact).
    unsafe { MmapOptions::new().offset(offset).len(len).map(file) }
}
