//! Round trips over the real corpus: every line of `shared/data/corpus.jsonl` opens one
//! D(N)-style JSON item, encoded raw, lz4 and zlib, with and without a trained dictionary, and
//! across a retrain. Skipped, with a message, when the shared folder is absent.
#[path = "codec_support/dstyle.rs"]
mod dstyle;

use patternbank::codec::{
    decode_trajectory, encode_trajectory, generate_trajectory, read_header, Codec, Decoder, Dictionary,
    DictionarySet, Encoder,
};

/// The payloads, or `None` (after saying why) when there is no corpus here.
fn corpus_payloads() -> Option<Vec<Vec<u8>>> {
    let Some(shared) = dstyle::shared_dir() else {
        eprintln!("SKIPPED: shared/data/corpus.jsonl not found (set PATTERNBANK_SHARED to run this test)");
        return None;
    };
    let texts = dstyle::corpus_texts(&shared, |_| true);
    assert_eq!(texts.len(), 20_500, "corpus.jsonl has 20,000 base and 500 query lines");
    Some(dstyle::payloads(texts.len(), 42, &texts))
}

#[test]
fn every_corpus_item_round_trips_with_every_codec_and_dictionary() {
    let Some(payloads) = corpus_payloads() else { return };
    assert!(
        payloads.iter().all(|p| (200..=1500).contains(&p.len())),
        "D(N) items are 300–1500 bytes, give or take a trim"
    );
    let samples: Vec<&[u8]> = payloads.iter().step_by(10).map(Vec::as_slice).collect();
    let dict = Dictionary::train(1, &samples, 32 << 10).unwrap();
    assert_eq!(dict.bytes().len(), 32 << 10);
    let dicts: DictionarySet = [dict.clone()].into_iter().collect();
    let mut decoder = Decoder::new();
    let (mut blob, mut out) = (Vec::new(), Vec::new());
    let raw: usize = payloads.iter().map(Vec::len).sum();
    for (codec, d) in [
        (Codec::Raw, None),
        (Codec::Lz4, None),
        (Codec::Lz4, Some(&dict)),
        (Codec::Zlib, None),
        (Codec::Zlib, Some(&dict)),
    ] {
        let mut encoder = Encoder::new(codec);
        let mut stored = 0;
        for p in &payloads {
            let used = encoder.encode_into(d, p, &mut blob).unwrap();
            assert_eq!(used, codec, "every item compresses by more than the minimum saving");
            decoder.decode_into(&blob, &dicts, &mut out).unwrap();
            assert!(out == *p, "{codec:?} round trip");
            stored += blob.len();
        }
        // Coarse floors, well under the measured figures (see examples/measure.rs).
        let saved = 1.0 - stored as f64 / raw as f64;
        let floor = match (codec, d.is_some()) {
            (Codec::Raw, _) => -0.01,
            (Codec::Lz4, false) => 0.2,
            (Codec::Lz4, true) => 0.5,
            (Codec::Zlib, false) => 0.4,
            (Codec::Zlib, true) => 0.55,
        };
        assert!(saved > floor, "{codec:?} dict={}: saved {saved:.3}", d.is_some());
    }
}

#[test]
fn corpus_blobs_survive_a_retrain() {
    let Some(payloads) = corpus_payloads() else { return };
    let first: Vec<&[u8]> = payloads[..2000].iter().map(Vec::as_slice).collect();
    let second: Vec<&[u8]> = payloads[10_000..12_000].iter().map(Vec::as_slice).collect();
    let old = Dictionary::train(1, &first, 16 << 10).unwrap();
    let new = Dictionary::train(2, &second, 16 << 10).unwrap();
    let both: DictionarySet = [old.clone(), new.clone()].into_iter().collect();
    for codec in [Codec::Lz4, Codec::Zlib] {
        let mut encoder = Encoder::new(codec);
        for p in payloads.iter().step_by(7) {
            let before = encoder.encode(Some(&old), p).unwrap();
            let after = encoder.encode(Some(&new), p).unwrap();
            assert_eq!(read_header(&before).unwrap().dict_id, 1);
            assert_eq!(read_header(&after).unwrap().dict_id, 2);
            assert_eq!(patternbank::codec::decode(&before, &both).unwrap(), *p);
            assert_eq!(patternbank::codec::decode(&after, &both).unwrap(), *p);
        }
    }
}

#[test]
fn generated_trajectories_round_trip_through_every_codec() {
    let none = DictionarySet::new();
    for seed in 0..40 {
        let t = generate_trajectory(seed);
        assert!((50..=500).contains(&t.steps.len()));
        for codec in [Codec::Raw, Codec::Lz4, Codec::Zlib] {
            let blob = encode_trajectory(&t, codec, None).unwrap();
            assert_eq!(decode_trajectory(&blob, &none).unwrap(), t);
        }
    }
}
