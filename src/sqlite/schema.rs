//! File set-up: pragmas, schema, and the checks that a file is ours and matches the config.
//!
//! ## Schema (version 3)
//!
//! ```sql
//! meta         (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID
//! patterns     (rid INTEGER PRIMARY KEY, id TEXT UNIQUE, kind, data BLOB, embedding BLOB,
//!               created_at_ms, seq, pid)
//! stats        (id TEXT PRIMARY KEY, confidence REAL, usage_count, success_count,
//!               failure_count, last_used_ms) WITHOUT ROWID
//! payloads     (pid INTEGER PRIMARY KEY, hash BLOB UNIQUE, refs, codec, dict, raw_len, blob)
//! dictionaries (id INTEGER PRIMARY KEY, bytes BLOB, created_at_ms, samples, saved_ratio)
//! trajectories (id TEXT PRIMARY KEY, steps, raw_len, blob, created_at_ms)
//!               -- raw_len: the trajectory's size as JSON
//! ```
//!
//! A pattern's data lives in `payloads` (`patterns.pid`), one row per distinct content with
//! a reference count (`crate::payload`); `patterns.data` is then empty. Rows written before
//! version 3 keep their raw data inline, with `pid` NULL. `payloads.hash` is the xxh3-128 of
//! the raw bytes; `codec`, `dict` and `raw_len` repeat the blob's header so that `stats` can
//! sum sizes per codec without decoding anything.
//!
//! The counters live apart from the payload on purpose: an `UPDATE` rewrites the whole
//! record, and a pattern's record is ≈ 2.5 KiB (data plus a 1.5 KiB embedding) while its
//! stats record is ≈ 60 bytes, so outcome updates touch 40× fewer bytes.
//!
//! Indexes, each earning its place:
//! - `patterns.id UNIQUE` (an automatic index): `get` by id and the `put` upsert's conflict
//!   target. Its write cost, measured by `benches/writer.rs` (`put_ceiling` vs
//!   `put_ceiling_no_id_index`), is written in the README.
//! - `stats` is keyed by id (WITHOUT ROWID): outcome updates and the `get` join descend one
//!   compact tree; no second index.
//!
//! - `payloads.hash UNIQUE`: the dedup lookup of every put.
//!
//! No index on kind or confidence yet: no query filters on them in SQL.
//!
//! `patterns.seq` is the number of the writer batch that last wrote the row, and
//! `meta.last_batch` the last batch committed: the L2 arena records the last batch it holds,
//! and after an unclean stop catches up with the rows of later batches (`crate::l2`). Files
//! of versions 1 and 2 are upgraded in place at open, each step in one transaction.

use crate::config::{Config, Synchronous};
use crate::error::{Error, ErrorKind, Result};
use crate::sqlite::ffi::{Connection, Value};

pub(crate) const SCHEMA_VERSION: i64 = 3;
const FORMAT: &str = "patternbank";

const CREATE: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE patterns(
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    embedding BLOB,
    created_at_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    pid INTEGER
);
CREATE TABLE stats(
    id TEXT PRIMARY KEY,
    confidence REAL NOT NULL,
    usage_count INTEGER NOT NULL,
    success_count INTEGER NOT NULL,
    failure_count INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The tables version 3 adds (created with a new file, or by the upgrade from version 2).
const V3_TABLES: &str = "
CREATE TABLE payloads(
    pid INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    refs INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    dict INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE dictionaries(
    id INTEGER PRIMARY KEY,
    bytes BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    saved_ratio REAL NOT NULL
);
CREATE TABLE trajectories(
    id TEXT PRIMARY KEY,
    steps INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    blob BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
";

/// Pragmas every connection gets; `cache_kib`: its page cache.
fn connection_pragmas(conn: &Connection, cfg: &Config, cache_kib: u32) -> Result<()> {
    conn.busy_timeout(cfg.busy_timeout.as_millis().min(u32::MAX as u128) as u32)?;
    let sync = match cfg.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA cache_size = -{}; PRAGMA mmap_size = {}; \
         PRAGMA temp_store = MEMORY;",
        cache_kib, cfg.mmap_size_bytes
    ))
}

/// Opens the writer connection, creating and checking the file.
pub(crate) fn open_writer(
    cfg: &Config,
    slow: Option<crate::sync::Arc<crate::metrics::SlowLog>>,
) -> Result<Connection> {
    let conn = Connection::open(&cfg.path, super::ffi::OpenMode::ReadWriteCreate, slow)?;
    connection_pragmas(&conn, cfg, cfg.cache_size_kib).map_err(foreign)?;
    // The first read of a file that is not SQLite fails here with SQLITE_NOTADB.
    let tables =
        conn.query_strings("SELECT name FROM sqlite_schema WHERE type = 'table'").map_err(foreign)?;
    if tables.is_empty() {
        // page_size and auto_vacuum must be set before the first table exists.
        conn.execute_batch(&format!(
            "PRAGMA page_size = {}; PRAGMA auto_vacuum = INCREMENTAL;",
            cfg.page_size
        ))?;
        conn.execute_batch("PRAGMA journal_mode = WAL;")?;
        conn.execute_batch("BEGIN IMMEDIATE;")?;
        let created =
            conn.execute_batch(CREATE).and_then(|()| conn.execute_batch(V3_TABLES)).and_then(|()| {
                let mut ins = conn.prepare("INSERT INTO meta(key, value) VALUES (?1, ?2)")?;
                for (k, v) in [
                    ("format", FORMAT.to_owned()),
                    ("schema_version", SCHEMA_VERSION.to_string()),
                    ("embedding_model", cfg.embedding_model.clone()),
                    ("embedding_dim", cfg.embedding_dim.to_string()),
                    ("last_batch", "0".to_owned()),
                ] {
                    ins.execute(&[Value::Text(k), Value::Text(&v)])?;
                }
                Ok(())
            });
        match created {
            Ok(()) => conn.execute_batch("COMMIT;")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK;");
                return Err(e);
            }
        }
    } else {
        upgrade(&conn)?;
        check_meta(&conn, cfg)?;
        conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    }
    conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {};", cfg.wal_autocheckpoint_pages))?;
    Ok(conn)
}

/// Opens a read-only connection on an existing file and checks it is ours.
pub(crate) fn open_reader(
    cfg: &Config,
    slow: Option<crate::sync::Arc<crate::metrics::SlowLog>>,
    check: bool,
) -> Result<Connection> {
    if !cfg.path.exists() {
        return Err(Error::new(ErrorKind::Io, format!("{} does not exist", cfg.path.display())));
    }
    let conn = Connection::open(&cfg.path, super::ffi::OpenMode::ReadOnly, slow)?;
    // Beside a writer that commits every batch, SQLite empties a reader's cache at its next
    // read after each commit: a large one is resident memory that serves nothing.
    let cache_kib = if cfg.read_only { cfg.cache_size_kib } else { cfg.reader_cache_size_kib };
    connection_pragmas(&conn, cfg, cache_kib).map_err(foreign)?;
    conn.execute_batch("PRAGMA query_only = 1;")?;
    if check {
        check_meta(&conn, cfg)?;
    }
    Ok(conn)
}

fn foreign(e: Error) -> Error {
    if e.kind() == ErrorKind::Corrupt {
        Error::new(ErrorKind::Incompatible, format!("not a SQLite database: {}", e.message()))
    } else {
        e
    }
}

/// The file's recorded embedding model and dimension.
pub(crate) fn read_meta(conn: &Connection) -> Result<std::collections::HashMap<String, String>> {
    let mut stmt = conn.prepare("SELECT key, value FROM meta").map_err(|e| {
        Error::new(ErrorKind::Incompatible, "a SQLite database, but not a patternbank store (no meta table)")
            .with_source(e)
    })?;
    let mut out = std::collections::HashMap::new();
    stmt.for_each(&[], |row| {
        out.insert(row.text(0).unwrap_or_default().to_owned(), row.text(1).unwrap_or_default().to_owned());
        Ok(())
    })?;
    Ok(out)
}

/// Upgrades a file of an older version step by step, each step in one transaction: 1 → 2
/// adds the batch numbers, 2 → 3 the payload, dictionary and trajectory tables (existing rows
/// keep their data inline).
fn upgrade(conn: &Connection) -> Result<()> {
    let version = || -> String {
        conn.query_strings("SELECT value FROM meta WHERE key = 'schema_version'")
            .unwrap_or_default()
            .into_iter()
            .next()
            .unwrap_or_default()
    };
    let step = |sql: String| {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql} COMMIT;")).inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK;");
        })
    };
    if version() == "1" {
        step(
            "ALTER TABLE patterns ADD COLUMN seq INTEGER NOT NULL DEFAULT 0; \
              INSERT OR REPLACE INTO meta(key, value) VALUES ('last_batch', '0'); \
              UPDATE meta SET value = '2' WHERE key = 'schema_version';"
                .to_owned(),
        )?;
    }
    if version() == "2" {
        step(format!(
            "ALTER TABLE patterns ADD COLUMN pid INTEGER; {V3_TABLES} \
             UPDATE meta SET value = '3' WHERE key = 'schema_version';"
        ))?;
    }
    Ok(())
}

/// The last batch the writer committed (`meta.last_batch`).
pub(crate) fn last_batch(conn: &Connection) -> Result<u64> {
    let v = conn.query_strings("SELECT value FROM meta WHERE key = 'last_batch'")?;
    v.first()
        .map_or(Ok(0), |s| s.parse::<u64>())
        .map_err(|_| Error::new(ErrorKind::Corrupt, format!("meta.last_batch is not a number: {v:?}")))
}

fn check_meta(conn: &Connection, cfg: &Config) -> Result<()> {
    let tables =
        conn.query_strings("SELECT name FROM sqlite_schema WHERE type = 'table'").map_err(foreign)?;
    if !tables.iter().any(|t| t == "meta") {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!("{} is a SQLite database, but not a patternbank store", cfg.path.display()),
        ));
    }
    let meta = read_meta(conn)?;
    let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
    if get("format") != FORMAT {
        return Err(Error::new(ErrorKind::Incompatible, "not a patternbank store (format mark missing)"));
    }
    if get("schema_version") != SCHEMA_VERSION.to_string() {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!("schema version {} is not the supported {SCHEMA_VERSION}", get("schema_version")),
        ));
    }
    if get("embedding_model") != cfg.embedding_model || get("embedding_dim") != cfg.embedding_dim.to_string()
    {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!(
                "the store holds {}-d embeddings of model {:?}; the config asks for {}-d of {:?}",
                get("embedding_dim"),
                get("embedding_model"),
                cfg.embedding_dim,
                cfg.embedding_model
            ),
        ));
    }
    Ok(())
}

/// The embedding model and dimension recorded in an existing store.
pub(crate) fn peek_meta(path: &std::path::Path) -> Result<(String, usize)> {
    if !path.exists() {
        return Err(Error::new(ErrorKind::Io, format!("{} does not exist", path.display())));
    }
    let conn = Connection::open(path, super::ffi::OpenMode::ReadOnly, None)?;
    let tables =
        conn.query_strings("SELECT name FROM sqlite_schema WHERE type = 'table'").map_err(foreign)?;
    if !tables.iter().any(|t| t == "meta") {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!("{} is not a patternbank store", path.display()),
        ));
    }
    let meta = read_meta(&conn)?;
    let model = meta.get("embedding_model").cloned().unwrap_or_default();
    let dim = meta.get("embedding_dim").and_then(|d| d.parse().ok()).unwrap_or(0);
    Ok((model, dim))
}
