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
# Refresh period for the address-change scenarios only (the default is 30 s); the matrix runs
# with default flags.
LAB_REFRESH=2
# Hang guard for one `peer get`; the peer's own bounds end a failing pair well before it.
GET_TIMEOUT=${NAT_LAB_GET_TIMEOUT:-150}
# The issue's bound: no pair waits longer than this for its first chunk.
FIRST_CHUNK_LIMIT=10

# What a user types: the tracker's address and nothing else (STUN at the tracker's host, TURN
# from the tracker, port mapping on: all defaults).
peer_args() {
    printf '%s\n' --tracker "$TRACKER_IP:$TRACKER_PORT"
}

# Runs `peer` inside the host namespace of LAN $1 with default flags (plus "$@"), killed after
# GET_TIMEOUT seconds if it has not finished by itself.
peer_in() {
    local lan="$1"; shift
    local args
    mapfile -t args < <(peer_args)
    in_ns "$(ns_host "$lan")" timeout -k 5 "$GET_TIMEOUT" env RUST_LOG="${RUST_LOG:-info}" \
        "$BIN/peer" "${args[@]}" "$@"
}

# The seeder of type $1 lives in LAN s-$1. Its daemon starts (default flags) over a directory
# already holding the files for leechers none and full; the files for prc and sym are shared
# with `peer share` beside the running daemon just before their pair runs.
seeder_file() { echo "m-$1-$2.bin"; }
preloaded() { [ "$1" = none ] || [ "$1" = full ]; }

start_seeder() {
    local type="$1" lan="s-$1" other args
    mkdir -p "$DIR/$lan" "$DIR/src"
    for other in "${NAT_TYPES[@]}"; do
        if preloaded "$other"; then
            head -c "$FILE_BYTES" /dev/urandom >"$DIR/$lan/$(seeder_file "$type" "$other")"
        else
            head -c "$FILE_BYTES" /dev/urandom >"$DIR/src/$(seeder_file "$type" "$other")"
        fi
    done
    mapfile -t args < <(peer_args)
    spawn "$(ns_host "$lan")" "$lan" env RUST_LOG="${RUST_LOG:-info}" "$BIN/peer" "${args[@]}" \
        --dir "$DIR/$lan" daemon
    wait_for_line "$DIR/$lan.log" '^peer listening on ' "$DIR/$lan.pid" >/dev/null \
        || die "seeder daemon in $lan did not start"
}

# The addresses the tracker lists for FILE, one per line, asked from the public segment.
tracker_peers_of() {
    mkdir -p "$DIR/query"
    in_ns "$NS_PUB" timeout 20 env RUST_LOG=warn "$BIN/peer" --tracker "$TRACKER_IP:$TRACKER_PORT" \
        --dir "$DIR/query" --stun none --turn none --no-port-mapping peers "$1" --json 2>/dev/null |
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

# Requirement: each seeder is listed where peers can reach it: its public address (STUN) for
# cone NATs, the router's mapping (UPnP/NAT-PMP) behind the miniupnpd router, the relayed
# address (TURN) behind the symmetric NAT; never a 10.x address.
check_announcements() {
    echo "== announced addresses (asked from the tracker)"
    local type lan want got how
    for type in "${SEEDER_TYPES[@]}"; do
        lan="s-$type"
        case "$type" in
            sym) want="$TURN_RELAY_IP"; how="relayed address (TURN)" ;;
            *) want="$(lan_public_ip "$lan")"; how="public address" ;;
        esac
        if ! got="$(wait_listed_at "$(seeder_file "$type" none)" "$want")"; then
            check_fail "$lan: never listed at $want"
            continue
        fi
        if [ "$type" = upnp ] && ! grep -q 'port mapping: TCP 6881 forwarded' "$DIR/$lan.log"; then
            check_fail "$lan listed at $got, but its router granted no port mapping"
        elif [ "$type" != sym ] && [ "$got" != "$want:$PEER_PORT" ]; then
            check_fail "$lan listed at $got, expected $want:$PEER_PORT"
        else
            [ "$type" = upnp ] && how="router port mapping (UPnP)"
            check_ok "$lan ($(lan_private_ip "$lan"):$PEER_PORT) listed at $got, its $how"
        fi
    done
}

# Polls until $1 (a leecher directory) holds the first verified chunk of $2 (its resume record
# or the finished file); prints the seconds since $3 (date +%s.%N), or nothing on timeout.
first_chunk_after() {
    local dir="$1" file="$2" start="$3" deadline=$((SECONDS + GET_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ -e "$dir/.peer/$file.part.have" ] || [ -e "$dir/$file" ]; then
            awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
            return 0
        fi
        sleep 0.05
    done
}

# The leecher downloads as `peer get`, or through the console (choice 1, then q once the file
# is complete), which runs a daemon underneath.
leech_get() {
    local lan="$1" dir="$2" file="$3"
    peer_in "$lan" --dir "$dir" get "$file" --give-up 30 </dev/null
}
leech_console() {
    local lan="$1" dir="$2" file="$3" log="$4" deadline=$((SECONDS + GET_TIMEOUT - 10))
    {
        echo "1 $file"
        while [ ! -e "$dir/$file" ] && ! grep -q "^failed: $file" "$log" &&
            [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        echo q
    } | peer_in "$lan" --dir "$dir"
    [ -e "$dir/$file" ]
}

# One pair of the matrix: leecher in l-$2 downloads m-$1-$2.bin from the seeder in s-$1, as
# `peer get` ($3 = get) or through the console ($3 = console). A file not yet shared is shared
# with `peer share` beside the seeder's daemon right before (the issue's case). Writes
# "outcome|path|first chunk s|connect ms|total s|mode|detail" to $DIR/result-$1-$2.
run_pair() {
    local s="$1" l="$2" mode="$3" file dir log start end rc=0 first secs path ms outcome detail
    file="$(seeder_file "$s" "$l")"
    dir="$DIR/l-$l"; log="$DIR/pair-$s-$l.log"
    mkdir -p "$dir"
    if [ ! -e "$DIR/s-$s/$file" ] && [ ! -e "$DIR/s-$s/.peer/$file.share" ]; then
        if ! peer_in "s-$s" --dir "$DIR/s-$s" share "$DIR/src/$file" >"$DIR/share-$s-$l.log" 2>&1 </dev/null; then
            printf 'FAIL share|-|-|-|-|%s|%s\n' "$mode" "$(tail -n1 "$DIR/share-$s-$l.log")" >"$DIR/result-$s-$l"
            return
        fi
    fi
    start=$(date +%s.%N)
    first_chunk_after "$dir" "$file" "$start" >"$DIR/first-$s-$l" &
    local poller=$!
    "leech_$mode" "l-$l" "$dir" "$file" "$log" >"$log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    # A fast download can end between two polls: the poller then sees the finished file on its
    # next look (an upper bound for the first chunk). Only a poller still looking after that is
    # stopped.
    local waited=0
    while kill -0 "$poller" 2>/dev/null && [ "$waited" -lt 20 ]; do sleep 0.1; waited=$((waited + 1)); done
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
    first="$(cat "$DIR/first-$s-$l" 2>/dev/null)"; first="${first:--}"
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    # Seen after the end means "by the end".
    [ "$first" = - ] || first=$(awk -v f="$first" -v t="$secs" 'BEGIN { print (f > t ? t : f) }')
    # The first connection to the seeder names the path and how long it took.
    local line
    line="$(grep -m1 -E "connected for $file via " "$log" || true)"
    path="$(sed -n 's/.* via \([a-z]*\) .*/\1/p' <<<"$line")"
    ms="$(sed -n 's/.* in \([0-9]*\) ms .*/\1/p' <<<"$line")"
    [ "$path" = direct ] && [ "$s" = upnp ] && path="port-mapped"
    path="${path:-?}"; ms="${ms:--}"
    detail=""
    # Preloaded files live in the seeder's directory; the others are shared where they lie.
    local original="$DIR/s-$s/$file"
    [ -e "$original" ] || original="$DIR/src/$file"
    if [ "$rc" = 0 ] && cmp -s "$original" "$dir/$file"; then
        if [ "$first" = - ] || awk -v f="$first" -v m="$FIRST_CHUNK_LIMIT" 'BEGIN { exit !(f > m) }'; then
            outcome="FAIL slow"; detail="first chunk after ${first}s (limit ${FIRST_CHUNK_LIMIT}s)"
        else
            outcome="ok"; detail="byte-identical"
        fi
    elif [ "$rc" = 0 ]; then
        outcome="FAIL corrupt"; detail="exit 0 but the file differs or is missing"
    else
        outcome="FAIL exit $rc"
        detail="$(grep -E '^(error|failed)' "$log" | tail -n1 | cut -c1-200 || true)"
        [ -n "$detail" ] || detail="no error line (see $log)"
    fi
    printf '%s|%s|%s|%s|%s|%s|%s\n' "$outcome" "$path" "$first" "$ms" "$secs" "$mode" "$detail" >"$DIR/result-$s-$l"
}

# Every seeder (the four NAT types and the UPnP router) x every leecher NAT type, half the
# pairs as `peer get`, half through the console. Leecher LANs run in parallel, each one pair
# at a time.
run_matrix() {
    echo "== transfer matrix: $((FILE_BYTES / 1024 / 1024)) MiB file, seeder x leecher, default flags"
    local l s pids=() i j mode
    for j in "${!NAT_TYPES[@]}"; do
        l="${NAT_TYPES[$j]}"
        (
            for i in "${!SEEDER_TYPES[@]}"; do
                s="${SEEDER_TYPES[$i]}"
                if [ $(((i + j) % 2)) = 0 ]; then mode=get; else mode=console; fi
                run_pair "$s" "$l" "$mode"
            done
        ) &
        pids+=($!)
    done
    local pid
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    printf '  %-7s %-8s %-8s %-12s %-12s %10s %8s  %s\n' seeder leecher as outcome path "1st chunk" total detail
    local r outcome path first ms secs mode detail
    for s in "${SEEDER_TYPES[@]}"; do
        for l in "${NAT_TYPES[@]}"; do
            r="$(cat "$DIR/result-$s-$l" 2>/dev/null || echo 'FAIL no result|-|-|-|-|-|')"
            IFS='|' read -r outcome path first ms secs mode detail <<<"$r"
            printf '  %-7s %-8s %-8s %-12s %-12s %9ss %7ss  %s (connected in %s ms)\n' \
                "$s" "$l" "$mode" "$outcome" "$path" "$first" "$secs" "$detail" "$ms"
            case "$outcome" in
                ok*) CHECKS_PASSED=$((CHECKS_PASSED + 1)) ;;
                *) CHECKS_FAILED=$((CHECKS_FAILED + 1)) ;;
            esac
        done
    done
}

# The keepalive: a daemon heartbeating only every 120 s sits idle behind a port-restricted NAT
# whose router forgets UDP mappings after 30 s; a file shared beside it after 40 s of silence
# must still be reached at once (the PUNCH path survives on the 15 s keepalive).
run_keepalive() {
    local lan=s-prc dir="$DIR/keepalive" file=idle.bin port=$((PEER_PORT + 2)) start first args
    echo "== keepalive: 40 s idle behind a NAT with a 30 s UDP timeout, --heartbeat 120"
    mkdir -p "$dir" "$DIR/l-prc-idle"
    head -c 65536 /dev/urandom >"$DIR/src/$file"
    mapfile -t args < <(peer_args)
    spawn "$(ns_host "$lan")" keepalive env RUST_LOG=info "$BIN/peer" "${args[@]}" --listen "0.0.0.0:$port" \
        --dir "$dir" daemon --heartbeat 120
    wait_for_line "$DIR/keepalive.log" '^peer listening on ' "$DIR/keepalive.pid" >/dev/null || { check_fail "keepalive daemon did not start"; return; }
    sleep 40
    peer_in "$lan" --dir "$dir" share "$DIR/src/$file" >"$DIR/keepalive-share.log" 2>&1 </dev/null
    start=$(date +%s.%N)
    if peer_in l-prc --dir "$DIR/l-prc-idle" get "$file" >"$DIR/keepalive-get.log" 2>&1 </dev/null &&
        cmp -s "$DIR/src/$file" "$DIR/l-prc-idle/$file"; then
        first=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        check_ok "after 40 s idle the file shared beside the daemon was fetched in ${first}s ($(grep -m1 -oE 'via [a-z]+' "$DIR/keepalive-get.log"))"
    else
        check_fail "after 40 s idle: $(grep -E '^error' "$DIR/keepalive-get.log" | tail -n1)"
    fi
    kill -TERM "$(cat "$DIR/keepalive.pid")" 2>/dev/null || true
}

# Restarts the seeder daemon of LAN $1 with a short --refresh (the address-change scenarios
# may shorten it; everything else runs with defaults).
restart_with_short_refresh() {
    local lan="$1" args pid
    pid="$(cat "$DIR/$lan.pid")"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    mapfile -t args < <(peer_args)
    spawn "$(ns_host "$lan")" "$lan-refresh" env RUST_LOG=info "$BIN/peer" "${args[@]}" \
        --refresh "$LAB_REFRESH" --dir "$DIR/$lan" daemon
    wait_for_line "$DIR/$lan-refresh.log" '^peer listening on ' "$DIR/$lan-refresh.pid" >/dev/null
}

# Requirement: the NAT's public address changes mid-run; the daemon notices within a refresh
# period or so, re-announces, and a new downloader succeeds against the new address.
run_mapping_change() {
    local lan=s-prc r wan old new file t0 got secs
    file="$(seeder_file prc full)"
    echo "== mapping change: $lan's router gets a new public address"
    restart_with_short_refresh "$lan" || { check_fail "$lan daemon did not restart"; return; }
    r="$(ns_router "$lan")"; wan="$(if_wan "$lan")"
    old="$(lan_public_ip "$lan")"; new="$LAB_NET.$((100 + $(lan_index "$lan")))"
    wait_listed_at "$file" "$old" >/dev/null || true
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

# The same under the symmetric NAT, whose peer is relayed: a new public IP breaks the TURN
# control connection; the peer allocates again, the tracker lists the new relayed address,
# and a fresh downloader fetches through it.
run_symmetric_change() {
    local lan=s-sym r wan old new file before got
    file="$(seeder_file sym full)"
    echo "== symmetric NAT: a new public address under a relayed peer"
    restart_with_short_refresh "$lan" || { check_fail "$lan daemon did not restart"; return; }
    before="$(wait_listed_at "$file" "$TURN_RELAY_IP")" || { check_fail "$lan not relayed after its restart"; return; }
    r="$(ns_router "$lan")"; wan="$(if_wan "$lan")"
    old="$(lan_public_ip "$lan")"; new="$LAB_NET.$((100 + $(lan_index "$lan")))"
    in_ns "$r" ip addr del "$old/24" dev "$wan"
    in_ns "$r" ip addr add "$new/24" dev "$wan"
    in_ns "$r" conntrack -F >/dev/null 2>&1 || true
    if got="$(wait_listed_at "$file" "$TURN_RELAY_IP" "$before" $((6 * LAB_REFRESH + 30)))"; then
        check_ok "after its public IP changed, $lan is relayed at $got (was $before)"
    else
        check_fail "$lan still listed at $before after its public IP changed"
        return
    fi
    rm -rf "$DIR/l-full-sym"; mkdir -p "$DIR/l-full-sym"
    if peer_in l-full --dir "$DIR/l-full-sym" get "$file" --give-up 30 >"$DIR/symmetric-change-get.log" 2>&1 </dev/null &&
        cmp -s "$DIR/$lan/$file" "$DIR/l-full-sym/$file"; then
        check_ok "a new downloader in l-full fetched $file through $got, byte-identical"
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
    for type in "${SEEDER_TYPES[@]}"; do start_seeder "$type"; done
    check_announcements
    run_matrix
    run_keepalive
    run_mapping_change
    run_symmetric_change
    run_bad_input
    echo "$CHECKS_PASSED passed, $CHECKS_FAILED failed"
    [ "$CHECKS_FAILED" = 0 ]
}
