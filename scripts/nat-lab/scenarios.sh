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

lab_test_all() { :; }
