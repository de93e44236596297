//! Open time of a large arena (ignored by default: writes about 2 GB):
//!
//! ```text
//! cargo test --release --test open_time -- --ignored --nocapture
//! ```
//! `PBARENA_OPEN_N` overrides the record count (default 1,000,000, 384 dimensions).

use std::time::{Duration, Instant};

use patternbank::arena::{Arena, ArenaParams, Durability, OpenMode, RecordMeta};

/// Evicts the file's pages from the page cache, so the next open reads the disk (cold open).
fn evict(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: an advisory call on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore]
fn open_one_million_vectors() {
    let n: u64 = std::env::var("PBARENA_OPEN_N").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(std::env::var("PBARENA_OPEN_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let path = dir.path().join("big.arena");
    let params = ArenaParams::new(384, "all-MiniLM-L6-v2");
    let t = Instant::now();
    {
        let (a, _) = Arena::open_or_create(&path, &params, OpenMode::ReadWrite(Durability::NoSync)).unwrap();
        let mut w = a.into_parts().1.unwrap();
        let codes: Vec<i8> = (0..384).map(|i| (i % 251) as i8).collect();
        let orig: Vec<f32> = (0..384).map(|i| i as f32 / 384.0).collect();
        for s in 0..n {
            let m = RecordMeta {
                rowid: s as i64,
                flags: 0,
                kind: (s % 8) as u32,
                confidence: 0.5,
                created_at_ms: s as i64,
                last_used_ms: s as i64,
                scale: 0.0,
            };
            w.append(&codes, &orig, &m).unwrap();
        }
        assert_eq!(w.commit().unwrap(), n);
    }
    let fill = t.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    let mut times = Vec::new();
    let rw = OpenMode::ReadWrite(Durability::Sync);
    for (mode, cold) in [(OpenMode::ReadOnly, false), (rw, false), (OpenMode::ReadOnly, true), (rw, true)] {
        let mut v = Vec::new();
        for _ in 0..9 {
            if cold {
                evict(&path);
            }
            let t = Instant::now();
            let (a, r) = Arena::open(&path, &params, mode).unwrap();
            v.push(t.elapsed());
            assert_eq!((r.committed, a.reader().len()), (n, n));
            // After timing: the last record is there, through a live mapping.
            assert_eq!(a.reader().view().meta_of(n - 1).unwrap().rowid, n as i64 - 1);
        }
        let (min, med) = (*v.iter().min().unwrap(), median(v));
        let cache = if cold { "cold" } else { "warm" };
        println!("open {mode:?}, {cache} cache: median {med:?}, min {min:?} ({n} records, {size} bytes, filled in {fill:?})");
        times.push(med);
    }
    assert!(times.iter().all(|t| *t < Duration::from_millis(50)), "{times:?}");
}
