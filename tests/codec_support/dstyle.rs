//! D(N)-style `data` payloads (DESIGN.md "Dataset D(N)") for the codec tests, bench and
//! example: thin wrappers over `patternbank::workload`, so payload i is
//! `workload::dataset(n, seed)[i].data` when built from the base texts.
#![allow(dead_code)]

use std::path::Path;

pub use patternbank::workload::{payloads, shared_dir};

/// `(source, text)` of every line of `corpus.jsonl` whose split `keep` accepts.
pub fn corpus_texts(shared: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    patternbank::workload::corpus_texts_where(shared, keep).expect("reading shared/data/corpus.jsonl")
}

/// The base split, as `workload::dataset` uses it.
pub fn base_texts(shared: &Path) -> Vec<(String, String)> {
    corpus_texts(shared, |split| split == "base")
}

/// A stand-in when `shared/` is absent: the dataset's filler-word items.
pub fn synthetic_payloads(n: usize, seed: u64) -> Vec<Vec<u8>> {
    payloads(n, seed, &[])
}
