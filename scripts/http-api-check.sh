#!/usr/bin/env bash
# Checks the tracker's HTTP API (`tracker --http`) against its own OpenAPI document with
# schemathesis (from PyPI, in a venv under target/): generated valid and invalid requests
# against a running tracker that holds a swarm; every answer must be a non-5xx that matches
# the documented status codes, content types and schemas. About a minute.
#
# Needs python3 with venv and pip (Debian: python3-venv python3-pip) and PyPI. Where they are
# missing the check is skipped LOUDLY, except under CI (CI=true) or HTTP_API_CHECK=require,
# where a skip fails. HTTP_API_CHECK=skip skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
venv="$target/http-api-venv"
mode="${HTTP_API_CHECK:-auto}"
[ "${CI:-}" != true ] || [ "$mode" = skip ] || mode=require
[ "$mode" != skip ] || { echo "HTTP API check skipped (HTTP_API_CHECK=skip)"; exit 0; }

skip() {
    {
        echo "################################################################################"
        echo "##  HTTP API CHECK SKIPPED: $1"
        echo "##  schemathesis did NOT run against the tracker's HTTP API."
        echo "##  Install python3-venv and python3-pip (and reach PyPI), then run $0."
        echo "################################################################################"
    } >&2
    [ "$mode" != require ] || exit 1
    exit 0
}

if [ ! -x "$venv/bin/schemathesis" ]; then
    command -v python3 >/dev/null || skip "python3 is not installed"
    rm -rf "$venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || skip "python3 -m venv failed (python3-venv missing?)"
    "$venv/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5' ||
        skip "pip install schemathesis failed"
fi

cargo build --bin tracker --locked
work="$(mktemp -d)"
tracker_pid=
cleanup() {
    [ -z "$tracker_pid" ] || kill "$tracker_pid" 2>/dev/null || true
    [ -z "$tracker_pid" ] || wait "$tracker_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$target/debug/tracker" --bind 127.0.0.1:0 --http 127.0.0.1:0 >"$work/out" 2>"$work/err" &
tracker_pid=$!
for _ in $(seq 100); do
    grep -q '^http listening on ' "$work/out" && break
    kill -0 "$tracker_pid" 2>/dev/null || { cat "$work/err" >&2; echo "tracker died" >&2; exit 1; }
    sleep 0.1
done
http="$(sed -n 's/^http listening on //p' "$work/out")"
udp="$(sed -n 's/^tracker listening on //p' "$work/out")"
[ -n "$http" ] || { echo "tracker printed no HTTP address" >&2; exit 1; }

# A swarm to list: a seeder over HTTP, another file shared over UDP. The seeder's peer id is
# the document's example, so the generated requests built from examples carry a valid session.
token="$("$venv/bin/python" - "$http" "$udp" <<'PY'

import json, socket, sys, urllib.request
http, udp = sys.argv[1], sys.argv[2]
def post(path, body, token=None):
    req = urllib.request.Request(f"http://{http}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return json.load(urllib.request.urlopen(req, timeout=10))
peer = "0b6f7a0e-3c1d-4d2a-9a57-2f3c1d4e5f60"
token = post("/api/peers/register", {"peer_id": peer, "port": 7000})["session_token"]
post("/api/files/announce", {"peer_id": peer, "file": {
    "name": "movie.mkv", "size": 5000, "hash": "sha256:" + "ab" * 32}}, token)
host, port = udp.rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(f"REQUEST 4 notes.txt 1 0.0.0.0:7001 size=10 id=sha256:{'cd' * 32}".encode(), (host, int(port)))
assert s.recv(2048) == b"RESPONSE 4 OK"
print(token)
PY
)"

echo "== schemathesis $("$venv/bin/schemathesis" --version | awk '{print $NF}') against http://$http"
# Run from the scratch directory: schemathesis keeps a cache (.schemathesis/) where it runs.
venv_abs="$(cd "$venv" && pwd)"
(cd "$work" && "$venv_abs/bin/schemathesis" run "http://$http/api/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "${HTTP_API_EXAMPLES:-40}" --seed 14 --generation-database none \
    --request-timeout 10 --no-color -H "Authorization: Bearer $token")
kill -0 "$tracker_pid" 2>/dev/null || { echo "the tracker died during the check" >&2; exit 1; }
echo "== HTTP API check passed"
