//! The read-only connection pool that serves L1 misses.
//!
//! Each connection has its `get` statement prepared once. A caller checks one out for the
//! length of one query; when all are busy it waits on a condition variable. Reads run
//! beside the writer under WAL: they never block it and it never blocks them.

use crate::config::Config;
use crate::error::Result;
use crate::metrics::SlowLog;
use crate::pattern::Pattern;
use crate::payload::Payloads;
use crate::sqlite::ffi::{Connection, Statement};
use crate::sqlite::{id_param, pattern_from_row, schema, SELECT_PATTERN};
use crate::sync::{Arc, Condvar, Mutex};

pub(crate) struct Reader {
    get: Statement,
    id_of_rowid: Statement,
    conn: Connection,
}

impl Reader {
    fn open(cfg: &Config, slow: &Arc<SlowLog>) -> Result<Self> {
        let conn = schema::open_reader(cfg, Some(Arc::clone(slow)), false)?;
        Ok(Self {
            get: conn.prepare(SELECT_PATTERN)?,
            id_of_rowid: conn.prepare("SELECT id, kind FROM patterns WHERE rid = ?1")?,
            conn,
        })
    }

    /// The connection, for one-off queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn get(&mut self, id: &str, payloads: &Payloads) -> Result<Option<Pattern>> {
        let conn = &self.conn;
        self.get.query_row(&id_param(id), |row| pattern_from_row(row, payloads, Some(conn)))
    }

    /// The id of the pattern at `rowid`, if it exists and (when given) has `kind`.
    pub fn id_of_rowid(&mut self, rowid: i64, kind: Option<&str>) -> Result<Option<String>> {
        let found = self.id_of_rowid.query_row(&[crate::sqlite::ffi::Value::Int(rowid)], |row| {
            Ok((row.text(0).unwrap_or_default().to_owned(), row.text(1).unwrap_or_default().to_owned()))
        })?;
        Ok(found.and_then(|(id, k)| kind.is_none_or(|want| want == k).then_some(id)))
    }
}

pub(crate) struct ReadPool {
    idle: Mutex<Vec<Reader>>,
    available: Condvar,
}

impl ReadPool {
    /// Opens `cfg.reader_pool_size` connections.
    pub fn open(cfg: &Config, slow: &Arc<SlowLog>) -> Result<Self> {
        let readers =
            (0..cfg.reader_pool_size).map(|_| Reader::open(cfg, slow)).collect::<Result<Vec<_>>>()?;
        Ok(Self { idle: Mutex::new(readers), available: Condvar::new() })
    }

    /// Runs `f` on an idle connection; blocks while all are in use.
    pub fn with<R>(&self, f: impl FnOnce(&mut Reader) -> Result<R>) -> Result<R> {
        let mut reader = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(r) = idle.pop() {
                    break r;
                }
                idle = self.available.wait(idle).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = f(&mut reader);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(reader);
        self.available.notify_one();
        result
    }
}
