//! `kill -9` in the middle of appends and commits: the arena reopens valid, with at least
//! every count the child reported committed, every record intact.
//!
//! The test binary runs itself as the child (`--exact kill9_during_appends` with
//! `PBARENA_CRASH_CHILD` set); the child appends and commits in a loop, printing each
//! committed count, until the parent kills it with SIGKILL.

#[path = "arena_support/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patternbank::arena::{Arena, ArenaParams, Durability, OpenMode};

const CHILD: &str = "PBARENA_CRASH_CHILD";
const FULL_CHILD: &str = "PBARENA_FULL_CHILD";
const DURABILITY: &str = "PBARENA_CRASH_SYNC";

/// 16 records per chunk, so the child also dies during growth (fallocate + map).
fn params() -> ArenaParams {
    ArenaParams::new(24, "crash-model").chunk_records(16)
}

fn child(path: &str) -> ! {
    let d =
        if std::env::var(DURABILITY).as_deref() == Ok("1") { Durability::Sync } else { Durability::NoSync };
    let (a, _) = Arena::open_or_create(path, &params(), OpenMode::ReadWrite(d)).expect("child open");
    let mut w = a.into_parts().1.unwrap();
    let mut slot = w.committed();
    loop {
        for _ in 0..7 {
            common::append(&mut w, slot);
            slot += 1;
        }
        // An in-place update of a committed record, too.
        if slot > 20 {
            w.set_confidence(slot - 20, 0.75).unwrap();
        }
        let n = w.commit().expect("commit");
        println!("COMMITTED {n}");
        if slot > 50_000 {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[test]
fn kill9_during_appends() {
    if let Ok(path) = std::env::var(CHILD) {
        child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.arena");
    let mut floor = 0u64;
    for round in 0..6u64 {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kill9_during_appends", "--nocapture", "--test-threads=1"])
            .env(CHILD, &path)
            .env(DURABILITY, if round % 2 == 0 { "1" } else { "0" })
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        let (want, start) = (5 + 7 * round as usize, Instant::now());
        let mut seen = 0;
        let mut last = floor;
        while seen < want {
            let line = lines.next().expect("child ended early").unwrap();
            // libtest may put "test … … " before the first line.
            if let Some((_, n)) = line.split_once("COMMITTED ") {
                let n: u64 = n.parse().unwrap();
                assert!(n > last, "counts grow");
                last = n;
                seen += 1;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "child too slow");
        }
        c.kill().unwrap(); // SIGKILL, wherever the child is
        c.wait().unwrap();
        let (mut a, r) = Arena::open(&path, &params(), OpenMode::ReadWrite(Durability::Sync))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(r.committed >= last, "round {round}: committed {} < printed {last}", r.committed);
        common::check_all(&a.reader().view());
        // The reopened writer takes over cleanly.
        let w = a.writer().unwrap();
        common::append(w, r.committed);
        w.commit().unwrap();
        floor = r.committed + 1;
        eprintln!("round {round}: printed {last}, reopened with {}", r.committed);
    }
}

/// The child of `a_full_disk_is_an_error_not_a_signal`: a file-size limit stands in for a full
/// disk (`posix_fallocate` fails with EFBIG as it would with ENOSPC).
fn full_child(path: &str) -> ! {
    // SAFETY: plain libc calls in a single-threaded child, before any file work; the signal
    // would otherwise kill the process at the limit instead of failing the call.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit { rlim_cur: 4 * 65536, rlim_max: 4 * 65536 };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let (a, _) = Arena::open_or_create(path, &params(), OpenMode::ReadWrite(Durability::Sync)).unwrap();
    let mut w = a.into_parts().1.unwrap();
    let dim = params().dim as usize;
    let mut slot = 0;
    let err = loop {
        match w.append(&common::codes(slot, dim), &common::originals(slot, dim), &common::meta(slot)) {
            Ok(_) => slot += 1,
            Err(e) => break e,
        }
    };
    println!("FULL {slot} {:?} {err}", err.kind());
    println!("COMMITTED {}", w.commit().unwrap());
    std::process::exit(0);
}

#[test]
fn a_full_disk_is_an_error_not_a_signal() {
    if let Ok(path) = std::env::var(FULL_CHILD) {
        full_child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.arena");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_full_disk_is_an_error_not_a_signal", "--nocapture", "--test-threads=1"])
        .env(FULL_CHILD, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}\n{stdout}", out.status);
    // Header region + 3 chunks of 64 KiB fit the limit; the 4th chunk's reservation fails.
    let full = stdout.split_once("FULL ").map(|(_, rest)| rest.lines().next().unwrap_or("")).unwrap_or("");
    assert!(full.starts_with("48 Io "), "{stdout}");
    assert!(full.contains("reserving chunk 3"), "{full}");
    assert!(stdout.contains("COMMITTED 48"), "{stdout}");
    let (a, r) = Arena::open(&path, &params(), OpenMode::ReadOnly).unwrap();
    assert_eq!(r.committed, 48);
    common::check_all(&a.reader().view());
}
