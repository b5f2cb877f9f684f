#!/usr/bin/env bash
# Runs every cargo-fuzz target of the repository for SECONDS each (default 60) and prints one
# line per target: `fuzz TARGET: N execs, C crashes`. Fails when any target crashed (the input
# is kept in DIR/artifacts/TARGET/; fix the bug and add the input as a regression test).
#
# Fuzz packages are the `*/fuzz` and `*/*/fuzz` directories whose Cargo.toml says
# `cargo-fuzz = true`. Each runs on its committed seeds (DIR/seeds/TARGET) plus what earlier
# runs found (DIR/corpus/TARGET, gitignored). All share one build directory (target/fuzz).
# Needs cargo-fuzz (installed here when missing) and a nightly toolchain; without nightly the
# stable compiler is used with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds="${1:-60}"
case "$seconds" in
    '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]  (whole seconds per target, default 60)" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
export CARGO_TARGET_DIR="$root/target/fuzz"

dirs=()
for manifest in */fuzz/Cargo.toml */*/fuzz/Cargo.toml; do
    [ -f "$manifest" ] && grep -q '^cargo-fuzz *= *true' "$manifest" && dirs+=("$(dirname "$manifest")")
done
[ "${#dirs[@]}" -gt 0 ] || { echo "no cargo-fuzz packages found" >&2; exit 1; }

summary=()
failed=0
passed=0
broken=0
for dir in "${dirs[@]}"; do
    for target in $("${fuzz[@]}" list --fuzz-dir "$dir"); do
        corpus="$dir/corpus/$target"
        artifacts="$dir/artifacts/$target"
        mkdir -p "$corpus" "$artifacts" "$dir/seeds/$target"
        before=$(find "$artifacts" -type f | wc -l)
        log="$CARGO_TARGET_DIR/$target.log"
        mkdir -p "$CARGO_TARGET_DIR"
        echo "fuzzing $dir $target for $seconds s" >&2
        status=0
        "${fuzz[@]}" run --fuzz-dir "$dir" "$target" "$corpus" "$dir/seeds/$target" -- \
            -max_total_time="$seconds" -print_final_stats=1 \
            -artifact_prefix="$root/$artifacts/" >"$log" 2>&1 || status=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
        if [ "$status" != 0 ] && [ "$crashes" = 0 ]; then
            # Not a crash the fuzzer saved (a build failure, a missing toolchain): show why.
            tail -30 "$log" >&2
            summary+=("fuzz $target: ${execs:-0} execs, failed to run (exit $status, log $log)")
            failed=1
            broken=$((broken + 1))
            continue
        fi
        if [ "$crashes" = 0 ]; then
            passed=$((passed + 1))
        else
            failed=1
            broken=$((broken + 1))
            tail -40 "$log" >&2
        fi
        summary+=("fuzz $target: ${execs:-0} execs, $crashes crashes")
    done
done
printf '%s\n' "${summary[@]}"
echo "fuzz: $passed passed, $broken failed"
exit "$failed"
