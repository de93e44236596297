//! Behaviour of the arena file: round trips, concurrency, validation and recovery.

#[path = "arena_support/mod.rs"]
mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{append, check_all};
use patternbank::arena::{
    Arena, ArenaErrorKind, ArenaParams, ArenaReader, ArenaWriter, Durability, OpenMode, QuantKind, FLAG_DEAD,
};

const RW: OpenMode = OpenMode::ReadWrite(Durability::NoSync);

/// dim 5 (codes padded to 64), 8 records per chunk: many small chunks.
fn params() -> ArenaParams {
    ArenaParams::new(5, "test-model").chunk_records(8)
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.arena");
    (dir, path)
}

fn writer(path: &Path, p: &ArenaParams, mode: OpenMode) -> (ArenaWriter, patternbank::arena::OpenReport) {
    let (a, r) = Arena::open_or_create(path, p, mode).unwrap();
    (a.into_parts().1.unwrap(), r)
}

fn fill(path: &Path, n: u64) {
    let (mut w, _) = writer(path, &params(), RW);
    for s in w.appended()..n {
        append(&mut w, s);
    }
    assert_eq!(w.commit().unwrap(), n);
}

fn open_err(path: &Path, p: &ArenaParams) -> patternbank::arena::ArenaError {
    let e = Arena::open(path, p, RW).expect_err("open must fail");
    // Read-only open agrees.
    let e2 = Arena::open(path, p, OpenMode::ReadOnly).expect_err("read-only open must fail");
    assert_eq!(e.kind(), e2.kind(), "{e} / {e2}");
    e
}

/// After any rejected file, `create_new` gives a valid empty arena that reopens.
fn assert_replaceable(path: &Path) {
    let (mut a, r) = Arena::create_new(path, &params(), Durability::Sync).unwrap();
    assert!(r.created && r.committed == 0);
    assert_eq!(a.reader().len(), 0);
    append(a.writer().unwrap(), 0);
    a.writer().unwrap().commit().unwrap();
    drop(a);
    let (a, r) = Arena::open(path, &params(), OpenMode::ReadOnly).unwrap();
    assert_eq!((r.committed, r.damaged_copy), (1, None));
    check_all(&a.reader().view());
}

#[test]
fn round_trip_across_chunks_and_reopen() {
    let (_d, path) = tmp();
    let (mut w, r) = writer(&path, &params(), OpenMode::ReadWrite(Durability::Sync));
    assert!(r.created && r.committed == 0 && r.damaged_copy.is_none());
    let reader = w.reader();
    for s in 0..100 {
        append(&mut w, s);
    }
    assert_eq!(reader.len(), 0, "nothing visible before publish");
    assert_eq!(w.commit().unwrap(), 100);
    assert_eq!((reader.len(), w.committed()), (100, 100));
    check_all(&reader.view());
    drop(w);
    // The reader outlives the writer.
    check_all(&reader.view());

    let (a, r) = Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap();
    assert_eq!((r.committed, r.chunks, r.created), (100, 13, false));
    check_all(&a.reader().view());
    // A writer appends after reopening; the read-only arena keeps its snapshot.
    let (mut w, r) = writer(&path, &params(), OpenMode::ReadWrite(Durability::Sync));
    assert_eq!(r.committed, 100);
    for s in 100..150 {
        append(&mut w, s);
    }
    w.commit().unwrap();
    assert_eq!(a.reader().len(), 100);
    drop(w);
    let (a, _) = Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap();
    assert_eq!(a.reader().len(), 150);
    check_all(&a.reader().view());
    let snap = a.reader().snapshot();
    drop(a);
    check_all(&snap.view());
}

#[test]
fn in_place_updates_are_visible_and_durable() {
    let (_d, path) = tmp();
    fill(&path, 20);
    let (mut w, _) = writer(&path, &params(), OpenMode::ReadWrite(Durability::Sync));
    let r = w.reader();
    w.set_confidence(3, 0.75).unwrap();
    w.set_flags(17, FLAG_DEAD).unwrap();
    w.touch(9, 1_800_000_000_000).unwrap();
    let v = r.view();
    assert_eq!(v.meta_of(3).unwrap().confidence, 0.75);
    assert_eq!(v.meta_of(17).unwrap().flags, FLAG_DEAD);
    assert_eq!(v.meta_of(17).unwrap().confidence, 0.5, "flags and confidence share a word");
    assert_eq!(w.commit().unwrap(), 20);
    drop(w);
    let (a, r) = Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap();
    let reader = a.reader();
    let v = reader.view();
    assert_eq!(r.generation, 2, "in-place updates alone write no header");
    assert_eq!((v.meta_of(3).unwrap().confidence, v.meta_of(17).unwrap().flags), (0.75, FLAG_DEAD));
    assert_eq!(v.meta_of(9).unwrap().last_used_ms, 1_800_000_000_000);
    check_all(&v);
}

#[test]
fn uncommitted_appends_are_invisible_after_reopen() {
    let (_d, path) = tmp();
    let (mut w, _) = writer(&path, &params(), RW);
    for s in 0..10 {
        append(&mut w, s);
    }
    w.commit().unwrap();
    for s in 10..30 {
        append(&mut w, s);
    }
    assert_eq!(w.publish(), 30, "visible in memory");
    drop(w);
    let (mut a, r) = Arena::open(&path, &params(), RW).unwrap();
    assert_eq!((r.committed, a.reader().len()), (10, 10));
    // Their slots are written again.
    let w = a.writer().unwrap();
    for s in 10..12 {
        append(w, s);
    }
    w.commit().unwrap();
    check_all(&a.reader().view());
}

/// The scales as a scan sees them: each chunk's `scales`, concatenated in slot order.
fn chunk_scales(v: &patternbank::arena::View<'_>) -> Vec<f32> {
    let mut out = Vec::new();
    for ch in v.chunks() {
        assert_eq!(ch.first_slot, out.len() as u64);
        assert_eq!(ch.scales.len(), ch.count, "one scale per visible record");
        out.extend_from_slice(ch.scales);
    }
    assert_eq!(out.len() as u64, v.len());
    out
}

#[test]
fn chunks_yield_the_appended_scales_contiguously_across_chunks_and_reopen() {
    // dim 5, 8 records per chunk.
    let p = params().quant(QuantKind::PerVector, 0.0);
    // Distinct, irregular values (zero and a subnormal included), so a misplaced one shows.
    let scale = |s: u64| match s % 5 {
        0 => 0.0,
        1 => f32::MIN_POSITIVE / 8.0,
        _ => 1.0 / (s as f32 + 3.0) + s as f32 * 1000.0,
    };
    let add = |w: &mut ArenaWriter, s: u64| {
        let m = patternbank::arena::RecordMeta { scale: scale(s), ..common::meta(s) };
        assert_eq!(w.append(&common::codes(s, 5), &common::originals(s, 5), &m).unwrap(), s);
    };
    let want = |n: u64| (0..n).map(scale).collect::<Vec<f32>>();

    // Heap arena: the same region code without a file.
    let mut a = Arena::heap(&p).unwrap();
    let w = a.writer().unwrap();
    for s in 0..27 {
        add(w, s);
    }
    w.publish();
    assert_eq!(chunk_scales(&a.reader().view()), want(27));

    let (_d, path) = tmp();
    let (mut w, _) = writer(&path, &p, OpenMode::ReadWrite(Durability::Sync));
    let reader = w.reader();
    for s in 0..13 {
        add(&mut w, s);
    }
    assert!(chunk_scales(&reader.view()).is_empty(), "nothing visible before publish");
    w.publish();
    assert_eq!(chunk_scales(&reader.view()), want(13));
    for s in 13..27 {
        add(&mut w, s); // 27 records: chunks of 8, 8, 8 and 3
    }
    assert_eq!(w.commit().unwrap(), 27);
    let v = reader.view();
    assert_eq!(chunk_scales(&v), want(27));
    assert_eq!(v.chunks().map(|c| c.count).collect::<Vec<_>>(), [8, 8, 8, 3]);
    for s in 0..27 {
        assert_eq!((v.scale_of(s), v.meta_of(s).unwrap().scale), (Some(scale(s)), scale(s)), "slot {s}");
    }
    assert_eq!(v.scale_of(27), None);
    // In-place updates leave the scales alone.
    w.set_flags(4, FLAG_DEAD).unwrap();
    w.set_confidence(20, 0.75).unwrap();
    w.commit().unwrap();
    drop(w);

    // On disk: chunk k at 64 KiB · (k + 1); its scales right after its 8 codes of 64 bytes.
    let bytes = fs::read(&path).unwrap();
    for s in 0..27usize {
        let at = 65536 * (1 + s / 8) + 8 * 64 + (s % 8) * 4;
        assert_eq!(bytes[at..at + 4], scale(s as u64).to_ne_bytes(), "slot {s} in the file");
    }

    let (a, _) = Arena::open(&path, &p, OpenMode::ReadOnly).unwrap();
    assert_eq!(chunk_scales(&a.reader().view()), want(27), "read-only reopen");
    drop(a);
    // A writer reopens, fills the partial last chunk and starts another.
    let (mut w, r) = writer(&path, &p, OpenMode::ReadWrite(Durability::Sync));
    assert_eq!(r.committed, 27);
    assert_eq!(chunk_scales(&w.reader().view()), want(27), "read-write reopen");
    for s in 27..35 {
        add(&mut w, s);
    }
    assert_eq!(w.commit().unwrap(), 35);
    drop(w);
    let (a, _) = Arena::open(&path, &p, OpenMode::ReadOnly).unwrap();
    let reader = a.reader();
    let v = reader.view();
    assert_eq!(chunk_scales(&v), want(35));
    assert_eq!(v.chunks().map(|c| c.count).collect::<Vec<_>>(), [8, 8, 8, 8, 3]);
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ArenaReader>();
    send_sync::<patternbank::arena::Snapshot>();
    send_sync::<patternbank::arena::View<'static>>();
    send_sync::<patternbank::arena::ChunkView<'static>>();
    send::<ArenaWriter>();
    send::<Arena>();
}

#[test]
fn rollback_forgets_unpublished_appends() {
    let mut a = Arena::heap(&params()).unwrap();
    let w = a.writer().unwrap();
    append(w, 0);
    w.publish();
    append(w, 1);
    assert_eq!(w.rollback(), 1);
    append(w, 1);
    assert_eq!(w.commit().unwrap(), 2);
    check_all(&a.reader().view());
}

/// Readers running beside the appender check every record below each count they load.
fn stress(mut w: ArenaWriter, n: u64) {
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (r, done): (ArenaReader, _) = (w.reader(), done.clone());
            std::thread::spawn(move || {
                let (mut midway, mut last) = (0u64, 0);
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let v = r.view();
                    assert!(v.len() >= last, "the count never goes back");
                    last = v.len();
                    check_all(&v);
                    midway += u64::from(last > 0 && last < n);
                    if finished {
                        return (midway, last);
                    }
                }
            })
        })
        .collect();
    for s in 0..n {
        append(&mut w, s);
        if s % 3 == 2 {
            w.publish();
        }
        // In-place updates of published records run concurrently with the readers too.
        if s > 10 {
            w.set_confidence(s - 10, 0.75).unwrap();
            w.touch(s - 5, 1_800_000_000_000).unwrap();
        }
        // Let the readers load many intermediate counts.
        if s % 64 == 0 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    w.commit().unwrap();
    done.store(true, Ordering::Release);
    let mut midway = 0;
    for t in readers {
        let (m, last) = t.join().unwrap();
        assert_eq!(last, n);
        midway += m;
    }
    assert!(midway > 0, "no reader ran while the writer appended");
}

#[test]
fn readers_never_see_a_partial_record_heap() {
    let a = Arena::heap(&ArenaParams::new(16, "m").chunk_records(64)).unwrap();
    stress(a.into_parts().1.unwrap(), 3000);
}

#[test]
fn readers_never_see_a_partial_record_file() {
    let (_d, path) = tmp();
    let (w, _) = writer(&path, &ArenaParams::new(16, "m").chunk_records(64), RW);
    stress(w, 3000);
}

#[test]
fn one_writer_at_a_time() {
    let (_d, path) = tmp();
    fill(&path, 3);
    let (w, _) = writer(&path, &params(), RW);
    let e = Arena::open(&path, &params(), RW).unwrap_err();
    assert_eq!(e.kind(), ArenaErrorKind::Locked, "{e}");
    assert!(e.to_string().contains("locked"));
    let e = Arena::create_new(&path, &params(), Durability::NoSync).unwrap_err();
    assert_eq!(e.kind(), ArenaErrorKind::Locked, "no replacing under a live writer");
    let (ro, _) = Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap();
    assert_eq!(ro.reader().len(), 3);
    drop(w);
    let (_w, r) = writer(&path, &params(), RW);
    assert_eq!(r.committed, 3);
}

#[test]
fn readers_of_uncommitted_records_keep_the_lock() {
    let (_d, path) = tmp();
    fill(&path, 3);
    let (mut w, _) = writer(&path, &params(), RW);
    let reader = w.reader();
    append(&mut w, 3);
    w.publish();
    drop(w);
    // A new writer would rewrite slot 3 under this reader: refused while the reader lives.
    assert_eq!(reader.len(), 4);
    assert_eq!(Arena::open(&path, &params(), RW).unwrap_err().kind(), ArenaErrorKind::Locked);
    check_all(&reader.view());
    drop(reader);
    let (_w, r) = writer(&path, &params(), RW);
    assert_eq!(r.committed, 3);
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let mut a = Arena::heap(&params()).unwrap();
    let w = a.writer().unwrap();
    let (c, o, m) = (common::codes(0, 5), common::originals(0, 5), common::meta(0));
    let invalid = |r: Result<u64, patternbank::arena::ArenaError>| {
        assert_eq!(r.unwrap_err().kind(), ArenaErrorKind::InvalidInput);
    };
    invalid(w.append(&c[..4], &o, &m));
    invalid(w.append(&c, &o[..4], &m));
    let mut nan = o.clone();
    nan[2] = f32::NAN;
    invalid(w.append(&c, &nan, &m));
    invalid(w.append(&c, &o, &patternbank::arena::RecordMeta { confidence: 1.5, ..m }));
    invalid(w.append(&c, &o, &patternbank::arena::RecordMeta { scale: f32::INFINITY, ..m }));
    assert_eq!(w.appended(), 0);
    assert_eq!(w.set_flags(0, 1).unwrap_err().kind(), ArenaErrorKind::InvalidInput);
    append(w, 0);
    assert_eq!(w.set_confidence(0, -0.1).unwrap_err().kind(), ArenaErrorKind::InvalidInput);
    assert_eq!(w.touch(1, 5).unwrap_err().kind(), ArenaErrorKind::InvalidInput);
    for bad in [
        ArenaParams::new(0, "m"),
        ArenaParams::new(20000, "m"),
        ArenaParams::new(4, "m").chunk_records(100),
        ArenaParams::new(4, "x".repeat(65)),
        ArenaParams::new(4, "a\0b"),
        ArenaParams::new(4, "m").quant(QuantKind::Global, f32::NAN),
    ] {
        assert_eq!(Arena::heap(&bad).unwrap_err().kind(), ArenaErrorKind::InvalidInput, "{bad:?}");
    }
    let (_d, path) = tmp();
    let e = Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap_err();
    assert_eq!(e.kind(), ArenaErrorKind::Io, "a missing file is not created read-only");
    assert!(!path.exists());
}

// ---- corruption and incompatibility ----

fn patch(path: &Path, off: u64, bytes: &[u8]) {
    OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, off).unwrap();
}

fn read(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0; len];
    fs::File::open(path).unwrap().read_exact_at(&mut b, off).unwrap();
    b
}

/// Rewrites the checksum of the header copy at `off` after a deliberate edit.
fn reseal(path: &Path, off: u64) {
    let h = read(path, off, 148);
    patch(path, off + 148, &crc32fast::hash(&h).to_ne_bytes());
}

/// Two commits: copy A holds generation 2 (6 records), copy B generation 3 (10 records).
fn two_commits(path: &Path) {
    fill(path, 6);
    fill(path, 10);
    let (_, r) = Arena::open(path, &params(), OpenMode::ReadOnly).unwrap();
    assert_eq!((r.header_copy, r.generation, r.committed), (1, 3, 10));
}

#[test]
fn a_flipped_byte_in_one_header_copy_opens_from_the_other() {
    let (_d, path) = tmp();
    two_commits(&path);
    let clean = fs::read(&path).unwrap();
    for (copy, off, committed) in [(0usize, 0u64, 10u64), (1, 4096, 6)] {
        for i in 0..152 {
            fs::write(&path, &clean).unwrap();
            let b = read(&path, off + i, 1)[0];
            patch(&path, off + i, &[b ^ 0x40]);
            let (a, r) = Arena::open(&path, &params(), OpenMode::ReadOnly)
                .unwrap_or_else(|e| panic!("copy {copy} byte {i}: {e}"));
            assert_eq!((r.header_copy, r.committed), (1 - copy, committed), "copy {copy} byte {i}");
            assert!(r.damaged_copy.as_deref().unwrap().starts_with(["header copy A", "header copy B"][copy]));
            check_all(&a.reader().view());
        }
    }
    // The writer's next commit repairs the damaged copy (it goes to the older/bad slot).
    let (mut w, r) = writer(&path, &params(), RW);
    assert!(r.damaged_copy.is_some());
    append(&mut w, 6);
    w.commit().unwrap();
    drop(w);
    let (_, r) = Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap();
    assert_eq!((r.damaged_copy, r.committed), (None, 7));
}

#[test]
fn both_header_copies_damaged_is_corrupt() {
    let (_d, path) = tmp();
    two_commits(&path);
    for off in [20u64, 4096 + 120] {
        let b = read(&path, off, 1)[0];
        patch(&path, off, &[!b]);
    }
    let e = open_err(&path, &params());
    assert_eq!(e.kind(), ArenaErrorKind::Corrupt, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("copy A") && msg.contains("copy B") && msg.contains("checksum"), "{msg}");
    assert_replaceable(&path);
}

#[test]
fn truncated_files_are_corrupt_at_every_length() {
    let (_d, path) = tmp();
    fill(&path, 20); // 3 chunks of 64 KiB after the 64 KiB header region
    let clean = fs::read(&path).unwrap();
    assert_eq!(clean.len(), 4 * 65536);
    let mut lens: Vec<usize> =
        vec![0, 1, 7, 8, 16, 100, 147, 148, 151, 152, 153, 4095, 4096, 4200, 4247, 4248];
    lens.extend([4249, 8192, 65535, 65536, 65537, 100_000, 131_071, 131_072, 196_608, 200_000, 262_143]);
    for len in lens {
        fs::write(&path, &clean[..len]).unwrap();
        let e = open_err(&path, &params());
        assert_eq!(e.kind(), ArenaErrorKind::Corrupt, "length {len}: {e}");
    }
    fs::write(&path, &clean).unwrap();
    check_all(&Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap().0.reader().view());
    fs::write(&path, &clean[..1000]).unwrap();
    assert_replaceable(&path);
}

#[test]
fn a_header_claiming_more_records_than_the_file_holds_is_corrupt() {
    let (_d, path) = tmp();
    two_commits(&path);
    for off in [0u64, 4096] {
        patch(&path, off + 120, &1000u64.to_ne_bytes());
        reseal(&path, off);
    }
    let e = open_err(&path, &params());
    assert_eq!(e.kind(), ArenaErrorKind::Corrupt);
    assert!(e.to_string().contains("1000 committed records need"), "{e}");
    assert_replaceable(&path);
}

#[test]
fn random_garbage_and_empty_files_are_corrupt() {
    let (_d, path) = tmp();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let garbage: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for (what, bytes) in [("garbage", &garbage[..]), ("empty", &[][..])] {
        fs::write(&path, bytes).unwrap();
        let e = open_err(&path, &params());
        assert_eq!(e.kind(), ArenaErrorKind::Corrupt, "{what}: {e}");
    }
    // Garbage behind a valid magic fails on the checksum.
    let mut g = garbage.clone();
    g[..8].copy_from_slice(b"PBARENA\0");
    g[8..12].copy_from_slice(&0x0102_0304u32.to_ne_bytes());
    g[16..20].copy_from_slice(&148u32.to_ne_bytes());
    fs::write(&path, &g).unwrap();
    let e = open_err(&path, &params());
    assert!(e.to_string().contains("checksum"), "{e}");
    // open_or_replace does the replacement and says why.
    let (a, r) = Arena::open_or_replace(&path, &params(), Durability::NoSync).unwrap();
    assert_eq!(r.replaced.map(|e| e.kind()), Some(ArenaErrorKind::Corrupt));
    assert!(r.created && a.reader().is_empty());
}

#[test]
fn other_dimension_model_quantization_are_incompatible() {
    let (_d, path) = tmp();
    fill(&path, 4);
    let cases = [
        (ArenaParams::new(6, "test-model").chunk_records(8), "dimension 5 in the file, 6 expected"),
        (ArenaParams::new(5, "other-model"), "embedding model \"test-model\""),
        (params().quant(QuantKind::PerVector, 1.0), "quantization"),
        (params().quant(QuantKind::Global, 0.5), "global scale"),
    ];
    for (p, want) in cases {
        let e = open_err(&path, &p);
        assert_eq!(e.kind(), ArenaErrorKind::Incompatible, "{e}");
        assert!(e.needs_rebuild() && e.to_string().contains(want), "{e}");
    }
    // Another chunk size is not a mismatch: the file keeps its own.
    let (a, r) = Arena::open(&path, &params().chunk_records(1024), OpenMode::ReadOnly).unwrap();
    assert_eq!((r.params.chunk_records, a.reader().params().chunk_records), (8, 8));
    assert_replaceable(&path);
}

#[test]
fn another_version_is_incompatible() {
    let (_d, path) = tmp();
    fill(&path, 4);
    let clean = fs::read(&path).unwrap();
    // Both copies, or only one: a copy from another version is never passed over for the other.
    for offs in [&[0u64, 4096][..], &[4096][..]] {
        fs::write(&path, &clean).unwrap();
        for &off in offs {
            patch(&path, off + 12, &2u32.to_ne_bytes());
            reseal(&path, off);
        }
        let e = open_err(&path, &params());
        assert_eq!(e.kind(), ArenaErrorKind::Incompatible, "{e}");
        assert!(e.to_string().contains("format version 2"), "{e}");
    }
    // A later version with a longer header: its checksum still verifies, so it is reported as
    // another version, not as damage.
    fs::write(&path, &clean).unwrap();
    for off in [0u64, 4096] {
        patch(&path, off + 12, &2u32.to_ne_bytes());
        patch(&path, off + 16, &200u32.to_ne_bytes());
        let h = read(&path, off, 200);
        patch(&path, off + 200, &crc32fast::hash(&h).to_ne_bytes());
    }
    let e = open_err(&path, &params());
    assert_eq!(e.kind(), ArenaErrorKind::Incompatible, "{e}");
    assert_replaceable(&path);
}

#[test]
fn a_file_of_the_other_byte_order_is_incompatible() {
    let (_d, path) = tmp();
    fill(&path, 4);
    // Rewrite both copies as a machine of the other byte order would have written them.
    for off in [0u64, 4096] {
        let mut h = read(&path, off, 152);
        let u32s = [8usize, 12, 16, 20, 24, 28, 32, 36, 144];
        for at in u32s {
            h[at..at + 4].reverse();
        }
        for at in (104..144).step_by(8) {
            h[at..at + 8].reverse();
        }
        let sum = crc32fast::hash(&h[..148]).swap_bytes();
        h[148..].copy_from_slice(&sum.to_ne_bytes());
        patch(&path, off, &h);
    }
    let e = open_err(&path, &params());
    assert_eq!(e.kind(), ArenaErrorKind::Incompatible, "{e}");
    assert!(e.to_string().contains("byte order"), "{e}");
    assert_replaceable(&path);
}

#[test]
fn open_or_create_creates_and_create_new_leaves_no_temp_files() {
    let (d, path) = tmp();
    let (_a, r) = Arena::open_or_create(&path, &params(), RW).unwrap();
    assert!(r.created);
    drop(_a);
    let (_a, r) = Arena::create_new(&path, &params(), Durability::NoSync).unwrap();
    assert!(r.created);
    let names: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("t.arena")]);
}
