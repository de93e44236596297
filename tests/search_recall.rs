//! Recall@10 on the shared real embeddings (W2 data): the quantizer's acceptance test.

#[path = "search_support/mod.rs"]
mod common;

use common::{global_calibrated, shared_recall, Index, SharedData};
use patternbank::search::{Quantization, UNIT_NORM_GLOBAL_SCALE};

fn load() -> Option<SharedData> {
    let data = SharedData::load();
    if data.is_none() {
        println!("skipped: shared/data/embeddings not found (set PATTERNBANK_SHARED)");
    }
    data
}

#[test]
fn default_quantization_meets_recall_targets() {
    let Some(data) = load() else { return };
    let index = Index::build(data.base.clone(), data.dim, Quantization::default());
    let plain = shared_recall(&data, &index, 10, 0);
    let rescored = shared_recall(&data, &index, 10, 2);
    println!("per-vector: recall@10 {plain:.4} without rescoring, {rescored:.4} with R = 2");
    assert!(plain >= 0.99, "recall@10 without rescoring {plain}");
    assert!(rescored >= 0.999, "recall@10 with R = 2 {rescored}");
}

#[test]
fn global_scales_recall() {
    let Some(data) = load() else { return };
    for (name, q) in [
        ("global, calibrated on all", global_calibrated(&data.base)),
        ("global, calibrated on first 1,000", global_calibrated(&data.base[..1000 * data.dim])),
        ("global, fixed unit-norm bound", Quantization::Global { scale: UNIT_NORM_GLOBAL_SCALE }),
    ] {
        let index = Index::build(data.base.clone(), data.dim, q);
        let plain = shared_recall(&data, &index, 10, 0);
        let rescored = shared_recall(&data, &index, 10, 2);
        println!("{name} ({q:?}): recall@10 {plain:.4} without rescoring, {rescored:.4} with R = 2");
        assert!(plain >= 0.97 && rescored >= 0.999, "{name}: {plain} / {rescored}");
    }
}
