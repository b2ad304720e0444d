#!/usr/bin/env bash
# make bench-freshness: time from a click's produce to that user's embedding record being
# consumed downstream, through a real local broker and `gsau run`.
# A Python producer (confluent-kafka, in a virtualenv under the build tree) sends clicks at
# RATE events/s for SECONDS s with event time = produce time; a consumer in the same process
# reads the user-embedding topic and matches each click to the first record of its user whose
# event_time_ms covers it. Last line: BENCH freshness p50_ms=<n> p99_ms=<n> events_per_s=<n>
# unmatched=<n> (events_per_s: the clicks sent per second; unmatched: clicks whose user had no
# newer record 30 s after the last click, counted in the percentiles as slower than any, "inf"
# when they reach one). Exits 1, with no BENCH line, when gsau run did not last the benchmark.
# Environment: RATE (default 2000), DURATION (s, default 60), FORMAT json|binary (default json),
#   RUN_ARGS extra `gsau run` flags (default none: the configuration's defaults are measured),
#   KEEP=1 keeps the run's folder (broker, state, logs) under /tmp and names it at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
rate=${RATE:-2000}
seconds=${DURATION:-60}
format=${FORMAT:-json}
venv="$build/py-confluent-kafka"
# The same client version as the tests' virtualenvs (tests/pipeline/pipeline_test.cc).
if ! "$venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q confluent-kafka==2.16.2; }; then
    echo "bench-freshness: could not install confluent-kafka 2.16.2 from PyPI into $venv" >&2
    exit 1
  fi
fi
dir=$(mktemp -d /tmp/gsau-bench-freshness.XXXXXX)
# Named now rather than at exit, where it would follow the BENCH line.
[ "${KEEP:-0}" = 1 ] && echo "keeping $dir (KEEP=1)"
run_pid=""
cleanup() {
  [ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null || true
  "$root/scripts/kafka_broker.sh" stop --dir "$dir/broker" >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT
bootstrap=$("$root/scripts/kafka_broker.sh" start --dir "$dir/broker" --max-lifetime 1800)
echo "broker at $bootstrap; gsau run log: $dir/run.log"
"$build/gsau" run --bootstrap "$bootstrap" --state "$dir/state" --checkpoints "$dir/checkpoints" \
  --status-interval 10 --set learner.prequential_csv= --set publisher.format="$format" \
  --set metrics.listen_address= ${RUN_ARGS:-} > "$dir/run.log" 2>&1 &
run_pid=$!
# The BENCH line is held back until gsau run is known to have lasted, then printed last.
set +e
"$venv/bin/python" "$root/bench/pipeline/bench_freshness.py" "$bootstrap" "$rate" "$seconds" |
  tee "$dir/bench.out" | grep -v '^BENCH '
measured=${PIPESTATUS[0]}
set -e
if [ "$measured" != 0 ]; then
  echo "bench-freshness: the measurement failed; gsau run's log ends:" >&2
  tail -20 "$dir/run.log" >&2
  exit 1
fi
if ! kill -0 "$run_pid" 2>/dev/null; then
  echo "bench-freshness: gsau run exited during the benchmark; its log ends:" >&2
  tail -20 "$dir/run.log" >&2
  exit 1
fi
grep -E "run: [0-9]+ events/s" "$dir/run.log" | tail -2 || true
grep '^BENCH ' "$dir/bench.out" | tail -1
