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
  local out
  out=$("$gsau" replay --no-progress --bootstrap "$bootstrap" "$@" 2>/dev/null | tail -1)
  echo "$out" >&2
  sed -E 's/.*\(([0-9]+) events\/s\).*/\1/' <<<"$out"
}

synthetic=$(rate --synthetic 1000000 --topic bench-synthetic)
beauty=0
data="$root/../shared/datasets/amazon-beauty/interactions.tsv.gz"
if [ -f "$data" ]; then
  beauty=$(rate --data "$data" --topic bench-beauty)
fi
echo "synthetic: 1000000 events at $synthetic events/s; beauty: 198502 events at $beauty events/s"
echo "BENCH replay events_per_s=$synthetic beauty_events_per_s=$beauty"
