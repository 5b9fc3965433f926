#!/usr/bin/env bash
# The same-job A/B on a machine the stored baseline does not match: the committed baselines copied with their
# device rewritten (AVX512 -> AVX2, another CPU), the base branch's reference checked out beside this one
# (git worktree add of HEAD), then tests/perf/test_perf.py with tests.support.injected:slow_target (target passes 25% slower),
# with the unchanged reference, and with target passes 10% slower, each against that base decoder.
# Usage, from the repository root, alone on the machine:
#   flock -x /tmp/specdec-timing.lock bash benchmarks/ab_foreign_device.sh > docs/measurements/ab-foreign-device.txt
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1; rm -rf "$work"' EXIT
mkdir "$work/foreign-baselines"
sed 's/(AVX512)/(AVX2)/' baselines/trained.json > "$work/foreign-baselines/trained.json"
git worktree add --detach "$work/base" HEAD >/dev/null 2>&1
run() {  # name, extra pytest arguments
  local name=$1; shift
  echo "=== $name $(date -u +%T) load $(cut -d' ' -f1-4 /proc/loadavg)"
  PYTHONPATH=$PWD python -m pytest tests/perf/test_perf.py -p no:cacheprovider -p no:xdist -rs \
    --specdec-baseline-dir "$work/foreign-baselines" \
    --specdec-base-impl reference_impl.speculative:SpeculativeDecoder --specdec-base-path "$work/base" \
    --specdec-json "$work/ab-$name.json" "$@" 2>&1 | grep -v "Loading weights" | tail -25 \
    | sed -e "s#$work/base#../base#g" -e "s#$work/##g"
}
run slow25 --specdec-impl tests.support.injected:slow_target
run unchanged
SPECDEC_INJECTED_SLOWDOWN=0.1 run slow10 --specdec-impl tests.support.injected:slow_target
