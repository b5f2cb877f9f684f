# Sourced by the bench-*.sh scripts: a work directory removed on exit together with every
# process recorded in PIDS, and waiting for a process's startup line.
#
#   . scripts/bench-common.sh     # from the repository root
#   bench_work_dir BASE NAME      # sets WORK to a fresh directory under BASE

# Creates WORK under $1 (named after $2) and arranges for it, and every pid in PIDS, to go
# when the script exits.
bench_work_dir() {
    WORK=$(mktemp -d "$1/$2.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# Waits until FILE has a line starting with PREFIX; prints the rest of that line. Gives up
# after 60 s, showing the file.
wait_line() {
    local file=$1 prefix=$2
    for _ in $(seq 1 600); do
        if grep -q "^$prefix" "$file" 2>/dev/null; then
            sed -n "s/^$prefix//p" "$file" | head -n1
            return 0
        fi
        sleep 0.1
    done
    echo "$(basename "$0" .sh): timed out waiting for '$prefix' in $file" >&2
    cat "$file" >&2
    exit 1
}
