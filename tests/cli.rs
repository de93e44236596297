//! The command-line tool: import/export round trip, get, check, stats, search, `bench --json`
//! and `bench --search --json` (W2).

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
        "--warmup-max",
        "0.6",
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
    // The resident memory's two parts add up to it (read a moment apart: within a tenth).
    let rss = |k: &str| v["w1"][k].as_f64().unwrap_or(0.0);
    let parts = rss("rss_anon_bytes") + rss("rss_file_bytes");
    assert!(rss("rss_anon_bytes") > 0.0 && rss("rss_file_bytes") > 0.0, "{}", v["w1"]);
    assert!((parts / rss("rss_bytes") - 1.0).abs() < 0.1, "{parts} vs {}", rss("rss_bytes"));
    let rounds = v["w1"]["warmup_rounds"].as_array().expect("warm-up rounds");
    assert!(
        !rounds.is_empty() && rounds.iter().all(|r| r["ops"].as_u64().is_some_and(|n| n > 0)),
        "{rounds:?}"
    );
    let warm = v["w1"]["warmup_seconds"].as_f64().unwrap();
    assert!((0.1..5.0).contains(&warm), "the warm-up stops by --warmup-max: {warm} s");
    assert_eq!(v["open"]["patterns"], 3000);
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(v["machine"]["cores"].as_u64(), Some(cores));
    assert!(v["machine"]["cpu_model"].as_str().is_some());
}

/// Writes `rows` as an NPY v1.0 file of little-endian f32 (`<f4`, C order).
fn write_npy(path: &std::path::Path, rows: &[Vec<f32>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {cols}), }}", rows.len());
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in rows.iter().flatten() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn search_finds_the_stored_embedding_first() {
    const DIM: usize = 16;
    let (dir, db) = common::temp_db();
    let vectors = patternbank::workload::synthetic_embeddings(40, DIM, 4, 7);
    let patterns: Vec<patternbank::Pattern> = vectors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let kind = if i % 2 == 0 { "coordination" } else { "learning" };
            patternbank::Pattern::new(format!("s-{i:03}"), kind, b"{}".to_vec()).with_embedding(e.clone())
        })
        .collect();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = patterns.iter().map(|p| serde_json::to_string(p).unwrap()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (code, _, err) = run(cli().args(["import", "--dim", &DIM.to_string(), "--db"]).arg(&db).arg(&input));
    assert_eq!(code, 0, "{err}");

    let hits = |out: &str| -> Vec<(String, f64)> {
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| (h["id"].as_str().unwrap().to_owned(), h["score"].as_f64().unwrap()))
            .collect()
    };

    // The query as JSON, in the flag form and the positional form.
    let query = serde_json::to_string(&vectors[7]).unwrap();
    let (code, out, err) =
        run(cli().args(["search", "--json", "-k", "5", "--query", &query, "--db"]).arg(&db));
    assert_eq!(code, 0, "{err}");
    let found = hits(&out);
    assert_eq!(found.len(), 5, "{out}");
    assert_eq!(found[0].0, "s-007", "{out}");
    assert!((found[0].1 - 1.0).abs() < 1e-3, "{out}");
    assert!(found.windows(2).all(|w| w[0].1 >= w[1].1), "best first: {out}");
    let (code, out, err) = run(cli().args(["search", "--json", "--db"]).arg(&db).arg(&query));
    assert_eq!(code, 0, "{err}");
    assert_eq!(hits(&out).len(), 10);
    assert_eq!(hits(&out)[0].0, "s-007");

    // The query from a row of an .npy file, with a kind filter, R = 0 and the blend.
    let npy = dir.path().join("q.npy");
    write_npy(&npy, &vectors[10..14]);
    let (code, out, err) = run(cli()
        .args(["search", "--json", "--row", "2", "--kind", "coordination", "--rerank", "0", "--blend"])
        .arg("--query-npy")
        .arg(&npy)
        .arg("--db")
        .arg(&db));
    assert_eq!(code, 0, "{err}");
    let found = hits(&out);
    assert_eq!(found[0].0, "s-012", "{out}");
    assert!(
        found.iter().all(|(id, _)| id[2..].parse::<usize>().unwrap() % 2 == 0),
        "only the kind asked for: {out}"
    );
    let (code, out, err) =
        run(cli().args(["search", "--row", "3", "--query-npy"]).arg(&npy).arg("--db").arg(&db));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("s-013"), "table output: {out}");
    let (code, out, _) =
        run(cli().args(["search", "--json", "--min-confidence", "0.9", "--query", &query, "--db"]).arg(&db));
    assert_eq!(code, 0);
    assert_eq!(hits(&out).len(), 0, "every pattern has confidence 0.5: {out}");

    // Clear errors: wrong dimension (JSON and .npy), a bad row, a missing file, no query.
    let (code, out, err) = run(cli().args(["search", "--query", "[0.5, 0.5, 0.5]", "--db"]).arg(&db));
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("wrong dimension") && err.contains("3") && err.contains("16-d"), "{err}");
    let narrow = dir.path().join("narrow.npy");
    write_npy(&narrow, &[vec![0.5; 5]]);
    let (code, _, err) = run(cli().arg("search").arg("--query-npy").arg(&narrow).arg("--db").arg(&db));
    assert_eq!(code, 2);
    assert!(err.contains("wrong dimension") && err.contains("5-d"), "{err}");
    let (code, _, err) =
        run(cli().args(["search", "--row", "4", "--query-npy"]).arg(&npy).arg("--db").arg(&db));
    assert_eq!(code, 2);
    assert!(err.contains("row 4 is out of range") && err.contains("4 row(s)"), "{err}");
    let (code, _, err) =
        run(cli().arg("search").arg("--query-npy").arg(dir.path().join("absent.npy")).arg("--db").arg(&db));
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = run(cli().args(["search", "--query", "not json", "--db"]).arg(&db));
    assert_eq!(code, 2);
    assert!(err.contains("not a JSON array"), "{err}");
    let (code, _, err) = run(cli().args(["search", "--db"]).arg(&db));
    assert_eq!(code, 2);
    assert!(err.contains("no query"), "{err}");
}

#[test]
fn bench_search_json_reports_w2() {
    let (code, out, err) = run(cli().args(["bench", "--search", "--json", "--synthetic", "2000"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let w2 = &v["w2"];
    assert!(w2["p50_us"].as_f64().is_some_and(|x| x > 0.0), "{w2}");
    assert!(w2["p99_us"].as_f64() >= w2["p50_us"].as_f64(), "{w2}");
    assert_eq!(w2["base"], 2000);
    assert_eq!(w2["stored"], 2000);
    assert_eq!(w2["queries"], 100);
    assert_eq!(w2["l3_hits"], 0, "every timed search ran the scan: {w2}");
    // N ≤ 100,000: exact ground truth by brute force, so recall is reported.
    assert!(w2["recall_at_10"].as_f64().is_some_and(|r| r > 0.8), "{w2}");
    assert!(w2["recall_at_10_rescored"].as_f64().is_some_and(|r| r >= 0.98), "{w2}");
    assert!(v.get("w1").is_none() && v.get("w3").is_none(), "--search alone runs only W2: {v}");
    assert!(err.contains("W2"), "progress on stderr: {err}");
}

#[test]
fn bench_codec_json_reports_the_codec_figures() {
    let (code, out, err) = run(cli().args(["bench", "--codec", "--json", "--codec-items", "600"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let c = &v["codec"];
    assert_eq!(c["items"], 600);
    assert_eq!(c["codec"], "lz4", "the default codec");
    for key in ["saved_ratio", "lz4_dict_saved_ratio", "trajectory_saved_ratio"] {
        assert!(c[key].as_f64().is_some_and(|r| r > 0.2 && r < 1.0), "{key}: {c}");
    }
    for key in ["lz4_encode_p50_ns", "lz4_decode_p50_ns"] {
        assert!(c[key].as_u64().is_some_and(|ns| ns > 0), "{key}: {c}");
    }
    // A dictionary helps: with one, the same data takes less.
    assert!(c["saved_ratio"].as_f64() > c["saved_ratio_without_dictionary"].as_f64(), "{c}");
    assert!(c["dedup_ten_copies_cost_ratio"].as_f64().is_some_and(|r| (1.0..=1.1).contains(&r)), "{c}");
    assert!(v.get("w1").is_none() && v.get("w2").is_none(), "--codec alone runs only the codec figures: {v}");
}

#[test]
fn stats_shows_what_the_data_takes_by_codec() {
    let (_dir, db) = common::temp_db();
    let store = patternbank::Config::new(&db).embedding_dim(8).dictionary_train_after(0).open().unwrap();
    for i in 0..40 {
        let data =
            format!("{{\"title\":\"item {i}\",\"content\":\"{}\"}}", "a fairly repetitive body ".repeat(8));
        store.put(patternbank::Pattern::new(format!("s{i}"), "memory", data)).unwrap();
    }
    store.close().unwrap();
    let (code, out, err) = run(cli().args(["stats", "--json", "--db"]).arg(&db));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &v["storage"];
    assert_eq!(s["payloads"], 40);
    assert!(s["saved_ratio"].as_f64().is_some_and(|r| r > 0.5), "{s}");
    assert_eq!(s["by_codec"][0]["codec"], "lz4", "{s}");
    let (code, out, _) = run(cli().args(["stats", "--db"]).arg(&db));
    assert_eq!(code, 0);
    assert!(out.contains("lz4") && out.contains("saved"), "{out}");
}
