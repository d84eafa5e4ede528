# Shared helpers of the load benchmarks (run.sh, tenuo.sh); sourced, not run.
#
# Expects HERE (this folder); sets ROOT and makes the repo the working directory,
# and reads the knobs both scripts share (documented at the top of each). The
# load part expects SETUPS: every setup is a front Envoy listening on
# 127.0.0.1:${LISTEN[setup]} with its admin on ${ADMIN[setup]}, in front of one
# upstream Envoy (UP_PORT, UP_ADMIN).

ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" # paths below (envoy/, tests/, target/) are relative to the repo
# Cargo's target directory: CARGO_TARGET_DIR when set (the builds below honour it), else target/.
TARGET=$(mkdir -p "${CARGO_TARGET_DIR:-$ROOT/target}" && cd "${CARGO_TARGET_DIR:-$ROOT/target}" && pwd)

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
RUNS=${BENCH_RUNS:-3}
for v in DURATION WARMUP CONNS THREADS RUNS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "error: the BENCH_* knobs must be positive integers ($v=${!v})" >&2; exit 2; }
done

step() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# "VAR=value " for each knob the caller set: the command line in the report shows
# what was asked for, not the defaults filled in afterwards.
knobs_set() { # VAR...
  local v
  for v in "$@"; do
    if [ -n "${!v:-}" ]; then printf '%s ' "$v=${!v}"; fi
  done
}

# --- tools ------------------------------------------------------------------------------
need_tools() { # tool... (wrk is installed with apt when missing and allowed)
  local t
  if ! command -v wrk >/dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "wrk not found (apt-get install wrk)"
    note "installing wrk (apt)"
    apt-get update -qq >&2 && apt-get install -y -qq wrk >&2
  fi
  for t in "$@"; do command -v "$t" >/dev/null || die "$t not found"; done
}
check_envoy() { # sets ENVOY_VERSION_LINE; notes the envoy and wrk versions
  [ -x "$ENVOY_BIN" ] || die "envoy not executable: $ENVOY_BIN"
  ENVOY_VERSION_LINE=$("$ENVOY_BIN" --version | sed -n 's/.*version: //p' | head -n1)
  note "envoy: $ENVOY_BIN ($ENVOY_VERSION_LINE)"
  note "wrk: $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)"
}

# --- work dir, process bookkeeping, cleanup ---------------------------------------------
# Every background process is added to PIDS; on exit they are stopped in reverse
# order (TERM, then KILL after 3 s). The work directory is removed only after a
# complete run (ok=1) without BENCH_KEEP=1, so a failure leaves its logs behind.
init_work() { # mktemp-prefix -> WORK
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  ok=0
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
cleanup() {
  local pid i
  exec 3>&- # run.sh's IdP exits when its stdin (a fifo held on fd 3) closes; a no-op elsewhere
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$ok" = 1 ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "work directory kept: $WORK" >&2
  fi
}

free_ports() { # n -> n free loopback ports (bound together, so they are distinct)
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

wait_http() { # url expected-status timeout-seconds
  local deadline=$((SECONDS + $3)) code
  while [ "$SECONDS" -lt "$deadline" ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)
    [ "$code" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

# --- Envoy configs ----------------------------------------------------------------------
fill() { # template out key=value...
  local tpl=$1 out=$2 kv
  shift 2
  cp "$tpl" "$out"
  for kv in "$@"; do
    python3 - "$out" "${kv%%=*}" "${kv#*=}" <<'PY'
import sys
path, key, val = sys.argv[1:]
text = open(path).read()
if f"@{key}@" not in text:
    sys.exit(f"placeholder @{key}@ missing in {path}")
open(path, "w").write(text.replace(f"@{key}@", val))
PY
  done
  ! grep -n '@[A-Z_]*@' "$out" || die "unfilled placeholder in $out"
}
fill_common() { # upstream.yaml and front-noauth.yaml, the same in every benchmark
  fill "$HERE/upstream.yaml" "$WORK/upstream.yaml" LISTEN_PORT="$UP_PORT" ADMIN_PORT="$UP_ADMIN"
  fill "$HERE/front-noauth.yaml" "$WORK/front-noauth.yaml" \
    LISTEN_PORT="${LISTEN[noauth]}" ADMIN_PORT="${ADMIN[noauth]}" UPSTREAM_PORT="$UP_PORT"
}
# A front Envoy in front of portcullis (or another gRPC ext_authz server) is the
# repo's own envoy/envoy.yaml, so the benchmark measures what is shipped: ports
# replaced by string substitution (each default must occur exactly once) and the
# listener bound to 127.0.0.1 instead of 0.0.0.0.
render_repo_envoy() { # setup grpc-port -> $WORK/front-<setup>.yaml
  python3 - envoy/envoy.yaml "$WORK/front-$1.yaml" \
    "port_value: 8080=port_value: ${LISTEN[$1]}" "port_value: 9090=port_value: $2" \
    "port_value: 8081=port_value: $UP_PORT" "port_value: 9901=port_value: ${ADMIN[$1]}" \
    "address: 0.0.0.0,=address: 127.0.0.1," <<'PY'
import re, sys
src, dst, *subs = sys.argv[1:]
text = open(src).read()
for sub in subs:
    old, new = sub.split("=", 1)
    pat = re.escape(old) + (r"(?![0-9])" if old[-1].isdigit() else "")
    n = len(re.findall(pat, text))
    if n != 1:
        sys.exit(f"{src}: expected exactly one '{old}', found {n}")
    text = re.sub(pat, new, text)
if "0.0.0.0" in text:
    sys.exit(f"{src}: a non-loopback address is left after rendering")
open(dst, "w").write(text)
PY
}
validate_configs() { # the upstream's and every setup's config
  local f
  for f in upstream "${SETUPS[@]/#/front-}"; do
    "$ENVOY_BIN" --mode validate -c "$WORK/$f.yaml" -l error >/dev/null || die "invalid config $WORK/$f.yaml"
  done
}

# --- Envoys -----------------------------------------------------------------------------
declare -A ENVOY_PID
# Front Envoys (and the upstream) run BENCH_FRONT_CONCURRENCY workers (default 1).
FRONT_CONCURRENCY=${BENCH_FRONT_CONCURRENCY:-1}
[[ $FRONT_CONCURRENCY =~ ^[1-8]$ ]] || { echo "error: BENCH_FRONT_CONCURRENCY must be 1..8" >&2; exit 2; }
start_envoy() { # name config -> ENVOY_PID[name]
  "$ENVOY_BIN" -c "$2" --concurrency "$FRONT_CONCURRENCY" --disable-hot-restart -l warning \
    >"$WORK/envoy-$1.log" 2>&1 3>&- &
  PIDS+=($!)
  ENVOY_PID[$1]=$!
}
start_envoys() { # the upstream and one front per setup; returns once all are ready
  local s
  start_envoy upstream "$WORK/upstream.yaml"
  for s in "${SETUPS[@]}"; do start_envoy "$s" "$WORK/front-$s.yaml"; done
  wait_http "http://127.0.0.1:$UP_ADMIN/ready" 200 30 || die "upstream Envoy not ready: $(tail -n 5 "$WORK/envoy-upstream.log")"
  for s in "${SETUPS[@]}"; do
    wait_http "http://127.0.0.1:${ADMIN[$s]}/ready" 200 30 || die "front Envoy $s not ready: $(tail -n 5 "$WORK/envoy-$s.log")"
  done
}

# --- portcullis ------------------------------------------------------------------------
# Sets PORTCULLIS: $PORTCULLIS_BIN when given (an A/B of two builds, e.g. with
# another allocator), else the release build of this tree.
build_portcullis() {
  if [ -n "${PORTCULLIS_BIN:-}" ]; then
    [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN not executable: $PORTCULLIS_BIN"
    PORTCULLIS=$PORTCULLIS_BIN
    note "portcullis: $PORTCULLIS (PORTCULLIS_BIN)"
  else
    step "cargo build --release (portcullis)"
    cargo build --release --bin portcullis >&2 || die "cargo build --release failed"
    PORTCULLIS=$TARGET/release/portcullis
  fi
}

# check-config, then serve $WORK/portcullis.yaml (or another config, with its admin
# port and log) in the background -> PC_PID; returns once /readyz on PC_ADMIN answers 200.
start_portcullis() { # binary [config admin-port log]
  local config=${2:-$WORK/portcullis.yaml} admin=${3:-$PC_ADMIN} log=${4:-$WORK/portcullis.log}
  "$1" check-config --config "$config" >&2 || die "check-config failed ($config)"
  "$1" serve --config "$config" >"$log" 2>&1 3>&- &
  PC_PID=$!
  PIDS+=("$PC_PID")
  wait_http "http://127.0.0.1:$admin/readyz" 200 20 || die "portcullis not ready: $(tail -n 5 "$log")"
}

# A browser login as curl makes it, through a front Envoy in front of portcullis:
# /app/ -> the IdP's /authorize (oauth2-mock-server signs in at once) -> the
# callback, which sets the session cookie. Prints "name=value" of that cookie.
hdr() { tr -d '\r' <"$1" | awk -v n="$2" 'tolower($1) == n":" {sub(/^[^:]*: /, ""); print}'; }
login_cookie() { # host:port cookie-name
  local authorize state callback cookie
  curl -s -o /dev/null -D "$WORK/l1.h" -H 'accept: text/html' -H 'sec-fetch-mode: navigate' "http://$1/app/"
  authorize=$(hdr "$WORK/l1.h" location)
  state=$(hdr "$WORK/l1.h" set-cookie | head -n1 | cut -d';' -f1)
  [ -n "$authorize" ] && [ -n "$state" ] || die "no login redirect: $(cat "$WORK/l1.h")"
  curl -s -o /dev/null -D "$WORK/l2.h" "$authorize"
  callback=$(hdr "$WORK/l2.h" location)
  [[ $callback == "http://$1/"* ]] || die "IdP did not redirect back: $(cat "$WORK/l2.h")"
  curl -s -o /dev/null -D "$WORK/l3.h" -H "cookie: $state" "$callback"
  cookie=$(hdr "$WORK/l3.h" set-cookie | grep "^$2=" | head -n1 | cut -d';' -f1)
  [ -n "$cookie" ] || die "no session cookie after the callback: $(cat "$WORK/l3.h")"
  echo "$cookie"
}

expect() { # description got want
  if [ "$2" = "$3" ]; then note "ok   $1: $2"; else die "$1: got '$2', want '$3'"; fi
}

# --- load -------------------------------------------------------------------------------
cpu_ticks() { # utime+stime of a pid (all threads), in clock ticks; "-" for none
  [ "$1" = - ] && { echo 0; return; }
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}
machine_ticks() { # "busy total" over all CPUs, from /proc/stat (busy excludes idle and iowait)
  awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
child_ticks() { # cutime+cstime of this shell: CPU of its reaped children (wrk)
  awk '{sub(/^.*\) /, ""); print $14 + $15}' "/proc/$$/stat"
}
declare -A WRK_PATH # per setup; default /bench
wrk_at() { # setup seconds outfile [wrk args (headers)...]
  wrk -t"$THREADS" -c"$CONNS" -d"$2s" --latency "${@:4}" "http://127.0.0.1:${LISTEN[$1]}${WRK_PATH[$1]:-/bench}" >"$3"
}
round_order() { # round -> ORDER: SETUPS rotated by round-1, so no setup always goes first
  local i n=${#SETUPS[@]}
  ORDER=()
  for ((i = 0; i < n; i++)); do ORDER+=("${SETUPS[$(((i + $1 - 1) % n))]}"); done
}
# Runs a measured command (wrk) and writes $WORK/cpu-<setup>-<round>.txt: wall
# time and the CPU ticks used meanwhile by the front and upstream Envoys, the
# authorizer ("-" for none), wrk, and the whole machine (to see outside load).
measure() { # setup round authz-pid command...
  local s=$1 r=$2 apid=$3 b_front b_up b_authz b_wrk b_busy b_total a_busy a_total t0 t1
  shift 3
  b_front=$(cpu_ticks "${ENVOY_PID[$s]}") b_up=$(cpu_ticks "${ENVOY_PID[upstream]}")
  b_authz=$(cpu_ticks "$apid") b_wrk=$(child_ticks)
  read -r b_busy b_total < <(machine_ticks)
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  {
    echo "wall=$(python3 -c "print($t1 - $t0)")"
    echo "front=$(($(cpu_ticks "${ENVOY_PID[$s]}") - b_front))"
    echo "upstream=$(($(cpu_ticks "${ENVOY_PID[upstream]}") - b_up))"
    echo "authz=$(($(cpu_ticks "$apid") - b_authz))"
    echo "wrk=$(($(child_ticks) - b_wrk))"
    read -r a_busy a_total < <(machine_ticks)
    echo "machine_busy=$((a_busy - b_busy))"
    echo "machine_total=$((a_total - b_total))"
  } >"$WORK/cpu-$s-$r.txt"
}

# --- report -----------------------------------------------------------------------------
check_fronts_alive() {
  local s
  for s in "${SETUPS[@]}"; do kill -0 "${ENVOY_PID[$s]}" || die "front Envoy $s died during the run"; done
}
tree_rev() { # the checked-out commit, +dirty when the portcullis sources differ from it
  echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+dirty')"
}
# meta.env (key=value) for the summarizer: the machine and load settings every
# benchmark reports; the script appends its own keys.
write_meta() { # wrk-headers (as shown in the report)
  cat >"$WORK/meta.env" <<EOF
command=$COMMAND_LINE
date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
envoy=$ENVOY_VERSION_LINE
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) CPUs$(lscpu | sed -n 's/^Hypervisor vendor: *\(.*\)/, \1 guest/p' | head -n1)
kernel=$(uname -r)
wrk=wrk -t$THREADS -c$CONNS -d${DURATION}s --latency $1 http://127.0.0.1:<port>/bench
front_concurrency=$FRONT_CONCURRENCY
warmup=$WARMUP
runs=$RUNS
clk_tck=$(getconf CLK_TCK)
ncpu=$(nproc)
EOF
}
summarize() { # summarizer.py [readme-block] -> setups and labels into meta.env, then RESULTS, printed
  local s
  echo "setups=${SETUPS[*]}" >>"$WORK/meta.env"
  for s in "${SETUPS[@]}"; do echo "label_$s=${LABEL[$s]}" >>"$WORK/meta.env"; done
  python3 "$HERE/$1" "$WORK" >"$RESULTS"
  cat "$RESULTS"
  # Only the default results go into the README (a run with other knobs writes its own file).
  if [ -n "${2:-}" ] && [ -z "${BENCH_RESULTS:-}" ]; then python3 "$HERE/readme.py" "$RESULTS" "$2"; fi
  echo >&2
  echo "written: $RESULTS" >&2
}
