//! The stored item: [`Pattern`], the feedback on it: [`Outcome`], and a search result: [`Hit`].
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// A memory of what worked: an id, a kind, opaque data (usually JSON), an optional
/// embedding, and the outcome-driven confidence with its counters.
///
/// `put` replaces the whole pattern, counters included; `record_outcome` changes only the
/// confidence and counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pattern {
    /// Unique id, 1 to `Config::max_id_len` bytes (default 256).
    pub id: String,
    /// Category such as `task-routing` or `error-recovery`; 1 to 64 bytes.
    pub kind: String,
    /// Opaque payload, usually a JSON memory item; at most `Config::max_data_bytes`.
    #[serde(with = "data_serde")]
    pub data: Vec<u8>,
    /// Embedding of `Config::embedding_dim` finite values, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// The model the embedding came from; `None` means the store's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// Confidence in [0, 1], moved by outcomes (DESIGN.md, Confidence). New patterns: 0.5.
    pub confidence: f64,
    /// Outcomes recorded.
    pub usage_count: u64,
    /// Successful outcomes recorded.
    pub success_count: u64,
    /// Failed outcomes recorded.
    pub failure_count: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Time of the last recorded outcome, milliseconds since the Unix epoch (0: never).
    pub last_used_ms: i64,
    /// The write sequence number this value reflects (0: read from the database). Lets the
    /// writer tell a cached copy that an outcome applies to from a newer `put`.
    #[serde(skip)]
    pub(crate) version: u64,
}

impl PartialEq for Pattern {
    /// Compares the public fields; the internal version is not part of a pattern's value.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.data == other.data
            && self.embedding == other.embedding
            && self.embedding_model == other.embedding_model
            && self.confidence == other.confidence
            && self.usage_count == other.usage_count
            && self.success_count == other.success_count
            && self.failure_count == other.failure_count
            && self.created_at_ms == other.created_at_ms
            && self.last_used_ms == other.last_used_ms
    }
}

impl Pattern {
    /// A new pattern: confidence 0.5, no outcomes, created now, no embedding.
    pub fn new(id: impl Into<String>, kind: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            id: id.into(),
            kind: kind.into(),
            data: data.into(),
            embedding: None,
            embedding_model: None,
            confidence: 0.5,
            usage_count: 0,
            success_count: 0,
            failure_count: 0,
            created_at_ms: now_ms(),
            last_used_ms: 0,
            version: 0,
        }
    }

    /// Sets the embedding (validated against the store's dimension at `put`).
    pub fn with_embedding(mut self, embedding: Vec<f32>) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// Names the model the embedding came from (checked against the store's model).
    pub fn with_embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }

    /// Sets the starting confidence (validated to lie in [0, 1] at `put`).
    pub fn with_confidence(mut self, confidence: f64) -> Self {
        self.confidence = confidence;
        self
    }

    /// Approximate heap and inline bytes this pattern occupies; the L1 weigher.
    pub fn weight_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.kind.len()
            + self.data.len()
            + self.embedding.as_ref().map_or(0, |e| e.len() * 4)
            + self.embedding_model.as_ref().map_or(0, String::len)
    }
}

/// What happened when an agent used a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// It worked: confidence moves toward 1.
    Success,
    /// It did not: confidence moves toward 0.
    Failure,
}

impl Outcome {
    /// The target value `o` of the moving average.
    pub fn target(self) -> f64 {
        match self {
            Outcome::Success => 1.0,
            Outcome::Failure => 0.0,
        }
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The pattern's id.
    pub id: String,
    /// Its score (cosine similarity by default).
    pub score: f32,
}

/// The composition of several outcomes: `c ← a·c + b` plus counter increments.
///
/// `n` outcomes compose to one affine map (DESIGN.md, Confidence), so the writer applies any
/// number of queued outcomes for one id with a single `UPDATE`, without reading the row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OutcomeSum {
    pub a: f64,
    pub b: f64,
    pub successes: u64,
    pub failures: u64,
    pub last_used_ms: i64,
}

impl OutcomeSum {
    pub const IDENTITY: Self = Self { a: 1.0, b: 0.0, successes: 0, failures: 0, last_used_ms: 0 };

    /// Appends one outcome after the ones already summed: `c ← c + η·(o − c)`.
    pub fn push(&mut self, outcome: Outcome, learning_rate: f64, at_ms: i64) {
        let keep = 1.0 - learning_rate;
        self.a *= keep;
        self.b = self.b * keep + learning_rate * outcome.target();
        match outcome {
            Outcome::Success => self.successes += 1,
            Outcome::Failure => self.failures += 1,
        }
        self.last_used_ms = self.last_used_ms.max(at_ms);
    }

    pub fn uses(&self) -> u64 {
        self.successes + self.failures
    }

    /// Applies the sum to a pattern's confidence and counters.
    pub fn apply(&self, p: &mut Pattern) {
        p.confidence = (self.a * p.confidence + self.b).clamp(0.0, 1.0);
        p.usage_count += self.uses();
        p.success_count += self.successes;
        p.failure_count += self.failures;
        p.last_used_ms = p.last_used_ms.max(self.last_used_ms);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `data` in JSON: a string when it is UTF-8 (the usual case), else `{"hex": "…"}`.
mod data_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Hex { hex: String },
    }

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(data) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                Repr::Hex { hex }.serialize(s)
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(text) => Ok(text.into_bytes()),
            Repr::Hex { hex } => {
                if hex.len() % 2 != 0 {
                    return Err(serde::de::Error::custom("odd-length hex in data"));
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        u8::from_str_radix(&hex[i..i + 2], 16)
                            .map_err(|_| serde::de::Error::custom("bad hex digit in data"))
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_sum_equals_sequential_ema() {
        let eta = 0.1;
        let seq = [Outcome::Success, Outcome::Failure, Outcome::Success, Outcome::Success];
        let mut c = 0.5;
        let mut sum = OutcomeSum::IDENTITY;
        for (i, o) in seq.iter().enumerate() {
            c += eta * (o.target() - c);
            sum.push(*o, eta, i as i64);
        }
        let mut p = Pattern::new("x", "k", b"{}".to_vec());
        sum.apply(&mut p);
        assert!((p.confidence - c).abs() < 1e-12, "{} vs {}", p.confidence, c);
        assert_eq!((p.usage_count, p.success_count, p.failure_count), (4, 3, 1));
        assert_eq!(p.last_used_ms, 3);
    }

    #[test]
    fn data_round_trips_through_json_text_and_hex() {
        for data in [b"{\"a\":1}".to_vec(), vec![0xff, 0x00, 0x10]] {
            let p = Pattern::new("x", "k", data.clone());
            let json = serde_json::to_string(&p).unwrap();
            let back: Pattern = serde_json::from_str(&json).unwrap();
            assert_eq!(back.data, data);
            assert_eq!(back, p);
        }
    }
}
