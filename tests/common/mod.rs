//! Helpers shared by the integration tests.
#![allow(dead_code)]

use patternbank::{Config, Pattern};

/// A fresh folder and a database path inside it.
pub fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("patterns.db");
    (dir, path)
}

/// A small valid pattern with a deterministic embedding.
pub fn pattern(id: &str, dim: usize) -> Pattern {
    let mut e: Vec<f32> = (0..dim).map(|i| ((i * 7 + id.len()) % 13) as f32 - 6.0).collect();
    let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    e.iter_mut().for_each(|v| *v /= norm);
    Pattern::new(id, "coordination", format!("{{\"title\":\"{id}\"}}").into_bytes()).with_embedding(e)
}

/// A small-dimension config for fast tests.
pub fn small(path: &std::path::Path) -> Config {
    Config::new(path).embedding_dim(8)
}

/// Makes SQLite reject every insert of pattern `id` (`poisoned row`), as a full disk or a
/// constraint would: a batch holding it fails and is bisected.
pub fn poison(path: &std::path::Path, id: &str) {
    let conn = rusqlite::Connection::open(path).expect("open for the trigger");
    conn.execute_batch(&format!(
        "CREATE TRIGGER poison BEFORE INSERT ON patterns WHEN NEW.id = '{id}' \
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;"
    ))
    .expect("create the trigger");
}
