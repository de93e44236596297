//! D(N)-style `data` payloads (DESIGN.md "Dataset D(N)"), copied from patternbank's
//! `src/workload.rs` so this scratch crate stands alone: same RNG, same draws, same JSON, so
//! payload i here is byte-identical to `workload::dataset(n, seed)[i].data`. Shared by the
//! integration tests, the example and the bench through `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// SplitMix64, as `workload::Rng`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The folder `shared/`: `$PATTERNBANK_SHARED`, else `../shared` relative to the crate root,
/// else `../shared` relative to the working directory, else `/work/shared`.
pub fn shared_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PATTERNBANK_SHARED").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")),
        Some(PathBuf::from("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates.into_iter().flatten().find(|p| p.join("data/corpus.jsonl").is_file())
}

/// `(source, text)` of every line of `corpus.jsonl` whose split is accepted by `keep`.
pub fn corpus_texts(shared: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let path = shared.join("data/corpus.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("corpus line is JSON");
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        if keep(&field("split")) {
            out.push((field("source"), field("text")));
        }
    }
    out
}

/// The base split, as `workload::corpus_texts`.
pub fn base_texts(shared: &Path) -> Vec<(String, String)> {
    corpus_texts(shared, |split| split == "base")
}

fn clip(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// The `data` payloads of D(n) with `seed` built from `texts` (`workload::dataset` uses the
/// base texts). Only the draws that shape `data` matter, but all are made so item i matches.
pub fn payloads(n: usize, seed: u64, texts: &[(String, String)]) -> Vec<Vec<u8>> {
    assert!(!texts.is_empty());
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let target = 300 + rng.below(1200) as usize;
        let mut content = String::new();
        let mut domain = String::from("synthetic");
        let mut j = i;
        while content.len() < target {
            let (source, text) = &texts[j % texts.len()];
            if j == i {
                domain = source.split(':').next().unwrap_or("docs").to_owned();
            }
            content.push_str(text);
            content.push(' ');
            j += 1;
        }
        let words: Vec<&str> = content.split_whitespace().collect();
        let title = clip(&words.iter().take(6).copied().collect::<Vec<_>>().join(" "), 60).to_owned();
        let description = clip(&words.iter().take(14).copied().collect::<Vec<_>>().join(" "), 120).to_owned();
        let tags: Vec<String> =
            words.iter().filter(|w| w.len() > 4).take(3).map(|w| clip(w, 20).to_owned()).collect();
        let mut keep = content.len();
        let data = loop {
            let json = serde_json::to_vec(&serde_json::json!({
                "title": title,
                "description": description,
                "content": clip(&content, keep),
                "tags": tags,
                "domain": domain,
            }))
            .unwrap_or_default();
            if json.len() <= target || keep == 0 {
                break json;
            }
            keep = keep.saturating_sub(json.len() - target);
        };
        // The kind and the id draws of `workload::dataset`.
        rng.below(8);
        rng.next_u64();
        rng.next_u64();
        out.push(data);
    }
    out
}

/// A synthetic stand-in when `shared/` is absent: JSON items of filler words, same shape.
pub fn synthetic_payloads(n: usize, seed: u64) -> Vec<Vec<u8>> {
    const FILLER: &[&str] = &[
        "retry", "the", "request", "with", "backoff", "when", "a", "worker", "times", "out", "route",
        "tasks", "by", "queue", "depth", "cache", "results", "of", "planner", "calls", "prefer", "small",
        "batches",
    ];
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let target = 300 + rng.below(1200) as usize;
            let mut content = String::new();
            while content.len() + 80 < target {
                content.push_str(FILLER[rng.below(FILLER.len() as u64) as usize]);
                content.push(' ');
            }
            serde_json::to_vec(&serde_json::json!({
                "title": "synthetic", "description": "filler", "content": content, "tags": [], "domain": "synthetic",
            }))
            .unwrap_or_default()
        })
        .collect()
}
