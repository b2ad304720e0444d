#!/usr/bin/env bash
# The continual-quality experiment of issue 6, on Beauty's leave-one-out split (each user's last
# item held out; the training stream is every other event in global time order):
#   (b) gsau train on the first 80% of the training stream  (scripts/train_reproduce.sh beauty-gsau-rec-80)
#   (c) gsau train on all of it                              (scripts/train_reproduce.sh beauty-gsau-rec)
#   (a) this script: a state holding (b)'s training events (replayed through Kafka, `gsau ingest`),
#       `gsau run --init-offline` from (b)'s best.pt, the rest of the stream (but the test items)
#       replayed through Kafka at RATE events/s, EXTRA_S seconds of further training once the
#       last event is applied, then `gsau evaluate` of its last checkpoint on the same split.
# Writes OUT/: a.json (gsau evaluate), summary.json + summary.md (a, b, c side by side, the
# targets a > b and a >= 0.95 c on test Recall@20 and NDCG@20), prequential.csv and
# prequential.png (online Recall@20 and the most-popular baseline per window), run.log tail.
#
# Usage: scripts/continual_quality.sh [B_DIR [C_DIR [OUT]]]
#   B_DIR default runs/beauty-gsau-rec-80, C_DIR runs/beauty-gsau-rec, OUT docs/results/continual
# Environment:
#   DATA, TIMES  dataset (default ../shared/datasets/amazon-beauty/Beauty_{item,time}_org_rank.txt)
#   RATE         events/s of the online stream (default 200; 0 = as fast as the broker takes them)
#   EXTRA_S      training after the last event is applied (default 600, the issue's limit)
#   THREADS      learner threads (default 1)
#   RUN_SET      extra settings of the online run, space-separated key=value (each becomes
#                `gsau run --set key=value`), e.g. RUN_SET="learner.replay_recent_fraction=0.75"
#   BUILD        build directory holding gsau (default build)
#   WORK         scratch directory (default a fresh /tmp/gsau-continual.XXXXXX; KEEP=1 keeps it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
b_dir=${1:-runs/beauty-gsau-rec-80}
c_dir=${2:-runs/beauty-gsau-rec}
out=${3:-docs/results/continual}
data=${DATA:-../shared/datasets/amazon-beauty/Beauty_item_org_rank.txt}
times=${TIMES:-../shared/datasets/amazon-beauty/Beauty_time_org_rank.txt}
rate=${RATE:-200}
extra_s=${EXTRA_S:-600}
threads=${THREADS:-1}
gsau=${BUILD:-build}/gsau
for f in "$b_dir/best.pt" "$b_dir/report.json" "$c_dir/report.json" "$gsau"; do
  [[ -e $f ]] || { echo "continual_quality.sh: $f is missing (finish runs (b) and (c) first)" >&2; exit 2; }
done
fraction=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"].get("train_fraction", 1.0))' "$b_dir/report.json")
work=${WORK:-$(mktemp -d /tmp/gsau-continual.XXXXXX)}
# A kept WORK from an earlier run holds its state, checkpoints and logs: this run would resume
# them (events "applied in 0 s", a warm start skipped, logs appended) and report a mix of both.
if [[ -n ${WORK:-} && -d $WORK && -n $(ls -A "$WORK") ]]; then
  echo "continual_quality.sh: WORK=$WORK is not empty (an earlier run's?): give an empty or new directory" >&2; exit 2
fi
mkdir -p "$work" "$out"
source scripts/lib/pipeline_helpers.sh

log "split at train fraction $fraction"
"$gsau" split --data "$data" --times "$times" --train-fraction "$fraction" \
  --offline-out "$work/offline.tsv" --online-out "$work/online.tsv"
n_off=$(($(wc -l < "$work/offline.tsv") - 1))
n_on=$(($(wc -l < "$work/online.tsv") - 1))

bootstrap=$(scripts/kafka_broker.sh start --dir "$work/broker" --max-lifetime 7200)
log "broker at $bootstrap"
common=(--bootstrap "$bootstrap" --state "$work/state")

log "(b)'s training events ($n_off) into a fresh state: gsau replay + gsau ingest"
"$gsau" replay --data "$work/offline.tsv" --ts-unit ms --rate 0 --no-progress --bootstrap "$bootstrap"
port=$(free_port)
"$gsau" ingest "${common[@]}" --set metrics.listen_address="127.0.0.1:$port" > "$work/ingest.log" 2>&1 &
pids+=($!)
wait_events "$port" "$n_off" "${pids[-1]}"
kill -TERM "${pids[-1]}" && wait "${pids[-1]}"

run_set=()
for kv in ${RUN_SET:-}; do run_set+=(--set "$kv"); done
log "gsau run from (b) ($b_dir/best.pt); the rest ($n_on events) at ${rate}/s, then ${extra_s} s of training"
port=$(free_port)
"$gsau" run "${common[@]}" --checkpoints "$work/checkpoints" \
  --init-offline "$b_dir/best.pt" --init-data "$data" --init-times "$times" --status-interval 30 \
  --set learner.threads="$threads" --set learner.prequential_csv="$work/prequential.csv" \
  --set learner.idle_train_s="$extra_s" \
  --set metrics.listen_address="127.0.0.1:$port" "${run_set[@]}" > "$work/run.log" 2>&1 &
run_pid=$!
pids+=($run_pid)
wait_events "$port" "$n_off" "$run_pid"
t0=$SECONDS
"$gsau" replay --data "$work/online.tsv" --ts-unit ms --rate "$rate" --no-progress --bootstrap "$bootstrap"
wait_events "$port" $((n_off + n_on)) "$run_pid"
stream_s=$((SECONDS - t0))
log "every event applied after ${stream_s} s; training on for ${extra_s} s"
sleep "$extra_s"
kill -TERM "$run_pid"
wait "$run_pid" || { echo "continual_quality.sh: gsau run failed, see $work/run.log" >&2; exit 1; }

log "gsau evaluate"
"$gsau" evaluate --checkpoint "$work/checkpoints" --data "$data" --times "$times" --out "$out/a.json" \
  --set learner.threads="$threads"
cp "$work/prequential.csv" "$out/prequential.csv"
tail -n 40 "$work/run.log" > "$out/run.log.tail"
python3 scripts/continual_summary.py --a "$out/a.json" --b "$b_dir/report.json" --c "$c_dir/report.json" \
  --prequential "$out/prequential.csv" --out "$out" \
  --note "online stream: $n_on events at ${rate}/s, applied in ${stream_s} s, then ${extra_s} s of training; learner threads $threads${RUN_SET:+; settings: $RUN_SET}; offline part $n_off events (train fraction $fraction)"
