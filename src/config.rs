//! [`Config`]: every knob of a store, validated once at `open`, each default with its reason.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::Store;

/// How hard SQLite works to make a commit survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous = NORMAL` in WAL mode (the default): a committed transaction survives a
    /// crash of the process (`kill -9`, panic, OOM kill). The last transactions before an
    /// operating-system crash or power loss may roll back; the database stays consistent.
    Normal,
    /// `synchronous = FULL`: the WAL is fsynced at every commit, so a committed transaction
    /// also survives power loss, at the cost of one fsync per batch.
    Full,
}

/// Configuration of a [`Store`]. Build with [`Config::new`], adjust, then [`Config::open`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) path: PathBuf,
    pub(crate) embedding_dim: usize,
    pub(crate) embedding_model: String,
    pub(crate) learning_rate: f64,
    pub(crate) l1_capacity_bytes: usize,
    pub(crate) l1_capacity_entries: usize,
    pub(crate) l1_warm: usize,
    pub(crate) l1_policy: crate::cache::Policy,
    pub(crate) batch_patterns: usize,
    pub(crate) batch_outcomes: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) max_txn_ops: usize,
    pub(crate) put_queue_capacity: usize,
    pub(crate) outcome_queue_capacity: usize,
    pub(crate) enqueue_timeout: Duration,
    pub(crate) synchronous: Synchronous,
    pub(crate) page_size: u32,
    pub(crate) busy_timeout: Duration,
    pub(crate) wal_autocheckpoint_pages: u32,
    pub(crate) cache_size_kib: u32,
    pub(crate) reader_cache_size_kib: u32,
    pub(crate) mmap_size_bytes: u64,
    pub(crate) reader_pool_size: usize,
    pub(crate) slow_query_threshold: Duration,
    pub(crate) max_id_len: usize,
    pub(crate) max_kind_len: usize,
    pub(crate) max_data_bytes: usize,
    pub(crate) read_only: bool,
    pub(crate) idle_vacuum_pages: u32,
    pub(crate) arena_sync: bool,
    pub(crate) codec: crate::codec::Codec,
    pub(crate) codec_min_saving: usize,
    pub(crate) zlib_level: u32,
    pub(crate) dictionary_train_after: usize,
    pub(crate) dictionary_drift: f64,
}

impl Config {
    /// The embedded defaults for a database at `path` (created if absent).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            // all-MiniLM-L6-v2, the model agent memories use most (shared/data/README.md).
            embedding_dim: 384,
            embedding_model: "all-MiniLM-L6-v2".to_owned(),
            // DESIGN.md, Confidence: the seed system's rate.
            learning_rate: 0.1,
            // 256 MiB of decoded patterns: about 100,000 patterns of the standard dataset
            // (≈ 2.5 KiB each, a 1.5 KiB embedding included), the whole of W1's working set;
            // 64 MiB would hold ≈ 25,000, the hot part of a Zipf(0.99) set of 100,000
            // (≈ 88 % of gets).
            l1_capacity_bytes: 256 << 20,
            // No separate entry bound: bytes are what a user budgets.
            l1_capacity_entries: usize::MAX,
            // Off: open stays a constant-time affair unless the user asks for warming.
            l1_warm: 0,
            // W-TinyLFU with ghost feedback: its reads cost what CLOCK's do (a reference
            // bit, and a sketch increment the first time an entry is read after a sweep).
            l1_policy: crate::cache::Policy::Adaptive,
            // The defaults: large enough to amortise a commit (≈ 30 µs in WAL
            // NORMAL) to well under a microsecond per row, small enough to commit often.
            batch_patterns: 1000,
            batch_outcomes: 500,
            // The longest a lone write waits for company before it is committed.
            batch_interval: Duration::from_millis(50),
            // Under a backlog one transaction takes up to this many queued operations, so
            // outcomes coalesce further and the commit cost is shared by more rows.
            max_txn_ops: 131_072,
            // Rings sized to absorb a batch interval of bursts without blocking callers:
            // 8,192 puts (≈ 20 MiB of patterns in flight at most) and 262,144 outcomes
            // (16 MiB, 64 bytes a slot, resident once the ring has cycled: under W3's
            // outcome flood a smaller ring blocked callers); both rounded up to a power of two.
            put_queue_capacity: 8192,
            outcome_queue_capacity: 262_144,
            // A caller blocked on a full ring gives up after this and gets `QueueFull`.
            enqueue_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            // The OS page size: rows of ≈ 2.5 KiB fit one page plus a little overflow.
            page_size: 4096,
            // Readers in other processes may hold the WAL briefly during a checkpoint.
            busy_timeout: Duration::from_secs(5),
            // Checkpoint every ≈ 160 MiB of WAL instead of SQLite's 4 MiB. A checkpoint
            // copies each page once however often the WAL rewrote it, so under Zipf-skewed
            // writes fewer checkpoints write far less: W1 on 2 cores ran 15–20 % faster than
            // with 10,000 pages (measured, alternating). The cost: the WAL file grows to
            // ≈ 160 MiB under sustained writes (truncated on close), and reopening after a
            // crash with a full WAL took 0.20–0.26 s here against ≈ 0.01 s.
            wal_autocheckpoint_pages: 40_000,
            // 16 MiB of page cache for the writer (SQLite allocates it only as used): the
            // pages it rewrites batch after batch stay in memory.
            cache_size_kib: 16 << 10,
            // 2 MiB per read connection of a writable store: SQLite empties a reader's cache
            // at its first read after another connection commits, which the writer does every
            // batch, so more only holds memory (W1: the same throughput, ≈ 30 MB less
            // resident than 16 MiB each). Enough for the B-tree pages of one lookup.
            reader_cache_size_kib: 2 << 10,
            // Off. Mapping the file spares a copy per page read, but W1 with a 64 MiB L1 (every
            // eighth `get` a SQLite read) was no faster with 1 GiB mapped (0.34 against 0.35 M
            // operations/s) and held 1,013 MB resident against 685 MB: the mapped pages count.
            mmap_size_bytes: 0,
            reader_pool_size: std::thread::available_parallelism().map_or(2, |n| n.get()),
            slow_query_threshold: Duration::from_millis(10),
            max_id_len: 256,
            max_kind_len: 64,
            // 1 MiB: a memory item is 0.3–1.5 KiB; anything near this is a mistake.
            max_data_bytes: 1 << 20,
            read_only: false,
            // Pages returned to the file system each time the writer goes idle.
            idle_vacuum_pages: 256,
            arena_sync: true,
            // Measured on D(20,000) (src/codec module docs): LZ4 with the trained dictionary
            // saves over 60 % at a tenth of DEFLATE's encode time and a fifth of its decode.
            codec: crate::codec::DEFAULT_CODEC,
            codec_min_saving: crate::codec::DEFAULT_MIN_SAVING,
            zlib_level: crate::codec::DEFAULT_ZLIB_LEVEL,
            // Enough payloads to train a useful dictionary on (2,000 samples: ≈ 0.2 s of
            // training off the hot path); later retrains sample up to 5,000.
            dictionary_train_after: 2_000,
            // Retrain when the last 1,000 values save 10 points less than the dictionary did
            // on its own sample.
            dictionary_drift: 0.10,
        }
    }

    /// The defaults, with the embedding model and dimension read from the existing store at
    /// `path` (for tools that open whatever store they are given).
    pub fn existing(path: impl AsRef<Path>) -> Result<Self> {
        let (model, dim) = crate::sqlite::schema::peek_meta(path.as_ref())?;
        Ok(Self::new(path).embedding_model(model).embedding_dim(dim))
    }

    /// Dimension of every embedding (default 384).
    pub fn embedding_dim(mut self, dim: usize) -> Self {
        self.embedding_dim = dim;
        self
    }

    /// Name of the embedding model (default `all-MiniLM-L6-v2`); recorded in the file and
    /// checked at every open and every `put` that names a model.
    pub fn embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = model.into();
        self
    }

    /// Learning rate η of the confidence average, in (0, 1] (default 0.1).
    pub fn learning_rate(mut self, eta: f64) -> Self {
        self.learning_rate = eta;
        self
    }

    /// Capacity of the L1 cache in bytes of decoded patterns (default 256 MiB).
    pub fn l1_capacity_bytes(mut self, bytes: usize) -> Self {
        self.l1_capacity_bytes = bytes;
        self
    }

    /// Capacity of the L1 cache in entries, on top of the byte bound (default: unbounded).
    pub fn l1_capacity_entries(mut self, entries: usize) -> Self {
        self.l1_capacity_entries = entries;
        self
    }

    /// Warm the L1 at open with up to this many patterns, the most confident first (ties:
    /// the most used, then the most recently used), as far as the L1's capacity allows
    /// (default 0: no warming, so open does not read the patterns). Costs one scan of the
    /// stats table and one read per pattern; a writable store only.
    pub fn l1_warm(mut self, patterns: usize) -> Self {
        self.l1_warm = patterns;
        self
    }

    /// Eviction policy of the L1 (default [`Policy::Adaptive`](crate::cache::Policy)).
    pub fn l1_policy(mut self, policy: crate::cache::Policy) -> Self {
        self.l1_policy = policy;
        self
    }

    /// Queued puts that wake the writer for a commit (default 1000).
    pub fn batch_patterns(mut self, n: usize) -> Self {
        self.batch_patterns = n;
        self
    }

    /// Queued outcomes that wake the writer for a commit (default 500).
    pub fn batch_outcomes(mut self, n: usize) -> Self {
        self.batch_outcomes = n;
        self
    }

    /// The longest a write waits before it is committed without a flush (default 50 ms).
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.batch_interval = interval;
        self
    }

    /// Most operations one transaction takes under a backlog (default 32,768).
    pub fn max_txn_ops(mut self, n: usize) -> Self {
        self.max_txn_ops = n;
        self
    }

    /// Capacity of the put ring, rounded up to a power of two (default 8192).
    pub fn put_queue_capacity(mut self, n: usize) -> Self {
        self.put_queue_capacity = n;
        self
    }

    /// Capacity of the outcome ring, rounded up to a power of two (default 65,536).
    pub fn outcome_queue_capacity(mut self, n: usize) -> Self {
        self.outcome_queue_capacity = n;
        self
    }

    /// How long `put` and `record_outcome` block on a full ring before `QueueFull`
    /// (default 5 s).
    pub fn enqueue_timeout(mut self, timeout: Duration) -> Self {
        self.enqueue_timeout = timeout;
        self
    }

    /// Commit durability (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, mode: Synchronous) -> Self {
        self.synchronous = mode;
        self
    }

    /// Page size of a new file (default 4096; a power of two in 512..=65536).
    pub fn page_size(mut self, bytes: u32) -> Self {
        self.page_size = bytes;
        self
    }

    /// SQLite busy timeout (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// WAL pages between automatic checkpoints (default 40,000, ≈ 160 MiB of 4 KiB pages;
    /// smaller means a smaller WAL file and a faster reopen after a crash, and more writing
    /// under sustained updates).
    pub fn wal_autocheckpoint_pages(mut self, pages: u32) -> Self {
        self.wal_autocheckpoint_pages = pages;
        self
    }

    /// SQLite page cache of the writer connection, and of each reader of a read-only store,
    /// in KiB (default 16 MiB).
    pub fn cache_size_kib(mut self, kib: u32) -> Self {
        self.cache_size_kib = kib;
        self
    }

    /// SQLite page cache of each read connection of a writable store, in KiB (default 2 MiB).
    /// SQLite empties a reader's cache whenever another connection has committed since its
    /// last read, and the writer commits every batch; the L1 is the cache of hot patterns.
    pub fn reader_cache_size_kib(mut self, kib: u32) -> Self {
        self.reader_cache_size_kib = kib;
        self
    }

    /// SQLite `mmap_size` in bytes (default 0: memory-mapped reads off; the pages a mapping
    /// reads count as the process's resident memory).
    pub fn mmap_size_bytes(mut self, bytes: u64) -> Self {
        self.mmap_size_bytes = bytes;
        self
    }

    /// Read-only connections serving misses (default: the number of cores).
    pub fn reader_pool_size(mut self, n: usize) -> Self {
        self.reader_pool_size = n;
        self
    }

    /// Statements slower than this are counted and kept for the report (default 10 ms).
    pub fn slow_query_threshold(mut self, threshold: Duration) -> Self {
        self.slow_query_threshold = threshold;
        self
    }

    /// Longest id in bytes (default 256).
    pub fn max_id_len(mut self, bytes: usize) -> Self {
        self.max_id_len = bytes;
        self
    }

    /// Largest `data` in bytes (default 1 MiB).
    pub fn max_data_bytes(mut self, bytes: usize) -> Self {
        self.max_data_bytes = bytes;
        self
    }

    /// Whether the L2 arena is synced to disk (two `fdatasync`s, at most once a second and
    /// when the writer goes idle or closes). Default true. Off, a power loss can leave an
    /// arena whose records were never written; a process crash loses nothing either way (the
    /// arena catches up from SQLite at the next open).
    pub fn arena_sync(mut self, sync: bool) -> Self {
        self.arena_sync = sync;
        self
    }

    /// How new `data` values are compressed (default [`Codec::Lz4`](crate::codec::Codec)):
    /// every stored value names its codec and dictionary, so changing this never makes old
    /// rows unreadable. A value is stored raw when compressing saves too little
    /// ([`Config::codec_min_saving`]).
    pub fn codec(mut self, codec: crate::codec::Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Store a value raw unless compression saves at least this many bytes (default 16).
    pub fn codec_min_saving(mut self, bytes: usize) -> Self {
        self.codec_min_saving = bytes;
        self
    }

    /// DEFLATE level for [`Codec::Zlib`](crate::codec::Codec), 0–9 (default 9).
    pub fn zlib_level(mut self, level: u32) -> Self {
        self.zlib_level = level;
        self
    }

    /// Train the first compression dictionary, in a background thread, once this many
    /// payloads have been written without one (default 2,000; 0: only
    /// [`Store::train_dictionary`](crate::Store::train_dictionary) trains).
    pub fn dictionary_train_after(mut self, payloads: usize) -> Self {
        self.dictionary_train_after = payloads;
        self
    }

    /// Retrain in the background when the last 1,000 values compressed with the current
    /// dictionary save this fraction less than it saved on its training sample (default 0.10,
    /// ten points; 0 turns drift retraining off). Old rows keep their dictionary.
    pub fn dictionary_drift(mut self, fraction: f64) -> Self {
        self.dictionary_drift = fraction;
        self
    }

    /// Opens without the write lock: reads work beside a writer in another process;
    /// writes return `ReadOnly`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Pages released by `PRAGMA incremental_vacuum` whenever the writer goes idle
    /// (default 256; 0 turns it off).
    pub fn idle_vacuum_pages(mut self, pages: u32) -> Self {
        self.idle_vacuum_pages = pages;
        self
    }

    /// The embedding model name.
    pub fn model(&self) -> &str {
        &self.embedding_model
    }

    /// The embedding dimension.
    pub fn dim(&self) -> usize {
        self.embedding_dim
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (or creates) the store.
    pub fn open(self) -> Result<Store> {
        self.validate()?;
        Store::open_with(self)
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::invalid(format!("config: {what}")));
        if self.embedding_dim == 0 || self.embedding_dim > 65_536 {
            return bad("embedding_dim must be in 1..=65536");
        }
        if self.embedding_model.is_empty() || self.embedding_model.len() > 256 {
            return bad("embedding_model must be 1 to 256 bytes");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate must lie in (0, 1]");
        }
        if self.batch_patterns == 0 || self.batch_outcomes == 0 || self.max_txn_ops == 0 {
            return bad("batch sizes and max_txn_ops must be positive");
        }
        if self.batch_interval.is_zero() {
            return bad("batch_interval must be positive");
        }
        for (name, cap) in [
            ("put_queue_capacity", self.put_queue_capacity),
            ("outcome_queue_capacity", self.outcome_queue_capacity),
        ] {
            if !(2..=1 << 24).contains(&cap) {
                return bad(&format!("{name} must be in 2..=16777216"));
            }
        }
        if !self.page_size.is_power_of_two() || !(512..=65_536).contains(&self.page_size) {
            return bad("page_size must be a power of two in 512..=65536");
        }
        if self.reader_pool_size == 0 || self.reader_pool_size > 256 {
            return bad("reader_pool_size must be in 1..=256");
        }
        if self.max_id_len == 0 || self.max_data_bytes == 0 {
            return bad("max_id_len and max_data_bytes must be positive");
        }
        if self.zlib_level > 9 {
            return bad("zlib_level must be in 0..=9");
        }
        if !(0.0..1.0).contains(&self.dictionary_drift) {
            return bad("dictionary_drift must lie in [0, 1)");
        }
        if self.l1_capacity_bytes == 0 || self.l1_capacity_entries == 0 {
            return bad("L1 capacities must be positive");
        }
        Ok(())
    }
}
