#!/usr/bin/env bash
# make bench-replay: `gsau replay` into a real local broker (scripts/kafka_broker.sh).
# Replays 1,000,000 synthetic events, and Beauty (../shared/datasets) when it is there, as fast
# as possible. Beside it, its peer: kcat (a bare librdkafka producer, the same producer
# settings) sends the very records replay sent, read back from the topic, to a topic of its own
# (its time includes its start and first metadata request, a few ms).
# Last line: BENCH replay events_per_s=<synthetic> bare_events_per_s=<kcat> ratio_vs_bare=<r>
# [beauty_events_per_s=<n>] (Beauty's figure only when its file is there).
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

bare_rate() {  # kcat producing topic $1's records (key TAB value per line) again: prints events/s
  local records="$dir/records.tsv" n start end
  kcat -C -b "$bootstrap" -t "$1" -e -q -f '%k\t%s\n' > "$records" ||
    { echo "bench_replay.sh: kcat could not read $1 back" >&2; return 1; }
  n=$(wc -l < "$records")
  [ "$n" -gt 0 ] || { echo "bench_replay.sh: nothing to read back from $1" >&2; return 1; }
  start=$(date +%s.%N)
  # gsau's producer settings (kafka/src/producer.cc): idempotent, one request in flight, murmur2.
  kcat -P -b "$bootstrap" -t "$1-bare" -K $'\t' -X enable.idempotence=true -X linger.ms=5 -X batch.size=1048576 \
    -X acks=all -X compression.type=lz4 -X max.in.flight.requests.per.connection=1 -X partitioner=murmur2_random \
    -X queue.buffering.max.messages=1000000 -l "$records" || { echo "bench_replay.sh: kcat failed" >&2; return 1; }
  end=$(date +%s.%N)
  echo "kcat: $n events in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s" >&2
  awk -v n="$n" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f\n", n / (b - a) }'
}

synthetic=$(rate --synthetic 1000000 --topic bench-synthetic)
bare=$(bare_rate bench-synthetic)
ratio=$(awk -v a="$synthetic" -v b="$bare" 'BEGIN { printf "%.2f", a / b }')
echo "synthetic: 1000000 events at $synthetic events/s; kcat, the same records: $bare events/s (ratio $ratio)"
beauty_figure=""
data="$root/../shared/datasets/amazon-beauty/interactions.tsv.gz"
if [ -f "$data" ]; then
  beauty=$(rate --data "$data" --topic bench-beauty)
  echo "beauty: 198502 events at $beauty events/s"
  beauty_figure=" beauty_events_per_s=$beauty"
else
  echo "beauty: $data not found: no Beauty figure"
fi
echo "BENCH replay events_per_s=$synthetic bare_events_per_s=$bare ratio_vs_bare=$ratio$beauty_figure"
