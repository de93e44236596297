#!/usr/bin/env bash
# Usage: perf-scripts/l1-instructions.sh [-h|--help] [MODE]
#
# Instructions and simulated cache misses per operation of our L1 and of quick_cache in the
# steady state of `examples/l1_interleaved.rs MODE` (mix, get, rep or new; default mix, the
# 90/10 workload of benches/cache.rs), counted by `valgrind --tool=cachegrind`. Counts hardly
# move with the machine's load, so they compare two builds where wall-clock ratios on a
# shared 2-core VM swing by ±0.1.
#
# It runs the example twice, with 2 and with 10 rounds, and subtracts: what remains is 8
# rounds of 300,000 operations for each cache, without the set-up and the warm-up. The
# simulated caches are a 32 KiB 8-way D1 and a 1 MiB 8-way last level (Zen 4's L1d and L2).
#
# A function is counted for quick_cache when its name is quick_cache's, hashbrown's or
# parking_lot's, and for ours otherwise (crossbeam-epoch, mimalloc and memcpy included: only
# ours allocates and retires per write); the example's own loop is left out. Prints the
# costliest functions, then the two totals. Output: $PERF_OUT (default target/perf/).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

mode=mix
for a in "$@"; do
    case "$a" in
        -h | --help) usage; exit 0 ;;
        mix | get | rep | new) mode="$a" ;;
        *) echo "l1-instructions.sh: unknown argument '$a' (see --help)" >&2; exit 2 ;;
    esac
done

if ! command -v valgrind >/dev/null 2>&1; then
    echo "l1-instructions.sh: valgrind is not installed (apt-get install valgrind)." >&2
    exit 1
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${PERF_OUT:-$root/target/perf}"
(cd "$root" && cargo build --release --example l1_interleaved)
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/l1_interleaved"
mkdir -p "$out"

for rounds in 2 10; do
    echo "l1-instructions.sh: cachegrind, $mode, $rounds rounds" >&2
    valgrind --tool=cachegrind --cache-sim=yes --D1=32768,8,64 --LL=1048576,8,64 \
        --cachegrind-out-file="$out/l1-$mode-$rounds.cg" -- "$bin" "$mode" "$rounds" >/dev/null 2>&1
done

# Per function: Ir, D1 misses (read + write), LL misses, from the 10-round run minus the
# 2-round run, per operation of one cache (8 rounds of 300,000).
awk -v ops=2400000 '
    FNR == 1 { sign = (FILENAME ~ /-10\.cg$/) ? 1 : -1 }
    /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i; next }
    /^fn=/ { fn = substr($0, 4); next }
    /^[0-9]/ && fn != "" {
        ir[fn] += sign * $(col["Ir"]);
        d1[fn] += sign * ($(col["D1mr"]) + $(col["D1mw"]));
        ll[fn] += sign * ($(col["DLmr"]) + $(col["DLmw"]));
    }
    END {
        for (f in ir) {
            if (f ~ /l1_interleaved::main|l1_interleaved::slice/) continue;
            who = (f ~ /quick_cache|hashbrown|parking_lot/) ? "quick_cache" : "ours";
            if (f ~ /Contender>::(get|insert)/) who = (f ~ /patternbank/) ? "ours" : "quick_cache";
            tir[who] += ir[f]; td1[who] += d1[f]; tll[who] += ll[f];
            if (ir[f] / ops >= 1) printf "%8.1f %7.3f %7.3f  %-11s %s\n", ir[f] / ops, d1[f] / ops, ll[f] / ops, who, substr(f, 1, 90) | "sort -rn";
        }
        close("sort -rn");
        printf "\n%-11s %8s %8s %8s  (per operation, steady state)\n", "", "Ir", "D1 miss", "LL miss";
        for (w in tir) printf "%-11s %8.1f %8.3f %8.3f\n", w, tir[w] / ops, td1[w] / ops, tll[w] / ops;
    }
' "$out/l1-$mode-2.cg" "$out/l1-$mode-10.cg"
