# NAT lab topology: namespaces, veth pairs, NAT routers, tracker and coturn.
# Sourced by scripts/nat-lab.sh; every function takes its names from the run id so that
# parallel runs never share a namespace, a veth or a directory.

# The "internet" of the lab: TEST-NET-3 (RFC 5737), used only inside our namespaces. The
# tracker and coturn share one host, as an operator would run them: peers with default flags
# ask STUN at the tracker's host, port 3478, and the tracker hands out that coturn for TURN.
LAB_NET=203.0.113
TRACKER_IP=$LAB_NET.2
TRACKER_PORT=6969
STUN_IP1=$LAB_NET.2
STUN_IP2=$LAB_NET.3
STUN_PORT=3478
STUN_ALT_PORT=3479
# coturn relays from the tracker host's IP (the IP the tracker accepts relayed addresses on).
TURN_RELAY_IP=$STUN_IP1
TURN_SECRET="lab-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
PEER_PORT=6881

# The private LANs: a seeder side and a leecher side per NAT type, so that every pair of the
# matrix (including same-type pairs) has two distinct routers. Index N gives LAN 10.0.N.0/24 and
# public address $LAB_NET.(10+N).
#   none  peer directly on the public segment
#   full  full cone for the peer port: MASQUERADE + DNAT of the peer port to the inside peer
#   prc   port-restricted cone: plain MASQUERADE (endpoint-independent mapping, filtering by
#         remote address and port, as conntrack does)
#   sym   symmetric: MASQUERADE --random-fully (a new public port per destination)
#   upnp  port-restricted cone whose router runs miniupnpd (UPnP IGD + NAT-PMP): the peer asks
#         it to forward its port and is reached directly
LAN_NAMES=(s-none s-full s-prc s-sym l-none l-full l-prc l-sym s-upnp)
NAT_TYPES=(none full prc sym)
SEEDER_TYPES=(none full prc sym upnp)

# Seconds any readiness wait may take before the lab gives up (a loaded 2-core CI machine).
READY_TIMEOUT=${NAT_LAB_READY_TIMEOUT:-30}

log() { printf 'nat-lab: %s\n' "$*" >&2; }
die() { printf 'nat-lab: error: %s\n' "$*" >&2; exit 1; }

lab_new_id() { od -An -N3 -tx1 /dev/urandom | tr -d ' \n'; }
lab_dir() { printf '%s/nat-lab-%s' "${NAT_LAB_DIR:-${TMPDIR:-/tmp}}" "$1"; }

lab_bin_dir() {
    if [ -n "${NAT_LAB_BIN:-}" ]; then
        printf '%s' "$NAT_LAB_BIN"
    else
        printf '%s/debug' "${CARGO_TARGET_DIR:-$REPO/target}"
    fi
}

# Sets every name and address of run $1 (pure: derived from the id alone).
lab_load() {
    LAB_ID="$1"
    case "$LAB_ID" in
        ''|*[!0-9a-z]*) die "bad run id '$LAB_ID' (lower-case letters and digits only)" ;;
    esac
    [ "${#LAB_ID}" -le 8 ] || die "run id '$LAB_ID' longer than 8 characters (interface names are limited to 15)"
    DIR="$(lab_dir "$LAB_ID")"
    NS_PUB="nl$LAB_ID-pub"
    BIN="$(lab_bin_dir)"
}

lan_index() {
    local i
    for i in "${!LAN_NAMES[@]}"; do
        if [ "${LAN_NAMES[$i]}" = "$1" ]; then echo $((i + 1)); return; fi
    done
    die "unknown LAN '$1'"
}
lan_type() { echo "${1#*-}"; }
ns_router() { echo "nl$LAB_ID-r$(lan_index "$1")"; }
ns_host() { echo "nl$LAB_ID-h$(lan_index "$1")"; }
# Interface names: <role letter><run id>x<lan index>, at most 1+8+1+1 = 11 characters.
if_bridge_port() { echo "b${LAB_ID}x$(lan_index "$1")"; }
if_wan() { echo "w${LAB_ID}x$(lan_index "$1")"; }
if_lan() { echo "l${LAB_ID}x$(lan_index "$1")"; }
if_host() { echo "h${LAB_ID}x$(lan_index "$1")"; }
lan_public_ip() { echo "$LAB_NET.$((10 + $(lan_index "$1")))"; }
lan_private_ip() {
    if [ "$(lan_type "$1")" = none ]; then lan_public_ip "$1"; else echo "10.0.$(lan_index "$1").2"; fi
}

in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

# Refuses early, with the fix in the message, when the machine or the build is not ready.
# Arguments: the workspace binaries the caller will run.
lab_preflight() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, iptables)"
    local c
    for c in ip iptables iptables-legacy conntrack turnserver turnutils_stunclient turnutils_natdiscovery miniupnpd upnpc natpmpc timeout cmp awk; do
        command -v "$c" >/dev/null || die "'$c' not found; install iproute2 iptables conntrack coturn miniupnpd-iptables miniupnpc natpmpc coreutils"
    done
    for c in "$@"; do
        [ -x "$(lab_bin_dir)/$c" ] || die "binary '$(lab_bin_dir)/$c' missing; run: cargo build --workspace --bins (or set NAT_LAB_BIN)"
    done
}

lab_list() {
    ip netns list | awk '{print $1}' | sed -n 's/^nl\([0-9a-z]*\)-pub$/\1/p'
}

# Starts "$@" inside namespace $1 in the background, output to $DIR/$2.log, pid to $DIR/$2.pid.
spawn() {
    local ns="$1" name="$2"; shift 2
    ip netns exec "$ns" "$@" >"$DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/$name.pid"
    # lab_down ends it by pid; no job-control chatter when it does.
    disown $!
}

# Waits until file $1 contains a line matching $2; prints the first match. Fails after
# READY_TIMEOUT seconds or as soon as the process of pid file $3 (if given) is gone.
wait_for_line() {
    local file="$1" pattern="$2" pidfile="${3:-}" deadline=$((SECONDS + READY_TIMEOUT)) line
    while [ "$SECONDS" -lt "$deadline" ]; do
        line="$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)"
        if [ -n "$line" ]; then printf '%s\n' "$line"; return 0; fi
        if [ -n "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            log "process of $pidfile exited before printing '$pattern'; its log:"
            tail -n 20 "$file" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    log "timed out after ${READY_TIMEOUT}s waiting for '$pattern' in $file; its log:"
    tail -n 20 "$file" >&2 || true
    return 1
}

# The public segment: one namespace holding a bridge, the tracker and coturn.
build_public() {
    ip netns add "$NS_PUB"
    in_ns "$NS_PUB" ip link set lo up
    in_ns "$NS_PUB" ip link add br0 type bridge
    in_ns "$NS_PUB" ip link set br0 up
    local ip
    for ip in $(printf '%s\n' "$TRACKER_IP" "$STUN_IP1" "$STUN_IP2" | sort -u); do
        in_ns "$NS_PUB" ip addr add "$ip/24" dev br0
    done
}

# veth pair created directly inside two of our namespaces (never in the host's).
veth() {
    ip link add "$1" netns "$2" type veth peer name "$3" netns "$4"
}

build_lan() {
    local lan="$1" type r h wan lanif hif pub priv
    type="$(lan_type "$lan")"
    h="$(ns_host "$lan")"
    hif="$(if_host "$lan")"
    pub="$(lan_public_ip "$lan")"
    ip netns add "$h"
    in_ns "$h" ip link set lo up
    if [ "$type" = none ]; then
        veth "$(if_bridge_port "$lan")" "$NS_PUB" "$hif" "$h"
        in_ns "$NS_PUB" ip link set "$(if_bridge_port "$lan")" master br0 up
        in_ns "$h" ip addr add "$pub/24" dev "$hif"
        in_ns "$h" ip link set "$hif" up
        return
    fi
    r="$(ns_router "$lan")"
    wan="$(if_wan "$lan")"
    lanif="$(if_lan "$lan")"
    priv="$(lan_private_ip "$lan")"
    ip netns add "$r"
    in_ns "$r" ip link set lo up
    veth "$(if_bridge_port "$lan")" "$NS_PUB" "$wan" "$r"
    in_ns "$NS_PUB" ip link set "$(if_bridge_port "$lan")" master br0 up
    in_ns "$r" ip addr add "$pub/24" dev "$wan"
    in_ns "$r" ip link set "$wan" up
    veth "$lanif" "$r" "$hif" "$h"
    in_ns "$r" ip addr add "10.0.$(lan_index "$lan").1/24" dev "$lanif"
    in_ns "$r" ip link set "$lanif" up
    in_ns "$h" ip addr add "$priv/24" dev "$hif"
    in_ns "$h" ip link set "$hif" up
    in_ns "$h" ip route add default via "10.0.$(lan_index "$lan").1"
    in_ns "$r" sysctl -qw net.ipv4.ip_forward=1
    nat_rules "$lan"
}

# The router's firewall, like a home router: inside may go out, outside gets in only on
# connections the inside opened (plus the forwarded peer port in full-cone mode). Unsolicited
# packets are DROPPED, not rejected: otherwise the router's own stack answers SYNs with RST and
# a hole-punching SYN racing the other side's would kill the attempt.
nat_rules() {
    local lan="$1" r type wan lanif priv ipt=iptables
    r="$(ns_router "$lan")"; type="$(lan_type "$lan")"
    wan="$(if_wan "$lan")"; lanif="$(if_lan "$lan")"; priv="$(lan_private_ip "$lan")"
    # miniupnpd drives the legacy (libiptc) tables, so its router keeps every rule there: a
    # packet must pass both rule sets when both exist.
    [ "$type" != upnp ] || ipt=iptables-legacy
    # Many home routers forget idle UDP mappings after 30 s: the peers' keepalive must beat it.
    in_ns "$r" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=30 2>/dev/null || true
    in_ns "$r" sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream=30 2>/dev/null || true
    in_ns "$r" $ipt -P FORWARD DROP
    in_ns "$r" $ipt -A INPUT -i lo -j ACCEPT
    in_ns "$r" $ipt -A INPUT -i "$lanif" -j ACCEPT
    in_ns "$r" $ipt -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    in_ns "$r" $ipt -A INPUT -i "$wan" -j DROP
    in_ns "$r" $ipt -A FORWARD -i "$lanif" -o "$wan" -j ACCEPT
    in_ns "$r" $ipt -A FORWARD -i "$wan" -o "$lanif" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    case "$type" in
        prc)
            in_ns "$r" iptables -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
            ;;
        upnp)
            # The chains miniupnpd fills: DNAT of mapped ports, their SNAT, and the filter
            # rule letting the forwarded connections through.
            in_ns "$r" $ipt -t nat -N MINIUPNPD
            in_ns "$r" $ipt -t nat -A PREROUTING -i "$wan" -j MINIUPNPD
            in_ns "$r" $ipt -t nat -N MINIUPNPD-POSTROUTING
            in_ns "$r" $ipt -t nat -A POSTROUTING -o "$wan" -j MINIUPNPD-POSTROUTING
            in_ns "$r" $ipt -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
            in_ns "$r" $ipt -N MINIUPNPD
            in_ns "$r" $ipt -A FORWARD -i "$wan" -o "$lanif" -j MINIUPNPD
            # miniupnpd's STUN test (CHANGE-REQUEST) expects the answers from coturn's other
            # address to reach the router itself; a router filtering its own WAN input that
            # way would conclude it sits behind another NAT and refuse to forward.
            in_ns "$r" $ipt -I INPUT 1 -i "$wan" -p udp -s "$STUN_IP1" -j ACCEPT
            in_ns "$r" $ipt -I INPUT 1 -i "$wan" -p udp -s "$STUN_IP2" -j ACCEPT
            ;;
        full)
            in_ns "$r" iptables -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
            in_ns "$r" iptables -t nat -A PREROUTING -i "$wan" -p tcp --dport "$PEER_PORT" \
                -j DNAT --to-destination "$priv:$PEER_PORT"
            in_ns "$r" iptables -A FORWARD -i "$wan" -o "$lanif" -p tcp -d "$priv" --dport "$PEER_PORT" \
                -m conntrack --ctstate DNAT -j ACCEPT
            ;;
        sym)
            in_ns "$r" iptables -t nat -A POSTROUTING -o "$wan" -j MASQUERADE --random-fully
            ;;
        *) die "unknown NAT type '$type'" ;;
    esac
}

start_coturn() {
    : >"$DIR/turnserver.conf"
    # Two listening IPs and an alternate port make coturn offer RFC 5780 (OTHER-ADDRESS,
    # CHANGE-REQUEST), so the NAT probe can tell endpoint-dependent mapping apart. TURN with
    # TCP relaying (RFC 6062, on by default) and the REST-API secret the tracker mints
    # credentials from.
    spawn "$NS_PUB" turnserver turnserver -c "$DIR/turnserver.conf" --no-cli --no-tls --no-dtls \
        -L "$STUN_IP1" -L "$STUN_IP2" -p "$STUN_PORT" --alt-listening-port "$STUN_ALT_PORT" \
        --relay-ip "$TURN_RELAY_IP" --use-auth-secret --static-auth-secret="$TURN_SECRET" \
        --realm p2p-lab --pidfile "$DIR/turnserver.pidfile" --db "$DIR/turndb" \
        --log-file stdout --simple-log --no-software-attribute
    local deadline=$((SECONDS + READY_TIMEOUT))
    until in_ns "$NS_PUB" timeout 2 turnutils_stunclient -p "$STUN_PORT" "$STUN_IP1" >/dev/null 2>&1; do
        kill -0 "$(cat "$DIR/turnserver.pid")" 2>/dev/null || { tail -n 20 "$DIR/turnserver.log" >&2; die "turnserver exited"; }
        [ "$SECONDS" -lt "$deadline" ] || die "coturn did not answer STUN within ${READY_TIMEOUT}s"
        sleep 0.2
    done
}

start_tracker() {
    spawn "$NS_PUB" tracker env RUST_LOG="${RUST_LOG:-info}" TRACKER_TURN_SECRET="$TURN_SECRET" \
        "$BIN/tracker" --bind "$TRACKER_IP:$TRACKER_PORT" --turn "$STUN_IP1:$STUN_PORT"
    wait_for_line "$DIR/tracker.log" '^tracker listening on ' "$DIR/tracker.pid" >/dev/null \
        || die "tracker did not start"
}

lab_up() {
    lab_load "$1"
    [ ! -e "$DIR" ] || die "run dir $DIR exists already"
    if ip netns list | awk '{print $1}' | grep -q "^nl$LAB_ID-"; then die "namespaces of run $LAB_ID exist already"; fi
    mkdir -p "$DIR"
    log "run $LAB_ID: building public segment and ${#LAN_NAMES[@]} LANs"
    build_public
    local lan
    for lan in "${LAN_NAMES[@]}"; do build_lan "$lan"; done
    start_coturn
    start_tracker
    start_miniupnpd s-upnp
    log "run $LAB_ID: tracker $TRACKER_IP:$TRACKER_PORT, STUN/TURN $STUN_IP1:$STUN_PORT + $STUN_IP2:$STUN_PORT, miniupnpd on $(ns_router s-upnp)"
}

# miniupnpd on the router of LAN $1: UPnP IGD and NAT-PMP for the LAN. Lab WAN addresses are
# "reserved" to it, so it learns its external address by STUN from the lab's coturn (which
# needs two -L addresses for miniupnpd's CHANGE-REQUEST test).
start_miniupnpd() {
    local lan="$1" r conf
    r="$(ns_router "$lan")"; conf="$DIR/miniupnpd-$lan.conf"
    cat >"$conf" <<CONF
ext_ifname=$(if_wan "$lan")
listening_ip=$(if_lan "$lan")
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
ext_perform_stun=yes
ext_stun_host=$STUN_IP1
ext_stun_port=$STUN_PORT
uuid=3d3cec3a-8cf0-11e0-98ee-001a6b$LAB_ID
allow 1024-65535 10.0.$(lan_index "$lan").0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
    spawn "$r" "miniupnpd-$lan" miniupnpd -d -f "$conf" -P "$DIR/miniupnpd-$lan.pidfile"
    # Ready when it answers NAT-PMP from the LAN.
    local deadline=$((SECONDS + READY_TIMEOUT))
    until in_ns "$(ns_host "$lan")" timeout 3 natpmpc -g "10.0.$(lan_index "$lan").1" 2>/dev/null | grep -q 'Public IP address'; do
        kill -0 "$(cat "$DIR/miniupnpd-$lan.pid")" 2>/dev/null || { tail -n 20 "$DIR/miniupnpd-$lan.log" >&2; die "miniupnpd exited"; }
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$DIR/miniupnpd-$lan.log" >&2; die "miniupnpd did not answer NAT-PMP within ${READY_TIMEOUT}s"; }
        sleep 0.3
    done
}

# Sends SIGTERM to every process inside namespaces "$@" (ours: nothing else runs there), waits
# up to $STOP_GRACE seconds, then SIGKILLs what is left.
STOP_GRACE=10
stop_processes_in() {
    local ns pid pids=()
    for ns in "$@"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do pids+=("$pid"); done
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE)) alive
    while [ "$SECONDS" -lt "$deadline" ]; do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 1 ] || return 0
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Removes every process, namespace and the run dir of run $1. Safe to call twice and on a
# half-built lab: it looks only at what exists.
lab_down() {
    lab_load "$1"
    local nss ns
    nss="$(ip netns list | awk '{print $1}' | grep "^nl$LAB_ID-" || true)"
    # Peers first, so that they can still tell the tracker they leave (flag 5).
    # shellcheck disable=SC2046
    stop_processes_in $(grep -v -- '-pub$' <<<"$nss" || true)
    stop_processes_in "$NS_PUB"
    for ns in $nss; do ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"; done
    if [ "${NAT_LAB_KEEP:-0}" = 1 ]; then
        [ -d "$DIR" ] && log "kept $DIR (NAT_LAB_KEEP=1)"
    else
        rm -rf "$DIR"
    fi
    log "run $LAB_ID: down"
}

# Called by the EXIT trap of `test`: keeps the logs of a failed run (the namespaces always go).
lab_finish() {
    local id="$1" rc="$2" job
    # Interrupted mid-matrix: stop this script's own background loops before the namespaces go.
    for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
    if [ "$rc" != 0 ]; then
        log "FAILED (exit $rc); logs kept in $(lab_dir "$id")"
        NAT_LAB_KEEP=1 lab_down "$id"
    else
        lab_down "$id"
    fi
}
