# NAT lab scenarios: topology checks, the transfer matrix and the mapping change.
# Sourced by scripts/nat-lab.sh after topology.sh; expects lab_load to have run.

CHECKS_PASSED=0
CHECKS_FAILED=0
check_ok() { CHECKS_PASSED=$((CHECKS_PASSED + 1)); printf '  ok    %s\n' "$*"; }
check_fail() { CHECKS_FAILED=$((CHECKS_FAILED + 1)); printf '  FAIL  %s\n' "$*"; }

# The public address coturn (a third-party STUN implementation) reports for a UDP socket of LAN $1.
# turnutils_stunclient prints the mapping at once, then waits for a CHANGE-REQUEST answer that a
# filtering NAT never lets through: its exit status says nothing, the printed address does.
coturn_mapped_ip() {
    local out
    out="$(in_ns "$(ns_host "$1")" timeout 3 turnutils_stunclient -p "$STUN_PORT" "$STUN_IP1" 2>/dev/null || true)"
    printf '%s\n' "$out" | sed -n 's/.*UDP reflexive addr: \([0-9.]*\):.*/\1/p' | head -n1
}

# coturn's own RFC 5780 mapping discovery, as an independent judge of what each router does.
coturn_mapping_behaviour() {
    local out
    out="$(in_ns "$(ns_host "$1")" timeout 20 turnutils_natdiscovery -m "$STUN_IP1" 2>/dev/null || true)"
    printf '%s\n' "$out" |
        grep -oE '(Endpoint Independent|Address Dependent|Address and Port Dependent) Mapping' | head -n1 || true
}

# Step one of `test` (and `check ID`): every LAN reaches the public segment through its router,
# the router maps to its public address, and the mapping behaviour is the one the NAT type
# promises. Judged by coturn's tools first, so a bug in our STUN client cannot hide a broken lab.
lab_check_topology() {
    echo "== topology of run $LAB_ID"
    local lan type want_ip got_ip behaviour want_behaviour
    for lan in "${LAN_NAMES[@]}"; do
        type="$(lan_type "$lan")"
        want_ip="$(lan_public_ip "$lan")"
        got_ip="$(coturn_mapped_ip "$lan")"
        if [ "$got_ip" = "$want_ip" ]; then
            check_ok "$lan: coturn sees $(lan_private_ip "$lan") as $got_ip"
        else
            check_fail "$lan: coturn sees '${got_ip:-no answer}', expected $want_ip"
        fi
        case "$type" in
            sym) want_behaviour="Address and Port Dependent Mapping" ;;
            *) want_behaviour="Endpoint Independent Mapping" ;;
        esac
        behaviour="$(coturn_mapping_behaviour "$lan")"
        if [ "$behaviour" = "$want_behaviour" ]; then
            check_ok "$lan: turnutils_natdiscovery says $behaviour"
        else
            check_fail "$lan: turnutils_natdiscovery says '${behaviour:-nothing}', expected $want_behaviour"
        fi
    done
    [ "$CHECKS_FAILED" = 0 ] || die "topology checks failed ($CHECKS_FAILED); the lab itself is broken"
}

# Our STUN client through every NAT: UDP and TCP from the peer port give the router's public
# address, and --probe-nat names the NAT type (only the symmetric routers as symmetric).
check_stun_probe() {
    echo "== stun-probe through each NAT"
    local lan type want_ip out mapped nat tcp_mapped want_nat
    for lan in "${LAN_NAMES[@]}"; do
        type="$(lan_type "$lan")"
        want_ip="$(lan_public_ip "$lan")"
        out="$(in_ns "$(ns_host "$lan")" timeout 30 "$BIN/stun-probe" "$STUN_IP1:$STUN_PORT" --probe-nat 2>&1 || true)"
        mapped="$(sed -n 's/^mapped: //p' <<<"$out")"
        nat="$(sed -n 's/^nat: //p' <<<"$out")"
        case "$type" in
            none) want_nat="not behind NAT" ;;
            sym) want_nat="symmetric" ;;
            *) want_nat="endpoint-independent" ;;
        esac
        if [ "${mapped%:*}" = "$want_ip" ] && grep -q "$want_nat" <<<"$nat"; then
            check_ok "$lan: udp mapped $mapped, nat: $nat"
        else
            check_fail "$lan: udp mapped '${mapped:-none}' nat '${nat:-none}', expected $want_ip and '$want_nat' ($(tr '\n' ' ' <<<"$out"))"
        fi
        out="$(in_ns "$(ns_host "$lan")" timeout 30 "$BIN/stun-probe" "$STUN_IP1:$STUN_PORT" --tcp --local-port "$PEER_PORT" 2>&1 || true)"
        tcp_mapped="$(sed -n 's/^mapped: //p' <<<"$out")"
        if [ "$type" = sym ] && [ "${tcp_mapped%:*}" = "$want_ip" ]; then
            check_ok "$lan: tcp from port $PEER_PORT mapped to $tcp_mapped (port randomised)"
        elif [ "$tcp_mapped" = "$want_ip:$PEER_PORT" ]; then
            check_ok "$lan: tcp from port $PEER_PORT mapped to $tcp_mapped"
        else
            check_fail "$lan: tcp from port $PEER_PORT mapped to '${tcp_mapped:-none}' ($(tr '\n' ' ' <<<"$out"))"
        fi
    done
}

# Size of every test file: large enough for many pipelined chunks, small enough for a quick lab.
FILE_BYTES=$((4 * 1024 * 1024))
# Refresh period of the daemons' STUN refresh in the lab (the default is 30 s).
LAB_REFRESH=2
# Hang guard for one `peer get`; the peer's own bounds end a failing pair well before it.
GET_TIMEOUT=${NAT_LAB_GET_TIMEOUT:-150}

peer_args() {
    printf '%s\n' --tracker "$TRACKER_IP:$TRACKER_PORT" \
        --stun "$STUN_IP1:$STUN_PORT" --stun "$STUN_IP2:$STUN_PORT" --refresh "$LAB_REFRESH"
}

# Runs `peer` inside the host namespace of LAN $1 with the lab's tracker and STUN servers,
# killed after GET_TIMEOUT seconds if it has not finished by itself.
peer_in() {
    local lan="$1"; shift
    local args
    mapfile -t args < <(peer_args)
    in_ns "$(ns_host "$lan")" timeout -k 5 "$GET_TIMEOUT" env RUST_LOG="${RUST_LOG:-info}" \
        "$BIN/peer" "${args[@]}" "$@"
}

# Starts a seeding daemon in LAN s-$1 over $DIR/s-$1, which holds one file per leecher type.
start_seeder() {
    local type="$1" lan="s-$1" other args
    mkdir -p "$DIR/$lan"
    for other in "${NAT_TYPES[@]}"; do
        head -c "$FILE_BYTES" /dev/urandom >"$DIR/$lan/m-$type-$other.bin"
    done
    mapfile -t args < <(peer_args)
    spawn "$(ns_host "$lan")" "$lan" env RUST_LOG="${RUST_LOG:-info}" "$BIN/peer" "${args[@]}" \
        --dir "$DIR/$lan" daemon --heartbeat 2
    wait_for_line "$DIR/$lan.log" '^peer listening on ' "$DIR/$lan.pid" >/dev/null \
        || die "seeder daemon in $lan did not start"
}

# The addresses the tracker lists for FILE, one per line, asked from the public segment.
tracker_peers_of() {
    mkdir -p "$DIR/query"
    in_ns "$NS_PUB" timeout 20 env RUST_LOG=warn "$BIN/peer" --tracker "$TRACKER_IP:$TRACKER_PORT" \
        --dir "$DIR/query" --stun none peers "$1" --json 2>/dev/null |
        grep -oE '"(addr|address)" *: *"[0-9.]+:[0-9]+"' | grep -oE '[0-9.]+:[0-9]+' || true
}

# Waits until the tracker lists FILE at an address with IP $2 (and, with $3, not at $3).
# Prints the listed address.
wait_listed_at() {
    local file="$1" ip="$2" not="${3:-}" deadline=$((SECONDS + ${4:-$READY_TIMEOUT})) peers
    while [ "$SECONDS" -lt "$deadline" ]; do
        peers="$(tracker_peers_of "$file")"
        if printf '%s\n' "$peers" | grep -q "^$ip:" && { [ -z "$not" ] || ! printf '%s\n' "$peers" | grep -qx "$not"; }; then
            printf '%s\n' "$peers" | grep "^$ip:" | head -n1
            return 0
        fi
        sleep 0.5
    done
    log "tracker lists $file at: ${peers:-nothing} (wanted $ip${not:+, without $not})"
    return 1
}

# Requirement: peers in private LANs announce the public address STUN reported for their
# serving port, never their 10.x address.
check_announcements() {
    echo "== announced addresses (asked from the tracker, compared with what STUN told the daemon)"
    local type lan want got learned deadline
    for type in "${NAT_TYPES[@]}"; do
        lan="s-$type"; want="$(lan_public_ip "$lan")"
        # Until STUN answers, a daemon announces 0.0.0.0:port (the tracker fills in the source
        # IP); wait for the listing to show what STUN told it.
        deadline=$((SECONDS + READY_TIMEOUT))
        while :; do
            learned="$(sed -n 's/.*public address moved from .* to \([0-9.:]*\)$/\1/p' "$DIR/$lan.log" | tail -n1)"
            got="$(tracker_peers_of "m-$type-none.bin" | grep "^$want:" | head -n1 || true)"
            if { [ -n "$learned" ] && [ "$got" = "$learned" ]; } || [ "$SECONDS" -ge "$deadline" ]; then break; fi
            sleep 0.5
        done
        if [ -z "$got" ]; then
            check_fail "$lan: tracker never listed m-$type-none.bin at $want"
        elif [ "$got" != "$learned" ]; then
            check_fail "$lan listed at $got, but STUN told its daemon ${learned:-nothing}"
        elif [ "$type" != sym ] && [ "$got" != "$want:$PEER_PORT" ]; then
            check_fail "$lan listed at $got, expected $want:$PEER_PORT"
        else
            check_ok "$lan ($(lan_private_ip "$lan"):$PEER_PORT) listed at $got, the address STUN reported"
        fi
    done
}

# How a failed download in a leecher LAN of type $1 must describe its own NAT (punch.rs).
own_nat_phrase() {
    case "$1" in
        none) echo "this peer is not behind a NAT" ;;
        sym) echo "this peer is behind a symmetric NAT" ;;
        *) echo "this peer is behind a cone NAT" ;;
    esac
}

# One pair of the matrix: leecher in l-$2 downloads m-$1-$2.bin from the seeder in s-$1.
# Writes "outcome|seconds|detail" to $DIR/result-$1-$2.
run_pair() {
    local s="$1" l="$2" file="m-$1-$2.bin" start end rc secs log detail outcome
    log="$DIR/pair-$s-$l.log"
    mkdir -p "$DIR/l-$l"
    start=$(date +%s.%N)
    rc=0
    peer_in "l-$l" --dir "$DIR/l-$l" get "$file" --give-up 30 >"$log" 2>&1 </dev/null || rc=$?
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" = 0 ] && cmp -s "$DIR/s-$s/$file" "$DIR/l-$l/$file"; then
        if grep -q 'connected back to our listener' "$log"; then outcome="ok reverse"
        elif grep -q 'punched through' "$log"; then outcome="ok punched"
        else outcome="ok direct"; fi
        detail="byte-identical"
    elif [ "$rc" = 0 ]; then
        outcome="FAIL corrupt"; detail="exit 0 but the file differs or is missing"
    else
        local error
        error="$(grep -E '^error: ' "$log" | grep -v 'downloads failed' | tail -n1)"
        # The table shows the sentence about the NAT (the end of the error) when there is one.
        detail="$(sed -n 's/.*; \(this peer .*\)/\1/p' <<<"$error")"
        [ -n "$detail" ] || detail="$(cut -c1-300 <<<"$error")"
        [ -n "$detail" ] || detail="exit $rc, no error line (see $log)"
        if { [ "$s" = sym ] || [ "$l" = sym ]; } && grep -q 'symmetric' <<<"$error" &&
            grep -q "$(own_nat_phrase "$l")" <<<"$error"; then
            outcome="failed, NAT named"
        else
            outcome="FAIL exit $rc"
        fi
    fi
    printf '%s|%s|%s\n' "$outcome" "$secs" "$detail" >"$DIR/result-$s-$l"
}

# Every seeder NAT x every leecher NAT. Leecher LANs run in parallel, each one pair at a time.
run_matrix() {
    echo "== transfer matrix: $((FILE_BYTES / 1024 / 1024)) MiB file, seeder NAT x leecher NAT"
    local l s pids=()
    for l in "${NAT_TYPES[@]}"; do
        ( for s in "${NAT_TYPES[@]}"; do run_pair "$s" "$l"; done ) &
        pids+=($!)
    done
    local pid
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    printf '  %-7s %-8s %-20s %7s  %s\n' seeder leecher outcome seconds detail
    local r outcome secs detail
    for s in "${NAT_TYPES[@]}"; do
        for l in "${NAT_TYPES[@]}"; do
            r="$(cat "$DIR/result-$s-$l" 2>/dev/null || echo 'FAIL no result||')"
            IFS='|' read -r outcome secs detail <<<"$r"
            printf '  %-7s %-8s %-20s %7s  %s\n' "$s" "$l" "$outcome" "$secs" "$detail"
            case "$outcome" in
                ok*) CHECKS_PASSED=$((CHECKS_PASSED + 1)) ;;
                failed,*) CHECKS_PASSED=$((CHECKS_PASSED + 1)) ;;
                *) CHECKS_FAILED=$((CHECKS_FAILED + 1)) ;;
            esac
        done
    done
}

# Requirement: the NAT's public address changes mid-run; the daemon notices within a refresh
# period or so, re-announces, and a new downloader succeeds against the new address.
run_mapping_change() {
    local lan=s-prc r wan old new file=m-prc-full.bin t0 got secs
    echo "== mapping change: $lan's router gets a new public address"
    r="$(ns_router "$lan")"; wan="$(if_wan "$lan")"
    old="$(lan_public_ip "$lan")"; new="$LAB_NET.$((100 + $(lan_index "$lan")))"
    t0=$SECONDS
    in_ns "$r" ip addr del "$old/24" dev "$wan"
    in_ns "$r" ip addr add "$new/24" dev "$wan"
    in_ns "$r" conntrack -F >/dev/null 2>&1 || true
    if got="$(wait_listed_at "$file" "$new" "$old:$PEER_PORT" $((6 * LAB_REFRESH + 20)))"; then
        secs=$((SECONDS - t0))
        check_ok "tracker lists $lan at $got instead of $old:$PEER_PORT after ${secs}s (refresh period ${LAB_REFRESH}s)"
    else
        check_fail "tracker did not move $lan from $old to $new"
        return
    fi
    local fresh=l-full
    rm -rf "$DIR/l-$fresh-again"; mkdir -p "$DIR/l-$fresh-again"
    if peer_in "$fresh" --dir "$DIR/l-$fresh-again" get "$file" --give-up 30 >"$DIR/mapping-change-get.log" 2>&1 </dev/null &&
        cmp -s "$DIR/$lan/$file" "$DIR/l-$fresh-again/$file"; then
        check_ok "a new downloader in $fresh fetched $file from $got, byte-identical"
    else
        check_fail "new downloader in $fresh failed against $got: $(grep -E '^error' "$DIR/mapping-change-get.log" | tail -n1)"
    fi
}

# The same under the symmetric NAT: flushing its conntrack table gives every new connection (and
# every STUN refresh) a new public port; that alone is no move (the listing stays put), a new
# public IP is, and a leecher that lets connections in still gets the file (reverse connection).
run_symmetric_change() {
    local lan=s-sym r wan old new file=m-sym-full.bin before after got
    echo "== symmetric NAT: conntrack flushed, then a new public address"
    r="$(ns_router "$lan")"; wan="$(if_wan "$lan")"
    old="$(lan_public_ip "$lan")"; new="$LAB_NET.$((100 + $(lan_index "$lan")))"
    before="$(tracker_peers_of "$file" | grep "^$old:" | head -n1 || true)"
    in_ns "$r" conntrack -F >/dev/null 2>&1 || true
    # Nothing to wait for but time: three refresh periods in which nothing may move.
    sleep $((3 * LAB_REFRESH + 1))
    after="$(tracker_peers_of "$file" | grep "^$old:" | head -n1 || true)"
    if [ -n "$before" ] && [ "$before" = "$after" ]; then
        check_ok "after a conntrack flush $lan is still listed at $after (new ports on the same IP are no move)"
    else
        check_fail "$lan listed at '${before:-nothing}' before the conntrack flush, '${after:-nothing}' after"
    fi
    in_ns "$r" ip addr del "$old/24" dev "$wan"
    in_ns "$r" ip addr add "$new/24" dev "$wan"
    in_ns "$r" conntrack -F >/dev/null 2>&1 || true
    if got="$(wait_listed_at "$file" "$new" "$after" $((6 * LAB_REFRESH + 20)))"; then
        check_ok "tracker lists $lan at $got after its public IP changed"
    else
        check_fail "tracker did not move $lan from $old to $new"
        return
    fi
    rm -rf "$DIR/l-full-sym"; mkdir -p "$DIR/l-full-sym"
    if peer_in l-full --dir "$DIR/l-full-sym" get "$file" --give-up 30 >"$DIR/symmetric-change-get.log" 2>&1 </dev/null &&
        cmp -s "$DIR/$lan/$file" "$DIR/l-full-sym/$file"; then
        check_ok "a new downloader in l-full fetched $file from $got, byte-identical"
    else
        check_fail "new downloader in l-full failed against $got: $(grep -E '^error' "$DIR/symmetric-change-get.log" | head -n1)"
    fi
}

# Bad input: a tracker nobody answers at, a STUN server nobody answers at. Clear errors,
# bounded waits, and a daemon that still serves (announcing its port at the source IP).
run_bad_input() {
    echo "== unreachable tracker and STUN server"
    local lan=l-prc dead_tracker="$LAB_NET.250:$TRACKER_PORT" dead_stun="$LAB_NET.251:$STUN_PORT" t0 out rc got
    t0=$SECONDS; rc=0
    out="$(in_ns "$(ns_host "$lan")" timeout 120 "$BIN/peer" --tracker "$dead_tracker" --stun none \
        --dir "$DIR/bad-tracker" get m-none-prc.bin 2>&1)" || rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "did not answer" <<<"$out"; then
        check_ok "get with a dead tracker fails after $((SECONDS - t0))s: $(grep '^error: ' <<<"$out" | head -n1)"
    else
        check_fail "get with a dead tracker: exit $rc: $(tail -n2 <<<"$out")"
    fi
    t0=$SECONDS; rc=0
    out="$(in_ns "$(ns_host "$lan")" timeout 60 "$BIN/stun-probe" "$dead_stun" --rto-ms 200 --requests 3 2>&1)" || rc=$?
    if [ "$rc" = 1 ] && [ -n "$out" ]; then
        check_ok "stun-probe of a dead STUN server fails after $((SECONDS - t0))s: $(tail -n1 <<<"$out")"
    else
        check_fail "stun-probe of a dead STUN server: exit $rc: $out"
    fi
    local dir="$DIR/bad-stun" port=$((PEER_PORT + 1))
    mkdir -p "$dir"
    head -c 65536 /dev/urandom >"$dir/lonely.bin"
    spawn "$(ns_host "$lan")" bad-stun env RUST_LOG=info "$BIN/peer" --tracker "$TRACKER_IP:$TRACKER_PORT" \
        --stun "$dead_stun" --refresh "$LAB_REFRESH" --listen "0.0.0.0:$port" --dir "$dir" daemon --heartbeat 2
    if wait_for_line "$DIR/bad-stun.log" '^peer listening on ' "$DIR/bad-stun.pid" >/dev/null &&
        got="$(wait_listed_at lonely.bin "$(lan_public_ip "$lan")")" &&
        wait_for_line "$DIR/bad-stun.log" "STUN server $dead_stun" >/dev/null; then
        check_ok "daemon with a dead STUN server serves, warns, and is listed at $got"
    else
        check_fail "daemon with a dead STUN server (see $DIR/bad-stun.log)"
    fi
    kill -TERM "$(cat "$DIR/bad-stun.pid")" 2>/dev/null || true
}

lab_test_all() {
    local type
    check_stun_probe
    for type in "${NAT_TYPES[@]}"; do start_seeder "$type"; done
    check_announcements
    run_matrix
    run_mapping_change
    run_symmetric_change
    run_bad_input
    echo "$CHECKS_PASSED passed, $CHECKS_FAILED failed"
    [ "$CHECKS_FAILED" = 0 ]
}
