//! The codec measurements of issue 5 on D(20,000)-style payloads and generated trajectories.
//!
//! ```text
//! cargo run --release --example measure [dict|codecs|trajectories|all]
//! ```
//!
//! Savings are 1 − Σ stored / Σ raw over all items, headers included. Times are medians of
//! per-item timings (one `Instant` pair per item, ≈ 20 ns of it overhead).
#[path = "../tests/codec_support/dstyle.rs"]
mod dstyle;

use std::time::Instant;

use patternbank::codec::{
    content_hash, decode_trajectory, encode_trajectory, generate_trajectory, train_dictionary_with,
    trajectory_plain_len, Codec, Decoder, Dictionary, DictionarySet, Encoder, TrainParams, Trajectory,
    DEFAULT_MIN_SAVING,
};

const N: usize = 20_000;
const SEED: u64 = 42;
const SAMPLES: usize = 2_000;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let all = what == "all";
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    if all || what == "trajectories" {
        trajectories();
    }
    let Some(shared) = dstyle::shared_dir() else {
        println!("shared/data/corpus.jsonl not found: skipping the D(20,000) measurements");
        return;
    };
    let t = Instant::now();
    let payloads = dstyle::payloads(N, SEED, &dstyle::base_texts(&shared));
    let raw: usize = payloads.iter().map(Vec::len).sum();
    println!(
        "D({N}) payloads: {} items, {raw} bytes, mean {:.0} B (built in {:.1} s)",
        payloads.len(),
        raw as f64 / N as f64,
        t.elapsed().as_secs_f64()
    );
    // A seeded sample of item indexes to train on; the rest is held out.
    let mut rng = patternbank::workload::Rng::new(7);
    let mut picked = vec![false; N];
    let mut sample_ix = Vec::new();
    while sample_ix.len() < SAMPLES {
        let i = rng.below(N as u64) as usize;
        if !picked[i] {
            picked[i] = true;
            sample_ix.push(i);
        }
    }
    let samples: Vec<&[u8]> = sample_ix.iter().map(|&i| payloads[i].as_slice()).collect();
    if what == "lz4" {
        let dict = Dictionary::train(1, &samples, 64 << 10).unwrap();
        let dicts: DictionarySet = [dict.clone()].into_iter().collect();
        for d in [None, Some(&dict)] {
            let mut enc = Encoder::new(Codec::Lz4);
            let (s, _) = saved(&payloads, &picked, &mut enc, d);
            let [es, eh, ds, dh] = timings(&payloads, &mut enc, d, &dicts);
            println!(
                "lz4 dict={}: saved {:.2} %, encode {es} / {eh} ns, decode {ds} / {dh} ns",
                d.is_some(),
                s * 100.0
            );
        }
    }
    if what == "train" {
        let mut lz4 = Encoder::new(Codec::Lz4);
        for size in [32 << 10, 64 << 10] {
            let t = Instant::now();
            let dict = Dictionary::train(1, &samples, size).unwrap();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let (s, h) = saved(&payloads, &picked, &mut lz4, Some(&dict));
            println!(
                "default trainer {} KiB: {ms:.0} ms, lz4 saved {:.2} / {:.2} %",
                size >> 10,
                s * 100.0,
                h * 100.0
            );
        }
    }
    if all || what == "dict" {
        dictionaries(&payloads, &samples, &picked);
    }
    if all || what == "codecs" {
        codecs(&payloads, &samples);
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Saved fraction over all items and over the held-out ones (not in the training sample).
fn saved(payloads: &[Vec<u8>], picked: &[bool], enc: &mut Encoder, dict: Option<&Dictionary>) -> (f64, f64) {
    let (mut raw, mut stored, mut raw_out, mut stored_out) = (0, 0, 0, 0);
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        enc.encode_into(dict, p, &mut out).unwrap();
        raw += p.len();
        stored += out.len();
        if !picked[i] {
            raw_out += p.len();
            stored_out += out.len();
        }
    }
    (1.0 - stored as f64 / raw as f64, 1.0 - stored_out as f64 / raw_out as f64)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Builds a dictionary of at most the given size.
type Builder<'a> = dyn Fn(usize) -> Vec<u8> + 'a;

fn dictionaries(payloads: &[Vec<u8>], samples: &[&[u8]], picked: &[bool]) {
    println!("\n## Dictionary construction (saved on all items / on the {} held out)", N - SAMPLES);
    let mut lz4 = Encoder::new(Codec::Lz4);
    let mut zlib = Encoder::new(Codec::Zlib);
    let (a, _) = saved(payloads, picked, &mut lz4, None);
    let (z, _) = saved(payloads, picked, &mut zlib, None);
    println!("no dictionary: lz4 {:.1} %, zlib-6 {:.1} %", a * 100.0, z * 100.0);
    let mut variants: Vec<(String, Box<Builder>)> = vec![(
        "naive: tail of the concatenated samples".into(),
        Box::new(|size| {
            let all: Vec<u8> = samples.concat();
            all[all.len().saturating_sub(size)..].to_vec()
        }),
    )];
    for (dmer, segment, step) in [
        (8, 32, 16),
        (8, 32, 4),
        (8, 32, 32),
        (6, 32, 16),
        (7, 32, 16),
        (8, 24, 12),
        (8, 48, 24),
        (8, 64, 32),
        (10, 40, 20),
    ] {
        let p = TrainParams { dmer, segment, step };
        variants.push((
            format!("cover d={dmer} k={segment} step={step}"),
            Box::new(move |size| train_dictionary_with(samples, size, p)),
        ));
    }
    for (name, build) in &variants {
        for size in [16 << 10, 32 << 10, 64 << 10] {
            let t = Instant::now();
            let bytes = build(size);
            let train_ms = t.elapsed().as_secs_f64() * 1e3;
            let len = bytes.len();
            let dict = Dictionary::new(1, bytes).unwrap();
            let (l_all, l_out) = saved(payloads, picked, &mut lz4, Some(&dict));
            let (z_all, z_out) = saved(payloads, picked, &mut zlib, Some(&dict));
            println!(
                "{name:42} {:>2} KiB ({len:>5} B, {train_ms:>6.0} ms): lz4 {:.1} / {:.1} %, zlib-6 {:.1} / {:.1} %",
                size >> 10,
                l_all * 100.0,
                l_out * 100.0,
                z_all * 100.0,
                z_out * 100.0
            );
        }
    }
}

fn codecs(payloads: &[Vec<u8>], samples: &[&[u8]]) {
    println!("\n## Codecs (dictionaries: the default trainer on the {SAMPLES} samples)");
    let raw: usize = payloads.iter().map(Vec::len).sum();
    let no_pick = vec![false; payloads.len()];
    let mut dicts = DictionarySet::new();
    for (id, kib) in [(16u32, 16usize), (32, 32), (64, 64)] {
        let t = Instant::now();
        let dict = Dictionary::train(id, samples, kib << 10).unwrap();
        println!("dictionary {kib} KiB: trained in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
        dicts.insert(dict);
    }
    let d = |id| dicts.get(id);
    let configs: Vec<(&str, Encoder, Option<&Dictionary>)> = vec![
        ("lz4", Encoder::new(Codec::Lz4), None),
        ("lz4 + dict 16 KiB", Encoder::new(Codec::Lz4), d(16)),
        ("lz4 + dict 32 KiB", Encoder::new(Codec::Lz4), d(32)),
        ("lz4 + dict 64 KiB", Encoder::new(Codec::Lz4), d(64)),
        ("zlib-1", Encoder::new(Codec::Zlib).with_zlib_level(1), None),
        ("zlib-1 + dict 32 KiB", Encoder::new(Codec::Zlib).with_zlib_level(1), d(32)),
        ("zlib-3", Encoder::new(Codec::Zlib).with_zlib_level(3), None),
        ("zlib-3 + dict 32 KiB", Encoder::new(Codec::Zlib).with_zlib_level(3), d(32)),
        ("zlib-6", Encoder::new(Codec::Zlib).with_zlib_level(6), None),
        ("zlib-6 + dict 32 KiB", Encoder::new(Codec::Zlib).with_zlib_level(6), d(32)),
        ("zlib-6 + dict 64 KiB", Encoder::new(Codec::Zlib).with_zlib_level(6), d(64)),
        ("zlib-9", Encoder::new(Codec::Zlib).with_zlib_level(9), None),
        ("zlib-9 + dict 32 KiB", Encoder::new(Codec::Zlib).with_zlib_level(9), d(32)),
    ];
    for (name, mut enc, dict) in configs {
        let (s, _) = saved(payloads, &no_pick, &mut enc, dict);
        let [es, eh, ds, dh] = timings(payloads, &mut enc, dict, &dicts);
        println!(
            "{name:22} saved {:>5.1} %   median encode {es:>6} ns sweep / {eh:>6} ns hot, decode {ds:>5} / {dh:>5} ns",
            s * 100.0
        );
    }

    // Peers in the same run: lz4_flex's own encoder (re-hashing the dictionary per call) and
    // its bare decoder, which shows what our decode adds (header, checksum).
    let dict = d(64).unwrap();
    let fastest = |f: &mut dyn FnMut()| runs(f).1;
    for with_dict in [false, true] {
        let ext: &[u8] = if with_dict { dict.bytes() } else { &[] };
        let mut size = 0;
        let (mut es, mut eh, mut ds, mut dh) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut out = vec![0u8; 2048];
        for p in payloads {
            let mut c = Vec::new();
            let (a, b) = runs(&mut || c = lz4_flex::block::compress_with_dict(p, ext));
            es.push(a);
            eh.push(b);
            size += c.len() + 8;
            let (a, b) = runs(&mut || {
                lz4_flex::block::decompress_into_with_dict(&c, &mut out[..p.len()], ext).unwrap();
            });
            ds.push(a);
            dh.push(b);
        }
        println!(
            "peer lz4_flex{:14} saved {:>5.1} %   median encode {:>6} ns sweep / {:>6} ns hot, decode {:>5} / {:>5} ns (bare block; + 8 B header counted)",
            if with_dict { " + dict 64 KiB" } else { "" },
            (1.0 - size as f64 / raw as f64) * 100.0,
            median(es),
            median(eh),
            median(ds),
            median(dh)
        );
    }
    let mut acc = 0u64;
    let t: Vec<u64> =
        payloads.iter().map(|p| fastest(&mut || acc ^= twox_hash::XxHash3_64::oneshot(p))).collect();
    println!("checksum (xxh3-64) alone: median {} ns per item", median(t));
    let t: Vec<u64> = payloads.iter().map(|p| fastest(&mut || acc ^= content_hash(p) as u64)).collect();
    println!("content_hash (xxh3-128): median {} ns per item [{}]", median(t), acc & 1);
    let t = Instant::now();
    for _ in 0..10 {
        std::hint::black_box(Dictionary::new(99, d(64).unwrap().bytes().to_vec()).unwrap());
    }
    println!("Dictionary::new of 64 KiB (builds the LZ4 index): {:.0} µs", t.elapsed().as_secs_f64() * 1e5);
    let samples5000: Vec<&[u8]> = payloads.iter().step_by(4).map(Vec::as_slice).collect();
    for (n, set) in [(SAMPLES, samples), (samples5000.len(), &samples5000[..])] {
        let t = Instant::now();
        let dict = Dictionary::train(7, set, 64 << 10).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let (s, _) = saved(payloads, &no_pick, &mut Encoder::new(Codec::Lz4), Some(&dict));
        println!("training on {n} samples, 64 KiB: {ms:.0} ms, lz4 + dict saved {:.1} %", s * 100.0);
    }
}

/// Per-item encode and decode times with reused state, as medians over the items: "sweep" is
/// each item's first run, as items come one after another (tables and dictionary partly out
/// of cache); "hot" the fastest of 3 runs of the same item (no preemption, all in cache).
fn timings(
    payloads: &[Vec<u8>],
    enc: &mut Encoder,
    dict: Option<&Dictionary>,
    dicts: &DictionarySet,
) -> [u64; 4] {
    let mut blobs = Vec::with_capacity(payloads.len());
    let (mut enc_sweep, mut enc_hot) = (Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(4096);
    for p in payloads {
        let (first, best) = runs(&mut || {
            enc.encode_into(dict, p, &mut out).unwrap();
        });
        enc_sweep.push(first);
        enc_hot.push(best);
        blobs.push(out.clone());
    }
    let mut dec = Decoder::new();
    let (mut dec_sweep, mut dec_hot) = (Vec::new(), Vec::new());
    for (b, p) in blobs.iter().zip(payloads) {
        let (first, best) = runs(&mut || dec.decode_into(b, dicts, &mut out).unwrap());
        dec_sweep.push(first);
        dec_hot.push(best);
        assert_eq!(&out, p);
    }
    [median(enc_sweep), median(enc_hot), median(dec_sweep), median(dec_hot)]
}

/// Plain JSON of a trajectory: the "raw" it is measured against.
fn json(t: &Trajectory) -> Vec<u8> {
    let steps: Vec<serde_json::Value> = t
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "timestamp_ms": s.timestamp_ms, "action": s.action, "reward": s.reward, "values": s.values,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"id": t.id, "pattern_ids": t.pattern_ids, "steps": steps}))
        .unwrap()
}

fn trajectories() {
    const COUNT: u64 = 1_000;
    println!("\n## Trajectories: generate_trajectory(0..{COUNT})");
    let ts: Vec<Trajectory> = (0..COUNT).map(generate_trajectory).collect();
    let json_total: usize = ts.iter().map(|t| json(t).len()).sum();
    let naive_total: usize = ts.iter().map(trajectory_plain_len).sum();
    let steps: usize = ts.iter().map(|t| t.steps.len()).sum();
    println!(
        "{COUNT} trajectories, {steps} steps: JSON {json_total} B ({:.1} B/step), naive binary {naive_total} B ({:.1} B/step)",
        json_total as f64 / steps as f64,
        naive_total as f64 / steps as f64
    );
    let layout_total: usize = ts.iter().map(|t| encode_trajectory(t, Codec::Raw, None).unwrap().len()).sum();
    println!(
        "layout alone (raw blob): {layout_total} B ({:.1} B/step): saved {:.1} % vs JSON, {:.1} % vs naive binary",
        layout_total as f64 / steps as f64,
        (1.0 - layout_total as f64 / json_total as f64) * 100.0,
        (1.0 - layout_total as f64 / naive_total as f64) * 100.0
    );
    let empty = DictionarySet::new();
    for codec in [Codec::Lz4, Codec::Zlib] {
        let mut total = 0;
        let (mut enc_t, mut dec_t) = (Vec::new(), Vec::new());
        for t in &ts {
            let start = Instant::now();
            let blob = encode_trajectory(t, codec, None).unwrap();
            enc_t.push(start.elapsed().as_nanos() as u64);
            total += blob.len();
            let start = Instant::now();
            let back = decode_trajectory(&blob, &empty).unwrap();
            dec_t.push(start.elapsed().as_nanos() as u64);
            assert_eq!(&back, t);
        }
        println!(
            "{:4}: {total} B ({:.1} B/step): saved {:.1} % vs JSON, {:.1} % vs naive binary; median encode {} µs, decode {} µs per trajectory",
            codec.name(),
            total as f64 / steps as f64,
            (1.0 - total as f64 / json_total as f64) * 100.0,
            (1.0 - total as f64 / naive_total as f64) * 100.0,
            median(enc_t) / 1000,
            median(dec_t) / 1000
        );
    }
    let _ = DEFAULT_MIN_SAVING;
}

/// Times `f` three times: the first run (cold) and the fastest (hot), in nanoseconds.
fn runs(f: &mut dyn FnMut()) -> (u64, u64) {
    let times: Vec<u64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as u64
        })
        .collect();
    (times[0], times.iter().copied().min().unwrap_or(0))
}
