#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for a bounded time.
#   fuzz/run.sh SECONDS     (default 60) per target
# Each target starts from a scratch copy of its seed corpus (fuzz/corpus/<name>/ stays as
# committed); new inputs are kept in build-fuzz/corpus/<name>/ and a crash, leak or sanitizer
# report is written to build-fuzz/artifacts/ and makes this script fail.
# Needs clang and the libFuzzer runtime (Debian 12: clang libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
case $secs in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh SECONDS" >&2; exit 2 ;;
esac
build=build-fuzz

CC=clang cmake -S . -B "$build" -DFERRY_FUZZ=ON -DFERRY_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug
cmake --build "$build" -j2 --target fuzz_config fuzz_http

# name:max_len -- a config file or a few pipelined heads fit in these sizes
targets=(config:4096 http:8192)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${targets[@]}"; do
  name=${t%%:*}
  maxlen=${t#*:}
  corpus=$build/corpus/$name
  artifacts=$build/artifacts/$name/
  rm -rf "$corpus" "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  cp fuzz/corpus/"$name"/* "$corpus"/
  log=$build/fuzz_$name.log
  echo "== fuzz_$name for ${secs}s (log: $log)"
  # libFuzzer prints a line per new input: keep that in the log, show the end of it.
  if "$build/fuzz/fuzz_$name" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" \
      >"$log" 2>&1; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::)' "$log" || true
  else
    tail -n 80 "$log" >&2
    echo "fuzz_$name FAILED; reproducer(s): $(ls -d "$artifacts"* 2>/dev/null | tr "\n" " ")" >&2
    status=1
  fi
done
exit $status
