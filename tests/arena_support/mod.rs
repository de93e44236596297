//! Records derived from their slot, so any reader can check any record on its own.
#![allow(dead_code)]

use patternbank::arena::{ArenaWriter, RecordMeta, View};

pub fn codes(slot: u64, dim: usize) -> Vec<i8> {
    (0..dim).map(|i| ((slot.wrapping_mul(31) as usize + i * 7) % 255) as u8 as i8).collect()
}

pub fn originals(slot: u64, dim: usize) -> Vec<f32> {
    (0..dim).map(|i| slot as f32 + i as f32 / 1024.0).collect()
}

pub fn meta(slot: u64) -> RecordMeta {
    RecordMeta {
        rowid: slot as i64 * 3 + 1,
        flags: 0,
        kind: (slot % 8) as u32,
        confidence: 0.5,
        created_at_ms: 1_700_000_000_000 + slot as i64,
        last_used_ms: 1_700_000_000_000 + slot as i64,
        scale: 0.01 + slot as f32,
    }
}

pub fn append(w: &mut ArenaWriter, slot: u64) -> u64 {
    let dim = w.params().dim as usize;
    let got = w.append(&codes(slot, dim), &originals(slot, dim), &meta(slot)).expect("append");
    assert_eq!(got, slot);
    got
}

/// Checks record `slot` whole: code and its zero padding, original, metadata (the mutable
/// fields may have been updated by the writer: any value it writes is accepted).
pub fn check(v: &View<'_>, slot: u64) {
    let dim = v.dim();
    let c = v.codes_of(slot).unwrap_or_else(|| panic!("slot {slot} of {} missing", v.len()));
    assert_eq!(c.len(), v.stride());
    assert_eq!(&c[..dim], &codes(slot, dim)[..], "codes of slot {slot}");
    assert!(c[dim..].iter().all(|&b| b == 0), "padding of slot {slot}");
    assert_eq!(v.originals_of(slot).unwrap(), &originals(slot, dim)[..], "originals of slot {slot}");
    let m = v.meta_of(slot).unwrap();
    let want = meta(slot);
    assert_eq!(
        (m.rowid, m.kind, m.created_at_ms, m.scale),
        (want.rowid, want.kind, want.created_at_ms, want.scale)
    );
    assert_eq!(v.scale_of(slot), Some(want.scale), "scale of slot {slot}");
    assert!(m.confidence == 0.5 || m.confidence == 0.75, "confidence {} of slot {slot}", m.confidence);
    assert!(m.flags <= 1 && m.last_used_ms >= want.last_used_ms, "mutable fields of slot {slot}");
}

/// Checks every visible record, by slot and by chunk.
pub fn check_all(v: &View<'_>) {
    for s in 0..v.len() {
        check(v, s);
    }
    let (dim, stride) = (v.dim(), v.stride());
    let mut next = 0;
    for ch in v.chunks() {
        assert_eq!(ch.first_slot, next);
        assert_eq!(
            (ch.codes.len(), ch.scales.len(), ch.originals.len()),
            (ch.count * stride, ch.count, ch.count * dim)
        );
        for i in 0..ch.count {
            let slot = ch.first_slot + i as u64;
            assert_eq!(&ch.codes[i * stride..i * stride + dim], &codes(slot, dim)[..]);
            assert_eq!(&ch.originals[i * dim..(i + 1) * dim], &originals(slot, dim)[..]);
            assert_eq!(ch.meta(i).unwrap().rowid, meta(slot).rowid);
            assert_eq!(ch.scales[i], meta(slot).scale, "scale of slot {slot} in its chunk");
        }
        assert!(ch.meta(ch.count).is_none());
        next += ch.count as u64;
    }
    assert_eq!(next, v.len());
    assert!(v.codes_of(v.len()).is_none() && v.meta_of(v.len()).is_none() && v.scale_of(v.len()).is_none());
}
