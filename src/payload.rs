//! How the store keeps `data` and trajectories small: compressed blobs ([`crate::codec`]),
//! stored once per distinct content, and the dictionaries they were compressed with.
//!
//! ## Where the work happens
//!
//! `put` encodes on the caller's thread (hash, then compress with the latest dictionary), so
//! compression scales with the callers instead of loading the one writer thread. The writer
//! only looks the content hash up and stores or references the blob. A put whose data equals
//! the cached copy's (an update of the stats alone, the agent loop's usual put) sends just the
//! hash: the value is almost surely stored, and if it is not, the writer encodes it. Misses decode on the
//! reader's thread; the L1 holds decoded patterns, so a hit pays nothing.
//!
//! ## Dedup (schema in `crate::sqlite::schema`)
//!
//! A row of `payloads` holds one distinct value: its xxh3-128 content hash (unique), a
//! reference count, the codec and dictionary ids, the raw length and the blob. A put whose
//! content is already stored adds a reference instead of a row; replacing or deleting a
//! pattern drops one; the last reference deletes the row. All of it runs inside the writer's
//! batch transaction, so a rolled-back batch (a failed write is isolated by retrying halves)
//! rolls the counts back with the rows, and they cannot drift.
//!
//! ## Dictionaries
//!
//! Kept in `dictionaries` forever (a blob names its dictionary, so old rows stay readable after
//! any retrain) and loaded at open. The first is trained in a background thread once
//! [`Config::dictionary_train_after`] payloads exist without one; later ones when the recent
//! saving drifts ([`Config::dictionary_drift`]) or on request ([`Store::train_dictionary`]).
//! Training samples the most recent payloads; installing goes through the writer, which
//! inserts the row and then publishes the new set. [`Store::recompress`] re-encodes older
//! rows with the latest dictionary.
//!
//! [`Config::dictionary_train_after`]: crate::Config::dictionary_train_after
//! [`Config::dictionary_drift`]: crate::Config::dictionary_drift
//! [`Store::train_dictionary`]: crate::Store::train_dictionary
//! [`Store::recompress`]: crate::Store::recompress
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Codec, CodecError, Decoder, Dictionary, DictionarySet, Encoder};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{Counter, Histogram, Summary};
use crate::sqlite::ffi::{Connection, Value};
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};

/// Values per drift check: the saving of this many recent values is compared with the
/// dictionary's own.
const DRIFT_WINDOW: u64 = 1_000;
/// Windows that must pass after a training before drift may trigger the next one, so data that
/// no dictionary helps cannot cause a retrain every window.
const DRIFT_COOLDOWN_WINDOWS: u64 = 10;
/// Fewest committed payloads worth training on.
const MIN_TRAIN_SAMPLES: usize = 64;

/// A pattern's data as `put` hands it to the writer.
pub(crate) enum Payload {
    /// Encoded on the caller's thread.
    Encoded(Encoded),
    /// The same bytes as the pattern's cached copy, so most likely stored already: only the
    /// hash was computed. The writer encodes the data itself if the hash is not found after all
    /// (the earlier put failed, or the content was deleted meanwhile).
    Unchanged { hash: [u8; 16] },
}

impl Payload {
    pub fn hash(&self) -> &[u8; 16] {
        match self {
            Payload::Encoded(e) => &e.hash,
            Payload::Unchanged { hash } => hash,
        }
    }
}

/// A value ready for the writer: its content hash and its blob.
pub(crate) struct Encoded {
    /// xxh3-128 of the raw bytes, big-endian.
    pub hash: [u8; 16],
    pub codec: Codec,
    pub dict: u32,
    pub raw_len: usize,
    pub blob: Vec<u8>,
}

/// Bytes in and out for one codec.
#[derive(Default)]
struct CodecCounters {
    values: Counter,
    bytes_in: Counter,
    bytes_stored: Counter,
}

/// Per-codec totals of what this process encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecBytes {
    /// `raw`, `lz4` or `zlib`: the codec the values ended up stored with.
    pub codec: String,
    /// Values encoded.
    pub values: u64,
    /// Their raw bytes.
    pub bytes_in: u64,
    /// Their blobs' bytes, headers included.
    pub bytes_stored: u64,
}

/// Codec activity since the store was opened (`Metrics::codec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CodecMetrics {
    /// The configured codec for new values.
    pub codec: String,
    /// The dictionary new values use (0: none yet).
    pub dictionary_id: u32,
    /// Dictionaries loaded (all that stored rows may name).
    pub dictionaries: u64,
    /// Pattern payloads encoded, by the codec they were stored with.
    pub by_codec: Vec<CodecBytes>,
    /// Puts whose content was already stored: a reference added, no blob written.
    pub dedup_hits: u64,
    /// Dictionaries trained (automatically or on request).
    pub trainings: u64,
    /// Trajectories encoded, their raw layout bytes and their stored bytes.
    pub trajectories: u64,
    /// Their size as JSON (`crate::codec::trajectory_json_len`), the raw form savings are
    /// quoted against.
    pub trajectory_bytes_in: u64,
    /// Stored bytes of those trajectories.
    pub trajectory_bytes_stored: u64,
    /// Per-value encode time, ns (sampled one in eight).
    pub encode_ns: Summary,
    /// Per-value decode time, ns (sampled one in eight).
    pub decode_ns: Summary,
}

/// A trained and installed dictionary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DictionaryInfo {
    /// Its id, named by every blob compressed with it.
    pub id: u32,
    /// Its size in bytes.
    pub bytes: usize,
    /// Payloads it was trained on.
    pub samples: usize,
    /// 1 − stored / raw over those samples with the configured codec.
    pub saved_ratio: f64,
}

/// What [`Store::recompress`](crate::Store::recompress) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecompressReport {
    /// Stored values that did not use the configured codec and latest dictionary.
    pub examined: u64,
    /// Those rewritten (the others would not have been smaller).
    pub rewritten: u64,
    /// Stored bytes of the rewritten values before.
    pub bytes_before: u64,
    /// And after.
    pub bytes_after: u64,
}

/// The payload tier's shared state.
pub(crate) struct Payloads {
    codec: Codec,
    min_saving: usize,
    zlib_level: u32,
    train_after: u64,
    drift: f64,
    dicts: ArcSwap<DictionarySet>,
    by_codec: [CodecCounters; 3],
    pub dedup_hits: Counter,
    pub trainings: Counter,
    trajectories: CodecCounters,
    encode_ns: Histogram,
    decode_ns: Histogram,
    /// Values stored without a dictionary while there is none (the auto-training trigger).
    undictionaried: AtomicU64,
    /// A training is running (one at a time).
    pub training: AtomicBool,
    /// The saving of the latest dictionary on its own sample, as f64 bits.
    dict_saved_bits: AtomicU64,
    /// Drift window: raw and stored bytes and values of the current window, and windows since
    /// the last training. Relaxed atomics, not a lock: every put with a dictionary counts here,
    /// and an approximate window (a value counted in the next one) changes nothing.
    window_in: AtomicU64,
    window_out: AtomicU64,
    window_values: AtomicU64,
    windows: AtomicU64,
}

thread_local! {
    /// Encoder state per thread (LZ4 tables, DEFLATE state), keyed by its settings.
    static ENCODER: RefCell<Option<(Codec, u32, usize, Encoder)>> = const { RefCell::new(None) };
    static DECODER: RefCell<Decoder> = RefCell::new(Decoder::new());
}

fn codec_error(context: &str, e: CodecError) -> Error {
    Error::new(ErrorKind::Corrupt, format!("{context}: {e}"))
}

impl Payloads {
    /// Loads the dictionaries from `conn` and counts what is stored without one.
    pub fn open(cfg: &Config, conn: &Connection) -> Result<Self> {
        let this = Self {
            codec: cfg.codec,
            min_saving: cfg.codec_min_saving,
            zlib_level: cfg.zlib_level,
            train_after: cfg.dictionary_train_after as u64,
            drift: cfg.dictionary_drift,
            dicts: ArcSwap::from_pointee(DictionarySet::new()),
            by_codec: Default::default(),
            dedup_hits: Counter::default(),
            trainings: Counter::default(),
            trajectories: CodecCounters::default(),
            encode_ns: Histogram::default(),
            decode_ns: Histogram::default(),
            undictionaried: AtomicU64::new(0),
            training: AtomicBool::new(false),
            dict_saved_bits: AtomicU64::new(0),
            window_in: AtomicU64::new(0),
            window_out: AtomicU64::new(0),
            window_values: AtomicU64::new(0),
            windows: AtomicU64::new(0),
        };
        let saved = this.reload(conn)?;
        this.dict_saved_bits.store(saved.to_bits(), Ordering::Relaxed);
        if this.dicts.load().is_empty() {
            let n = conn.query_i64("SELECT count(*) FROM payloads")?;
            this.undictionaried.store(n as u64, Ordering::Relaxed);
        }
        Ok(this)
    }

    /// Reads every dictionary from `conn` (a writer in another process may have added one);
    /// returns the latest one's recorded saving.
    pub fn reload(&self, conn: &Connection) -> Result<f64> {
        let mut stmt = conn.prepare("SELECT id, bytes, saved_ratio FROM dictionaries ORDER BY id")?;
        let mut set = DictionarySet::new();
        let mut saved = 0.0;
        stmt.for_each(&[], |row| {
            let id = u32::try_from(row.i64(0)).map_err(|_| {
                Error::new(ErrorKind::Corrupt, format!("dictionary id {} is out of range", row.i64(0)))
            })?;
            let dict = Dictionary::new(id, row.blob(1).to_vec())
                .map_err(|e| codec_error(&format!("dictionary {id}"), e))?;
            set.insert(dict);
            saved = row.f64(2);
            Ok(())
        })?;
        self.dicts.store(Arc::new(set));
        Ok(saved)
    }

    /// What `put` sends the writer for `data`: only its hash when `unchanged` (the cached
    /// copy holds the same bytes; compressing again would be wasted), else its encoding.
    pub fn prepare(&self, data: &[u8], unchanged: bool) -> Result<Payload> {
        if unchanged {
            return Ok(Payload::Unchanged { hash: codec::content_hash(data).to_be_bytes() });
        }
        self.encode(data).map(Payload::Encoded)
    }

    /// Encodes a pattern's data with the configured codec and the latest dictionary.
    pub fn encode(&self, data: &[u8]) -> Result<Encoded> {
        let timed = crate::metrics::sample_latency().then(Instant::now);
        let encoded = self.encode_with(data, self.codec)?;
        if let Some(t) = timed {
            self.encode_ns.record_duration(t.elapsed());
        }
        let c = &self.by_codec[encoded.codec as usize];
        c.values.incr();
        c.bytes_in.add(data.len() as u64);
        c.bytes_stored.add(encoded.blob.len() as u64);
        Ok(encoded)
    }

    fn encode_with(&self, data: &[u8], codec: Codec) -> Result<Encoded> {
        let dicts = self.dicts.load();
        let dict = dicts.latest();
        let mut blob = Vec::with_capacity(data.len() / 2 + 32);
        let used = ENCODER.with(|cell| {
            let mut cell = cell.borrow_mut();
            let fresh = !matches!(&*cell, Some((c, l, m, _)) if *c == codec && *l == self.zlib_level && *m == self.min_saving);
            if fresh {
                *cell = None;
            }
            let (_, _, _, enc) = cell.get_or_insert_with(|| {
                let enc = Encoder::new(codec).with_zlib_level(self.zlib_level).with_min_saving(self.min_saving);
                (codec, self.zlib_level, self.min_saving, enc)
            });
            enc.encode_into(dict, data, &mut blob)
        });
        let used = used.map_err(|e| Error::invalid(format!("data could not be encoded: {e}")))?;
        Ok(Encoded {
            hash: codec::content_hash(data).to_be_bytes(),
            codec: used,
            dict: if used == Codec::Raw { 0 } else { dict.map_or(0, Dictionary::id) },
            raw_len: data.len(),
            blob,
        })
    }

    /// Encodes a trajectory (columnar layout, then the configured codec without a dictionary:
    /// the layout's bytes are not JSON, and a pattern dictionary does not help them).
    /// Returns the blob and the trajectory's JSON size.
    pub fn encode_trajectory(&self, t: &codec::Trajectory) -> Result<(Vec<u8>, usize)> {
        let codec = if self.codec == Codec::Raw { Codec::Raw } else { Codec::Zlib };
        let blob = codec::encode_trajectory(t, codec, None)
            .map_err(|e| Error::invalid(format!("trajectory {:?} could not be encoded: {e}", t.id)))?;
        self.trajectories.values.incr();
        let json_len = codec::trajectory_json_len(t);
        self.trajectories.bytes_in.add(json_len as u64);
        self.trajectories.bytes_stored.add(blob.len() as u64);
        Ok((blob, json_len))
    }

    /// Decodes a stored blob; `what` names the row in errors. An unknown dictionary is looked
    /// for again in `conn` (another process may have trained it) before it is an error.
    pub fn decode(
        &self,
        blob: &[u8],
        what: &dyn Fn() -> String,
        conn: Option<&Connection>,
    ) -> Result<Vec<u8>> {
        let timed = crate::metrics::sample_latency().then(Instant::now);
        let decode = || DECODER.with(|d| d.borrow_mut().decode(blob, &self.dicts.load()));
        let out = match (decode(), conn) {
            (Err(CodecError::UnknownDictionary(_)), Some(conn)) => {
                self.reload(conn)?;
                decode()
            }
            (other, _) => other,
        };
        let out = out.map_err(|e| codec_error(&what(), e))?;
        if let Some(t) = timed {
            self.decode_ns.record_duration(t.elapsed());
        }
        Ok(out)
    }

    /// Decodes a stored trajectory.
    pub fn decode_trajectory(&self, blob: &[u8], id: &str, conn: &Connection) -> Result<codec::Trajectory> {
        let decode = || codec::decode_trajectory(blob, &self.dicts.load());
        let out = match decode() {
            Err(CodecError::UnknownDictionary(_)) => {
                self.reload(conn)?;
                decode()
            }
            other => other,
        };
        out.map_err(|e| codec_error(&format!("trajectory {id:?}"), e))
    }

    /// Notes an encoded value for the training triggers; true when a (re)training is due
    /// and this caller should start it.
    pub fn note_for_training(&self, p: &Payload) -> bool {
        let Payload::Encoded(e) = p else { return false };
        if self.codec == Codec::Raw || self.training.load(Ordering::Relaxed) {
            return false;
        }
        let due = if self.dicts.load().is_empty() {
            // Relaxed: a trigger count; racing callers at worst start one training late.
            self.train_after > 0
                && self.undictionaried.fetch_add(1, Ordering::Relaxed) + 1 >= self.train_after
        } else {
            self.drifted(e)
        };
        // Acquire/Release not needed: the flag only elects one trainer.
        due && !self.training.swap(true, Ordering::Relaxed)
    }

    fn drifted(&self, e: &Encoded) -> bool {
        if self.drift <= 0.0 {
            return false;
        }
        // Relaxed throughout: statistics (see the fields).
        self.window_in.fetch_add(e.raw_len as u64, Ordering::Relaxed);
        self.window_out.fetch_add(e.blob.len() as u64, Ordering::Relaxed);
        if !(self.window_values.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(DRIFT_WINDOW) {
            return false;
        }
        // The caller that completes a window closes it.
        let raw = self.window_in.swap(0, Ordering::Relaxed);
        let stored = self.window_out.swap(0, Ordering::Relaxed);
        let saved = 1.0 - stored as f64 / raw.max(1) as f64;
        let cooled = self.windows.fetch_add(1, Ordering::Relaxed) + 1 >= DRIFT_COOLDOWN_WINDOWS;
        let reference = f64::from_bits(self.dict_saved_bits.load(Ordering::Relaxed));
        cooled && saved < reference - self.drift
    }

    /// A training ended (installed or not): re-arm the triggers.
    pub fn training_done(&self, installed: Option<f64>) {
        if let Some(saved) = installed {
            self.dict_saved_bits.store(saved.to_bits(), Ordering::Relaxed);
            for w in [&self.window_in, &self.window_out, &self.window_values, &self.windows] {
                w.store(0, Ordering::Relaxed);
            }
        } else {
            // Too few samples: try again after as many more values.
            self.undictionaried.store(0, Ordering::Relaxed);
        }
        self.training.store(false, Ordering::Relaxed);
    }

    /// Trains a dictionary on the most recent payloads in `conn`, with the next free id.
    /// Returns `None` when too few payloads are stored.
    pub fn train(&self, conn: &Connection) -> Result<Option<(Dictionary, DictionaryInfo)>> {
        let mut stmt = conn.prepare("SELECT pid, blob FROM payloads ORDER BY pid DESC LIMIT ?1")?;
        let mut samples = Vec::new();
        stmt.for_each(&[Value::Int(codec::DEFAULT_TRAIN_SAMPLES as i64)], |row| {
            let pid = row.i64(0);
            samples.push(self.decode(row.blob(1), &|| format!("payload {pid}"), None)?);
            Ok(())
        })?;
        if samples.len() < MIN_TRAIN_SAMPLES {
            return Ok(None);
        }
        let next_id = conn.query_i64("SELECT coalesce(max(id), 0) + 1 FROM dictionaries")?;
        let id = u32::try_from(next_id)
            .map_err(|_| Error::new(ErrorKind::Corrupt, "dictionary ids are exhausted"))?;
        let refs: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
        let dict = Dictionary::train(id, &refs, codec::DEFAULT_DICT_LEN)
            .map_err(|e| codec_error("training a dictionary", e))?;
        let mut enc =
            Encoder::new(self.codec).with_zlib_level(self.zlib_level).with_min_saving(self.min_saving);
        let (mut raw, mut stored) = (0usize, 0usize);
        let mut out = Vec::new();
        for s in &refs {
            enc.encode_into(Some(&dict), s, &mut out)
                .map_err(|e| codec_error("measuring a dictionary", e))?;
            raw += s.len();
            stored += out.len();
        }
        let info = DictionaryInfo {
            id,
            bytes: dict.bytes().len(),
            samples: samples.len(),
            saved_ratio: 1.0 - stored as f64 / raw.max(1) as f64,
        };
        self.trainings.incr();
        Ok(Some((dict, info)))
    }

    /// Makes `dict` the one new values use (after the writer stored it).
    pub fn install(&self, dict: Dictionary) {
        self.dicts.rcu(|set| {
            let mut set = DictionarySet::clone(set);
            set.insert(dict.clone());
            set
        });
    }

    /// Re-encodes `raw` with the configured codec and latest dictionary, for a row stored
    /// with another.
    pub fn reencode(&self, raw: &[u8]) -> Result<Encoded> {
        self.encode_with(raw, self.codec)
    }

    /// The dictionary new values use, if any.
    pub fn latest(&self) -> Option<Dictionary> {
        self.dicts.load().latest().cloned()
    }

    /// The configured codec and the latest dictionary's id.
    pub fn target(&self) -> (Codec, u32) {
        (self.codec, self.dicts.load().latest().map_or(0, Dictionary::id))
    }

    pub fn metrics(&self) -> CodecMetrics {
        let dicts = self.dicts.load();
        let by_codec = [Codec::Raw, Codec::Lz4, Codec::Zlib]
            .iter()
            .map(|&c| {
                let k = &self.by_codec[c as usize];
                CodecBytes {
                    codec: c.name().to_owned(),
                    values: k.values.get(),
                    bytes_in: k.bytes_in.get(),
                    bytes_stored: k.bytes_stored.get(),
                }
            })
            .collect();
        CodecMetrics {
            codec: self.codec.name().to_owned(),
            dictionary_id: dicts.latest().map_or(0, Dictionary::id),
            dictionaries: dicts.len() as u64,
            by_codec,
            dedup_hits: self.dedup_hits.get(),
            trainings: self.trainings.get(),
            trajectories: self.trajectories.values.get(),
            trajectory_bytes_in: self.trajectories.bytes_in.get(),
            trajectory_bytes_stored: self.trajectories.bytes_stored.get(),
            encode_ns: self.encode_ns.summary(),
            decode_ns: self.decode_ns.summary(),
        }
    }
}

/// What a store's data takes on disk, by codec, read from the database
/// ([`Store::storage`](crate::Store::storage); `patternbank stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageStats {
    /// Patterns.
    pub patterns: u64,
    /// Distinct stored values (rows of `payloads`).
    pub payloads: u64,
    /// References to them: patterns whose data is stored there.
    pub references: u64,
    /// Patterns written before schema version 3, whose data is inline and raw.
    pub inline_values: u64,
    /// Their bytes.
    pub inline_bytes: u64,
    /// Distinct stored values by codec: count, raw bytes, stored bytes.
    pub by_codec: Vec<CodecBytes>,
    /// What the patterns' data would take stored raw, one copy per pattern, inline rows
    /// included.
    pub logical_bytes: u64,
    /// What it takes: stored blobs once each, inline rows included.
    pub stored_bytes: u64,
    /// 1 − stored / logical: compression and dedup together.
    pub saved_ratio: f64,
    /// 1 − stored / raw over the distinct values: compression alone.
    pub compression_saved_ratio: f64,
    /// Every dictionary, oldest first.
    pub dictionaries: Vec<DictionaryInfo>,
    /// Trajectories.
    pub trajectories: u64,
    /// Their size as JSON (`codec::trajectory_json_len`).
    pub trajectory_json_bytes: u64,
    /// Their stored bytes.
    pub trajectory_stored_bytes: u64,
}

impl StorageStats {
    /// Reads the figures from `conn` (aggregates over the tables; nothing is decoded).
    pub(crate) fn read(conn: &Connection) -> Result<Self> {
        let mut s = StorageStats {
            patterns: conn.query_i64("SELECT count(*) FROM patterns")? as u64,
            ..Default::default()
        };
        let mut stmt = conn.prepare(
            "SELECT codec, count(*), sum(raw_len), sum(length(blob)), sum(refs), sum(raw_len * refs) \
             FROM payloads GROUP BY codec ORDER BY codec",
        )?;
        stmt.for_each(&[], |row| {
            let name =
                Codec::from_id(u8::try_from(row.i64(0)).unwrap_or(u8::MAX)).map_or("unknown", Codec::name);
            let c = CodecBytes {
                codec: name.to_owned(),
                values: row.i64(1) as u64,
                bytes_in: row.i64(2) as u64,
                bytes_stored: row.i64(3) as u64,
            };
            s.payloads += c.values;
            s.references += row.i64(4) as u64;
            s.logical_bytes += row.i64(5) as u64;
            s.stored_bytes += c.bytes_stored;
            s.by_codec.push(c);
            Ok(())
        })?;
        let raw_distinct: u64 = s.by_codec.iter().map(|c| c.bytes_in).sum();
        s.compression_saved_ratio = ratio(s.stored_bytes, raw_distinct);
        let mut stmt =
            conn.prepare("SELECT count(*), coalesce(sum(length(data)), 0) FROM patterns WHERE pid IS NULL")?;
        stmt.for_each(&[], |row| {
            s.inline_values = row.i64(0) as u64;
            s.inline_bytes = row.i64(1) as u64;
            Ok(())
        })?;
        s.logical_bytes += s.inline_bytes;
        s.stored_bytes += s.inline_bytes;
        s.saved_ratio = ratio(s.stored_bytes, s.logical_bytes);
        let mut stmt =
            conn.prepare("SELECT id, length(bytes), samples, saved_ratio FROM dictionaries ORDER BY id")?;
        stmt.for_each(&[], |row| {
            s.dictionaries.push(DictionaryInfo {
                id: row.i64(0) as u32,
                bytes: row.i64(1) as usize,
                samples: row.i64(2) as usize,
                saved_ratio: row.f64(3),
            });
            Ok(())
        })?;
        let mut stmt = conn.prepare(
            "SELECT count(*), coalesce(sum(raw_len), 0), coalesce(sum(length(blob)), 0) FROM trajectories",
        )?;
        stmt.for_each(&[], |row| {
            s.trajectories = row.i64(0) as u64;
            s.trajectory_json_bytes = row.i64(1) as u64;
            s.trajectory_stored_bytes = row.i64(2) as u64;
            Ok(())
        })?;
        Ok(s)
    }

    /// A readable table.
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  data            {} patterns, {} distinct values ({} references), {} inline (pre-v3)",
            self.patterns, self.payloads, self.references, self.inline_values
        );
        for c in &self.by_codec {
            let _ = writeln!(
                out,
                "    {:<6} {:>9} values  {:>12} B raw  {:>12} B stored  saved {:5.1} %",
                c.codec,
                c.values,
                c.bytes_in,
                c.bytes_stored,
                100.0 * ratio(c.bytes_stored, c.bytes_in)
            );
        }
        let _ = writeln!(
            out,
            "    total: {} B as written, {} B stored: saved {:.1} % ({:.1} % by compression alone)",
            self.logical_bytes,
            self.stored_bytes,
            100.0 * self.saved_ratio,
            100.0 * self.compression_saved_ratio
        );
        for d in &self.dictionaries {
            let _ = writeln!(
                out,
                "    dictionary {}: {} B, trained on {} values, saved {:.1} % on them",
                d.id,
                d.bytes,
                d.samples,
                100.0 * d.saved_ratio
            );
        }
        let _ = writeln!(
            out,
            "  trajectories    {}: {} B as JSON, {} B stored: saved {:.1} %",
            self.trajectories,
            self.trajectory_json_bytes,
            self.trajectory_stored_bytes,
            100.0 * ratio(self.trajectory_stored_bytes, self.trajectory_json_bytes)
        );
        out
    }
}

/// 1 − stored / raw (0 when nothing was stored).
fn ratio(stored: u64, raw: u64) -> f64 {
    if raw == 0 {
        0.0
    } else {
        1.0 - stored as f64 / raw as f64
    }
}
