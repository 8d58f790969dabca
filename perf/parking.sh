#!/usr/bin/env bash
# The parking policy A/B: `ring` and `tell-cross` at 2 to 16 shards with a fixed
# spin (`--park-spin-max-us` equal to the park spin) and with the adaptive one,
# runs interleaved, plus same-shard `tell` and `request`/`request-cross` at two
# shards. Usage: perf/parking.sh BINARY OUT_DIR [SHARDS...] (default 2 4 8 16).
# Each run's JSON is one line of OUT_DIR/results.jsonl, tagged with the policy
# and the CPU time (user + system seconds) the whole process used.
set -u
bin=$1
out=$2
shift 2
shards=${*:-2 4 8 16}
reps=${REPS:-3}
mkdir -p "$out"
TIMEFORMAT='%U %S'
one() { # policy max_us args...
    local policy=$1 max=$2
    shift 2
    local cpu json
    { cpu=$( { time "$bin" bench "$@" --park-spin-max-us "$max" --json > "$out/run.json" 2>/dev/null; } 2>&1 ); }
    json=$(cat "$out/run.json")
    echo "{\"policy\":\"$policy\",\"cpu\":\"$cpu\",\"run\":$json}" >> "$out/results.jsonl"
}
for rep in $(seq "$reps"); do
    for s in $shards; do
        for p in fixed:50 adaptive:1000; do
            one "${p%%:*}" "${p##*:}" ring --shards "$s" --messages 100000
            one "${p%%:*}" "${p##*:}" tell-cross --shards "$s" --messages 1000000
        done
    done
    for p in fixed:50 adaptive:1000; do
        one "${p%%:*}" "${p##*:}" tell request request-cross --shards 2 --messages 200000
    done
    echo "rep $rep done $(date +%T)"
done
