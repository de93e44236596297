//! SQLite, the source of truth: raw FFI wrappers, the schema, the read pool and the writer.
//!
//! Nothing SQLite-specific leaves this folder: the rest of the crate sees [`ReadPool`],
//! [`schema::open_writer`] and the writer thread.

pub(crate) mod ffi;
pub(crate) mod pool;
pub(crate) mod schema;
pub(crate) mod writer;

use std::borrow::Cow;

use crate::error::{Error, ErrorKind, Result};
use crate::pattern::Pattern;
use ffi::{Row, Value};

pub(crate) use pool::ReadPool;

/// Columns read for one pattern, in the order `pattern_from_row` expects, from
/// [`PATTERN_FROM`]: the stored blob (or, for a row older than schema 3, the inline raw data)
/// and whether it is a blob.
pub(crate) const PATTERN_COLUMNS: &str = "p.id, p.kind, coalesce(b.blob, p.data), p.embedding, \
     p.created_at_ms, s.confidence, s.usage_count, s.success_count, s.failure_count, \
     s.last_used_ms, p.pid IS NOT NULL";

/// The tables `PATTERN_COLUMNS` reads.
pub(crate) const PATTERN_FROM: &str =
    "patterns p JOIN stats s ON s.id = p.id LEFT JOIN payloads b ON b.pid = p.pid";

/// Get by id: the unique index on `patterns.id`, then the primary keys of `stats` and
/// `payloads`.
pub(crate) const SELECT_PATTERN: &str = "SELECT p.id, p.kind, coalesce(b.blob, p.data), p.embedding, \
     p.created_at_ms, s.confidence, s.usage_count, s.success_count, s.failure_count, \
     s.last_used_ms, p.pid IS NOT NULL \
     FROM patterns p JOIN stats s ON s.id = p.id LEFT JOIN payloads b ON b.pid = p.pid \
     WHERE p.id = ?1";

/// Little-endian f32 bytes of an embedding, borrowed where the machine is little-endian.
pub(crate) fn embedding_bytes(e: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(e))
    } else {
        Cow::Owned(e.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// An embedding from its little-endian bytes.
pub(crate) fn embedding_from_bytes(b: &[u8]) -> Result<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("embedding blob of {} bytes is not whole f32s", b.len()),
        ));
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Decodes a row of `PATTERN_COLUMNS`; `conn` is where to look for a dictionary trained
/// since open (by a writer in another process).
pub(crate) fn pattern_from_row(
    row: &Row<'_>,
    payloads: &crate::payload::Payloads,
    conn: Option<&ffi::Connection>,
) -> Result<Pattern> {
    let text = |col| {
        row.text(col)
            .map(str::to_owned)
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, "a text column is not UTF-8"))
    };
    let embedding = if row.is_null(3) { None } else { Some(embedding_from_bytes(row.blob(3))?) };
    let id = text(0)?;
    let data = if row.i64(10) != 0 {
        payloads.decode(row.blob(2), &|| format!("the data of pattern {id:?}"), conn)?
    } else {
        row.blob(2).to_vec()
    };
    Ok(Pattern {
        id,
        kind: text(1)?,
        data,
        embedding,
        embedding_model: None,
        created_at_ms: row.i64(4),
        confidence: row.f64(5),
        usage_count: row.i64(6) as u64,
        success_count: row.i64(7) as u64,
        failure_count: row.i64(8) as u64,
        last_used_ms: row.i64(9),
        version: 0,
    })
}

/// Binds `id` as the only parameter.
pub(crate) fn id_param(id: &str) -> [Value<'_>; 1] {
    [Value::Text(id)]
}
