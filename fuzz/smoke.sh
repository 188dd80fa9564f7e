#!/usr/bin/env bash
# Fuzz smoke run: builds the cargo-fuzz targets and runs each for a bounded time, failing
# on any crash (panic, failed invariant, timeout, out of memory).
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_SANITIZER cargo-fuzz sanitizer: address (default; stable ships its runtime) or
#                  none (no ASan instrumentation: more runs in the same time)
#   FUZZ_TARGETS   space-separated targets (default: all, from `cargo fuzz list`)
# The committed seeds in fuzz/corpus/<target>/ (and fuzz/dict/<target>.dict) are only read;
# what libFuzzer finds goes to a temporary directory. A crashing input lands in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
sanitizer=${FUZZ_SANITIZER:-address}
# cargo-fuzz passes nightly-only flags (-Z, -C passes=sancov-module); the machine only has
# the stable toolchain, and RUSTC_BOOTSTRAP lets stable accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
cargo fuzz --version

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"

echo "==> building ${targets[*]} (sanitizer: $sanitizer)"
build_start=$SECONDS
cargo fuzz build --sanitizer "$sanitizer"
echo "build took $((SECONDS - build_start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
failed=0
for target in "${targets[@]}"; do
  echo "==> fuzzing $target for ${seconds} s"
  mkdir -p "$work/$target"
  log="$work/$target.log"
  status=0
  dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
  # -timeout: one input taking longer than 10 s is a hang and counts as a crash.
  cargo fuzz run --sanitizer "$sanitizer" "$target" "$work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$status" -ne 0 ]; then
    failed=1
    tail -n 60 "$log"
    summary+=("$target: FAILED (exit $status) after ${runs:-?} runs; reproduce with: cargo fuzz run -s $sanitizer $target fuzz/artifacts/$target/<crash file>")
  else
    tail -n 3 "$log"
    summary+=("$target: ${runs:-?} runs in ${seconds} s, no crash")
  fi
done

echo
echo "==> fuzz smoke summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
