#!/usr/bin/env bash
# Usage: perf-scripts/callgrind.sh [-h|--help] [BENCH_ARGS...]
#
# Counts the instructions executed by a small, seeded `patternbank bench` under
# `valgrind --tool=callgrind` and prints the total (Ir) and the costliest functions.
# Instruction counts hardly move with machine load, so they compare runs on the noisy shared
# machines where wall-clock figures do not (threads are serialised by valgrind; waits on
# timers still add a little jitter, about a percent).
#
# Without arguments it runs
#
#   patternbank bench --patterns 2000 --seconds 0.5 --only w3 --w3-puts 2000 \
#       --w3-outcomes 20000 --threads 1 --json
#
# (about 10 s under valgrind on a 2-core EPYC VM); any arguments replace these, e.g. a tiny run:
#
#   perf-scripts/callgrind.sh --patterns 200 --only w3 --w3-puts 200 --w3-outcomes 2000 --threads 1 --json
#
# Builds the binary with `cargo build --release` first (release keeps line tables). Output
# goes to $PERF_OUT (default target/perf/): callgrind.out (open it with kcachegrind or
# callgrind_annotate) and callgrind.txt (the annotation). Set CALLGRIND_TOP=N for the number
# of functions listed (default 25).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

for a in "$@"; do
    case "$a" in
        -h | --help) usage; exit 0 ;;
    esac
done

if [ "$#" -eq 0 ]; then
    set -- --patterns 2000 --seconds 0.5 --only w3 --w3-puts 2000 --w3-outcomes 20000 --threads 1 --json
fi

for tool in valgrind callgrind_annotate; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "callgrind.sh: $tool is not installed (apt-get install valgrind)." >&2
        exit 1
    fi
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${PERF_OUT:-$root/target/perf}"
top="${CALLGRIND_TOP:-25}"

(cd "$root" && cargo build --release --bin patternbank)
bin="${CARGO_TARGET_DIR:-$root/target}/release/patternbank"

mkdir -p "$out"
cg="$out/callgrind.out"
txt="$out/callgrind.txt"
rm -f "$cg"
echo "callgrind.sh: valgrind --tool=callgrind -- $bin bench $*" >&2
valgrind --tool=callgrind --callgrind-out-file="$cg" -- "$bin" bench "$@"

callgrind_annotate "$cg" >"$txt"
ir="$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$txt")"
if [ -z "$ir" ]; then
    echo "callgrind.sh: no PROGRAM TOTALS line in $txt" >&2
    exit 1
fi
echo
echo "Top $top functions by exclusive Ir:"
awk -v top="$top" '
    /PROGRAM TOTALS/ { totals = 1; next }
    totals && /^-+$/ { dashes++; next }
    totals && dashes >= 2 && NF > 0 { print; if (++n >= top) exit }
' "$txt"
echo
# Inclusive cost of a few named functions: where the total goes. callgrind_annotate splits a
# function by the source file of its inlined code, so take the largest entry per name
# (approximate; the writer thread's work is under Writer::run, not under the caller).
callgrind_annotate --inclusive=yes "$cg" >"$out/callgrind-inclusive.txt"
echo "Inclusive Ir (approximate):"
for f in patternbank::workload::dataset patternbank::w1 patternbank::w3 \
    patternbank::sqlite::writer::Writer::run patternbank::sqlite::writer::raw_put_loop; do
    awk -v f="$f" -v total="$ir" '
        /^ *[0-9,]+ +\( *[0-9.]+%\) +[^ ]/ {
            fn = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", fn); sub(/ \[[^]]*\]$/, "", fn)
            sub(/^[^:]*:/, "", fn)
            if (fn == f) { v = $1; gsub(",", "", v); if (v + 0 > best) best = v + 0 }
        }
        END { if (best > 0) printf "  %-45s %15d  (%5.1f%%)\n", f, best, 100 * best / total }
    ' "$out/callgrind-inclusive.txt"
done
echo
echo "callgrind: bench $*"
echo "callgrind: total instructions Ir = $ir"
echo "callgrind: full annotation in $txt, raw profile in $cg"
