//! `patternbank`: the library driven from the shell.
//!
//! `bench` runs the standard workloads of DESIGN.md (W1, W3) on an embedded default store;
//! `import`/`export` move patterns as JSON lines; `get`, `stats`, `check` inspect a store;
//! `hitratio` replays a recorded cache trace through the L1's policies and an exact LRU.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use patternbank::trace::{self, ExactLru, TraceFormat};
use patternbank::workload::{self, Rng, Zipf};
use patternbank::{Config, Outcome, Pattern, Store};
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "patternbank", version, about = "An embedded pattern store for agent loops")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the standard workloads (W1 agent-loop mix, W3 durable writes) and print figures.
    Bench(BenchArgs),
    /// Import patterns from JSON lines (one pattern per line, the public field names).
    Import {
        /// The store (created if absent).
        #[arg(long)]
        db: PathBuf,
        /// Input file; `-` for standard input.
        file: PathBuf,
        /// Embedding dimension of a new store.
        #[arg(long, default_value_t = 384)]
        dim: usize,
    },
    /// Export every pattern as JSON lines.
    Export {
        #[arg(long)]
        db: PathBuf,
        /// Output file; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print one pattern as JSON.
    Get {
        #[arg(long)]
        db: PathBuf,
        id: String,
    },
    /// Search by embedding (available once the arena lands).
    Search {
        #[arg(long)]
        db: PathBuf,
        /// The query as a JSON array of numbers.
        query: String,
        #[arg(short, default_value_t = 10)]
        k: usize,
    },
    /// Counts, file sizes and metrics of a store.
    Stats {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Replay a cache trace (shared/traces) through L1 policies and an exact LRU; print hit
    /// ratios in percent.
    Hitratio(HitratioArgs),
    /// `PRAGMA integrity_check` plus the store's own consistency checks; exit 1 on problems.
    Check {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Store to use; a fresh one in a temporary folder if absent.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Patterns in the dataset D(N) (DESIGN.md).
    #[arg(long, default_value_t = 100_000)]
    patterns: usize,
    /// Client threads for W1 and the W3 outcome producers.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Length of the timed W1 run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Untimed W1 run before the timed one, so the L1 reaches its steady state.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// W3 puts (new patterns, then one flush).
    #[arg(long, default_value_t = 100_000)]
    w3_puts: usize,
    /// W3 outcomes (Zipf(0.99) over the dataset, then one flush).
    #[arg(long, default_value_t = 1_000_000)]
    w3_outcomes: usize,
    /// Which workloads: w1, w3, or both (default).
    #[arg(long, value_delimiter = ',', default_value = "w1,w3")]
    only: Vec<String>,
    /// Seed of every generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct HitratioArgs {
    /// The trace file (`.gz`, `.zst`, `.xz` or uncompressed).
    #[arg(long)]
    trace: PathBuf,
    /// How the decompressed file encodes keys: lirs, arc, i32 or i64 (shared/traces/README.md).
    #[arg(long)]
    format: TraceFormat,
    /// Cache capacity in entries (every key weighs 1).
    #[arg(long)]
    capacity: usize,
    /// L1 policies to replay, comma-separated: lru, lfu, adaptive, clock.
    #[arg(long, value_delimiter = ',', default_value = "adaptive")]
    policy: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench(args),
        Command::Import { db, file, dim } => import(&db, &file, dim),
        Command::Export { db, out } => export(&db, out.as_deref()),
        Command::Get { db, id } => get(&db, &id),
        Command::Search { db, query, k } => search(&db, &query, k),
        Command::Stats { db, json } => stats(&db, json),
        Command::Check { db, json } => check(&db, json),
        Command::Hitratio(args) => hitratio(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("patternbank: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(2)
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

fn open_existing(db: &Path, read_only: bool) -> Result<Store, patternbank::Error> {
    Config::existing(db)?.read_only(read_only).open()
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {elapsed}/{eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

fn import(db: &Path, file: &Path, dim: usize) -> CliResult {
    let store =
        if db.exists() { open_existing(db, false)? } else { Config::new(db).embedding_dim(dim).open()? };
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(file)?))
    };
    let bar = ProgressBar::new_spinner();
    let mut n = 0u64;
    for (lineno, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let p: Pattern = serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", lineno + 1))?;
        store.put(p).map_err(|e| format!("line {}: {e}", lineno + 1))?;
        n += 1;
        if n.is_multiple_of(1000) {
            bar.set_message(format!("{n} patterns"));
        }
    }
    store.close()?;
    bar.finish_and_clear();
    eprintln!("imported {n} patterns into {}", db.display());
    Ok(ExitCode::SUCCESS)
}

fn export(db: &Path, out: Option<&Path>) -> CliResult {
    let store = open_existing(db, true)?;
    let mut w: Box<dyn Write> = match out {
        Some(p) => Box::new(BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut io_err = None;
    store.for_each_pattern(|p| {
        let line = serde_json::to_string(&p)
            .map_err(|e| patternbank::Error::new(patternbank::ErrorKind::Io, e.to_string()))?;
        if let Err(e) = writeln!(w, "{line}") {
            io_err = Some(e);
            return Err(patternbank::Error::new(patternbank::ErrorKind::Io, "write failed"));
        }
        Ok(())
    })?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    w.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn get(db: &Path, id: &str) -> CliResult {
    let store = open_existing(db, true)?;
    match store.get(id)? {
        Some(p) => {
            println!("{}", serde_json::to_string_pretty(&*p)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no pattern with id {id:?}");
            Ok(ExitCode::from(1))
        }
    }
}

fn search(db: &Path, query: &str, k: usize) -> CliResult {
    let store = open_existing(db, true)?;
    let q: Vec<f32> = serde_json::from_str(query)?;
    let hits = store.search(&q, k)?;
    println!("{}", serde_json::to_string_pretty(&hits)?);
    Ok(ExitCode::SUCCESS)
}

fn file_size(p: &Path, suffix: &str) -> u64 {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    std::fs::metadata(PathBuf::from(s)).map_or(0, |m| m.len())
}

fn stats(db: &Path, as_json: bool) -> CliResult {
    let store = open_existing(db, true)?;
    let count = store.count()?;
    let cfg = store.config();
    let out = json!({
        "db": db.display().to_string(),
        "patterns": count,
        "embedding_model": cfg_model(cfg),
        "file_bytes": file_size(db, ""),
        "wal_bytes": file_size(db, "-wal"),
        "metrics": store.metrics(),
    });
    if as_json {
        println!("{out}");
    } else {
        println!(
            "{}: {count} patterns, {} bytes (+{} WAL)",
            db.display(),
            file_size(db, ""),
            file_size(db, "-wal")
        );
        println!("embedding model {}", cfg_model(cfg));
        print!("{}", store.report());
    }
    Ok(ExitCode::SUCCESS)
}

fn cfg_model(cfg: &Config) -> String {
    format!("{} ({}-d)", cfg.model(), cfg.dim())
}

fn check(db: &Path, as_json: bool) -> CliResult {
    let store = open_existing(db, true)?;
    let report = store.check()?;
    if as_json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: integrity {}; {} patterns; {}",
            db.display(),
            if report.integrity_ok { "ok" } else { "FAILED" },
            report.patterns,
            if report.problems.is_empty() {
                "no problems".to_owned()
            } else {
                format!("{} problem(s)", report.problems.len())
            }
        );
        for p in &report.problems {
            println!("  {p}");
        }
    }
    Ok(if report.problems.is_empty() && report.integrity_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

// ---------------------------------------------------------------------------------------
// hitratio

fn hitratio(args: HitratioArgs) -> CliResult {
    let mut policies = Vec::new();
    for name in &args.policy {
        let name = name.trim().to_ascii_lowercase();
        let policy = trace::parse_policy(&name).ok_or_else(|| {
            let known: Vec<&str> =
                trace::POLICY_NAMES.iter().copied().filter(|n| trace::parse_policy(n).is_some()).collect();
            format!("unknown or unavailable policy {name:?} (this build has: {})", known.join(", "))
        })?;
        if !policies.iter().any(|(n, _)| *n == name) {
            policies.push((name, policy));
        }
    }
    let quiet = args.json && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let started = Instant::now();
    let keys = trace::read_trace(&args.trace, args.format)?;
    let read_s = started.elapsed().as_secs_f64();
    let requests = keys.len() as u64;
    let long = keys.len() >= 1 << 20 && !quiet;

    let mut ratios = serde_json::Map::new();
    let mut rows: Vec<(String, f64, usize, f64)> = Vec::new();
    let mut max_len = 0usize;
    for (name, policy) in &policies {
        let bar = if long { progress(requests, name) } else { ProgressBar::hidden() };
        let started = Instant::now();
        let r = trace::replay(&keys, args.capacity, *policy, |n| bar.set_position(n))?;
        bar.finish_and_clear();
        max_len = max_len.max(r.max_len);
        ratios.insert(name.clone(), json!(r.hit_percent()));
        rows.push((name.clone(), r.hit_percent(), r.max_len, started.elapsed().as_secs_f64()));
    }
    let bar = if long { progress(requests, "lru_exact") } else { ProgressBar::hidden() };
    let started = Instant::now();
    let mut lru = ExactLru::new(args.capacity);
    let mut lru_max = 0;
    for (i, &k) in keys.iter().enumerate() {
        if !lru.access(k) {
            lru_max = lru_max.max(lru.len());
        }
        if i.is_multiple_of(1 << 16) {
            bar.set_position(i as u64);
        }
    }
    bar.finish_and_clear();
    ratios.insert("lru_exact".into(), json!(lru.hit_percent()));
    rows.push(("lru_exact".into(), lru.hit_percent(), lru_max, started.elapsed().as_secs_f64()));
    max_len = max_len.max(lru_max);

    if args.json {
        let out = json!({
            "trace": args.trace.display().to_string(),
            "format": args.format.name(),
            "requests": requests,
            "capacity": args.capacity,
            "max_len": max_len,
            "hit_ratio": ratios,
        });
        println!("{out}");
    } else {
        println!(
            "{} ({}): {requests} requests, capacity {} (read in {read_s:.2} s)",
            args.trace.display(),
            args.format,
            args.capacity
        );
        println!("{:<12} {:>8} {:>9} {:>8}", "policy", "hit %", "max_len", "time s");
        for (name, hit, len, secs) in rows {
            println!("{name:<12} {hit:>8.2} {len:>9} {secs:>8.2}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// bench

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn summary(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_ns": h.value_at_quantile(0.50),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "max_ns": h.max(),
    })
}

/// Puts `data` into a new store at `path`, then flushes, with progress; returns the time
/// from the first put to the end of the flush and the rows committed.
fn put_all(
    path: &Path,
    data: &[Pattern],
    what: &str,
    quiet: bool,
) -> Result<(Duration, u64), patternbank::Error> {
    let store = Config::new(path).open()?;
    let bar = if quiet { ProgressBar::hidden() } else { progress(data.len() as u64, what) };
    let started = Instant::now();
    for (i, p) in data.iter().enumerate() {
        store.put(p.clone())?;
        if i.is_multiple_of(4096) {
            bar.set_position(i as u64);
        }
    }
    store.flush()?;
    let took = started.elapsed();
    bar.finish_and_clear();
    let committed = store.count()?;
    store.close()?;
    Ok((took, committed))
}

fn bench(args: BenchArgs) -> CliResult {
    let tmp = tempfile::tempdir()?;
    let db = args.db.clone().unwrap_or_else(|| tmp.path().join("bench.db"));
    let quiet = args.json && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let want = |w: &str| args.only.iter().any(|o| o == w);
    let mut out = serde_json::Map::new();
    out.insert("machine".into(), machine());
    out.insert("patterns".into(), json!(args.patterns));
    out.insert("threads".into(), json!(args.threads));
    out.insert("seed".into(), json!(args.seed));
    let shared = workload::shared_dir();
    out.insert(
        "dataset".into(),
        json!({
            "texts": if shared.is_some() { "shared/data/corpus.jsonl" } else { "synthetic (shared/ not found)" },
            "embeddings": match (&shared, args.patterns <= 20_000) {
                (Some(_), true) => "shared/data/embeddings/base.npy",
                _ => "synthetic: 256 Gaussian clusters, normalised, seeded",
            },
        }),
    );

    eprintln!("generating D({}) (seed {}) …", args.patterns, args.seed);
    let data = Arc::new(workload::dataset(args.patterns, args.seed)?);
    let ids: Arc<Vec<String>> = Arc::new(data.iter().map(|p| p.id.clone()).collect());
    if !db.exists() {
        let (took, _) = put_all(&db, &data, "loading D(N)", quiet)?;
        out.insert("load".into(), json!({ "rows_per_sec": data.len() as f64 / took.as_secs_f64() }));
    }
    // Open time of an existing store of N patterns (the W1 store, cold L1).
    let started = Instant::now();
    let store = Arc::new(Config::new(&db).open()?);
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    out.insert("open".into(), json!({ "existing_ms": open_ms, "patterns": store.count()? }));

    if want("w1") {
        out.insert("w1".into(), w1(&store, &data, &ids, &args, quiet)?);
    }
    let mut store = store;
    if want("w3") {
        let mut w3 = w3_puts(&args, tmp.path(), quiet)?;
        // Outcomes on the store as W1 left it (L1 warm: the writer also updates every cached
        // copy of a pattern it changes), then on the same file freshly reopened (L1 cold,
        // as at open: the write path alone).
        let warm = w3_outcomes(&store, &ids, &args)?;
        Arc::into_inner(store).ok_or("store still shared")?.close()?;
        store = Arc::new(Config::new(&db).open()?);
        let cold = w3_outcomes(&store, &ids, &args)?;
        if let Value::Object(w3) = &mut w3 {
            w3.insert("outcomes".into(), cold["outcomes"].clone());
            w3.insert("outcomes_committed".into(), cold["outcomes_committed"].clone());
            w3.insert("outcomes_per_sec".into(), cold["outcomes_per_sec"].clone());
            w3.insert("outcomes_per_sec_warm_l1".into(), warm["outcomes_per_sec"].clone());
            w3.insert("outcomes_cold_l1".into(), cold);
            w3.insert("outcomes_warm_l1".into(), warm);
        }
        out.insert("w3".into(), w3);
    }
    let store = Arc::into_inner(store).ok_or("store still shared")?;
    store.close()?;

    let out = Value::Object(out);
    if args.json {
        println!("{out}");
    } else {
        print_table(&out);
    }
    Ok(ExitCode::SUCCESS)
}

type MixResult = Result<(u64, [Histogram<u64>; 3]), patternbank::Error>;

/// Runs the W1 mix on `threads` threads for `duration`; returns operations and per-kind
/// latency histograms (get, record_outcome, put).
fn run_mix(
    store: &Arc<Store>,
    data: &Arc<Vec<Pattern>>,
    ids: &Arc<Vec<String>>,
    threads: usize,
    seed: u64,
    duration: Duration,
    bar: &ProgressBar,
) -> MixResult {
    let zipf = Zipf::new(ids.len(), 0.99);
    let started = Instant::now();
    let deadline = started + duration;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, data, ids, zipf) = (&**store, &**data, &**ids, &zipf);
                let seed = seed.wrapping_add(t as u64 * 7919);
                scope.spawn(move || -> MixResult {
                    let mut rng = Rng::new(seed);
                    let mut h = [hist(), hist(), hist()];
                    let mut ops = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..256 {
                            let r = zipf.sample(&mut rng);
                            let dice = rng.below(100);
                            let t0 = Instant::now();
                            let kind = if dice < 90 {
                                std::hint::black_box(store.get(&ids[r])?);
                                0
                            } else if dice < 98 {
                                let o = if rng.below(4) == 0 { Outcome::Failure } else { Outcome::Success };
                                store.record_outcome(&ids[r], o)?;
                                1
                            } else {
                                let mut p = data[r].clone();
                                p.confidence = rng.next_f64();
                                store.put(p)?;
                                2
                            };
                            let _ = h[kind].record(t0.elapsed().as_nanos() as u64);
                            ops += 1;
                        }
                    }
                    Ok((ops, h))
                })
            })
            .collect();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            bar.set_position(started.elapsed().as_millis() as u64);
        }
        let mut ops = 0;
        let mut h = [hist(), hist(), hist()];
        for handle in handles {
            let (n, hs) = handle.join().map_err(|_| {
                patternbank::Error::new(patternbank::ErrorKind::Closed, "W1 client thread panicked")
            })??;
            ops += n;
            for (a, b) in h.iter_mut().zip(hs.iter()) {
                a.add(b).map_err(|e| {
                    patternbank::Error::new(patternbank::ErrorKind::InvalidInput, e.to_string())
                })?;
            }
        }
        Ok((ops, h))
    })
}

fn w1(
    store: &Arc<Store>,
    data: &Arc<Vec<Pattern>>,
    ids: &Arc<Vec<String>>,
    args: &BenchArgs,
    quiet: bool,
) -> Result<Value, Box<dyn std::error::Error>> {
    let bar_for = |secs: f64, what: &str| {
        if quiet {
            ProgressBar::hidden()
        } else {
            progress((secs * 1000.0) as u64, what)
        }
    };
    if args.warmup > 0.0 {
        let bar = bar_for(args.warmup, "W1 warm-up (ms)");
        run_mix(
            store,
            data,
            ids,
            args.threads,
            args.seed ^ 0x5EED,
            Duration::from_secs_f64(args.warmup),
            &bar,
        )?;
        store.flush()?;
        bar.finish_and_clear();
    }
    let before = store.metrics();
    let bar = bar_for(args.seconds, "W1 agent-loop mix (ms)");
    let started = Instant::now();
    let (ops, h) =
        run_mix(store, data, ids, args.threads, args.seed, Duration::from_secs_f64(args.seconds), &bar)?;
    let flush_started = Instant::now();
    store.flush()?;
    let flush_ms = flush_started.elapsed().as_secs_f64() * 1e3;
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let m = store.metrics();
    let hits = |f: fn(&patternbank::Metrics) -> u64| f(&m) - f(&before);
    let l1 = hits(|m| m.get_hits.l1);
    let answered =
        (l1 + hits(|m| m.get_hits.pending) + hits(|m| m.get_hits.sqlite) + hits(|m| m.get_hits.not_found))
            .max(1) as f64;
    Ok(json!({
        "ops": ops,
        "seconds": elapsed,
        "warmup_seconds": args.warmup,
        "ops_per_sec": ops as f64 / elapsed,
        "final_flush_ms": flush_ms,
        "get_p50_ns": h[0].value_at_quantile(0.5),
        "get_p99_ns": h[0].value_at_quantile(0.99),
        "get_p999_ns": h[0].value_at_quantile(0.999),
        "record_outcome_p50_ns": h[1].value_at_quantile(0.5),
        "record_outcome_p99_ns": h[1].value_at_quantile(0.99),
        "record_outcome_p999_ns": h[1].value_at_quantile(0.999),
        "put_p50_ns": h[2].value_at_quantile(0.5),
        "put_p99_ns": h[2].value_at_quantile(0.99),
        "put_p999_ns": h[2].value_at_quantile(0.999),
        "get": summary(&h[0]),
        "record_outcome": summary(&h[1]),
        "put": summary(&h[2]),
        "l1_hit_ratio": l1 as f64 / answered,
        "failed_writes": m.writer.failed_writes,
        "rss_bytes": m.rss_bytes,
    }))
}

fn w3_puts(args: &BenchArgs, tmp: &Path, quiet: bool) -> Result<Value, Box<dyn std::error::Error>> {
    // Puts: N new patterns into a fresh store, then flush; the ceiling loop on the same
    // schema into another fresh store, in the same run.
    let fresh = workload::dataset(args.w3_puts, args.seed ^ 0xF00D)?;
    let (put_time, committed) = put_all(&tmp.join("w3-put.db"), &fresh, "W3 puts", quiet)?;
    let put_secs = put_time.as_secs_f64();
    let ceiling_db = tmp.join("w3-ceiling.db");
    let ceiling = patternbank::__bench::raw_put_loop(&Config::new(&ceiling_db), &fresh, 1000)?;
    let put_rate = committed as f64 / put_secs;
    let ceiling_rate = fresh.len() as f64 / ceiling.as_secs_f64();

    Ok(json!({
        "puts": fresh.len(),
        "puts_committed": committed,
        "put_rows_per_sec": put_rate,
        "put_ceiling_rows_per_sec": ceiling_rate,
        "put_ratio_to_ceiling": put_rate / ceiling_rate,
    }))
}

/// W3 outcomes: Zipf(0.99) over the store's ids from `threads` producers, then one flush.
fn w3_outcomes(store: &Store, ids: &[String], args: &BenchArgs) -> Result<Value, Box<dyn std::error::Error>> {
    let per_thread = args.w3_outcomes / args.threads.max(1);
    let zipf = Zipf::new(ids.len(), 0.99);
    let before = store.metrics().writer;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<(), patternbank::Error> {
        let handles: Vec<_> = (0..args.threads.max(1))
            .map(|t| {
                let zipf = &zipf;
                let seed = args.seed ^ (0xABCD + t as u64);
                scope.spawn(move || -> Result<(), patternbank::Error> {
                    let mut rng = Rng::new(seed);
                    for _ in 0..per_thread {
                        let o = if rng.below(4) == 0 { Outcome::Failure } else { Outcome::Success };
                        store.record_outcome(&ids[zipf.sample(&mut rng)], o)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| {
                patternbank::Error::new(patternbank::ErrorKind::Closed, "W3 producer panicked")
            })??;
        }
        Ok(())
    })?;
    store.flush()?;
    let secs = started.elapsed().as_secs_f64();
    let after = store.metrics().writer;
    let committed = after.committed_outcomes - before.committed_outcomes;
    let batches = (after.batches - before.batches).max(1);
    Ok(json!({
        "outcomes": per_thread * args.threads.max(1),
        "outcomes_committed": committed,
        "outcomes_per_sec": committed as f64 / secs,
        "transactions": after.batches - before.batches,
        "mean_ops_per_transaction": (committed as f64) / batches as f64,
        "coalesced_updates": after.coalesced_updates - before.coalesced_updates,
    }))
}

fn print_table(v: &Value) {
    let m = &v["machine"];
    println!("machine: {} cores, {}", m["cores"], m["cpu_model"].as_str().unwrap_or("?"));
    println!("dataset: D({}), seed {}, {} threads", v["patterns"], v["seed"], v["threads"]);
    println!("  texts: {}; embeddings: {}", v["dataset"]["texts"], v["dataset"]["embeddings"]);
    println!("open existing store: {:.1} ms", v["open"]["existing_ms"].as_f64().unwrap_or(0.0));
    if let Some(w1) = v.get("w1") {
        println!(
            "W1 agent-loop mix: {:.0} ops/s over {:.2} s after {} s warm-up (final flush {:.1} ms, inside the timed region)",
            w1["ops_per_sec"].as_f64().unwrap_or(0.0),
            w1["seconds"].as_f64().unwrap_or(0.0),
            w1["warmup_seconds"],
            w1["final_flush_ms"].as_f64().unwrap_or(0.0)
        );
        for op in ["get", "record_outcome", "put"] {
            let s = &w1[op];
            println!(
                "  {op:<15} n={:<9} p50 {:>7} ns  p99 {:>8} ns  p99.9 {:>9} ns",
                s["count"], s["p50_ns"], s["p99_ns"], s["p999_ns"]
            );
        }
        println!(
            "  L1 hit ratio {:.3}; resident memory {:.1} MiB",
            w1["l1_hit_ratio"].as_f64().unwrap_or(0.0),
            w1["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
        );
    }
    if let Some(w3) = v.get("w3") {
        println!(
            "W3 puts: {:.0} rows/s committed; raw-FFI ceiling {:.0} rows/s (ratio {:.2})",
            w3["put_rows_per_sec"].as_f64().unwrap_or(0.0),
            w3["put_ceiling_rows_per_sec"].as_f64().unwrap_or(0.0),
            w3["put_ratio_to_ceiling"].as_f64().unwrap_or(0.0)
        );
        println!(
            "W3 outcomes: {:.0} outcomes/s submitted and committed (store just opened); {:.0}/s on the W1 store with a warm L1",
            w3["outcomes_per_sec"].as_f64().unwrap_or(0.0),
            w3["outcomes_per_sec_warm_l1"].as_f64().unwrap_or(0.0)
        );
    }
}
