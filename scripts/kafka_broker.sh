#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and demos.
#
#   kafka_broker.sh start --dir DIR [--port N] [--max-lifetime S]
#       Formats a fresh log directory under DIR, starts the broker on a free loopback port
#       (or N), waits until it answers metadata requests, and writes DIR/bootstrap
#       ("127.0.0.1:PORT") and DIR/pid. Prints the bootstrap address on stdout.
#       A watchdog stops the broker after S seconds (default 3600; a resume keeps it) even if
#       nobody calls stop, so a killed test run cannot leave a broker behind for long. A --port
#       already in use is an error.
#   kafka_broker.sh stop --dir DIR     Stops the broker and removes DIR.
#   kafka_broker.sh pause --dir DIR    Stops the broker process but keeps DIR (its data, ports).
#   kafka_broker.sh resume --dir DIR   Starts a paused broker again on the same ports and data,
#                                      and waits until it answers (outage tests); a running
#                                      one is left as it is.
#   kafka_broker.sh status --dir DIR   Exit 0 when the broker in DIR answers.
#
# The broker's jars come from scripts/kafka_fetch.sh (Maven, cached outside the repo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}; shift || true
usage() { sed -n 2,18p "$0"; exit 2; }
case "$cmd" in start | stop | pause | resume | status) ;; *) usage ;; esac
dir=""; port=""; max_lifetime=""
while (($#)); do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --max-lifetime) max_lifetime=$2; shift 2 ;;
    *) echo "kafka_broker.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "kafka_broker.sh: --dir is required" >&2; exit 2; }
# One spelling of the directory (absolute): the broker's command line names it, and a stop
# recognises its broker by that (broker_pid).
dir=$(realpath -m "$dir")
# Whole seconds: the watchdog's arithmetic died on "1h", and the broker then ran without a limit.
if [ -n "$max_lifetime" ] && [[ ! $max_lifetime =~ ^[1-9][0-9]*$ ]]; then
  echo "kafka_broker.sh: --max-lifetime takes whole seconds, not '$max_lifetime'" >&2; exit 2
fi
if [ -n "$port" ] && [[ ! $port =~ ^[1-9][0-9]*$ ]]; then
  echo "kafka_broker.sh: --port takes a port number, not '$port'" >&2; exit 2
fi

version=${GSAU_KAFKA_VERSION:-4.1.1}
libs="${GSAU_CACHE:-$HOME/.cache/gsau-stream}/kafka-$version/libs"

# A random free port below the kernel's ephemeral range: a port from that range can be taken by any
# outgoing connection, including a client reconnecting while the broker is paused.
free_port() {
  python3 - <<'PY'
import random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    low = 32768
def try_bind(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
port = None
if low - 1 - 15000 >= 1000:
    for _ in range(200):
        port = try_bind(random.randint(15000, low - 1))
        if port:
            break
print(port or try_bind(0))
PY
}

port_taken() {  # true when something holds 127.0.0.1:$1
  ! python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# The pid recorded in $dir/pid when it is still this directory's broker: a pid file that outlived
# its broker (a killed run) may name an unrelated process by now, which must not be signalled.
broker_pid() {
  [ -f "$dir/pid" ] || return 1
  local pid; pid=$(cat "$dir/pid")
  kill -0 "$pid" 2>/dev/null || return 1
  local cmdline; cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmdline" in *"kafka.Kafka $dir/server.properties"*) echo "$pid" ;; *) return 1 ;; esac
}

broker_alive() { broker_pid >/dev/null; }

# Waits until the broker just launched answers on $1, or says why it did not. Only while our
# broker is alive: another one answering on the port is not ours.
wait_until_answers() {
  # Against a deadline: a broker that takes connections and never answers made each try wait
  # out kcat's own 10 s (120 tries: 21 minutes).
  local end=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$end" ]; do
    if ! broker_alive; then
      echo "kafka_broker.sh: the broker exited during start-up; last lines of its logs:" >&2
      tail -20 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
      return 1
    fi
    if answers "$1" $((end - SECONDS)); then return 0; fi
    sleep 0.5
  done
  echo "kafka_broker.sh: the broker did not answer metadata requests within 60 s" >&2
  return 1
}

answers() {  # true when a metadata request to $1 succeeds within $2 s (at most 10)
  local limit=${2:-10}
  [ "$limit" -gt 10 ] && limit=10
  [ "$limit" -lt 1 ] && limit=1
  timeout "$limit" kcat -L -b "$1" -m 5 >/dev/null 2>&1
}

jvm_command() {  # sets JVM: java with the broker's classpath and logging, ready for a main class
  JVM=(java -Xms256m -Xmx768m -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
       -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$dir/log4j2.properties"
       -cp "$(ls "$libs"/*.jar | tr '\n' ':')")
}

launch() {  # starts the broker of $dir in the background and records its pid
  # The lifetime the broker was started with serves its resumes too (one died an hour late).
  if [ -n "$max_lifetime" ]; then echo "$max_lifetime" >"$dir/max_lifetime"; fi
  max_lifetime=$(cat "$dir/max_lifetime" 2>/dev/null || echo 3600)
  jvm_command
  nohup "${JVM[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  # $! is a fork of this script until it execs nohup and then java; until then its command line
  # is this script's, and broker_pid took it for a broker that had died ("exited during start-up"
  # with empty logs, seen once in CI on a loaded machine). Wait for the exec (5 s at most).
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in *"kafka.Kafka $dir/server.properties"*) break ;; esac
    sleep 0.05
  done
  # The watchdog outlives this script but not the broker's maximum lifetime.
  # It polls, so it ends by itself within 2 s of the broker stopping for any other reason.
  nohup bash -c "pid=\$1; end=\$((SECONDS + $max_lifetime)); while kill -0 \$pid 2>/dev/null; do
    [ \$SECONDS -ge \$end ] && { kill -TERM \$pid; break; }; sleep 2; done" watchdog "$(cat "$dir/pid")" \
    >/dev/null 2>&1 &
  echo $! >"$dir/watchdog.pid"
}

stop_broker() {
  [ -f "$dir/pid" ] || return 0
  local pid
  if pid=$(broker_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ -f "$dir/watchdog.pid" ]; then
    local wpid; wpid=$(cat "$dir/watchdog.pid")
    case "$(tr '\0' ' ' <"/proc/$wpid/cmdline" 2>/dev/null)" in
      *" watchdog "*) kill "$wpid" 2>/dev/null || true ;;
    esac
  fi
  rm -f "$dir/pid"
}

case "$cmd" in
  start)
    [ -f "$libs/.complete" ] || "$here/kafka_fetch.sh" >&2
    if broker_alive; then
      stop_broker
    fi
    rm -rf "$dir"; mkdir -p "$dir/data"
    if [ -n "$port" ] && port_taken "$port"; then
      # Another broker there would answer for ours, which then dies on bind.
      echo "kafka_broker.sh: port $port is in use" >&2; exit 1
    fi
    port=${port:-$(free_port)}
    cport=$(free_port)
    while [ "$cport" = "$port" ]; do cport=$(free_port); done
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
PROPS
    cat >"$dir/log4j2.properties" <<'LOG'
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=FILE
appender.file.type=File
appender.file.name=FILE
appender.file.fileName=${sys:kafka.logs.dir}/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
LOG
    # A random 16-byte cluster id, url-safe base64 without padding, as Kafka writes them.
    # One in 64 starts with '-', which the storage tool's argument parser takes for an option
    # ("--cluster-id: expected one argument"): draw again.
    cluster_id=-
    while [[ $cluster_id == -* ]]; do
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    done
    jvm_command
    "${JVM[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; exit 1; }
    launch
    bootstrap="127.0.0.1:$port"
    if wait_until_answers "$bootstrap"; then
      echo "$bootstrap" >"$dir/bootstrap"
      echo "$bootstrap"
      exit 0
    fi
    stop_broker; exit 1
    ;;
  stop)
    stop_broker
    rm -rf "$dir"
    ;;
  status)
    [ -f "$dir/bootstrap" ] && answers "$(cat "$dir/bootstrap")"
    ;;
  pause)
    stop_broker
    ;;
  resume)
    [ -f "$dir/server.properties" ] || { echo "kafka_broker.sh: nothing to resume in $dir" >&2; exit 1; }
    bootstrap=$(cat "$dir/bootstrap")
    if broker_alive; then  # not paused: a second JVM would fail to bind and leak the first
      echo "$bootstrap"; exit 0
    fi
    launch
    if wait_until_answers "$bootstrap"; then echo "$bootstrap"; exit 0; fi
    stop_broker; exit 1
    ;;
  *)
    usage ;;
esac
