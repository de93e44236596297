#!/usr/bin/env bash
# Usage: perf-scripts/flamegraph.sh [--software] [-h|--help] [BENCH_ARGS...]
#
# Samples `target/release/patternbank bench BENCH_ARGS...` with `perf record -g` and folds
# the stacks into an SVG flamegraph when `inferno-flamegraph` (with `inferno-collapse-perf`)
# or `flamegraph.pl` (with `stackcollapse-perf.pl`) is on PATH; otherwise it leaves
# perf.data and prints how to fold it. Builds the binary with `cargo build --release` first
# (the release profile keeps line tables: `debug = 1`).
#
#   perf-scripts/flamegraph.sh --patterns 20000 --seconds 3 --only w1
#
# Output goes to $PERF_OUT (default target/perf/): perf.data, perf.folded, flamegraph.svg.
#
# Hardware counters: on machines (often VMs) where `perf stat -e instructions true` reports
# them as not supported, the script says so and exits 0 without recording, unless
# --software is given, which samples the `cpu-clock` software event instead (coarser but
# still a useful profile).
#
# Environment: PERF_FREQ (sampling frequency, default 999), PERF_CALLGRAPH (perf's
# --call-graph mode, e.g. `dwarf` for binaries without frame pointers; default: plain -g),
# PERF_OUT (output folder).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

software=0
args=()
for a in "$@"; do
    case "$a" in
        -h | --help) usage; exit 0 ;;
        --software) software=1 ;;
        *) args+=("$a") ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${PERF_OUT:-$root/target/perf}"
freq="${PERF_FREQ:-999}"

if ! command -v perf >/dev/null 2>&1; then
    echo "flamegraph.sh: perf is not installed (apt-get install linux-perf or linux-tools-\$(uname -r)); nothing recorded." >&2
    exit 0
fi

event=()
if ! probe="$(perf stat -e instructions true 2>&1)"; then
    echo "flamegraph.sh: perf cannot count events here (kernel.perf_event_paranoid or permissions?); nothing recorded:" >&2
    echo "$probe" | sed 's/^/  /' >&2
    exit 0
fi
if grep -qi 'not supported' <<<"$probe"; then
    if [ "$software" -eq 0 ]; then
        echo "flamegraph.sh: hardware performance counters are not supported on this machine" \
            "(perf stat -e instructions says <not supported>; usual in VMs and containers)." >&2
        echo "flamegraph.sh: nothing recorded. Re-run with --software to sample the cpu-clock software event instead." >&2
        exit 0
    fi
    echo "flamegraph.sh: hardware counters not supported; sampling the cpu-clock software event." >&2
    event=(-e cpu-clock)
fi

callgraph=(-g)
if [ -n "${PERF_CALLGRAPH:-}" ]; then
    callgraph=(--call-graph "$PERF_CALLGRAPH")
fi

(cd "$root" && cargo build --release --bin patternbank)
bin="${CARGO_TARGET_DIR:-$root/target}/release/patternbank"

mkdir -p "$out"
data="$out/perf.data"
echo "flamegraph.sh: perf record ${event[*]} -F $freq ${callgraph[*]} -- $bin bench ${args[*]}" >&2
perf record "${event[@]}" -F "$freq" "${callgraph[@]}" -o "$data" -- "$bin" bench "${args[@]}"

svg="$out/flamegraph.svg"
folded="$out/perf.folded"
if command -v inferno-collapse-perf >/dev/null 2>&1 && command -v inferno-flamegraph >/dev/null 2>&1; then
    perf script -i "$data" | inferno-collapse-perf >"$folded"
    inferno-flamegraph <"$folded" >"$svg"
elif command -v stackcollapse-perf.pl >/dev/null 2>&1 && command -v flamegraph.pl >/dev/null 2>&1; then
    perf script -i "$data" | stackcollapse-perf.pl >"$folded"
    flamegraph.pl "$folded" >"$svg"
else
    echo "flamegraph.sh: no flamegraph folder on PATH; perf data left in $data." >&2
    echo "  Fold it with inferno (cargo install inferno):" >&2
    echo "    perf script -i $data | inferno-collapse-perf | inferno-flamegraph > $svg" >&2
    echo "  or with Brendan Gregg's FlameGraph scripts (github.com/brendangregg/FlameGraph):" >&2
    echo "    perf script -i $data | stackcollapse-perf.pl | flamegraph.pl > $svg" >&2
    echo "  or read it directly: perf report -i $data" >&2
    exit 0
fi
echo "flamegraph.sh: wrote $svg ($(wc -l <"$folded") distinct stacks in $folded)" >&2
