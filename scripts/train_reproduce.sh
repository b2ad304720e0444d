#!/usr/bin/env bash
# The reproduction runs of issue 5 (results in docs/results/). Each run resumes from its own
# checkpoint, so running this again after a restart continues where the runs stopped.
#
# Usage: scripts/train_reproduce.sh RUN...
#   RUN = <dataset>-<model>[-<percent>], dataset toys | beauty, model gsau-rec | gsau | sasrec |
#   lightgcn; -<percent> (two digits) trains on that first part of the training stream only
#   (--train-fraction: run (b) of the continual-quality experiment, e.g. beauty-gsau-rec-80)
#   e.g. scripts/train_reproduce.sh toys-gsau-rec beauty-gsau-rec
# Environment:
#   THREADS  torch threads per run (default 1: two 1-thread runs beat one 2-thread run on a
#            shared 2-core machine, where OpenMP threads stall while other jobs run)
#   RUNS     output root (default runs/, git-ignored): RUNS/<run>/{log.txt,pid,metrics.csv,
#            checkpoint.pt,best.pt,report.json,curves.png}
#   GSAU     the gsau binary; default: a copy of $BUILD/gsau (BUILD default build) under RUNS/bin, so that
#            rebuilding does not touch a running binary
#   FOREGROUND=1 runs one after the other in the foreground instead of nohup in the background
#   NICE     niceness of the runs (default 10), so builds and tests on the same cores come first
#   SEED     the seed (default 2020, the authors'); another seed writes RUNS/<run>-seed<SEED>, so
#            that each seed's run is kept and reported beside the others
#   TIES     file (default): the dataset's own order of same-day clicks; item-id: Beauty with each
#            user's same-day clicks ordered by item id, the order of the authors' RecBole data
#            (scripts/order_ties.py writes it to RUNS/data/; the run goes to RUNS/<run>-ties-item-id)
#   DATA     the datasets' folder (default ../shared/datasets)
#
# The exact command of each run is printed and written to RUNS/<run>/command.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/datasets}
THREADS=${THREADS:-1}
NICE=${NICE:-10}
RUNS=${RUNS:-runs}
SEED=${SEED:-2020}
TIES=${TIES:-file}
if [[ $# -eq 0 ]]; then
  sed -n '2,26p' "$0"
  exit 2
fi
if [[ "$TIES" != file && "$TIES" != item-id ]]; then
  echo "TIES must be file or item-id, not $TIES" >&2
  exit 2
fi
if [[ "$TIES" == item-id ]]; then
  for run in "$@"; do
    if [[ ${run%%-*} != beauty ]]; then
      echo "TIES=item-id needs timestamps: beauty only, not $run" >&2
      exit 2
    fi
  done
  # Once, before any run starts: a run launched below reads it while the next is being launched.
  scripts/order_ties.py "$DATA/amazon-beauty/Beauty_item_org_rank.txt" "$DATA/amazon-beauty/Beauty_time_org_rank.txt" \
    "$RUNS/data/amazon-beauty-ties-item-id"
fi
if [[ -z "${GSAU:-}" ]]; then
  mkdir -p "$RUNS/bin"
  GSAU="$RUNS/bin/gsau-$(git rev-parse --short HEAD 2>/dev/null || echo local)-$(date +%Y%m%d%H%M%S)"
  cp "${BUILD:-build}/gsau" "$GSAU"
fi
for run in "$@"; do
  dataset=${run%%-*}
  model=${run#*-}
  fraction=()
  if [[ $model =~ ^(.*)-([0-9][0-9])$ ]]; then
    model=${BASH_REMATCH[1]}
    fraction=(--train-fraction "0.${BASH_REMATCH[2]}")
  fi
  case $dataset in
    toys) data=(--data "$DATA/amazon-toys/Toys_and_Games.txt") ;;
    beauty)
      dir=$DATA/amazon-beauty
      [[ "$TIES" == file ]] || dir=$RUNS/data/amazon-beauty-ties-item-id
      data=(--data "$dir/Beauty_item_org_rank.txt" --times "$dir/Beauty_time_org_rank.txt") ;;
    *) echo "unknown dataset in $run" >&2; exit 2 ;;
  esac
  out="$RUNS/$run"
  [[ "$TIES" == file ]] || out="$out-ties-$TIES"
  [[ "$SEED" == 2020 ]] || out="$out-seed$SEED"
  mkdir -p "$out"
  # gsau train holds $out/.lock while it runs: a second launch would be refused, after it had
  # overwritten this run's pid file and command.txt.
  if command -v flock > /dev/null && ! flock -n "$out/.lock" true; then
    echo "$run: already running in $out (pid $(cat "$out/pid" 2>/dev/null)); not started again" >&2
    continue
  fi
  cmd=(nice -n "$NICE" "$GSAU" train "${data[@]}" --model "$model" --gamma 0.1 --epochs 300 --patience 10
       --seed "$SEED" --threads "$THREADS" "${fraction[@]}" --out "$out" --resume --plot)
  echo "${cmd[*]}" | tee "$out/command.txt"
  if [[ "${FOREGROUND:-0}" == 1 ]]; then
    "${cmd[@]}" >> "$out/log.txt" 2>&1
  else
    # setsid: its own session and process group, so nothing that signals the launching
    # shell's group reaches the run.
    setsid nohup "${cmd[@]}" >> "$out/log.txt" 2>&1 < /dev/null &
    echo $! > "$out/pid"
    # setsid puts the run in an autogroup of its own, and the scheduler shares the CPU fairly
    # between autogroups whatever each process's nice value: without this a run took as much
    # CPU as a whole build. The autogroup's nice is what makes builds and tests come first.
    # Wait for setsid() first: writing before it would renice the launching shell's autogroup.
    pid=$!
    for _ in $(seq 50); do
      [[ "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]] && break
      sleep 0.1
    done
    echo "$NICE" > "/proc/$pid/autogroup" 2>/dev/null || true
    echo "$run: pid $(cat "$out/pid"), log $out/log.txt"
  fi
done
