#!/usr/bin/env bash
# Keeps one core busy, so that the tests run the way they do on the small shared machines this
# project lives on (two cores, another process busy). `.ci/run` starts it for the whole of
# `make test` and stops it by its process id; it also ends by itself after SECONDS seconds
# (default 5400: CI's limit), so a run that is killed cannot leave it spinning.
#
#   scripts/cpu-burner.sh [SECONDS] &  burner=$!   ...   kill "$burner"
#
# A single busy loop in this shell: one core, no child processes, nothing written anywhere.
set -euo pipefail
limit=${1:-5400}
case $limit in '' | *[!0-9]*) echo "usage: cpu-burner.sh [SECONDS]" >&2; exit 2 ;; esac
end=$((SECONDS + limit))
while ((SECONDS < end)); do
    # A block of pure arithmetic between clock reads: busy, but the deadline is still seen
    # many times a second.
    for ((i = 0; i < 20000; i++)); do :; done
done
