#!/usr/bin/env bash
# Alternating A/B pairs of one workload, each on a fresh single node, for changes too small to
# see across suite runs (this VM's run-to-run spread is ±25 %). Prints one line per run:
# setting, then for each row the workload reports (closed loop, open loop at 50 %, W2w's wakes)
# its req/s, p50/p99 and node CPU µs per request; the node's minor page faults per request
# while loaded (closed loop); and with METRICS (a regex of `/metrics` series, e.g.
# METRICS='vitrina_isolates_(prewarmed|reused)_total') how much each grew over the run.
# Session 7's W1b, W2p and churn pairs in RESULTS.md were run this way.
#
#   loadtest/pairs.sh w1b "" "VITRINA_V8_FLAGS='--no-maglev --no-turbofan --single-threaded-gc'"
#   ROUNDS=2 loadtest/pairs.sh w2p VITRINA_ACTORS__MAX_OPEN_FILES=6325 VITRINA_ACTORS__MAX_OPEN_FILES=0
#   BIN_A=/tmp/vitrina-before BIN_B=target/release/vitrina loadtest/pairs.sh w1b "" ""   # two builds
#   METRICS='vitrina_page_cache_total' loadtest/pairs.sh w2w VITRINA_ACTORS__IDLE_TIMEOUT_SECS=3 \
#     VITRINA_ACTORS__IDLE_TIMEOUT_SECS=3   # W2w needs a short idle timeout on both sides
#   (LOAD_A=/tmp/vitrina-load-before as well when A predates signed session ids)
#
# Each side is ENV=VALUE words as on a shell command line, values with spaces quoted inside
# the argument ("" for none).
# The lines are appended to loadtest/RESULTS.md under the command and commit that produced them
# (as run.sh does; NO_APPEND=1 to only print them).
# W1b runs with the personal HTML cache off. EXTRA passes flags to `vitrina-load run`
# (e.g. EXTRA="--shoppers 10000" with A and B setting VITRINA_ACTORS__MAX_LIVE_ISOLATES=2000).
set -euo pipefail
cd "$(dirname "$0")/.."
workload=$1 a=$2 b=$3
rounds=${ROUNDS:-3} duration=${DURATION:-6}
# A port nobody listens on (PORT to choose one): several people run pairs on one machine, and a
# node that cannot bind leaves the load generator measuring whoever holds the port.
port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
bin_a=${BIN_A:-target/release/vitrina} bin_b=${BIN_B:-target/release/vitrina}
# A build's own load generator (LOAD_A/LOAD_B) where the two builds speak differently to
# shoppers (session cookies signed since the edge-security work).
load_a=${LOAD_A:-target/release/vitrina-load} load_b=${LOAD_B:-target/release/vitrina-load}
[ -x "$bin_a" ] && [ -x "$bin_b" ] && [ -x "$load_a" ] && [ -x "$load_b" ] || { echo "build first: cargo build --release --locked" >&2; exit 2; }
export VITRINA_OPERATOR_TOKEN=optok-pairs-0123456789abcdef
# As the suite's own nodes run (loadtest/src/spawn.rs): shoppers' ids signed with the suite's
# session key, no per-IP limits or per-store render share (one client address, one store), no
# per-store shopper cap. Builds from before these settings ignore them.
export VITRINA_HTTP__SESSION_KEY=loadtest-session-key VITRINA_LIMITS__ENABLED=false \
  VITRINA_RENDER__STORE_MAX_CONCURRENT=1024 VITRINA_RENDER__STORE_CPU_MS_PER_SEC=0 VITRINA_SHOPPER__MAX_PER_STORE=0
# Each run's data directory is removed only when the script ends: on ext4 without a journal
# (this machine's disk) deleting a run's thousands of shopper files makes every file creation
# in the next few minutes scan past them (`loadtest/src/ceilings.rs`, `remove_created_files`),
# which would tax the run after it.
spent=$(mktemp -d "${TMPDIR:-/var/tmp}/pairs-spent.XXXX")
lines="$spent/lines"
trap 'rm -rf "$spent"' EXIT
cache_off=""
[ "$workload" = w1b ] && cache_off="VITRINA_CACHE__PERSONAL_HTML_TTL_SECS=0"

one() { # $1 label, $2 binary, $3 settings, $4 load generator
  local dir pid loader f0 f1 t0 t1 line
  dir=$(mktemp -d "${TMPDIR:-/var/tmp}/pairs.XXXX")
  eval "exec env $3 $cache_off \"\$2\" serve --listen "127.0.0.1:$port" --data-dir \"\$dir/data\"" >"$dir/node.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$port/healthz" && break; sleep 0.1; done
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "$1: the node exited before it served (port $port taken?):" >&2
    grep -m 2 -iE "error|in use" "$dir/node.log" >&2 || tail -3 "$dir/node.log" >&2
    rm -rf "$dir"
    return 1
  fi
  metrics >"$dir/metrics-before.txt"
  # shellcheck disable=SC2086
  "$4" run --nodes "http://127.0.0.1:$port" --pid "$pid" --workloads "$workload" --duration "$duration" \
    --warmup 1 ${EXTRA:-} --markdown "$dir/r.md" >"$dir/out.txt" 2>&1 &
  loader=$!
  # Faults are sampled over the middle of the closed-loop phase (after setup and warm-up).
  sleep "${FAULTS_AFTER:-4}"; f0=$(awk '{print $10}' "/proc/$pid/stat" 2>/dev/null || echo 0); t0=$(date +%s.%N)
  sleep 2; f1=$(awk '{print $10}' "/proc/$pid/stat" 2>/dev/null || echo "$f0"); t1=$(date +%s.%N)
  wait "$loader" || true
  metrics >"$dir/metrics-after.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$1" "$dir" "$f0" "$f1" "$t0" "$t1" <<'PY'
import re, sys
label, dir, f0, f1, t0, t1 = sys.argv[1:]
# | name `tag` | mode | requests / errors | req/s | p50 | p90 | p99 | max | CPU µs/req | ...
try:
    rows = [[c.strip() for c in l.split('|')] for l in open(f"{dir}/r.md") if re.match(r"\|.*`w[0-9a-z@%]+` \|", l)]
except FileNotFoundError:
    rows = []
if not rows:
    said = open(f"{dir}/out.txt").read().strip().splitlines() or [""]
    why = next((l for l in said if "rror" in l), said[-1]).strip()
    print(f"{label}: no result row; the load generator said: {why}"); sys.exit()
parts = []
for cells in rows:
    tag, rps = cells[1].split('`')[1], float(cells[4] or 0)
    part = f"{tag} {rps:.0f} req/s, p50 {cells[5]} p99 {cells[7]} ms, {cells[9]} µs CPU/req"
    if "closed loop" in cells[2] and rps:
        faults = (int(f1) - int(f0)) / (float(t1) - float(t0))
        part += f", {faults / rps:.1f} faults/req"
    parts.append(part)
def read(name):
    series = {}
    for l in open(f"{dir}/{name}"):
        if not l.startswith('#') and ' ' in l:
            key, value = l.rsplit(' ', 1)
            series[key] = float(value)
    return series
before, after = read("metrics-before.txt"), read("metrics-after.txt")
grown = [f"{k} +{after[k] - before.get(k, 0):g}" for k in sorted(after) if after[k] != before.get(k, 0)]
print(f"{label}: " + "; ".join(parts + grown))
PY
  mv "$dir" "$spent/"
}

# The node's `/metrics` series matching METRICS (none without it).
metrics() {
  [ -n "${METRICS:-}" ] || return 0
  curl -sf -H "authorization: Bearer $VITRINA_OPERATOR_TOKEN" "127.0.0.1:$port/metrics" | grep -E "^(${METRICS})[{ ]" || true
}

command_line="$(printf '%q ' "$0" "$@")"
env_line=""
for v in BIN_A BIN_B LOAD_A LOAD_B ROUNDS DURATION EXTRA FAULTS_AFTER METRICS; do
  [ -n "${!v:-}" ] && env_line+="$v=$(printf '%q' "${!v}") "
done
# Builds given as BIN_A/BIN_B are not necessarily the checkout's.
if [ -n "${BIN_A:-}${BIN_B:-}" ]; then
  built="the binaries as given, checkout at \`$(git rev-parse --short HEAD 2>/dev/null || echo '?')\`"
else
  # The same sources as run.sh's label (test-support and Cargo.lock are built in too).
  built="\`$(git rev-parse --short HEAD 2>/dev/null || echo '?')\`$(git diff --quiet HEAD -- src loadtest test-support Cargo.toml Cargo.lock ':!loadtest/RESULTS.md' 2>/dev/null || echo ' (with uncommitted changes)')"
fi
started=$(date -u +%Y-%m-%dT%H:%MZ) load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$rounds"); do
  one "round $round A [$a]" "$bin_a" "$a" "$load_a" | tee -a "$lines"
  one "round $round B [$b]" "$bin_b" "$b" "$load_b" | tee -a "$lines"
done
if [ "${NO_APPEND:-}" != 1 ]; then
  {
    echo
    echo "## Pairs $started — \`$workload\`, $built"
    echo
    echo "- Command: \`${env_line}${command_line% }\`"
    echo "- Load average before: $load_before"
    echo
    sed 's/^/- /' "$lines"
  } >>loadtest/RESULTS.md
  echo "appended to loadtest/RESULTS.md"
fi
