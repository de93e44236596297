#!/usr/bin/env bash
# Usage: perf-scripts/perf-stat.sh [--software] [-h|--help] [BENCH_ARGS...]
#
# Counts cycles, instructions, cache-misses and branch-misses over
# `target/release/patternbank bench BENCH_ARGS...` with `perf stat` (built first with
# `cargo build --release`), e.g.
#
#   perf-scripts/perf-stat.sh --patterns 20000 --seconds 3 --only w1
#
# The counters cover the whole process: dataset generation and store loading included, so
# compare runs with the same arguments. Set PERF_REPEAT=N to run N times (perf stat -r N,
# which prints the spread).
#
# Hardware counters: where `perf stat -e instructions true` reports them as not supported
# (usual in VMs and containers) the script says so and exits 0 without running the bench,
# unless --software is given, which counts software events instead (task-clock,
# context-switches, cpu-migrations, page-faults).
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

if ! command -v perf >/dev/null 2>&1; then
    echo "perf-stat.sh: perf is not installed (apt-get install linux-perf or linux-tools-\$(uname -r)); nothing measured." >&2
    exit 0
fi

events="cycles,instructions,cache-misses,branch-misses"
if ! probe="$(perf stat -e instructions true 2>&1)"; then
    echo "perf-stat.sh: perf cannot count events here (kernel.perf_event_paranoid or permissions?); nothing measured:" >&2
    echo "$probe" | sed 's/^/  /' >&2
    exit 0
fi
if grep -qi 'not supported' <<<"$probe"; then
    if [ "$software" -eq 0 ]; then
        echo "perf-stat.sh: hardware performance counters (cycles, instructions, cache-misses," \
            "branch-misses) are not supported on this machine: perf stat -e instructions says <not supported>" \
            "(usual in VMs and containers)." >&2
        echo "perf-stat.sh: nothing measured. Re-run with --software for software counters, or use" \
            "perf-scripts/callgrind.sh for instruction counts." >&2
        exit 0
    fi
    echo "perf-stat.sh: hardware counters not supported; counting software events instead." >&2
    events="task-clock,context-switches,cpu-migrations,page-faults"
fi

(cd "$root" && cargo build --release --bin patternbank)
bin="${CARGO_TARGET_DIR:-$root/target}/release/patternbank"

echo "perf-stat.sh: perf stat -e $events -r ${PERF_REPEAT:-1} -- $bin bench ${args[*]}" >&2
perf stat -e "$events" -r "${PERF_REPEAT:-1}" -- "$bin" bench "${args[@]}"
