//! The command-line tool: import/export round trip, get, check, stats, and `bench --json`.

mod common;

use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_patternbank"))
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run patternbank");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn import_export_get_check_stats_round_trip() {
    let (dir, db) = common::temp_db();
    let input = dir.path().join("in.jsonl");
    let patterns: Vec<patternbank::Pattern> = (0..50)
        .map(|i| common::pattern(&format!("cli-{i:03}"), 8).with_confidence(i as f64 / 50.0))
        .collect();
    let lines: Vec<String> = patterns.iter().map(|p| serde_json::to_string(p).unwrap()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let (code, _, err) = run(cli().args(["import", "--dim", "8", "--db"]).arg(&db).arg(&input));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 50 patterns"), "{err}");

    let (code, out, err) = run(cli().args(["export", "--db"]).arg(&db));
    assert_eq!(code, 0, "{err}");
    let exported: Vec<patternbank::Pattern> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(exported, patterns, "export gives back exactly what was imported, in order");

    let (code, out, _) = run(cli().args(["get", "--db"]).arg(&db).arg("cli-007"));
    assert_eq!(code, 0);
    let got: patternbank::Pattern = serde_json::from_str(&out).unwrap();
    assert_eq!(got, patterns[7]);
    let (code, _, err) = run(cli().args(["get", "--db"]).arg(&db).arg("nope"));
    assert_eq!(code, 1, "a missing id exits 1");
    assert!(err.contains("no pattern"), "{err}");

    let (code, out, _) = run(cli().args(["check", "--json", "--db"]).arg(&db));
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["integrity_ok"], true);
    assert_eq!(report["patterns"], 50);

    let (code, out, _) = run(cli().args(["stats", "--json", "--db"]).arg(&db));
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["patterns"], 50);
    assert!(stats["file_bytes"].as_u64().unwrap() > 0);

    // A bad line is reported with its number, and nothing after it is imported.
    std::fs::write(&input, format!("{}\n{{\"id\": 5}}\n", lines[0])).unwrap();
    let (code, _, err) = run(cli().args(["import", "--db"]).arg(&db).arg(&input));
    assert_eq!(code, 2);
    assert!(err.contains("line 2"), "{err}");

    // A file that is not a store gets a clear error, not a panic.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a database at all, not even close....").unwrap();
    let (code, _, err) = run(cli().args(["check", "--db"]).arg(&junk));
    assert_eq!(code, 2);
    assert!(err.contains("patternbank:"), "{err}");
}

#[test]
fn bench_json_reports_every_figure() {
    let (code, out, err) = run(cli().args([
        "bench",
        "--json",
        "--patterns",
        "3000",
        "--seconds",
        "0.3",
        "--warmup",
        "0.1",
        "--w3-puts",
        "1000",
        "--w3-outcomes",
        "20000",
    ]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for (workload, figure) in [
        ("w1", "ops_per_sec"),
        ("w1", "get_p99_ns"),
        ("w1", "record_outcome_p99_ns"),
        ("w1", "rss_bytes"),
        ("w3", "put_rows_per_sec"),
        ("w3", "put_ceiling_rows_per_sec"),
        ("w3", "outcomes_per_sec"),
    ] {
        assert!(
            v[workload][figure].as_f64().is_some_and(|x| x > 0.0),
            "{workload}.{figure}: {}",
            v[workload]
        );
    }
    assert_eq!(v["w3"]["puts_committed"], 1000, "every W3 put committed");
    assert_eq!(v["w3"]["outcomes_committed"], 20000, "every W3 outcome committed");
    assert_eq!(v["w1"]["failed_writes"], 0);
    assert_eq!(v["open"]["patterns"], 3000);
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(v["machine"]["cores"].as_u64(), Some(cores));
    assert!(v["machine"]["cpu_model"].as_str().is_some());
}
