#!/usr/bin/env bash
# The embedded store API against the issue's targets, each run RUNS times (median and range):
#   cas        1 reactor on CPU 0, own-shard keys, durability async   target >= 3M CAS/s per core
#   cas-cross  2 reactors on CPUs 0-1, every key owned by the other reactor  (same target)
#   get        store_get, 1 reactor on CPU 0                          (no target; reported)
#   get-local  store_get_local, 1 reactor on CPU 0                    (no target; reported)
#   restart    1M keys of 64 bytes, default 64 MiB and 8 MiB segments  target < 1 s
# Wall-clock figures on a shared machine also count time other processes held the CPU, so
# the reactor thread's CPU time is reported beside them. Each run is killed after TIMEOUT s.
# Usage: bench/store_embedded.sh [seconds per throughput run (3)] [runs (3)]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}
runs=${2:-3}
timeout_s=${TIMEOUT:-20}
bin=build/release/store-bench
[ -x "$bin" ] || { echo "build first: make build/release/store-bench"; exit 1; }
source bench/common.sh
cpus=$(nproc)
cross_cpus=$(( cpus > 1 ? 1 : 0 ))

field() { # line key
    tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'
}

measure() { # cpu-list, store-bench arguments...
    local cpus_used=$1; shift
    timeout "$timeout_s" taskset -c "$cpus_used" "$bin" "$@" --dir "$work" 2>>"$work/err" || {
        echo "store-bench $* failed or timed out after ${timeout_s}s:" >&2
        tail -5 "$work/err" >&2
        exit 1
    }
}

# summary VALUES...: "median min max" of the numbers given.
summary() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        printf "%s %s %s", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

# row LABEL TARGET DIRECTION(ge|lt|-) UNIT-SCALE VALUES...
row() {
    local label=$1 target=$2 direction=$3 scale=$4; shift 4
    read -r median low high <<<"$(summary "$@")"
    awk -v l="$label" -v t="$target" -v d="$direction" -v s="$scale" -v m="$median" \
        -v lo="$low" -v hi="$high" 'BEGIN {
        ratio = "-"; verdict = ""
        if (d == "ge") { ratio = sprintf("%.2fx", m / t); verdict = m >= t ? "met" : "MISSED" }
        if (d == "lt") { ratio = sprintf("%.2fx", m / t); verdict = m < t ? "met" : "MISSED" }
        tt = d == "-" ? "-" : sprintf("%s %g", d == "ge" ? ">=" : "<", t / s)
        printf "%-38s %12s %12.3f %21s %7s %s\n", l, tt, m / s,
            sprintf("%.3f..%.3f", lo / s, hi / s), ratio, verdict }'
}

# collect NAME CPUS KEY CPU-KEY store-bench-arguments...: runs RUNS times, printing each raw
# line, and sets the arrays NAME_values (KEY) and NAME_cpu (CPU-KEY).
collect() {
    local name=$1 cpus_used=$2 key=$3 cpu_key=$4; shift 4
    local values=() cpu=() line
    for _ in $(seq 1 "$runs"); do
        line=$(measure "$cpus_used" "$@")
        echo "  $line"
        values+=("$(field "$line" "$key")")
        cpu+=("$(field "$line" "$cpu_key")")
    done
    eval "${name}_values=(${values[*]})"
    eval "${name}_cpu=(${cpu[*]})"
}

echo "load before: $(uptime)"
echo "raw runs ($runs each; ${seconds}s measured per throughput run):"
collect cas 0 ops_per_s_per_core ops_per_cpu_s cas --seconds "$seconds"
collect cross "0-$cross_cpus" ops_per_s_per_core ops_per_cpu_s cas-cross --reactors 2 \
    --seconds "$seconds"
collect get 0 ops_per_s_per_core ops_per_cpu_s get --seconds "$seconds"
collect local 0 ops_per_s_per_core ops_per_cpu_s get-local --seconds "$seconds"
collect restart 0 restart_s shard_open_cpu_max_s restart
collect restart8 0 restart_s shard_open_cpu_max_s restart --segment-bytes $((8 << 20))
echo "load after:  $(uptime)"
echo
printf '%-38s %12s %12s %21s %7s\n' measurement target median "min..max" ratio
row "cas, 1 reactor (M CAS/s/core)" 3000000 ge 1e6 "${cas_values[@]}"
row "  same, per reactor CPU-second (M/s)" 3000000 ge 1e6 "${cas_cpu[@]}"
row "cas-cross, 2 reactors (M CAS/s/core)" 3000000 ge 1e6 "${cross_values[@]}"
row "  same, per reactor CPU-second (M/s)" 3000000 ge 1e6 "${cross_cpu[@]}"
row "get, store_get (M/s/core)" 1 - 1e6 "${get_values[@]}"
row "  same, per reactor CPU-second (M/s)" 1 - 1e6 "${get_cpu[@]}"
row "get-local, store_get_local (M/s/core)" 1 - 1e6 "${local_values[@]}"
row "restart 1M keys, 64 MiB segments (s)" 1 lt 1 "${restart_values[@]}"
row "  same, shard open CPU time (s)" 1 lt 1 "${restart_cpu[@]}"
row "restart 1M keys, 8 MiB segments (s)" 1 lt 1 "${restart8_values[@]}"
row "  same, shard open CPU time (s)" 1 lt 1 "${restart8_cpu[@]}"
echo "(conflicts and errors must be 0 in every raw line; $cpus CPUs; warm page cache)"
