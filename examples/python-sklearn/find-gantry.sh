# Sourced by build-image.sh and run.sh: sets `gantry` to $GANTRY, else `gantry` on PATH, else
# the newer of the repository's release and debug builds ($repo must be set); exits 4 saying
# how to get one when there is none.
gantry=${GANTRY:-}
if [[ -z $gantry ]]; then
    if command -v gantry >/dev/null 2>&1; then
        gantry=$(command -v gantry)
    else
        for candidate in "$repo/target/release/gantry" "$repo/target/debug/gantry"; do
            if [[ -x $candidate ]] && { [[ -z $gantry ]] || [[ $candidate -nt $gantry ]]; }; then
                gantry=$candidate
            fi
        done
    fi
    if [[ -z $gantry ]]; then
        echo "$(basename "$0"): no gantry binary: build it (cargo build -p gantry) or set GANTRY=/path/to/gantry" >&2
        exit 4
    fi
fi
