//! The Store end to end: read-your-writes, flush, outcomes, bad input, metrics, single writer.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{pattern, small, temp_db};
use patternbank::{Config, ErrorKind, Outcome, Pattern, Store, TryError};

#[test]
fn put_get_flush_reopen_round_trip() {
    let (_dir, path) = temp_db();
    let store = small(&path).open().unwrap();
    let p = pattern("alpha", 8).with_confidence(0.25);
    store.put(p.clone()).unwrap();
    assert_eq!(*store.get("alpha").unwrap().unwrap(), p, "visible before commit");
    assert_eq!(store.get("missing").unwrap(), None);
    store.flush().unwrap();
    assert_eq!(store.count().unwrap(), 1);
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    assert_eq!(*store.get("alpha").unwrap().unwrap(), p, "durable across reopen");
    let m = store.metrics();
    assert_eq!(m.get_hits.sqlite, 1);
}

#[test]
fn outcomes_follow_the_moving_average_and_show_after_flush() {
    let (_dir, path) = temp_db();
    let store = small(&path).learning_rate(0.1).open().unwrap();
    store.put(pattern("x", 8)).unwrap();
    store.flush().unwrap();
    // Cache it, so the writer's in-place L1 update is exercised too.
    assert_eq!(store.get("x").unwrap().unwrap().confidence, 0.5);
    let seq = [Outcome::Success, Outcome::Success, Outcome::Failure, Outcome::Success];
    let mut c = 0.5f64;
    for o in seq {
        store.record_outcome("x", o).unwrap();
        c += 0.1 * (if o == Outcome::Success { 1.0 } else { 0.0 } - c);
    }
    store.flush().unwrap();
    let got = store.get("x").unwrap().unwrap();
    assert!((got.confidence - c).abs() < 1e-12, "{} vs {c}", got.confidence);
    assert_eq!((got.usage_count, got.success_count, got.failure_count), (4, 3, 1));
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    let got = store.get("x").unwrap().unwrap();
    assert!((got.confidence - c).abs() < 1e-12);
    assert_eq!(got.usage_count, 4);
}
