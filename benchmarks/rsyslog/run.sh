#!/usr/bin/env bash
# Sends the same syslog lines from the same load generator (benchmarks/cmd/
# loadgen) to rsyslog over imtcp and over imrelp (both -> omfile), and to
# snail's collector, one daemon at a time on loopback; counts the lines in
# each output file and reads each daemon's CPU time. One run, printed side
# by side. Needs rsyslog and rsyslog-relp (installed with apt-get when run
# as root).
#
#   bash benchmarks/rsyslog/run.sh            # 1M lines
#   LINES=200000 bash benchmarks/rsyslog/run.sh
#
# RELP is sent by loadgen's own small RELP client with a window of 128
# messages; rsyslog's own RELP sender (omrelp) corks its socket and stalls
# on loopback's 64 KiB MTU, which would measure that bug, not imrelp.
set -euo pipefail

LINES="${LINES:-1000000}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d /tmp/snail-vs-rsyslog-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v rsyslogd >/dev/null || [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so ] && ! ls /usr/lib/*/rsyslog/imrelp.so >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-relp >/dev/null
  else
    echo "rsyslog and rsyslog-relp are needed (apt-get install rsyslog rsyslog-relp)" >&2
    exit 1
  fi
fi

echo "building snail and loadgen"
go build -C "$root" -o "$work/bin/snail" ./cmd/snail
go build -C "$root/benchmarks" -o "$work/bin/loadgen" ./cmd/loadgen

# About 260-byte RFC 5424 lines, each with a unique id in its JSON message.
python3 - "$LINES" > "$work/lines.txt" <<'PY'
import random, sys
random.seed(5)
n = int(sys.argv[1])
paths = ["/api/v1/users/", "/api/v1/orders/", "/api/v2/search?q=", "/static/app.js?v="]
out = sys.stdout
for i in range(n):
    out.write('<134>1 2026-11-26T01:02:03.%06dZ web-7 checkout 4242 - - {"level":"info","id":%d,"msg":"request completed",'
              '"method":"GET","path":"%s%d","status":200,"latency_ms":%.3f,"request_id":"%016x%08x"}\n'
              % (i % 1000000, i, random.choice(paths), random.randrange(10**6), random.expovariate(0.05),
                 random.getrandbits(64), random.getrandbits(32)))
PY
size=$(stat -c %s "$work/lines.txt")
echo "$LINES lines, $((size / LINES)) bytes each on average"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }
waitport() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
lines_in() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
# wait_quiet FILE: polls FILE's size until it has not grown for 1 s, and
# prints the time it last grew (so that the wait itself is not counted).
wait_quiet() {
  local last=-1 same=0 n tlast
  tlast=$(date +%s.%N)
  while [ "$same" -lt 20 ]; do
    n=$(stat -c %s "$1" 2>/dev/null || echo 0)
    if [ "$n" != "$last" ]; then last=$n; tlast=$(date +%s.%N); same=0; else same=$((same + 1)); fi
    sleep 0.05
  done
  echo "$tlast"
}

results=()
run_rsyslog() { # name input-module
  local name=$1 mod=$2 port dir
  port=$(freeport); dir="$work/$name"; mkdir -p "$dir"
  cat > "$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir")
module(load="$mod")
template(name="msgonly" type="string" string="%msg%\n")
input(type="$mod" port="$port" ruleset="out")
ruleset(name="out") { action(type="omfile" file="$dir/out.log" template="msgonly") }
CONF
  rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslog.pid" 2>"$dir/err.txt" &
  local pid=$!; pids+=("$pid")
  waitport "$port"
  local c0 t0 t1 c1
  c0=$(cputicks "$pid")
  t0=$("$work/bin/loadgen" -proto "${name#rsyslog-}" -addr "127.0.0.1:$port" -in "$work/lines.txt" | awk '/^start/ {print $2}')
  t1=$(wait_quiet "$dir/out.log"); c1=$(cputicks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  results+=("$name $(lines_in "$dir/out.log") $t0 $t1 $((c1 - c0))")
}

run_snail() {
  local port dir
  port=$(freeport); dir="$work/snail"; mkdir -p "$dir"
  "$work/bin/snail" collector --listen "127.0.0.1:$port" --dir "$dir" --log-level error &
  local pid=$!; pids+=("$pid")
  waitport "$port"
  local c0 t0 t1 c1
  c0=$(cputicks "$pid")
  # loadgen returns when every batch is acked (after the collector wrote it).
  t0=$("$work/bin/loadgen" -proto snail -addr "127.0.0.1:$port" -in "$work/lines.txt" | awk '/^start/ {print $2}')
  t1=$(date +%s.%N); c1=$(cputicks "$pid")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  results+=("snail-collector $(lines_in "$dir/bench.log") $t0 $t1 $((c1 - c0))")
}

run_rsyslog rsyslog-tcp imtcp
run_rsyslog rsyslog-relp imrelp
run_snail

echo
printf '%-18s %12s %12s %8s %14s %16s\n' daemon lines/s "in file" lost "daemon CPU s" "CPU us/line"
for r in "${results[@]}"; do
  read -r name n t0 t1 ticks <<<"$r"
  awk -v name="$name" -v n="$n" -v t0="$t0" -v t1="$t1" -v ticks="$ticks" -v want="$LINES" 'BEGIN {
    el = t1 - t0; cpu = ticks / 100
    printf "%-18s %12.0f %12d %8d %14.2f %16.2f\n", name, n / el, n, want - n, cpu, cpu * 1e6 / (n > 0 ? n : 1)
  }'
done
