# Helpers shared by the scripts that drive a broker and gsau processes (sourced, not run).
# The sourcing script sets `work` (scratch directory, holding broker/) before sourcing; every
# background process it starts goes into `pids`, killed on exit with the broker; KEEP=1 keeps
# `work`, otherwise it is removed.
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/kafka_broker.sh stop --dir "$work/broker" >/dev/null 2>&1 || true
  if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

# Waits until gsau_state_events on the metrics port $1 reaches $2 (progress every 30 s); exits
# when process $3 dies first, or when the file $4 (optional: where a feeding process writes its
# exit status, see run_recording_status) holds a failure: the events it was to send never come.
wait_events() {
  local port=$1 want=$2 pid=$3 status_file=${4:-} last=0 got
  while true; do
    kill -0 "$pid" 2>/dev/null || { echo "$(basename "$0"): process $pid died, see $work" >&2; exit 1; }
    if [[ -n $status_file && -s $status_file && $(cat "$status_file") != 0 ]]; then
      echo "$(basename "$0"): a process feeding the events failed (exit $(cat "$status_file")), see $work" >&2
      exit 1
    fi
    got=$(curl -s "127.0.0.1:$port/metrics" | awk '$1 == "gsau_state_events" {printf "%d", $2}' || true)
    got=${got:-0}
    ((got >= want)) && return 0
    if ((SECONDS - last >= 30)); then log "  applied $got of $want"; last=$SECONDS; fi
    sleep 1
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Runs "$@" writing its exit status to the file $STATUS_FILE when it ends, and exits with it
# (for a background process wait_events should watch: `wait` on it still works after).
run_recording_status() {
  local rc=0
  "$@" || rc=$?
  echo "$rc" >"$STATUS_FILE"
  return "$rc"
}
