#!/usr/bin/env bash
# make bench-replay: `gsau replay` into a real local broker (scripts/kafka_broker.sh).
# Replays 1,000,000 synthetic events, and Beauty (../shared/datasets) when it is there, as fast
# as possible. Last line: BENCH replay events_per_s=<synthetic> beauty_events_per_s=<n>
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
gsau="$build/gsau"
dir=$(mktemp -d /tmp/gsau-bench-replay.XXXXXX)
trap '"$root/scripts/kafka_broker.sh" stop --dir "$dir/broker" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
bootstrap=$("$root/scripts/kafka_broker.sh" start --dir "$dir/broker" --max-lifetime 1800)
echo "broker at $bootstrap"

rate() {  # runs gsau replay with the given args and prints events/s from its summary line
  # Fails (and so the bench) when replay does or its summary has no rate: errexit is off in a
  # command substitution, and a failed replay printed "BENCH replay events_per_s=" with exit 0.
  local out
  if ! out=$("$gsau" replay --no-progress --bootstrap "$bootstrap" "$@" 2>"$dir/replay.err"); then
    cat "$dir/replay.err" >&2
    echo "bench_replay.sh: gsau replay $* failed" >&2
    return 1
  fi
  out=$(tail -1 <<<"$out")
  echo "$out" >&2
  if [[ ! $out =~ \(([0-9]+)\ events/s\) ]]; then
    echo "bench_replay.sh: no events/s in replay's last line" >&2
    return 1
  fi
  echo "${BASH_REMATCH[1]}"
}

synthetic=$(rate --synthetic 1000000 --topic bench-synthetic)
beauty=0
data="$root/../shared/datasets/amazon-beauty/interactions.tsv.gz"
if [ -f "$data" ]; then
  beauty=$(rate --data "$data" --topic bench-beauty)
fi
echo "synthetic: 1000000 events at $synthetic events/s; beauty: 198502 events at $beauty events/s"
echo "BENCH replay events_per_s=$synthetic beauty_events_per_s=$beauty"
