#!/usr/bin/env bash
# Builds the libFuzzer targets (the email MIME path and the IMAP response parser) with
# -sanitize=fuzzer,address into .build-fuzz and runs each for FUZZ_SECONDS (default 60).
# Working corpora live in .build-fuzz/corpus/<target> (seeded from the committed seeds, kept
# between runs); a crash, leak, timeout or out-of-memory input is written to
# .build-fuzz/artifacts/<target>/ and fails the run, with the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
SWIFT=${SWIFT:-swift}
# The fuzzer runtime and AddressSanitizer are linked by swiftc; lld, because gold trips over
# the sanitizer's debug info ("internal error in format_file_lineno").
FLAGS=(-c release --build-path .build-fuzz
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
       -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld)

declare -A SEEDS=(
  [fuzz-mime]="Tests/EmailAdapterTests/Fixtures"
  [fuzz-imap]="Fuzz/Corpus/IMAP"
)
declare -A MAX_LEN=([fuzz-mime]=131072 [fuzz-imap]=8192)

status=0
for target in fuzz-mime fuzz-imap; do
  mkdir -p .build-fuzz
  # A failed build must fail the run, not fuzz a stale binary from an earlier build.
  if ! "$SWIFT" build "${FLAGS[@]}" --product "$target" >".build-fuzz/$target-build.log" 2>&1; then
    grep -E "error" ".build-fuzz/$target-build.log" | head -20
    echo "fuzz: $target did not build (.build-fuzz/$target-build.log)"
    exit 1
  fi
  binary=.build-fuzz/release/$target
  corpus=.build-fuzz/corpus/$target
  artifacts=.build-fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  cp -n "${SEEDS[$target]}"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $target for ${SECONDS_EACH}s (corpus $corpus)"
  if "$binary" "$corpus" -max_total_time="$SECONDS_EACH" -max_len="${MAX_LEN[$target]}" \
       -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
       >".build-fuzz/$target.log" 2>&1; then
    grep -E "^Done|stat::number_of_executed_units|stat::peak_rss_mb" ".build-fuzz/$target.log" | tr '\n' ' '; echo
  else
    status=1
    tail -40 ".build-fuzz/$target.log"
    echo "fuzz: $target FAILED; inputs in $artifacts/. Replay one with: swift run $target <file>"
  fi
done
exit $status
