# NAT lab benchmark: one file fetched directly and through the TURN relay in the same run.
# Sourced by scripts/nat-lab.sh (`bench`) after topology.sh and scenarios.sh.

# Best of BENCH_RUNS fetches of FILE by a fresh `peer get` in LAN $1; prints seconds.
bench_fetch() {
    local lan="$1" file="$2" best="" run dir start end secs
    for run in $(seq "${BENCH_RUNS:-3}"); do
        dir="$DIR/bench-$lan-$file-$run"
        mkdir -p "$dir"
        start=$(date +%s.%N)
        peer_in "$lan" --dir "$dir" get "$file" >"$dir.log" 2>&1 </dev/null || die "fetch of $file failed: $(tail -n2 "$dir.log")"
        end=$(date +%s.%N)
        cmp -s "$dir/$file" "$BENCH_SOURCE" || die "fetched $file differs from the source"
        secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
        grep -m1 -oE "via [a-z]+" "$dir.log" >&2 || true
        rm -rf "$dir"
        if [ -z "$best" ] || awk -v s="$secs" -v b="$best" 'BEGIN { exit !(s < b) }'; then best=$secs; fi
    done
    echo "$best"
}

# A seeder with no NAT serves direct.bin, one behind the symmetric NAT (so relayed through
# coturn) serves relayed.bin, same bytes; a leecher with no NAT fetches both.
lab_bench_relay() {
    local mib="${BENCH_MIB:-64}" type args direct relayed
    BENCH_SOURCE="$DIR/bench-source.bin"
    head -c $((mib * 1024 * 1024)) /dev/urandom >"$BENCH_SOURCE"
    mapfile -t args < <(peer_args)
    for type in none sym; do
        mkdir -p "$DIR/s-$type"
        if [ "$type" = none ]; then cp "$BENCH_SOURCE" "$DIR/s-$type/direct.bin"; else cp "$BENCH_SOURCE" "$DIR/s-$type/relayed.bin"; fi
        spawn "$(ns_host "s-$type")" "s-$type" env RUST_LOG=warn "$BIN/peer" "${args[@]}" --dir "$DIR/s-$type" daemon
    done
    wait_listed_at direct.bin "$(lan_public_ip s-none)" "" 60 >/dev/null || die "direct seeder not listed"
    wait_listed_at relayed.bin "$TURN_RELAY_IP" "" 60 >/dev/null || die "relayed seeder not listed at the TURN server"
    echo "== ${mib} MiB from a seeder with no NAT (direct) and one behind a symmetric NAT (relayed by coturn), best of ${BENCH_RUNS:-3}"
    direct=$(bench_fetch l-none direct.bin)
    relayed=$(bench_fetch l-none relayed.bin)
    awk -v m="$mib" -v d="$direct" -v r="$relayed" 'BEGIN {
        printf "  direct   %7.3f s  %8.1f MB/s\n", d, m * 1.048576 / d
        printf "  relayed  %7.3f s  %8.1f MB/s\n", r, m * 1.048576 / r
        printf "  relayed / direct throughput: %.2f\n", d / r
    }'
}
