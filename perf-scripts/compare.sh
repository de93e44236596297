#!/usr/bin/env bash
# Usage: perf-scripts/compare.sh save NAME [BENCH] [-- CRITERION_ARGS...]
#        perf-scripts/compare.sh check NAME [PCT] [BENCH] [-- CRITERION_ARGS...]
#        perf-scripts/compare.sh -h|--help
#
# Criterion baselines, to catch a regression between two commits on the same machine.
#
#   save NAME [BENCH]        cargo bench --bench BENCH -- --save-baseline NAME
#   check NAME [PCT] [BENCH] cargo bench --bench BENCH -- --baseline NAME, then reads every
#                            target/criterion/**/change/estimates.json this run wrote and
#                            exits 1 if any benchmark's mean time grew by more than PCT
#                            percent (default 10), listing them.
#
# BENCH is a file name of benches/ without .rs (queue, writer); without it every bench in
# benches/ runs (named one by one: the lib and bin targets use libtest's harness, which
# rejects criterion's options). Arguments after `--` go to criterion, e.g. a benchmark
# filter or a shorter run:
#
#   perf-scripts/compare.sh save main queue -- --measurement-time 1 --warm-up-time 0.5
#   git switch my-branch
#   perf-scripts/compare.sh check main 5 queue -- --measurement-time 1 --warm-up-time 0.5
#
# On a shared, noisy machine keep PCT above the run-to-run noise (rerun a check that fails
# once before believing it), and save and check on the same machine.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() {
    echo "compare.sh: $*" >&2
    echo "Run perf-scripts/compare.sh --help for usage." >&2
    exit 2
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

[ "$#" -ge 1 ] || die "missing command (save or check)"
case "$1" in
    -h | --help) usage; exit 0 ;;
esac
cmd="$1"
shift

# Split off criterion's arguments after `--`.
ours=()
extra=()
while [ "$#" -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        extra=("$@")
        break
    fi
    case "$1" in
        -h | --help) usage; exit 0 ;;
    esac
    ours+=("$1")
    shift
done

[ "${#ours[@]}" -ge 1 ] || die "missing baseline NAME"
name="${ours[0]}"
[[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "baseline NAME must be letters, digits, '.', '_' or '-': $name"
pct=10
bench=""
rest=("${ours[@]:1}")
case "$cmd" in
    save)
        [ "${#rest[@]}" -le 1 ] || die "too many arguments to save"
        bench="${rest[0]:-}"
        ;;
    check)
        [ "${#rest[@]}" -le 2 ] || die "too many arguments to check"
        if [ "${#rest[@]}" -ge 1 ] && [[ "${rest[0]}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
            pct="${rest[0]}"
            bench="${rest[1]:-}"
        else
            [ "${#rest[@]}" -le 1 ] || die "PCT must be a number: ${rest[0]}"
            bench="${rest[0]:-}"
        fi
        ;;
    *) die "unknown command: $cmd" ;;
esac

bench_flags=()
if [ -n "$bench" ]; then
    [ -f "$root/benches/$bench.rs" ] || die "no benches/$bench.rs"
    bench_flags=(--bench "$bench")
else
    for f in "$root"/benches/*.rs; do
        bench_flags+=(--bench "$(basename "$f" .rs)")
    done
fi

criterion_dir="${CARGO_TARGET_DIR:-$root/target}/criterion"

if [ "$cmd" = save ]; then
    (cd "$root" && set -x && cargo bench "${bench_flags[@]}" -- --save-baseline "$name" "${extra[@]}")
    echo "compare.sh: saved baseline '$name' under $criterion_dir"
    exit 0
fi

# check: only the change estimates written by this run count, not those of earlier runs.
mkdir -p "$criterion_dir"
marker="$(mktemp "$criterion_dir/.compare-marker.XXXXXX")"
trap 'rm -f "$marker"' EXIT
sleep 1 # file times can be coarse: make anything written from now on strictly newer
(cd "$root" && set -x && cargo bench "${bench_flags[@]}" -- --baseline "$name" "${extra[@]}")

mapfile -t changes < <(find "$criterion_dir" -path '*/change/estimates.json' -newer "$marker" | sort)
if [ "${#changes[@]}" -eq 0 ]; then
    echo "compare.sh: no change estimates were written (does baseline '$name' exist for these benchmarks?)" >&2
    exit 2
fi

python3 - "$criterion_dir" "$pct" "$name" "${changes[@]}" <<'EOF'
import json, os, sys

root, pct, name, files = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
rows, regressed = [], []
for f in files:
    bench = os.path.relpath(os.path.dirname(os.path.dirname(f)), root)
    with open(f) as fh:
        est = json.load(fh)
    change = est["mean"]["point_estimate"]  # relative change of the mean time (0.10 = +10 %)
    lo = est["mean"]["confidence_interval"]["lower_bound"]
    hi = est["mean"]["confidence_interval"]["upper_bound"]
    rows.append((bench, change, lo, hi))
    if change * 100 > pct:
        regressed.append((bench, change))
width = max(len(r[0]) for r in rows)
print(f"\nchange of mean time against baseline '{name}' (threshold +{pct:g} %):")
for bench, change, lo, hi in rows:
    flag = "  REGRESSED" if change * 100 > pct else ""
    print(f"  {bench:<{width}}  {change * 100:+7.2f} %  [{lo * 100:+7.2f} %, {hi * 100:+7.2f} %]{flag}")
if regressed:
    print(f"\n{len(regressed)} benchmark(s) regressed by more than {pct:g} %:")
    for bench, change in regressed:
        print(f"  {bench}: {change * 100:+.2f} %")
    sys.exit(1)
print(f"\nno benchmark regressed by more than {pct:g} %")
EOF
