#!/usr/bin/env bash
# A local 3-node Apache Kafka cluster (KRaft, every node both broker and controller) on
# 127.0.0.1, for tests and local use: no Docker, only Java 17+ and Maven. The jars come from
# Maven Central (deploy/kafka/pom.xml) into a cache outside git.
#
#   bash deploy/kafka/cluster.sh start         fetch the jars if missing, format once, start all
#                                              nodes, wait until all serve, print the bootstrap list
#   bash deploy/kafka/cluster.sh stop [N]      SIGTERM (SIGKILL after $KAFKA_STOP_TIMEOUT s) all nodes, or node N
#   bash deploy/kafka/cluster.sh kill N        SIGKILL node N (1..3), for fault tests
#   bash deploy/kafka/cluster.sh start-node N  start node N again (same config and data), wait until it serves
#   bash deploy/kafka/cluster.sh bootstrap     print the bootstrap list
#   bash deploy/kafka/cluster.sh status        which nodes run (exit 0 when all do, 3 otherwise)
#   bash deploy/kafka/cluster.sh clean         stop, then delete the state dir
#   bash deploy/kafka/cluster.sh topics ARGS   Kafka's kafka-topics (TopicCommand) with ARGS
#   bash deploy/kafka/cluster.sh tool CLASS ARGS   any main class of the jars, e.g.
#                                              org.apache.kafka.tools.ConsoleProducer
#
# start and start-node print progress on standard error and only the bootstrap list on standard
# output, so `brokers=$(bash deploy/kafka/cluster.sh start)` captures it. See README.md here for the
# environment variables.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${KAFKA_CACHE_DIR:-$HOME/.cache/closeloop-kafka}
lib=$cache/lib
state=${KAFKA_STATE_DIR:-/tmp/closeloop-kafka}
state=${state%/}
base_port=${KAFKA_BASE_PORT:-19092}
# 19092/19093, 20092/20093, 21092/21093: below Linux's ephemeral range (32768-60999), where a
# client reconnecting to a dead node can be given the node's own port as its source port
# (a TCP self-connect) and keep it from starting again.
port_step=${KAFKA_PORT_STEP:-1000}
ready_timeout=${KAFKA_READY_TIMEOUT:-120}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}
nodes=(1 2 3)
java=${JAVA_HOME:+$JAVA_HOME/bin/}java
# A node stays near 250-300 MiB resident with these. Three of them share two cores: the serial
# collector has no GC threads, and C1 alone (no C2) starts a node in about two thirds of the
# time and, on such a machine, even served a produce load faster than with C2 compiling beside it.
read -r -a heap_opts <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
read -r -a jvm_opts <<<"${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
# The tools are short-lived: C1 alone starts them faster too.
read -r -a tool_opts <<<"${KAFKA_TOOL_OPTS:--Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}"

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

case $base_port in '' | *[!0-9]*) die "KAFKA_BASE_PORT must be a port number, not '$base_port'" ;; esac
case $port_step in '' | *[!0-9]*) die "KAFKA_PORT_STEP must be a number, not '$port_step'" ;; esac
((base_port + 2 * port_step + 1 <= 65535)) \
  || die "KAFKA_BASE_PORT=$base_port with KAFKA_PORT_STEP=$port_step puts node 3 past port 65535"

broker_port() { echo $((base_port + ($1 - 1) * port_step)); }
controller_port() { echo $((base_port + ($1 - 1) * port_step + 1)); }
bootstrap_list() {
  local n list=""
  for n in "${nodes[@]}"; do list+="${list:+,}127.0.0.1:$(broker_port "$n")"; done
  echo "$list"
}
config_file() { echo "$state/node-$1.properties"; }
data_dir() { echo "$state/node-$1/data"; }
log_file() { echo "$state/node-$1.log"; }
pid_file() { echo "$state/node-$1.pid"; }

node_arg() {
  case ${1:-} in 1 | 2 | 3) ;; *) die "expected a node number 1..3, got '${1:-}'" ;; esac
}

# The pid of node N when it runs (checked against the process's command line, so a stale pid file
# whose number was reused does not count), else nothing and status 1.
node_pid() {
  local file pid
  file=$(pid_file "$1")
  [ -f "$file" ] || return 1
  pid=$(<"$file")
  case $pid in '' | *[!0-9]*) return 1 ;; esac
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $(config_file "$1")" || return 1
  echo "$pid"
}
running() { node_pid "$1" >/dev/null; }

# A process that is gone, or a zombie whose parent has not reaped it yet, is not alive.
pid_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits (up to 30 s) until node N's ports are closed. A JVM's main thread turns zombie before
# its other threads have exited and released the sockets, so "not alive" comes a little early.
wait_ports_closed() {
  local deadline=$((SECONDS + 30))
  while port_open "$(broker_port "$1")" || port_open "$(controller_port "$1")"; do
    ((SECONDS < deadline)) || die "node $1's ports are still open 30 s after it ended"
    sleep 0.1
  done
}

# The jars, once per version of pom.xml: copied by Maven into a fresh folder that replaces $lib
# only when complete.
fetch_jars() {
  local stamp tmp mvn_log
  stamp=$(sha256sum "$here/pom.xml" | cut -d ' ' -f 1)
  if [ -f "$lib/.pom.sha256" ] && [ "$(<"$lib/.pom.sha256")" = "$stamp" ]; then return 0; fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (Debian: apt-get install maven)"
  command -v "$java" >/dev/null 2>&1 || die "$java not found (Debian: apt-get install openjdk-17-jre-headless)"
  mkdir -p "$cache"
  tmp=$cache/lib.tmp.$$
  mvn_log=$cache/mvn.log
  rm -rf "$tmp"
  log "fetching Kafka's jars with Maven (deploy/kafka/pom.xml) into $lib"
  local t0=$SECONDS
  if ! mvn -B -q -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    rm -rf "$tmp"
    die "Maven could not fetch the jars (whole log: $mvn_log)"
  fi
  echo "$stamp" >"$tmp/.pom.sha256"
  rm -rf "$lib"
  mv "$tmp" "$lib"
  log "fetched $(find "$lib" -name '*.jar' | wc -l) jars ($(du -sh "$lib" | cut -f 1)) in $((SECONDS - t0))s"
}

# Runs a main class of the jars as a short-lived tool: its logging goes to standard error, WARN up.
tool_cmd=("$java" "${tool_opts[@]}"
  -Dlog4j2.configurationFile="$here/log4j2.properties"
  -Dcloseloop.kafka.log.level=WARN -Dcloseloop.kafka.log.target=SYSTEM_ERR
  -cp "$lib/*")
tool() {
  [ -f "$lib/.pom.sha256" ] || fetch_jars
  "${tool_cmd[@]}" "$@"
}

write_config() {
  local n=$1 voters="" v
  for v in "${nodes[@]}"; do voters+="${voters:+,}$v@127.0.0.1:$(controller_port "$v")"; done
  cat >"$(config_file "$n")" <<EOF
# Written by deploy/kafka/cluster.sh; rewritten on every start.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$(data_dir "$n")

# Topics as the tests expect them: every record on all three nodes, acknowledged by two.
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# Fewer internal partitions than the default 50: the first consumer group or transaction on a
# fresh cluster then waits for 12 partitions, not 150 replicas, to be created.
offsets.topic.num.partitions=12
transaction.state.log.num.partitions=12

# A killed node is fenced, and leaves the ISRs, after 6 s without a heartbeat rather than 9 s:
# until then an acks=all produce to a partition it follows waits. A node that comes back takes
# its preferred leaderships back after at most 30 s rather than 300 s.
broker.heartbeat.interval.ms=1500
broker.session.timeout.ms=6000
leader.imbalance.check.interval.seconds=30

# Small: three nodes share two cores and a few hundred MiB each.
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
}

# The cluster id is made once and kept in the state dir; the base port is recorded beside it,
# because the controller quorum's addresses are part of the formatted state.
prepare_state() {
  mkdir -p "$state"
  local recorded
  if [ -f "$state/base-port" ]; then
    recorded=$(<"$state/base-port")
    [ "$recorded" = "$base_port:$port_step" ] \
      || die "$state was made with KAFKA_BASE_PORT:KAFKA_PORT_STEP $recorded, not $base_port:$port_step: run '$0 clean' first or use another KAFKA_STATE_DIR"
  else
    echo "$base_port:$port_step" >"$state/base-port"
  fi
  if [ ! -s "$state/cluster.id" ]; then
    tool kafka.tools.StorageTool random-uuid >"$state/cluster.id.tmp"
    mv "$state/cluster.id.tmp" "$state/cluster.id"
  fi
}

# Formats node N's log dir with the cluster id, once: a formatted dir has meta.properties.
format_node() {
  local n=$1
  [ -f "$(data_dir "$n")/meta.properties" ] && return 0
  log "formatting node $n's storage ($(data_dir "$n"))"
  mkdir -p "$(data_dir "$n")"
  local out
  if ! out=$(tool kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id "$(<"$state/cluster.id")" --config "$(config_file "$n")" 2>&1); then
    printf '%s\n' "$out" >&2
    die "could not format node $n's storage"
  fi
  # "Formatting metadata directory ... with metadata.version 4.4-IV2."
  grep '^Formatting' <<<"$out" >&2 || true
}

# Fails when another process listens on a port of node N.
check_ports() {
  local port
  for port in "$(broker_port "$1")" "$(controller_port "$1")"; do
    ! port_open "$port" || die "port $port (node $1) is taken by another process: stop it or set KAFKA_BASE_PORT"
  done
}

launch() {
  local n=$1
  running "$n" && return 0
  [ -f "$(data_dir "$n")/meta.properties" ] || die "node $n's storage is not formatted: run '$0 start'"
  check_ports "$n"
  log "starting node $n on 127.0.0.1:$(broker_port "$n") (controller :$(controller_port "$n")), log $(log_file "$n")"
  printf '\n===== cluster.sh: node %s starting at %s =====\n' "$n" "$(date -Is)" >>"$(log_file "$n")"
  # setsid: the node leaves the caller's session, so a Ctrl-C or a closed terminal does not reach
  # it. A background job of a script is no process group leader, so setsid execs in place and $!
  # is java's own pid.
  setsid "$java" "${heap_opts[@]}" "${jvm_opts[@]}" \
    -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$lib/*" kafka.Kafka "$(config_file "$n")" \
    >>"$(log_file "$n")" 2>&1 </dev/null 9>&- &
  local pid=$! deadline=$((SECONDS + 30))
  echo "$pid" >"$(pid_file "$n")"
  # Until the background job has exec'd java, its command line is still this script's and
  # node_pid would take the node for gone: wait for the exec (or for the process to end).
  while pid_alive "$pid" && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka"; do
    ((SECONDS < deadline)) || break
    sleep 0.05
  done
}

# Fails naming node N's log, after its last lines since it was last started.
fail_node() {
  local n=$1
  log "node $n $2; the last lines of $(log_file "$n"):"
  awk '/^===== cluster.sh: node .* starting at/ { n = 0 } { line[n++] = $0 }
    END { for (i = (n > 25 ? n - 25 : 0); i < n; i++) print line[i] }' "$(log_file "$n")" >&2 || true
  die "node $n $2 (log: $(log_file "$n"); '$0 stop' stops the nodes that run)"
}

# The ids of the brokers that the cluster's metadata lists as serving (registered and unfenced),
# each of which also answered an ApiVersions request of its own.
serving_brokers() {
  local out
  out=$(timeout 60 "${tool_cmd[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$(bootstrap_list)" 2>/dev/null) || true
  # A broker line: "127.0.0.1:19092 (id: 1 rack: null isFenced: false) -> (" then its versions;
  # one that does not answer: "... -> ERROR: ...".
  sed -n 's/^[^ ]* (id: \([0-9]*\) .*) -> ($/\1/p' <<<"$out" | sort -n | tr '\n' ' '
}

# Waits until the given nodes listen on their broker port and the cluster serves all three.
wait_ready() {
  local deadline=$((SECONDS + ready_timeout)) n want=() got=""
  want=("$@")
  for n in "${want[@]}"; do
    until port_open "$(broker_port "$n")"; do
      running "$n" || fail_node "$n" "exited before it listened on 127.0.0.1:$(broker_port "$n")"
      ((SECONDS < deadline)) || fail_node "$n" "did not listen on 127.0.0.1:$(broker_port "$n") within ${ready_timeout}s"
      sleep 0.5
    done
  done
  local expected
  expected=$(printf '%s ' "${nodes[@]}")
  while :; do
    got=$(serving_brokers)
    [ "$got" = "$expected" ] && break
    for n in "${nodes[@]}"; do
      running "$n" || fail_node "$n" "is not running"
    done
    if ((SECONDS >= deadline)); then
      for n in "${nodes[@]}"; do
        case " $got" in *" $n "*) ;; *) fail_node "$n" "was not serving within ${ready_timeout}s (serving: ${got:-none})" ;; esac
      done
      die "the cluster was not ready within ${ready_timeout}s"
    fi
    sleep 2
  done
  log "serving: brokers ${got% }"
}

cmd_start() {
  fetch_jars
  prepare_state
  local n started=()
  for n in "${nodes[@]}"; do
    write_config "$n"
    format_node "$n"
  done
  for n in "${nodes[@]}"; do
    running "$n" || check_ports "$n"
  done
  for n in "${nodes[@]}"; do
    if running "$n"; then
      log "node $n already runs (pid $(node_pid "$n"))"
    else
      launch "$n"
      started+=("$n")
    fi
  done
  local t0=$SECONDS
  wait_ready "${nodes[@]}"
  log "cluster ready after $((SECONDS - t0))s; ${#started[@]} node(s) started"
  bootstrap_list
}

cmd_start_node() {
  local n=$1
  [ -f "$(config_file "$n")" ] || die "node $n has no config in $state: run '$0 start' first"
  [ -f "$lib/.pom.sha256" ] || fetch_jars
  if running "$n"; then
    log "node $n already runs (pid $(node_pid "$n"))"
  else
    launch "$n"
  fi
  local t0=$SECONDS
  wait_ready "$n"
  log "node $n serving after $((SECONDS - t0))s"
}

# SIGTERM (a clean shutdown: the broker hands its leaderships over), then SIGKILL after
# $KAFKA_STOP_TIMEOUT seconds.
cmd_stop() {
  local n pids=() which=()
  for n in "$@"; do
    if running "$n"; then
      pids+=("$(node_pid "$n")")
      which+=("$n")
    fi
    rm -f "$(pid_file "$n")"
  done
  if ((${#pids[@]} == 0)); then
    log "no node of $state runs"
    return 0
  fi
  log "stopping node(s) ${which[*]} (SIGTERM)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + stop_timeout)) alive
  while :; do
    alive=()
    for n in "${pids[@]}"; do
      if pid_alive "$n"; then alive+=("$n"); fi
    done
    ((${#alive[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      log "still running after ${stop_timeout}s, SIGKILL: pid(s) ${alive[*]}"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  for n in "${which[@]}"; do wait_ports_closed "$n"; done
  log "stopped node(s) ${which[*]}"
}

cmd_kill() {
  local n=$1 pid
  if ! pid=$(node_pid "$n"); then
    rm -f "$(pid_file "$n")"
    log "node $n does not run"
    return 0
  fi
  kill -KILL "$pid"
  while pid_alive "$pid"; do sleep 0.1; done
  wait_ports_closed "$n"
  rm -f "$(pid_file "$n")"
  log "killed node $n (pid $pid)"
}

cmd_status() {
  local n all=0
  for n in "${nodes[@]}"; do
    if running "$n"; then
      printf 'node %s: running, pid %s, 127.0.0.1:%s\n' "$n" "$(node_pid "$n")" "$(broker_port "$n")"
    else
      printf 'node %s: stopped\n' "$n"
      all=3
    fi
  done
  return "$all"
}

# Deletes only what cluster.sh made, so a mistaken KAFKA_STATE_DIR loses nothing else.
cmd_clean() {
  cmd_stop "${nodes[@]}"
  [ -d "$state" ] || return 0
  local n
  for n in "${nodes[@]}"; do
    rm -rf "${state:?}/node-$n" "$(config_file "$n")" "$(log_file "$n")" "$(pid_file "$n")"
  done
  rm -f "$state/cluster.id" "$state/cluster.id.tmp" "$state/base-port"
  rmdir "$state" 2>/dev/null || log "left $state: it holds files cluster.sh did not make"
  log "deleted the cluster's state in $state"
}

# One command at a time per state dir.
lock() {
  mkdir -p "$(dirname "$state")"
  exec 9>"$state.lock"
  flock 9
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

case ${1:-} in
  start) lock; cmd_start ;;
  stop)
    lock
    if [ $# -ge 2 ]; then node_arg "$2"; cmd_stop "$2"; else cmd_stop "${nodes[@]}"; fi
    ;;
  kill) node_arg "${2:-}"; lock; cmd_kill "$2" ;;
  start-node) node_arg "${2:-}"; lock; cmd_start_node "$2" ;;
  bootstrap) bootstrap_list ;;
  status) cmd_status ;;
  clean) lock; cmd_clean ;;
  topics) shift; tool org.apache.kafka.tools.TopicCommand "$@" ;;
  tool)
    [ $# -ge 2 ] || die "usage: $0 tool CLASS [ARGS...]"
    shift
    tool "$@"
    ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
