#!/usr/bin/env bash
# Issue 16's head-to-head benchmark in one detached job on the lent GPU machine: a device command may run 10
# minutes, the job outlives it (the machine is held up to 30). Start it, then poll from later commands:
#
#   setsid nohup bash scripts/gpu/bench_session.sh /tmp/res 64 128 > /dev/null 2>&1 < /dev/null &
#   sleep 580; tail -3 /tmp/res/*.log; cp /tmp/res/*.json /tmp/res/*.png /tmp/res/*.log $OUT/
#
# Everything it writes lies under RESDIR (outside the repository: a later command's carried paths would replace
# folders inside it). Each view count is one bench command (both methods, 30k steps), joined with --append.
# BENCH_ARGS (environment) adds options to every bench command, e.g. BENCH_ARGS="--ff3r-steps 30000".
set -u
R=${1:-/tmp/res}; shift || true
VIEWS=${*:-64 128}
mkdir -p "$R"
cd "$(dirname "$0")/../.."
# shellcheck disable=SC1091
source scripts/setup_offline_gpu.sh > "$R/setup.log" 2>&1 || { echo "setup failed" > "$R/done"; exit 1; }
append=""
for v in $VIEWS; do
  # shellcheck disable=SC2086
  python3 -m benchmarks.vs_splatfacto --views "$v" $append ${BENCH_ARGS:-} --out "$R/vs_splatfacto.json" --plots-dir "$R" \
    --cache-dir "$R/scenes" --runs-dir "$R/runs" > "$R/bench$v.log" 2>&1
  append="--append"
done
echo finished > "$R/done"
