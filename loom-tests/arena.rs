//! Loom model check of the arena's publication protocol, over the heap-backed arena (the same
//! `raw.rs` code as the file arena, minus the mapping):
//!
//! Each record access goes through a loom cell (see `raw.rs`), so loom reports any read of a
//! record not ordered after its write. Checked: with the `published` store weakened from
//! `Release` to `Relaxed` (or the load from `Acquire` to `Relaxed`) every test here fails.
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use patternbank::arena::{Arena, ArenaParams, RecordMeta, View};

/// Runs `f` under loom and prints how many interleavings it explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    loom::model(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!("{name}: {} interleavings", runs.load(Ordering::Relaxed));
}

fn record(slot: u64) -> ([i8; 2], [f32; 2], RecordMeta) {
    let meta = RecordMeta {
        rowid: 100 + slot as i64,
        flags: 0,
        kind: slot as u32,
        confidence: 0.5,
        created_at_ms: 7 + slot as i64,
        last_used_ms: 9,
        scale: 0.25 + slot as f32,
    };
    ([slot as i8 + 1, -(slot as i8) - 1], [slot as f32, 0.5 + slot as f32], meta)
}

fn check(v: &View<'_>) {
    for slot in 0..v.len() {
        let (codes, orig, meta) = record(slot);
        assert_eq!(&v.codes_of(slot).unwrap()[..2], &codes);
        assert_eq!(v.originals_of(slot).unwrap(), &orig);
        let m = v.meta_of(slot).unwrap();
        assert_eq!(
            (m.rowid, m.kind, m.created_at_ms, m.scale),
            (meta.rowid, meta.kind, 7 + slot as i64, 0.25 + slot as f32)
        );
        assert_eq!(v.scale_of(slot), Some(meta.scale));
        assert!(m.confidence == 0.5 || m.confidence == 0.75, "{}", m.confidence);
    }
    let mut seen = 0;
    for ch in v.chunks() {
        assert_eq!(ch.scales.len(), ch.count);
        for i in 0..ch.count {
            let slot = ch.first_slot + i as u64;
            assert_eq!(&ch.codes[i * 64..i * 64 + 2], &record(slot).0);
            assert_eq!(ch.meta(i).unwrap().rowid, 100 + slot as i64);
            assert_eq!(ch.scales[i], record(slot).2.scale);
        }
        seen += ch.count as u64;
    }
    assert_eq!(seen, v.len());
}

/// One appender writes three records (2 per chunk, so it installs a chunk while the reader
/// runs), publishing after the second and the third, and updates one in place; a reader loads
/// the count twice and checks every record below it.
#[test]
fn reader_never_sees_a_partial_record() {
    model("reader_never_sees_a_partial_record", || {
        let params = ArenaParams::new(2, "loom").chunk_records(2);
        let (reader, writer) = Arena::heap(&params).unwrap().into_parts();
        let mut w = writer.unwrap();
        let t = thread::spawn(move || {
            for slot in 0..3 {
                let (c, o, m) = record(slot);
                assert_eq!(w.append(&c, &o, &m).unwrap(), slot);
                if slot > 0 {
                    w.publish();
                }
            }
            w.set_confidence(1, 0.75).unwrap();
        });
        for _ in 0..2 {
            thread::yield_now();
            let v = reader.view();
            assert!(matches!(v.len(), 0 | 2 | 3), "{}", v.len());
            check(&v);
        }
        t.join().unwrap();
        let v = reader.view();
        assert_eq!(v.len(), 3);
        check(&v);
        assert_eq!(v.meta_of(1).unwrap().confidence, 0.75);
    });
}

/// A snapshot taken on one thread and read on another after the writer moved on.
#[test]
fn snapshot_stays_consistent_across_threads() {
    model("snapshot_stays_consistent_across_threads", || {
        let params = ArenaParams::new(2, "loom").chunk_records(2);
        let (reader, writer) = Arena::heap(&params).unwrap().into_parts();
        let mut w = writer.unwrap();
        let t = thread::spawn(move || {
            for slot in 0..2 {
                let (c, o, m) = record(slot);
                w.append(&c, &o, &m).unwrap();
                w.publish();
            }
        });
        thread::yield_now();
        let snap = reader.snapshot();
        let r = thread::spawn(move || check(&snap.view()));
        t.join().unwrap();
        r.join().unwrap();
    });
}
