//! The standard workloads of DESIGN.md, seeded, for the CLI's `bench`, the benchmarks and
//! the tests: dataset D(N), Zipf(s) id draws, and readers for the shared `.npy` files.
//!
//! D(N): ids are 26-character time-ordered strings (ULID-like, Crockford base32), kinds are
//! drawn from the eight of DESIGN.md, `data` is a JSON memory item built from
//! `shared/data/corpus.jsonl` texts (300–1500 bytes), embeddings are the real 384-d vectors of
//! `shared/data/embeddings/base.npy` for N ≤ 20,000 and seeded synthetic clustered unit
//! vectors beyond (or when the shared folder is absent). Confidence starts at 0.5.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::pattern::Pattern;

/// The kinds of DESIGN.md.
pub const KINDS: [&str; 8] = [
    "task-routing",
    "error-recovery",
    "optimization",
    "learning",
    "coordination",
    "prediction",
    "code-pattern",
    "workflow",
];

/// SplitMix64: a small, fast, seedable generator (not for cryptography).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Draws ranks 0..n with probability ∝ 1/(rank+1)^s in O(1): Vose's alias method, so a
/// benchmark's own sampling stays a few nanoseconds and two memory reads per draw.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// Probability of keeping the drawn column, scaled to u64.
    keep: Vec<u64>,
    alias: Vec<u32>,
}

impl Zipf {
    /// Zipf(s) over `n` items (rank 0 is the most popular).
    pub fn new(n: usize, s: f64) -> Self {
        let n = n.max(1);
        let weights: Vec<f64> = (0..n).map(|i| 1.0 / ((i + 1) as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
        let mut keep = vec![u64::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        while let (Some(&l), Some(&g)) = (small.last(), large.last()) {
            small.pop();
            keep[l] = (scaled[l] * u64::MAX as f64) as u64;
            alias[l] = g as u32;
            scaled[g] -= 1.0 - scaled[l];
            if scaled[g] < 1.0 {
                large.pop();
                small.push(g);
            }
        }
        Self { keep, alias }
    }

    /// One draw.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let column = rng.below(self.keep.len() as u64) as usize;
        if rng.next_u64() <= self.keep[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }
}

/// A 26-character time-ordered id: 10 characters of milliseconds, 16 of randomness.
pub fn ulid_like(ms: u64, rng: &mut Rng) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = String::with_capacity(26);
    for i in (0..10).rev() {
        out.push(ALPHABET[((ms >> (5 * i)) & 31) as usize] as char);
    }
    let r = rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64);
    for i in (0..16).rev() {
        out.push(ALPHABET[((r >> (5 * i)) & 31) as usize] as char);
    }
    out
}

/// The folder `shared/` of the project, if present: `$PATTERNBANK_SHARED`, else `../shared`
/// relative to the crate root, else `../shared` relative to the working directory.
pub fn shared_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PATTERNBANK_SHARED").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(PathBuf::from("../shared")),
    ];
    candidates.into_iter().flatten().find(|p| p.join("data/corpus.jsonl").is_file())
}

/// A little-endian NPY v1.0 array: shape and raw data bytes.
pub struct Npy {
    /// Rows, columns (a 1-d array has one column).
    pub shape: (usize, usize),
    /// The dtype string, such as `<f4`.
    pub descr: String,
    data: Vec<u8>,
}

impl Npy {
    /// Reads and checks the header of an NPY file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let bad = |why: &str| Error::new(ErrorKind::InvalidInput, format!("{}: {why}", path.display()));
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(bad("not an NPY file"));
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => {
                (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
            }
            _ => return Err(bad("unsupported NPY version")),
        };
        let header =
            std::str::from_utf8(bytes.get(start..start + header_len).ok_or_else(|| bad("truncated header"))?)
                .map_err(|_| bad("header is not text"))?;
        let field = |key: &str| -> Option<&str> {
            let at = header.find(key)? + key.len();
            Some(header[at..].trim_start_matches([' ', ':', '\'']))
        };
        let descr =
            field("'descr'").and_then(|s| s.split('\'').next()).ok_or_else(|| bad("no descr"))?.to_owned();
        if field("'fortran_order'").is_some_and(|s| s.starts_with("True")) {
            return Err(bad("Fortran order is not supported"));
        }
        let shape_text = field("'shape'")
            .and_then(|s| s.strip_prefix('('))
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| bad("no shape"))?;
        let dims: Vec<usize> = shape_text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().map_err(|_| bad("bad shape")))
            .collect::<Result<_>>()?;
        let shape = match dims[..] {
            [r] => (r, 1),
            [r, c] => (r, c),
            _ => return Err(bad("only 1-d and 2-d arrays are supported")),
        };
        let data = bytes[start + header_len..].to_vec();
        if data.len() != shape.0 * shape.1 * 4 {
            return Err(bad("data size does not match the shape"));
        }
        Ok(Self { shape, descr, data })
    }

    /// The data as f32 (`<f4` only).
    pub fn f32s(&self) -> Result<Vec<f32>> {
        if self.descr != "<f4" {
            return Err(Error::invalid(format!("expected <f4 data, found {}", self.descr)));
        }
        Ok(self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// The data as i32 (`<i4` only).
    pub fn i32s(&self) -> Result<Vec<i32>> {
        if self.descr != "<i4" {
            return Err(Error::invalid(format!("expected <i4 data, found {}", self.descr)));
        }
        Ok(self.data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

/// Texts of `corpus.jsonl` (the base split), in file order.
pub fn corpus_texts(shared: &Path) -> Result<Vec<(String, String)>> {
    corpus_texts_where(shared, |split| split == "base")
}

/// `(source, text)` of every line of `corpus.jsonl` whose split `keep` accepts, in file order.
pub fn corpus_texts_where(shared: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<(String, String)>> {
    #[derive(serde::Deserialize)]
    struct Line {
        split: String,
        source: String,
        text: String,
    }
    let path = shared.join("data/corpus.jsonl");
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l: Line =
            serde_json::from_str(line).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        if keep(&l.split) {
            out.push((l.source, l.text));
        }
    }
    Ok(out)
}

/// Seeded synthetic unit vectors: a mixture of `clusters` Gaussian clusters, normalised.
pub fn synthetic_embeddings(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f64>> =
        (0..clusters.max(1)).map(|_| (0..dim).map(|_| rng.normal()).collect()).collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.below(centres.len() as u64) as usize];
            let v: Vec<f64> = c.iter().map(|x| x + 0.6 * rng.normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            v.iter().map(|x| (x / norm) as f32).collect()
        })
        .collect()
}

const FILLER: &[&str] = &[
    "retry", "the", "request", "with", "backoff", "when", "a", "worker", "times", "out", "route", "tasks",
    "by", "queue", "depth", "cache", "results", "of", "planner", "calls", "prefer", "small", "batches",
];

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// The `data` of item `i` of D(n): a JSON memory item `{title, description, content, tags,
/// domain}` of 300–1500 bytes built from `texts` from item `i` on (filler words when `texts`
/// is empty). Draws from `rng` exactly as `dataset` does for that item's data.
fn memory_item(i: usize, texts: &[(String, String)], rng: &mut Rng) -> Vec<u8> {
    let target = 300 + rng.below(1200) as usize;
    let mut content = String::new();
    let mut domain = String::from("synthetic");
    let mut j = i;
    while content.len() < target {
        if texts.is_empty() {
            content.push_str(FILLER[rng.below(FILLER.len() as u64) as usize]);
            content.push(' ');
        } else {
            let (source, text) = &texts[j % texts.len()];
            if j == i {
                domain = source.split(':').next().unwrap_or("docs").to_owned();
            }
            content.push_str(text);
            content.push(' ');
            j += 1;
        }
    }
    let words: Vec<&str> = content.split_whitespace().collect();
    let title = clip(&words.iter().take(6).copied().collect::<Vec<_>>().join(" "), 60).to_owned();
    let description = clip(&words.iter().take(14).copied().collect::<Vec<_>>().join(" "), 120).to_owned();
    let tags: Vec<String> =
        words.iter().filter(|w| w.len() > 4).take(3).map(|w| clip(w, 20).to_owned()).collect();
    // Trim the content until the whole JSON item fits the target size.
    let mut keep = content.len();
    loop {
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
    }
}

/// The `data` payloads of D(n) with `seed`, built from `texts` (`dataset` uses the base
/// texts, and then payload i is `dataset(n, seed)[i].data`). Makes every draw `dataset`
/// makes, so the items line up.
pub fn payloads(n: usize, seed: u64, texts: &[(String, String)]) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let data = memory_item(i, texts, &mut rng);
            rng.below(KINDS.len() as u64);
            ulid_like(0, &mut rng);
            data
        })
        .collect()
}

/// Dataset D(n) of DESIGN.md with `seed`. Uses `shared/` when present (real texts and, for
/// n ≤ 20,000, real embeddings), synthetic text and vectors otherwise.
pub fn dataset(n: usize, seed: u64) -> Result<Vec<Pattern>> {
    let shared = shared_dir();
    let texts = match &shared {
        Some(dir) => corpus_texts(dir)?,
        None => Vec::new(),
    };
    let real = match &shared {
        Some(dir) if n <= 20_000 => {
            let npy = Npy::read(&dir.join("data/embeddings/base.npy"))?;
            Some((npy.shape.1, npy.f32s()?))
        }
        _ => None,
    };
    let synthetic =
        if real.is_none() { synthetic_embeddings(n, 384, 256, seed ^ 0xE11B) } else { Vec::new() };
    let mut rng = Rng::new(seed);
    let start_ms = 1_760_000_000_000u64;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let data = memory_item(i, &texts, &mut rng);
        let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
        let id = ulid_like(start_ms + i as u64, &mut rng);
        let embedding = match &real {
            Some((dim, all)) => all[i * dim..(i + 1) * dim].to_vec(),
            None => synthetic[i].clone(),
        };
        let mut p = Pattern::new(id, kind, data).with_embedding(embedding);
        p.created_at_ms = (start_ms + i as u64) as i64;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_and_ids_are_ordered() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = Rng::new(1);
        let draws: Vec<usize> = (0..100_000).map(|_| z.sample(&mut rng)).collect();
        let top = draws.iter().filter(|&&r| r == 0).count();
        // P(rank 0) = 1/H(1000, 0.99) ≈ 0.133.
        assert!((12_000..14_600).contains(&top), "{top}");
        let mut rng = Rng::new(2);
        let a = ulid_like(1000, &mut rng);
        let b = ulid_like(1001, &mut rng);
        assert_eq!(a.len(), 26);
        assert!(a < b);
    }

    #[test]
    fn payloads_line_up_with_the_dataset() {
        let texts = shared_dir().map(|d| corpus_texts(&d).unwrap()).unwrap_or_default();
        let data: Vec<Vec<u8>> = dataset(300, 9).unwrap().into_iter().map(|p| p.data).collect();
        assert_eq!(payloads(300, 9, &texts), data);
    }

    #[test]
    fn dataset_is_seeded_and_within_bounds() {
        let a = dataset(50, 7).unwrap();
        let b = dataset(50, 7).unwrap();
        assert_eq!(a, b);
        for p in &a {
            assert!((300..=1500).contains(&p.data.len()), "{}", p.data.len());
            assert_eq!(p.embedding.as_ref().unwrap().len(), 384);
            assert!(KINDS.contains(&p.kind.as_str()));
        }
    }
}
