//! Unit tests of the blob format: round trips, the header bytes, every error case, and
//! corruption sweeps (every byte flipped, every truncation: an error or the exact original).

use super::*;

/// JSON memory items shaped like D(N)'s `data`, varied enough to compress like them.
fn items(n: usize) -> Vec<Vec<u8>> {
    const WORDS: &[&str] = &[
        "Return", "the", "value", "of", "a", "cache", "entry", "when", "the", "request", "times", "out",
        "retry", "with", "backoff", "route", "tasks", "by", "queue", "depth", "function", "self", "None",
    ];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..40 + next(150)).map(|_| WORDS[next(WORDS.len())]).collect();
            format!(
                "{{\"content\":\"{}\",\"description\":\"{}\",\"domain\":\"{}\",\"tags\":[\"{}\"],\"title\":\"{}\"}}",
                words.join(" "),
                words[..14].join(" "),
                if i % 2 == 0 { "py" } else { "rust" },
                words[3],
                words[..6].join(" ")
            )
            .into_bytes()
        })
        .collect()
}

fn trained(id: u32, items: &[Vec<u8>], size: usize) -> Dictionary {
    let samples: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    Dictionary::train(id, &samples, size).unwrap()
}

/// Every encoder configuration worth testing: codec × dictionary.
fn configs(dict: &Dictionary) -> Vec<(Codec, Option<&Dictionary>)> {
    vec![
        (Codec::Raw, None),
        (Codec::Lz4, None),
        (Codec::Lz4, Some(dict)),
        (Codec::Zlib, None),
        (Codec::Zlib, Some(dict)),
    ]
}

#[test]
fn every_codec_round_trips_with_and_without_a_dictionary() {
    let data = items(300);
    let dict = trained(1, &data[..100], 8 << 10);
    let dicts: DictionarySet = [dict.clone()].into_iter().collect();
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for (codec, d) in configs(&dict) {
        let mut enc = Encoder::new(codec);
        let (mut raw, mut stored) = (0, 0);
        for item in &data {
            let blob = enc.encode(d, item).unwrap();
            let h = read_header(&blob).unwrap();
            assert_eq!(h.codec, codec, "these items always compress");
            assert_eq!(h.dict_id, d.map_or(0, |d| d.id()));
            assert_eq!(h.len, item.len());
            decoder.decode_into(&blob, &dicts, &mut out).unwrap();
            assert_eq!(&out, item);
            assert_eq!(decode(&blob, &dicts).unwrap(), *item);
            raw += item.len();
            stored += blob.len();
        }
        // Compression pays, and a dictionary pays more.
        let saved = 1.0 - stored as f64 / raw as f64;
        match (codec, d.is_some()) {
            (Codec::Raw, _) => assert!(saved < 0.0),
            (_, false) => assert!(saved > 0.3, "{codec:?}: {saved}"),
            (_, true) => assert!(saved > 0.5, "{codec:?} + dict: {saved}"),
        }
    }
}

#[test]
fn the_header_is_as_documented() {
    let blob = encode(Codec::Lz4, None, b"hello", DEFAULT_MIN_SAVING).unwrap();
    let sum = (twox_hash::XxHash3_64::oneshot(b"hello") as u32).to_le_bytes();
    // Too small to compress: raw, version 1, no dictionary, length 5, checksum, body.
    assert_eq!(blob, [&[0x10, 0, 5][..], &sum, b"hello"].concat());
    let big = vec![b'a'; 300];
    let dict = Dictionary::new(200, b"aaaa".to_vec()).unwrap();
    let blob = encode(Codec::Zlib, Some(&dict), &big, 0).unwrap();
    // Codec 2; dictionary id 200 and length 300 are two-byte varints.
    assert_eq!(blob[..5], [0x12, 0xC8, 0x01, 0xAC, 0x02]);
    let h = read_header(&blob).unwrap();
    assert_eq!(
        h,
        Header {
            codec: Codec::Zlib,
            dict_id: 200,
            len: 300,
            checksum: twox_hash::XxHash3_64::oneshot(&big) as u32,
            body_offset: 9
        }
    );
    // No JSON text starts with a format byte: legacy plain-JSON rows are recognisable.
    for first in [b'{', b'[', b'"', b' ', b'\n', b'\t', b'\r', b'-', b'0', b't', b'f', b'n'] {
        assert!(read_header(&[first, 0, 0, 0, 0, 0, 0]).is_err());
    }
}

#[test]
fn min_saving_decides_between_compressed_and_raw() {
    let item = &items(1)[0];
    let lz4 = encode(Codec::Lz4, None, item, 0).unwrap();
    let saving = item.len() + 8 - lz4.len();
    assert!(saving > 50);
    // Exactly the saving still compresses; one more byte asked for stores raw.
    assert_eq!(read_header(&encode(Codec::Lz4, None, item, saving).unwrap()).unwrap().codec, Codec::Lz4);
    let raw = encode(Codec::Lz4, None, item, saving + 1).unwrap();
    assert_eq!(read_header(&raw).unwrap().codec, Codec::Raw);
    assert_eq!(raw.len(), item.len() + 8);
    let zraw = encode(Codec::Zlib, None, item, usize::MAX).unwrap();
    assert_eq!(zraw, raw);
    // Incompressible bytes and empty input go raw under the default.
    let mut x = 88_172_645_463_325_252u64;
    let noise: Vec<u8> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    for codec in [Codec::Lz4, Codec::Zlib] {
        for input in [&noise[..], b""] {
            let blob = encode(codec, None, input, DEFAULT_MIN_SAVING).unwrap();
            assert_eq!(read_header(&blob).unwrap().codec, Codec::Raw);
            assert_eq!(decode(&blob, &DictionarySet::new()).unwrap(), input);
        }
    }
}

#[test]
fn blobs_survive_a_retrain_when_both_dictionaries_are_kept() {
    let data = items(400);
    let old = trained(1, &data[..200], 4 << 10);
    let new = trained(2, &data[200..], 4 << 10);
    assert_ne!(old.bytes(), new.bytes());
    let mut enc = Encoder::new(Codec::Lz4);
    let before: Vec<Vec<u8>> = data.iter().map(|d| enc.encode(Some(&old), d).unwrap()).collect();
    let after: Vec<Vec<u8>> = data.iter().map(|d| enc.encode(Some(&new), d).unwrap()).collect();
    let mut set = DictionarySet::new();
    assert!(set.insert(old.clone()).is_none());
    assert!(set.insert(new.clone()).is_none());
    assert_eq!(set.latest().map(Dictionary::id), Some(2));
    for ((a, b), d) in before.iter().zip(&after).zip(&data) {
        assert_eq!(decode(a, &set).unwrap(), *d);
        assert_eq!(decode(b, &set).unwrap(), *d);
    }
    // Without the old dictionary, old blobs name it.
    let only_new: DictionarySet = [new].into_iter().collect();
    assert_eq!(decode(&before[0], &only_new), Err(CodecError::UnknownDictionary(1)));
    // Replacing an id hands back the previous dictionary.
    assert_eq!(
        set.insert(Dictionary::new(1, b"other".to_vec()).unwrap()).map(|d| d.bytes().to_vec()),
        Some(old.bytes().to_vec())
    );
    assert_eq!(set.len(), 2);
}

/// Rewrites the header of `blob` with `len` as the declared length.
fn with_declared_len(blob: &[u8], len: usize) -> Vec<u8> {
    let h = read_header(blob).unwrap();
    let mut out = Vec::new();
    write_header(&mut out, h.codec, h.dict_id, len, h.checksum);
    out.extend_from_slice(&blob[h.body_offset..]);
    out
}

#[test]
fn each_corruption_returns_its_error() {
    let item = &items(2)[1];
    let dict = trained(9, &items(50), 4 << 10);
    let dicts: DictionarySet = [dict.clone()].into_iter().collect();
    let none = DictionarySet::new();
    let lz4 = encode(Codec::Lz4, Some(&dict), item, 0).unwrap();
    let zlib = encode(Codec::Zlib, Some(&dict), item, 0).unwrap();
    let raw = encode(Codec::Raw, None, item, 0).unwrap();

    assert_eq!(decode(&[], &dicts), Err(CodecError::Truncated { what: "format byte" }));
    assert_eq!(decode(&[0x11], &dicts), Err(CodecError::Truncated { what: "dictionary id" }));
    assert_eq!(decode(&[0x11, 0x89], &dicts), Err(CodecError::Truncated { what: "dictionary id" }));
    assert_eq!(decode(&[0x11, 9], &dicts), Err(CodecError::Truncated { what: "uncompressed length" }));
    assert_eq!(decode(&lz4[..6], &dicts), Err(CodecError::Truncated { what: "checksum" }));
    assert_eq!(decode(&[0x21, 0, 0, 0, 0, 0, 0], &dicts), Err(CodecError::UnsupportedVersion(2)));
    assert_eq!(decode(&[0x13, 0, 0, 0, 0, 0, 0], &dicts), Err(CodecError::UnknownCodec(3)));
    assert_eq!(decode(&lz4, &none), Err(CodecError::UnknownDictionary(9)));
    assert_eq!(decode(&zlib, &none), Err(CodecError::UnknownDictionary(9)));
    assert!(matches!(decode(&[0x10, 1, 0, 0, 0, 0, 0], &dicts), Err(CodecError::MalformedHeader(_))));
    assert!(matches!(
        decode(&[0x11, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0, 0, 0, 0, 0], &dicts),
        Err(CodecError::MalformedHeader(_))
    ));

    // An absurd length is refused from the header alone.
    let mut huge = vec![0x11, 0];
    varint::put(&mut huge, 1 << 40);
    huge.extend_from_slice(&[0; 4]);
    assert_eq!(decode(&huge, &dicts), Err(CodecError::TooLarge { len: 1 << 40 }));
    let at_limit = with_declared_len(&lz4, MAX_VALUE_LEN + 1);
    assert_eq!(decode(&at_limit, &dicts), Err(CodecError::TooLarge { len: MAX_VALUE_LEN as u64 + 1 }));
    // Up to the limit, a length the body cannot hold is refused before allocating for it.
    let short_body = with_declared_len(&lz4, MAX_VALUE_LEN);
    assert!(
        matches!(decode(&short_body, &dicts), Err(CodecError::LengthMismatch { declared, .. }) if declared == MAX_VALUE_LEN)
    );

    // Declared lengths one off either way, for each codec.
    for (blob, name) in [(&raw, "raw"), (&lz4, "lz4"), (&zlib, "zlib")] {
        let n = item.len();
        assert_eq!(
            decode(&with_declared_len(blob, n - 1), &dicts),
            Err(CodecError::LengthMismatch { declared: n - 1, actual: n }),
            "{name}"
        );
        assert_eq!(
            decode(&with_declared_len(blob, n + 1), &dicts),
            Err(CodecError::LengthMismatch { declared: n + 1, actual: n }),
            "{name}"
        );
    }

    // A flipped bit no decoder notices (raw body, LZ4 literal) is a checksum mismatch.
    let mut flipped = raw.clone();
    *flipped.last_mut().unwrap() ^= 0x20;
    assert!(matches!(decode(&flipped, &dicts), Err(CodecError::ChecksumMismatch { .. })));
    let mut flipped = lz4.clone();
    *flipped.last_mut().unwrap() ^= 0x20;
    assert!(matches!(decode(&flipped, &dicts), Err(CodecError::ChecksumMismatch { .. })));
    // The wrong dictionary under the right id: decodes to other bytes, caught the same way.
    let impostor: DictionarySet = [Dictionary::new(9, vec![b'x'; 4096]).unwrap()].into_iter().collect();
    assert!(matches!(decode(&lz4, &impostor), Err(CodecError::ChecksumMismatch { .. })));

    // Garbage bodies.
    let h = read_header(&lz4).unwrap();
    let mut bad = lz4[..h.body_offset].to_vec();
    bad.extend_from_slice(&[0xFF; 20]);
    assert!(matches!(decode(&bad, &dicts), Err(CodecError::Corrupt { codec: "lz4", .. })));
    let h = read_header(&zlib).unwrap();
    let mut bad = zlib[..h.body_offset].to_vec();
    bad.extend_from_slice(&[0xFF; 40]);
    assert!(matches!(decode(&bad, &dicts), Err(CodecError::Corrupt { codec: "zlib", .. })));
    // A truncated DEFLATE stream, and one followed by junk.
    assert!(matches!(
        decode(&zlib[..zlib.len() - 3], &dicts),
        Err(CodecError::Corrupt { codec: "zlib", .. })
    ));
    let mut junk = zlib.clone();
    junk.push(0);
    assert!(matches!(decode(&junk, &dicts), Err(CodecError::Corrupt { codec: "zlib", .. })));

    // Every message says something.
    for e in
        [CodecError::Truncated { what: "x" }, CodecError::TooLarge { len: 1 }, CodecError::UnknownCodec(7)]
    {
        assert!(e.to_string().len() > 10);
    }
}

/// Flips every bit position class of every byte and cuts at every length: each result is an
/// error or exactly the original, never a panic, never other bytes.
fn sweep(blob: &[u8], original: &[u8], dicts: &DictionarySet) -> (usize, usize) {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    let (mut errors, mut same) = (0, 0);
    let mut check =
        |b: &[u8], errors: &mut usize, same: &mut usize| match decoder.decode_into(b, dicts, &mut out) {
            Ok(()) => {
                assert_eq!(out, original, "a corrupt blob decoded to other bytes");
                *same += 1;
            }
            Err(_) => {
                assert!(out.is_empty(), "an error leaves no partial output");
                *errors += 1;
            }
        };
    for i in 0..blob.len() {
        for mask in [0x01, 0x10, 0x80, 0xFF] {
            let mut b = blob.to_vec();
            b[i] ^= mask;
            check(&b, &mut errors, &mut same);
        }
    }
    for cut in 0..blob.len() {
        check(&blob[..cut], &mut errors, &mut same);
    }
    (errors, same)
}

#[test]
fn corrupt_blobs_fail_or_decode_exactly() {
    let data = items(4);
    let dict = trained(3, &items(60), 4 << 10);
    let dicts: DictionarySet = [dict.clone()].into_iter().collect();
    for (codec, d) in configs(&dict) {
        for item in &data {
            let blob = encode(codec, d, item, 0).unwrap();
            let (errors, _) = sweep(&blob, item, &dicts);
            // Flips are nearly always caught; truncations always.
            assert!(errors >= blob.len() * 4, "{codec:?}: {errors} errors of {}", blob.len() * 5);
        }
    }
}

#[test]
fn dictionaries_and_sets_check_their_input() {
    assert!(matches!(Dictionary::new(0, vec![1, 2, 3]), Err(CodecError::InvalidDictionary(_))));
    assert!(matches!(Dictionary::new(1, vec![0; MAX_DICT_LEN + 1]), Err(CodecError::InvalidDictionary(_))));
    let d = Dictionary::new(7, vec![0; MAX_DICT_LEN]).unwrap();
    assert_eq!((d.id(), d.bytes().len()), (7, MAX_DICT_LEN));
    assert_eq!(format!("{d:?}"), "Dictionary { id: 7, len: 65536 }");
    let mut set = DictionarySet::new();
    assert!(set.is_empty() && set.latest().is_none() && set.get(7).is_none());
    set.insert(d);
    set.insert(Dictionary::new(3, vec![]).unwrap());
    assert_eq!(set.get(3).map(Dictionary::id), Some(3));
    assert_eq!(set.latest().map(Dictionary::id), Some(7));
    // A full 64 KiB dictionary and an empty one both work with either codec.
    let item = &items(1)[0];
    for d in [set.get(7).unwrap(), set.get(3).unwrap()] {
        for codec in [Codec::Lz4, Codec::Zlib] {
            assert_eq!(decode(&encode(codec, Some(d), item, 0).unwrap(), &set).unwrap(), *item);
        }
    }
    assert_eq!(Codec::from_id(2), Ok(Codec::Zlib));
    assert_eq!(Codec::from_id(9), Err(CodecError::UnknownCodec(9)));
}

#[test]
fn encoders_and_decoders_are_reusable_across_codecs_sizes_and_dictionaries() {
    let data = items(50);
    let a = trained(1, &data[..25], 2 << 10);
    let b = trained(2, &data[25..], 16 << 10);
    let set: DictionarySet = [a.clone(), b.clone()].into_iter().collect();
    let mut lz4 = Encoder::new(Codec::Lz4).with_min_saving(0);
    let mut zlib = Encoder::new(Codec::Zlib).with_zlib_level(9);
    assert_eq!((lz4.codec(), zlib.codec()), (Codec::Lz4, Codec::Zlib));
    let mut dec = Decoder::new();
    let mut blob = Vec::new();
    let mut out = Vec::new();
    let big: Vec<u8> = data.concat().repeat(3);
    for (i, item) in data.iter().chain([&big]).enumerate() {
        let d = [None, Some(&a), Some(&b)][i % 3];
        for enc in [&mut lz4, &mut zlib] {
            enc.encode_into(d, item, &mut blob).unwrap();
            dec.decode_into(&blob, &set, &mut out).unwrap();
            assert_eq!(&out, item);
        }
    }
    assert!(big.len() > 65_536, "exercises the 64 KiB window");
    assert_eq!(
        Encoder::new(Codec::Lz4).encode(None, &vec![0; MAX_VALUE_LEN + 1]),
        Err(CodecError::TooLarge { len: MAX_VALUE_LEN as u64 + 1 })
    );
}

#[test]
fn content_hash_is_xxh3_128() {
    // The reference value of XXH3-128 for empty input, seed 0.
    assert_eq!(content_hash(b""), 0x99aa_06d3_0147_98d8_6001_c324_468d_497f);
    assert_ne!(content_hash(b"a"), content_hash(b"b"));
    let item = &items(1)[0];
    assert_eq!(content_hash(item), content_hash(&item.clone()));
}
