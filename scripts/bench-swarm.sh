#!/usr/bin/env bash
# Swarm benchmark on loopback: one seeder with a total upload limit U (`--upload-limit`) and
# N leechers (`peer get`, default flags) of one S-byte file, first started together, then
# STAGGER seconds apart. Per case it prints when the last leecher finished against S/U (without
# trading between leechers that would be N x S/U), what the seeder uploaded against S, and the
# share of each leecher's bytes that came from other leechers. Goal (issue 10): last finish
# within 1.5 x S/U and the seeder uploading at most 1.5 x S, in both cases.
#
#   scripts/bench-swarm.sh                              # 8 leechers, 32 MiB, U = 2 MB/s
#   N=16 SIZE_MIB=64 LIMIT=4000000 STAGGER=2 scripts/bench-swarm.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-8}
SIZE_MIB=${SIZE_MIB:-32}
LIMIT=${LIMIT:-2000000}
STAGGER=${STAGGER:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p peer -p tracker --bins
BIN=$CARGO_TARGET_DIR/release

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
bench_work_dir "${TMPDIR:-/tmp}" bench-swarm

now() { date +%s.%N; }

SIZE=$((SIZE_MIB * 1024 * 1024))
head -c "$SIZE" /dev/urandom >"$WORK/f.bin"
ideal=$(awk -v s="$SIZE" -v u="$LIMIT" 'BEGIN { printf "%.1f", s / u }')
echo "swarm: $N leechers, ${SIZE_MIB} MiB file, seeder upload limit $LIMIT B/s: S/U = ${ideal} s" \
    "(one upload per leecher: $(awk -v n="$N" -v i="$ideal" 'BEGIN { printf "%.1f", n * i }') s)"

# One case: leechers started $1 seconds apart.
run_case() {
    local stagger=$1 dir="$WORK/case-$1" tracker seeder i t0 last=0 worst_upload
    mkdir -p "$dir/seed"
    "$BIN/tracker" --bind 127.0.0.1:0 >"$dir/tracker.out" 2>"$dir/tracker.log" &
    PIDS+=($!)
    tracker=$(wait_line "$dir/tracker.out" "tracker listening on ")
    local common=(--tracker "$tracker" --listen 127.0.0.1:0 --stun none)
    "$BIN/peer" "${common[@]}" --dir "$dir/seed" --upload-limit "$LIMIT" share "$WORK/f.bin" \
        >"$dir/seed.out" 2>"$dir/seed.log" &
    local seed_pid=$!
    PIDS+=("$seed_pid")
    seeder=$(wait_line "$dir/seed.out" "peer listening on ")
    wait_line "$dir/seed.out" "shared " >/dev/null
    t0=$(now)
    local getters=()
    for i in $(seq 1 "$N"); do
        mkdir -p "$dir/l$i"
        (
            "$BIN/peer" "${common[@]}" --dir "$dir/l$i" get --json f.bin >"$dir/l$i.json" 2>"$dir/l$i.log"
            now >"$dir/l$i.end"
        ) &
        getters+=($!)
        [ "$i" = "$N" ] || sleep "$stagger"
    done
    for p in "${getters[@]}"; do wait "$p"; done
    kill -TERM "$seed_pid"
    wait "$seed_pid" || true
    echo "case: started ${stagger} s apart"
    local from_others line
    for i in $(seq 1 "$N"); do
        cmp -s "$WORK/f.bin" "$dir/l$i/f.bin" || { echo "bench-swarm: leecher $i's file differs" >&2; exit 1; }
        line=$(cat "$dir/l$i.json")
        # Bytes from every peer but the seeder, from the "peers" list of the JSON outcome.
        from_others=$(grep -oE '\{"addr":"[^"]+","bytes":[0-9]+\}' <<<"$line" |
            awk -F'"' -v seeder="$seeder" '$4 != seeder { split($7, n, /[:}]/); s += n[2] } END { print s + 0 }')
        local end
        end=$(awk -v a="$t0" -v b="$(cat "$dir/l$i.end")" 'BEGIN { printf "%.1f", b - a }')
        last=$(awk -v a="$last" -v b="$end" 'BEGIN { print (b > a ? b : a) }')
        printf '  leecher %2d  done at %6.1f s  %3.0f%% of its bytes from other leechers\n' \
            "$i" "$end" "$(awk -v f="$from_others" -v s="$SIZE" 'BEGIN { print 100 * f / s }')"
    done
    worst_upload=$(sed -n 's/^  Uploaded: *//p' "$dir/seed.out" | awk '
        { v = $1; u = $2 }
        END { m = (u == "GiB") ? 1073741824 : (u == "MiB") ? 1048576 : (u == "KiB") ? 1024 : 1; print v * m }')
    printf '  last leecher done at %.1f s = %.2f x S/U (goal <= 1.5)\n' "$last" \
        "$(awk -v l="$last" -v i="$ideal" 'BEGIN { print l / i }')"
    printf '  seeder uploaded %.1f MiB = %.2f x S (goal <= 1.5)\n' \
        "$(awk -v u="$worst_upload" 'BEGIN { print u / 1048576 }')" \
        "$(awk -v u="$worst_upload" -v s="$SIZE" 'BEGIN { print u / s }')"
}

run_case 0
run_case "$STAGGER"
