#!/usr/bin/env bash
# Starts, on this machine, what a multi-node deployment runs on several: a redis-server, two
# `signalroom serve --broker` nodes and HAProxy (deploy/haproxy.cfg) in front of them; prints the
# balancer's URL and runs until Ctrl-C or SIGTERM, then stops all of them. SIGHUP makes a rolling
# restart: each node in turn drains (SIGTERM) and is started again, the next once it is ready.
#
#   deploy/run-local.sh [--port LB_PORT] [--secret SECRET] [--signalroom PATH] [--redis KIND]
#   kill -HUP <its pid>       # a rolling restart, as a release would do it
#
# --redis one (default): one redis-server; sentinel: a primary, a replica and three sentinels
# (redis+sentinel://); cluster: a Redis Cluster of three primaries with a replica each
# (redis-cluster://). Kill a primary (its pid is logged) to watch a failover.
# Ports: the balancer on LB_PORT (default 4443; 0 = any free port), Redis and the nodes on free
# loopback ports. Tokens point to the balancer (--public-url), so every client goes through it.
# Needs redis-server, haproxy and a signalroom binary (default: `signalroom` on PATH, else
# target/release/signalroom or target/debug/signalroom of this checkout).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PATH="$PATH:/usr/sbin"

lb_port=4443
secret=${OPENVIDU_SECRET:-MY_SECRET}
signalroom=${SIGNALROOM_BIN:-}
redis_kind=one
while [ $# -gt 0 ]; do
  case "$1" in
    --port) lb_port=$2; shift 2 ;;
    --secret) secret=$2; shift 2 ;;
    --signalroom) signalroom=$2; shift 2 ;;
    --redis) redis_kind=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-local.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$signalroom" ]; then
  target=${CARGO_TARGET_DIR:-$here/../target}
  for candidate in "$(command -v signalroom || true)" "$target/release/signalroom" "$target/debug/signalroom"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then signalroom=$candidate; break; fi
  done
fi
for program in redis-server haproxy "${signalroom:-signalroom}"; do
  command -v "$program" >/dev/null || { echo "run-local.sh: $program not found" >&2; exit 1; }
done

log() { printf 'run-local: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/signalroom-deploy.XXXXXX")
pids=()
node_pids=()
ready=0
stop() {
  trap - EXIT INT TERM
  if [ "$ready" = 0 ]; then
    # Stopped before it was ready: what the nodes said, for whoever waited.
    for f in "$work"/node*.log; do
      [ -s "$f" ] && { log "${f##*/} (last lines):"; tail -n 20 "$f" >&2; }
    done
  fi
  for pid in "${pids[@]}" "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$lb_port" = 0 ] && lb_port=$(free_port)
public="http://127.0.0.1:$lb_port"

# A port free with the one 10,000 above it (a cluster node's bus port), both below the kernel's
# ephemeral ports (which outgoing connections take).
free_pair() {
  python3 -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
while True:
    p = random.randint(10000, max(low - 10001, 11000))
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass'
}
redis_ping() {
  local reply=
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3 && read -r -t 1 reply <&3
  exec 3<&-
  [ "${reply%$'\r'}" = +PONG ]
}
# Starts a redis-server on port $1 (more arguments are its own) and waits for its PONG.
start_redis() {
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" "$@" \
    >"$work/redis-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    redis_ping "$port" && break
    sleep 0.1
  done
  redis_ping "$port" || { log "redis-server did not start:"; cat "$work/redis-$port.log" >&2; exit 1; }
  log "redis-server on port $port: pid $!"
}
case "$redis_kind" in
  one)
    redis_port=$(free_port)
    start_redis "$redis_port"
    broker="redis://127.0.0.1:$redis_port/0"
    ;;
  sentinel)
    primary=$(free_port)
    start_redis "$primary"
    start_redis "$(free_port)" --replicaof 127.0.0.1 "$primary"
    sentinels=()
    for i in 1 2 3; do
      port=$(free_port)
      printf 'port %s\nbind 127.0.0.1\nsentinel monitor signalroom 127.0.0.1 %s 2\nsentinel down-after-milliseconds signalroom 1000\nsentinel failover-timeout signalroom 5000\n' \
        "$port" "$primary" >"$work/sentinel-$i.conf"
      redis-server "$work/sentinel-$i.conf" --sentinel >"$work/sentinel-$i.log" 2>&1 &
      pids+=($!)
      sentinels+=("127.0.0.1:$port")
    done
    for _ in $(seq 100); do
      [ "$(redis-cli -p "${sentinels[0]#*:}" sentinel master signalroom 2>/dev/null | sed -n '/^num-other-sentinels$/{n;p}')" = 2 ] && break
      sleep 0.1
    done
    broker="redis+sentinel://$(IFS=,; echo "${sentinels[*]}")/signalroom"
    ;;
  cluster)
    addrs=()
    for _ in 1 2 3 4 5 6; do
      port=$(free_pair)
      start_redis "$port" --cluster-enabled yes --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 1000
      addrs+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$work/cluster-create.log" 2>&1 \
      || { log "redis-cli --cluster create failed:"; cat "$work/cluster-create.log" >&2; exit 1; }
    # Every node agrees the cluster is up (each serves its slots) before a signalroom node connects.
    for addr in "${addrs[@]}"; do
      for _ in $(seq 300); do
        redis-cli -p "${addr#*:}" cluster info 2>/dev/null | grep -q cluster_state:ok && break
        sleep 0.1
      done
      redis-cli -p "${addr#*:}" cluster info 2>/dev/null | grep -q cluster_state:ok \
        || { log "the Redis Cluster node at $addr is not ok after 30 s"; exit 1; }
    done
    broker="redis-cluster://$(IFS=,; echo "${addrs[*]:0:3}")"
    ;;
  *) log "--redis $redis_kind: one, sentinel or cluster"; exit 2 ;;
esac
log "Redis ($redis_kind) at $broker"

node_addrs=()
# Starts node $1 on address $2 and waits for its ready line.
start_node() {
  local n=$1 addr=$2 line=
  # The ready line shows the public URL (the balancer's): the node's own address is chosen here.
  # Its files exist before it starts: the wait below may look before the node's shell opened them.
  : >"$work/node$n.out"
  : >>"$work/node$n.log"
  OPENVIDU_SECRET=$secret "$signalroom" serve --listen "$addr" --broker "$broker" --public-url "$public" \
    --log warn >>"$work/node$n.out" 2>>"$work/node$n.log" &
  node_pids[n]=$!
  for _ in $(seq 200); do
    line=$(sed -n 's/^signalroom ready: //p' "$work/node$n.out")
    [ -n "$line" ] && break
    kill -0 "${node_pids[n]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$line" ]; then
    log "node $n did not start:"; cat "$work/node$n.log" >&2; exit 1
  fi
}
for n in 1 2; do
  addr=127.0.0.1:$(free_port)
  start_node "$n" "$addr"
  node_addrs[n]=$addr
  log "node $n at http://$addr"
done

LB_ADDR="127.0.0.1:$lb_port" NODE1_ADDR=${node_addrs[1]} NODE2_ADDR=${node_addrs[2]} \
  haproxy -db -f "$here/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "$public/openvidu/api/config/openvidu-publicurl" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { log "haproxy exited:"; cat "$work/haproxy.log" >&2; exit 1; }
  sleep 0.1
done
log "haproxy at $public, round robin over ${node_addrs[*]}"
echo "signalroom cluster ready: $public"
ready=1

# A rolling restart: each node drains (its participants move to the other, losing nothing), exits,
# and starts again; the next one waits until the balancer may send it work (/health/ready).
rolling=0
trap 'rolling=1' HUP
roll() {
  for n in 1 2; do
    log "rolling restart: draining node $n"
    kill -TERM "${node_pids[n]}"
    wait "${node_pids[n]}" 2>/dev/null || true
    start_node "$n" "${node_addrs[n]}"
    for _ in $(seq 100); do
      curl -fsS "http://${node_addrs[n]}/health/ready" >/dev/null 2>&1 && break
      sleep 0.1
    done
    sleep 2 # HAProxy's health check (inter 1s, rise 2) sees it up again
    log "rolling restart: node $n is back"
  done
  log "rolling restart done"
}
while true; do
  wait -n "${pids[@]}" "${node_pids[@]}" || true
  if [ "$rolling" = 1 ]; then
    rolling=0
    roll
    continue
  fi
  log "a process exited; stopping everything"
  exit 1
done
