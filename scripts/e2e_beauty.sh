#!/usr/bin/env bash
# End-to-end acceptance of issue 6 on a real dataset: `gsau replay` streams Amazon Beauty in event
# time order into a fresh broker, `gsau run` ingests, trains and publishes (JSON records for the
# first half of the stream; then it is stopped and restarted from its checkpoint with binary
# records for the rest), and two independent clients read both embedding topics: kcat
# (-J envelopes) and Python's confluent-kafka (tests/pipeline/read_embeddings.py, in a virtualenv
# this script makes). scripts/e2e_check.py then checks that every record decodes, that every user
# who clicked has a record, that both clients agree, and that model_version increases (per key,
# and across the restart).
#
# Usage: scripts/e2e_beauty.sh [OUT]      (default OUT docs/results/e2e)
# Environment:
#   DATA, TIMES  dataset (default ../shared/datasets/amazon-beauty/Beauty_{item,time}_org_rank.txt)
#   RATE         events/s of the replay (default 1000; the whole of Beauty is 198,502 clicks)
#   BUILD        build directory holding gsau (default build)
#   WORK         scratch directory (default a fresh /tmp/gsau-e2e.XXXXXX; KEEP=1 keeps it)
#   GSAU_CACHE   where the confluent-kafka virtualenv is kept (default ~/.cache/gsau-stream)
# Writes OUT/summary.md and OUT/summary.json (scripts/e2e_check.py) and OUT/command.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-docs/results/e2e}
data=${DATA:-../shared/datasets/amazon-beauty/Beauty_item_org_rank.txt}
times=${TIMES:-../shared/datasets/amazon-beauty/Beauty_time_org_rank.txt}
rate=${RATE:-1000}
gsau=${BUILD:-build}/gsau
cache=${GSAU_CACHE:-$HOME/.cache/gsau-stream}
[[ -x $gsau ]] || { echo "e2e_beauty.sh: $gsau is missing (make build first)" >&2; exit 2; }
command -v kcat >/dev/null || { echo "e2e_beauty.sh: kcat not found (run scripts/setup.sh)" >&2; exit 2; }
work=${WORK:-$(mktemp -d /tmp/gsau-e2e.XXXXXX)}
# A kept WORK from an earlier run holds its state, checkpoints and logs: this run would resume
# them (events "applied in 0 s", a warm start skipped, logs appended) and report a mix of both.
if [[ -n ${WORK:-} && -d $WORK && -n $(ls -A "$WORK") ]]; then
  echo "e2e_beauty.sh: WORK=$WORK is not empty (an earlier run's?): give an empty or new directory" >&2; exit 2
fi
mkdir -p "$work" "$out"
source scripts/lib/pipeline_helpers.sh

venv="$cache/py-confluent-kafka"
if ! "$venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  log "installing confluent-kafka into $venv"
  python3 -m venv "$venv" && "$venv/bin/pip" install -q confluent-kafka
fi

bootstrap=$(scripts/kafka_broker.sh start --dir "$work/broker" --max-lifetime 7200)
log "broker at $bootstrap"
n=$(python3 -c 'import sys; print(sum(len(l.split()) - 1 for l in open(sys.argv[1])))' "$data")
half=$((n / 2))
common=(--bootstrap "$bootstrap" --state "$work/state" --checkpoints "$work/checkpoints" --status-interval 30)

start_run() {  # $1 = publisher format; sets run_pid and port
  port=$(free_port)
  "$gsau" run "${common[@]}" --set publisher.format="$1" --set metrics.listen_address="127.0.0.1:$port" \
    >> "$work/run-$1.log" 2>&1 &
  run_pid=$!
  pids+=("$run_pid")
}

log "gsau run (JSON records); gsau replay of $n clicks at ${rate}/s"
start_run json
STATUS_FILE="$work/replay.status" run_recording_status \
  "$gsau" replay --data "$data" --times "$times" --rate "$rate" --no-progress --bootstrap "$bootstrap" \
  > "$work/replay.log" 2>&1 &
replay_pid=$!
pids+=("$replay_pid")
wait_events "$port" "$half" "$run_pid" "$work/replay.status"
log "half applied: SIGTERM, restart with binary records"
kill -TERM "$run_pid"
wait "$run_pid" || { echo "e2e_beauty.sh: gsau run failed, see $work/run-json.log" >&2; exit 1; }
start_run binary
wait "$replay_pid" || { echo "e2e_beauty.sh: gsau replay failed, see $work/replay.log" >&2; exit 1; }
wait_events "$port" "$n" "$run_pid"
log "all $n applied; 20 s for the last publications"
sleep 20
kill -TERM "$run_pid"
wait "$run_pid" || { echo "e2e_beauty.sh: gsau run failed, see $work/run-binary.log" >&2; exit 1; }
grep -q "learner resumed from" "$work/run-binary.log" || { echo "e2e_beauty.sh: the restart did not resume from a checkpoint" >&2; exit 1; }

for kind in user item; do
  topic=gsau.$kind-embeddings
  log "reading $topic with kcat and confluent-kafka"
  kcat -C -b "$bootstrap" -t "$topic" -e -q -J > "$work/kcat-$kind.jsonl"
  "$venv/bin/python" tests/pipeline/read_embeddings.py "$bootstrap" "$topic" > "$work/py-$kind.tsv"
done
echo "RATE=$rate scripts/e2e_beauty.sh $out   # at $(git rev-parse --short HEAD)" > "$out/command.txt"
restart_version=$(sed -n 's/.*run: stopped:.*model_version \([0-9]*\).*/\1/p' "$work/run-json.log" | tail -1)
python3 scripts/e2e_check.py --data "$data" --work "$work" --out "$out" --restart-version "${restart_version:-0}" \
  --note "Beauty ($n clicks) replayed at ${rate}/s; gsau run restarted (SIGTERM) after $half applied, JSON records before, binary after"
