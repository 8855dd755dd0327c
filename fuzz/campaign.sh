#!/usr/bin/env bash
# A long fuzzing campaign: every target (or the ones named) for SECONDS each,
# one after the other, starting from the checked-in seed corpus.
#   fuzz/campaign.sh                      # all targets, 30 min each
#   SECONDS_EACH=600 fuzz/campaign.sh pdu_decode text_kv
# Logs go to fuzz/logs/TARGET.log; the last line of each is libFuzzer's
# "Done N runs in S second(s)". A crash leaves its input in
# fuzz/artifacts/TARGET/: copy it to fuzz/regressions/TARGET/ (run by
# iscsi-proto/tests/fuzz_regressions.rs) and fix it.
set -euo pipefail
cd "$(dirname "$0")"
secs=${SECONDS_EACH:-1800}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || { echo "FAILED: $t (see fuzz/logs/$t.log)"; exit 1; }
  grep -E "^Done|stat::number_of_executed_units" "logs/$t.log" | tail -2
done
