#!/usr/bin/env bash
# Fuzzes every target for a budget and writes what ran to docs/fuzzing.md.
#
#   fuzz/run.sh [seconds per target, default 60] [target ...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); libFuzzer's build needs nightly features, which
# RUSTC_BOOTSTRAP enables on the stable toolchain. No sanitizer: the targets are safe Rust, and
# the static V8 library the crate links is not built for ASan. New interesting inputs are added to
# fuzz/corpus/{target}/, which is then minimised (commit it: `cargo test` replays it); a crash stops its target and
# leaves the input in fuzz/artifacts/{target}/.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(host_header ids cookie_header webhook_signature webhook_payload admin_json block_validation)
fi
if [ -z "${RUSTY_V8_ARCHIVE:-}" ] && [ -f ../shared/v8/librusty_v8_release_x86_64-unknown-linux-gnu.a.gz ]; then
  RUSTY_V8_ARCHIVE="$(cd ../shared/v8 && pwd)/librusty_v8_release_x86_64-unknown-linux-gnu.a.gz"
  export RUSTY_V8_ARCHIVE
fi
export RUSTC_BOOTSTRAP=1
logdir="${TMPDIR:-/tmp}/vitrina-fuzz"
mkdir -p "$logdir"
rows=()
for t in "${targets[@]}"; do
  echo "== $t (${budget}s)"
  set +e
  cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" -- -max_total_time="$budget" -rss_limit_mb=2048 -timeout=10 \
    >"$logdir/$t.log" 2>&1
  status=$?
  set -e
  runs=$(grep -oE "Done [0-9]+ runs" "$logdir/$t.log" | awk "{print \$2}" | tail -1 || true)
  if [ -z "$runs" ]; then
    runs=$(grep -oE '^#[0-9]+' "$logdir/$t.log" | tail -1 | tr -d '#' || true)
  fi
  # Keep only the inputs that add edge coverage (hit counts ignored): the corpus is committed and
  # replayed by cargo test.
  cargo fuzz cmin --sanitizer none "$t" "fuzz/corpus/$t" -- -use_counters=0 >"$logdir/$t.cmin.log" 2>&1 || echo "   (cmin failed: $logdir/$t.cmin.log)"
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  if [ "$status" -eq 0 ]; then outcome="no crash"; else outcome="CRASH (exit $status, see $logdir/$t.log)"; fi
  echo "   runs=${runs:-0} corpus=$corpus $outcome"
  rows+=("| $t | ${runs:-0} | $budget | $corpus | $outcome |")
done
mkdir -p docs
{
  echo "# Fuzzing runs"
  echo
  echo "Written by \`fuzz/run.sh $budget\` on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\` (libFuzzer,"
  echo "no sanitizer, 2-core machine shared with other work). The corpora are committed under"
  echo "\`fuzz/corpus/\` and replayed by \`cargo test\` (\`tests/it/fuzz_corpus.rs\`)."
  echo
  echo "| target | executions | seconds | corpus inputs | outcome |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > docs/fuzzing.md
cat docs/fuzzing.md
