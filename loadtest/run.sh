#!/usr/bin/env bash
# Benchmark suite (issue 6): builds release binaries, measures the ceilings (hello-world HTTP,
# fsync serial and parallel), runs the single-node workloads W1, W1b, W2, W3, W2w and W5, each
# on a fresh node with a temporary data directory, then the cluster workloads on local clusters
# it starts on 127.0.0.1 with a one-member etcd (`etcd` on the PATH) (W4 webhook → fresh page on 3 nodes; S1 a 4th node joining 3 under load; S2 the 4th of 4 drained under
# load), and APPENDS a dated section to loadtest/RESULTS.md. Bounded: about 15 minutes with the
# defaults (10 s per measured phase; W5 waits for idle timeouts at 1k and 10k actors), about 6
# with --quick.
#
#   loadtest/run.sh                          # everything
#   loadtest/run.sh --quick                  # everything, shorter phases and fewer rounds
#   loadtest/run.sh --workloads ceilings,w1  # a subset; any `vitrina-load suite` flag works
#
# Only 127.0.0.1 is targeted. The machine's other load skews the numbers: compare workloads
# with their ceilings (same run), not across runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${RUSTY_V8_ARCHIVE:-}" ] && [ -f ../shared/v8/librusty_v8_release_x86_64-unknown-linux-gnu.a.gz ]; then
  RUSTY_V8_ARCHIVE="$(cd ../shared/v8 && pwd)/librusty_v8_release_x86_64-unknown-linux-gnu.a.gz"
  export RUSTY_V8_ARCHIVE
fi
target_dir="${CARGO_TARGET_DIR:-target}"

# --quick (anywhere in the arguments) stands for shorter settings; later flags still override.
given=("$@")
args=()
for a in "$@"; do
  if [ "$a" = --quick ]; then
    args=(--duration 3 --warmup 1 --shoppers 300 --w5-counts 1000 --w4-rounds 20 --s1-before 5 --s1-after-join 15 "${args[@]}")
  else
    args+=("$a")
  fi
done
set -- "${args[@]}"

sources=(src loadtest test-support Cargo.toml Cargo.lock ':!loadtest/RESULTS.md')
# The uncommitted changes when the build starts: a file edited while cargo builds may or may
# not be in the binaries, so such a run says so instead of naming a state it did not measure.
edits_before_build="$(git diff HEAD -- "${sources[@]}" | sha1sum)"
# Both are default members of the workspace (the load generator is the `vitrina-load` package).
cargo build --release --locked --bin vitrina --bin vitrina-load
# Whether the binaries include uncommitted changes (checked now: appending to RESULTS.md below
# must not count as one).
dirty="$(git diff --quiet HEAD -- "${sources[@]}" || echo ' (with uncommitted changes)')"
if [ "$(git diff HEAD -- "${sources[@]}" | sha1sum)" != "$edits_before_build" ]; then
  dirty="$dirty (sources edited during the build: the binaries may predate the edit)"
fi

# W5 holds 10k shopper actors, each with its SQLite file, WAL and shared-memory file open.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d "${TMPDIR:-/var/tmp}/vitrina-load.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cmd=("$target_dir/release/vitrina-load" suite --vitrina-bin "$target_dir/release/vitrina" --work-dir "$work"
     --json "$work/results.json" --markdown "$work/results.md" "$@")
echo "+ ${cmd[*]}" >&2
"${cmd[@]}"

{
  echo
  echo "## Run $(date -u +%Y-%m-%dT%H:%MZ) — \`$(git rev-parse --short HEAD)\`${dirty}"
  echo
  echo "- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, load average before the run: $(cut -d' ' -f1-3 /proc/loadavg), open-file limit $(ulimit -n)"
  echo "- Command: \`loadtest/run.sh ${given[*]}\` → \`${cmd[*]/$work/\$WORK}\`"
  echo "- Load generator and node share the machine's CPUs (and other engineers' builds may too)."
  echo
  cat "$work/results.md"
} >> loadtest/RESULTS.md
echo "appended to loadtest/RESULTS.md" >&2
