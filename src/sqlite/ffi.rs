//! Owning wrappers over the raw SQLite C API: [`Connection`] and [`Statement`], plus the one
//! function that turns result codes into errors. All `unsafe` SQLite calls of the crate live
//! in this file; nothing here leaves `sqlite/`.
//!
//! Connections are opened in serialized mode (`SQLITE_OPEN_FULLMUTEX`): SQLite itself
//! serialises calls on a connection, so sending a connection or statement to another thread
//! is sound whatever the caller does. The uncontended mutex costs ≈ 20 ns per call, small
//! beside a statement step. Statements keep their connection alive (`Arc<RawConnection>`),
//! so a statement can never outlive the handle it was prepared on.
//!
//! Bindings use `SQLITE_STATIC`: parameters are borrowed for exactly one `execute` or
//! `query_row` call, and the statement is reset and its bindings cleared before that call
//! returns, so SQLite never reads a borrowed buffer after its borrow ends.
//!
//! Model: rusqlite `src/raw_statement.rs`, `src/inner_connection.rs`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::time::Instant;

use libsqlite3_sys as sys;

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::SlowLog;
use crate::sync::Arc;

/// A bound parameter, borrowed for one statement execution.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

struct RawConnection {
    db: NonNull<sys::sqlite3>,
}

// SAFETY: the connection is opened with SQLITE_OPEN_FULLMUTEX (serialized mode), in which
// SQLite guards every call on the handle with its own mutex, so the handle may be used from
// any thread and from several at once.
unsafe impl Send for RawConnection {}
// SAFETY: see `Send` above: serialized mode makes concurrent calls on one handle sound.
unsafe impl Sync for RawConnection {}

impl Drop for RawConnection {
    fn drop(&mut self) {
        // SAFETY: `db` came from a successful `sqlite3_open_v2` and is closed exactly once,
        // here. Every statement holds an `Arc` of this value, so all are finalized by now
        // and `sqlite3_close` succeeds.
        unsafe {
            sys::sqlite3_close(self.db.as_ptr());
        }
    }
}

/// An owned SQLite connection.
pub(crate) struct Connection {
    raw: Arc<RawConnection>,
    slow: Option<Arc<SlowLog>>,
}

/// How to open a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    ReadWriteCreate,
    ReadOnly,
}

/// Maps a SQLite result code to `Ok` or an error carrying SQLite's own message.
fn check(db: *mut sys::sqlite3, rc: c_int, context: &str) -> Result<()> {
    if rc == sys::SQLITE_OK || rc == sys::SQLITE_ROW || rc == sys::SQLITE_DONE {
        return Ok(());
    }
    // SAFETY: sqlite3_errstr returns a static, NUL-terminated string for any code.
    let code_text = unsafe { CStr::from_ptr(sys::sqlite3_errstr(rc)) }.to_string_lossy();
    let detail = if db.is_null() {
        String::new()
    } else {
        // SAFETY: `db` is a live connection; the message pointer stays valid until the next
        // call on the connection, and we copy it out at once.
        unsafe { CStr::from_ptr(sys::sqlite3_errmsg(db)) }.to_string_lossy().into_owned()
    };
    let primary = rc & 0xff;
    let kind = match primary {
        sys::SQLITE_CORRUPT | sys::SQLITE_NOTADB => ErrorKind::Corrupt,
        sys::SQLITE_BUSY | sys::SQLITE_LOCKED => ErrorKind::Locked,
        sys::SQLITE_READONLY => ErrorKind::ReadOnly,
        sys::SQLITE_IOERR | sys::SQLITE_FULL | sys::SQLITE_CANTOPEN => ErrorKind::Io,
        _ => ErrorKind::Sqlite,
    };
    Err(Error::new(kind, format!("{context}: {detail} ({code_text}, extended code {rc})")))
}

/// Turns SQLite's global memory statistics off, once per process, before the first
/// connection. With them on (the bundled default) every SQLite allocation takes one global
/// mutex, which serialises all reader threads: measured as futex waits under `pcache1Alloc`
/// in the W1 profile.
fn configure_process() {
    static ONCE: crate::sync::Once = crate::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int. sqlite3_config may only be called
        // before SQLite initialises; if the process already initialised it (another library
        // opened a connection first), it returns SQLITE_MISUSE and changes nothing, which is
        // harmless: we only lose the optimisation.
        unsafe {
            sys::sqlite3_config(sys::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
        }
    });
}

impl Connection {
    /// Opens `path`. Extended result codes are turned on.
    pub fn open(path: &Path, mode: OpenMode, slow: Option<Arc<SlowLog>>) -> Result<Self> {
        configure_process();
        let c_path = path
            .to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| Error::invalid(format!("path {} is not valid UTF-8", path.display())))?;
        let flags = sys::SQLITE_OPEN_FULLMUTEX
            | match mode {
                OpenMode::ReadWriteCreate => sys::SQLITE_OPEN_READWRITE | sys::SQLITE_OPEN_CREATE,
                OpenMode::ReadOnly => sys::SQLITE_OPEN_READONLY,
            };
        let mut db: *mut sys::sqlite3 = ptr::null_mut();
        // SAFETY: valid NUL-terminated path, a valid out-pointer, and a null VFS name (the
        // default VFS).
        let rc = unsafe { sys::sqlite3_open_v2(c_path.as_ptr(), &mut db, flags, ptr::null()) };
        if rc != sys::SQLITE_OK {
            let err = check(db, rc, &format!("opening {}", path.display()));
            if !db.is_null() {
                // SAFETY: on failure SQLite may still hand out a handle that must be closed.
                unsafe { sys::sqlite3_close(db) };
            }
            return Err(err.err().unwrap_or_else(|| Error::new(ErrorKind::Sqlite, "open failed")));
        }
        let db =
            NonNull::new(db).ok_or_else(|| Error::new(ErrorKind::Sqlite, "sqlite returned no handle"))?;
        // SAFETY: `db` is a live connection.
        unsafe { sys::sqlite3_extended_result_codes(db.as_ptr(), 1) };
        Ok(Self { raw: Arc::new(RawConnection { db }), slow })
    }

    fn db(&self) -> *mut sys::sqlite3 {
        self.raw.db.as_ptr()
    }

    /// Runs one or more statements that return no rows we need.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        let c_sql = CString::new(sql).map_err(|_| Error::invalid("SQL contains a NUL byte"))?;
        let started = Instant::now();
        // SAFETY: live connection, NUL-terminated SQL, no callback, no error out-pointer.
        let rc =
            unsafe { sys::sqlite3_exec(self.db(), c_sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut()) };
        if let Some(slow) = &self.slow {
            slow.observe(sql, started.elapsed());
        }
        check(self.db(), rc, sql)
    }

    /// Sets the busy handler timeout.
    pub fn busy_timeout(&self, ms: u32) -> Result<()> {
        let ms = c_int::try_from(ms).unwrap_or(c_int::MAX);
        // SAFETY: live connection.
        let rc = unsafe { sys::sqlite3_busy_timeout(self.db(), ms) };
        check(self.db(), rc, "busy_timeout")
    }

    /// Prepares a statement that is kept for the life of the connection.
    pub fn prepare(&self, sql: &str) -> Result<Statement> {
        let len = c_int::try_from(sql.len()).map_err(|_| Error::invalid("SQL too long"))?;
        let mut stmt: *mut sys::sqlite3_stmt = ptr::null_mut();
        // SAFETY: live connection; `sql` is valid for `len` bytes (no NUL needed with an
        // explicit length); valid out-pointers.
        let rc = unsafe {
            sys::sqlite3_prepare_v3(
                self.db(),
                sql.as_ptr().cast::<c_char>(),
                len,
                sys::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        check(self.db(), rc, sql)?;
        let stmt =
            NonNull::new(stmt).ok_or_else(|| Error::invalid(format!("SQL has no statement: {sql:?}")))?;
        Ok(Statement { stmt, sql: sql.into(), conn: Arc::clone(&self.raw), slow: self.slow.clone() })
    }

    /// Whether no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        // SAFETY: live connection.
        unsafe { sys::sqlite3_get_autocommit(self.db()) != 0 }
    }

    /// Runs a query and collects its first column as text, one string per row.
    pub fn query_strings(&self, sql: &str) -> Result<Vec<String>> {
        let mut stmt = self.prepare(sql)?;
        let mut out = Vec::new();
        stmt.for_each(&[], |row| {
            out.push(row.text(0).unwrap_or_default().to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs a query that yields one integer.
    pub fn query_i64(&self, sql: &str) -> Result<i64> {
        let mut stmt = self.prepare(sql)?;
        stmt.query_row(&[], |row| Ok(row.i64(0)))?
            .ok_or_else(|| Error::new(ErrorKind::Sqlite, format!("no row from {sql}")))
    }
}

/// A prepared statement; finalized on drop.
pub(crate) struct Statement {
    stmt: NonNull<sys::sqlite3_stmt>,
    sql: Box<str>,
    conn: Arc<RawConnection>,
    slow: Option<Arc<SlowLog>>,
}

// SAFETY: the statement belongs to a serialized-mode connection (see `RawConnection`), whose
// mutex SQLite also takes for every statement call; `&mut self` on every method keeps one
// user at a time.
unsafe impl Send for Statement {}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: `stmt` came from a successful prepare and is finalized exactly once; the
        // connection is alive (we hold an `Arc` of it).
        unsafe {
            sys::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// Read access to the current row, valid only inside the callback it is passed to.
pub(crate) struct Row<'s> {
    stmt: *mut sys::sqlite3_stmt,
    _borrow: std::marker::PhantomData<&'s mut Statement>,
}

impl Row<'_> {
    pub fn is_null(&self, col: c_int) -> bool {
        // SAFETY: the statement is positioned on a row for the life of `Row`.
        unsafe { sys::sqlite3_column_type(self.stmt, col) == sys::SQLITE_NULL }
    }

    pub fn i64(&self, col: c_int) -> i64 {
        // SAFETY: as in `is_null`; out-of-range columns return 0, not UB.
        unsafe { sys::sqlite3_column_int64(self.stmt, col) }
    }

    pub fn f64(&self, col: c_int) -> f64 {
        // SAFETY: as in `is_null`.
        unsafe { sys::sqlite3_column_double(self.stmt, col) }
    }

    /// The column's bytes; empty for NULL. Valid until the row changes (the `Row` borrow).
    pub fn blob(&self, col: c_int) -> &[u8] {
        // SAFETY: as in `is_null`. Per the SQLite docs, call the value function first, then
        // `column_bytes`; the buffer lives until the statement steps or resets, which cannot
        // happen while this `Row` (and so the returned slice) is borrowed.
        unsafe {
            let ptr = sys::sqlite3_column_blob(self.stmt, col).cast::<u8>();
            let len = sys::sqlite3_column_bytes(self.stmt, col);
            if ptr.is_null() || len <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(ptr, len as usize)
            }
        }
    }

    /// The column as UTF-8 text, or `None` if it is not valid UTF-8.
    pub fn text(&self, col: c_int) -> Option<&str> {
        // SAFETY: as in `blob`, with `column_text` as the value function.
        let bytes = unsafe {
            let ptr = sys::sqlite3_column_text(self.stmt, col);
            let len = sys::sqlite3_column_bytes(self.stmt, col);
            if ptr.is_null() || len <= 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(ptr, len as usize)
            }
        };
        std::str::from_utf8(bytes).ok()
    }
}

impl Statement {
    fn db(&self) -> *mut sys::sqlite3 {
        self.conn.db.as_ptr()
    }

    fn bind_all(&mut self, params: &[Value<'_>]) -> Result<()> {
        for (i, value) in params.iter().enumerate() {
            let idx = (i + 1) as c_int;
            let s = self.stmt.as_ptr();
            // SAFETY: live statement; SQLITE_STATIC is sound because `run` resets the
            // statement and clears its bindings before the borrow of `params` ends.
            let rc = unsafe {
                match *value {
                    Value::Null => sys::sqlite3_bind_null(s, idx),
                    Value::Int(v) => sys::sqlite3_bind_int64(s, idx, v),
                    Value::Real(v) => sys::sqlite3_bind_double(s, idx, v),
                    Value::Text(t) => sys::sqlite3_bind_text64(
                        s,
                        idx,
                        t.as_ptr().cast::<c_char>(),
                        t.len() as u64,
                        sys::SQLITE_STATIC(),
                        sys::SQLITE_UTF8 as u8,
                    ),
                    Value::Blob(b) => sys::sqlite3_bind_blob64(
                        s,
                        idx,
                        b.as_ptr().cast(),
                        b.len() as u64,
                        sys::SQLITE_STATIC(),
                    ),
                }
            };
            check(self.db(), rc, &self.sql)?;
        }
        Ok(())
    }

    /// Binds `params`, steps through every row calling `on_row`, then resets. The statement
    /// is always reset and its bindings cleared before this returns, error or not.
    pub fn for_each(
        &mut self,
        params: &[Value<'_>],
        mut on_row: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let started = Instant::now();
        let result = self.bind_all(params).and_then(|()| loop {
            // SAFETY: live statement with all parameters bound.
            let rc = unsafe { sys::sqlite3_step(self.stmt.as_ptr()) };
            match rc {
                sys::SQLITE_ROW => {
                    on_row(&Row { stmt: self.stmt.as_ptr(), _borrow: std::marker::PhantomData })?
                }
                sys::SQLITE_DONE => break Ok(()),
                _ => break check(self.db(), rc, &self.sql),
            }
        });
        // SAFETY: live statement. Reset's return code repeats the step error, which we have.
        unsafe {
            sys::sqlite3_reset(self.stmt.as_ptr());
            sys::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
        if let Some(slow) = &self.slow {
            slow.observe(&self.sql, started.elapsed());
        }
        result
    }

    /// Executes a statement that returns no rows; returns the rows it changed.
    pub fn execute(&mut self, params: &[Value<'_>]) -> Result<u64> {
        self.for_each(params, |_| Ok(()))?;
        // SAFETY: live connection.
        Ok(unsafe { sys::sqlite3_changes64(self.db()) } as u64)
    }

    /// The rowid of the connection's most recent successful `INSERT` into a rowid table
    /// (an upsert that updated does not change it).
    pub fn last_insert_rowid(&self) -> i64 {
        // SAFETY: live connection.
        unsafe { sys::sqlite3_last_insert_rowid(self.db()) }
    }

    /// Runs a query and maps its first row, if any.
    pub fn query_row<R>(
        &mut self,
        params: &[Value<'_>],
        map: impl FnOnce(&Row<'_>) -> Result<R>,
    ) -> Result<Option<R>> {
        let mut map = Some(map);
        let mut out = None;
        self.for_each(params, |row| {
            if let Some(map) = map.take() {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_error_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(&dir.path().join("t.db"), OpenMode::ReadWriteCreate, None).unwrap();
        conn.execute_batch("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c BLOB, d REAL)").unwrap();
        let mut ins = conn.prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4)").unwrap();
        assert_eq!(
            ins.execute(&[Value::Int(1), Value::Text("x"), Value::Blob(&[1, 2]), Value::Real(0.5)]).unwrap(),
            1
        );
        let err = ins.execute(&[Value::Int(1), Value::Text("y"), Value::Null, Value::Null]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Sqlite);
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        let mut sel = conn.prepare("SELECT b, c, d FROM t WHERE a = ?1").unwrap();
        let row = sel
            .query_row(&[Value::Int(1)], |r| {
                Ok((r.text(0).unwrap().to_owned(), r.blob(1).to_vec(), r.f64(2)))
            })
            .unwrap();
        assert_eq!(row, Some(("x".to_owned(), vec![1, 2], 0.5)));
        assert_eq!(sel.query_row(&[Value::Int(2)], |_| Ok(())).unwrap(), None);
        assert_eq!(conn.prepare("SELEC").err().map(|e| e.kind()), Some(ErrorKind::Sqlite));
    }
}
