#!/usr/bin/env bash
# Smoke test of bench/est-run + bench/est-bench (EST enrollment and renewal benchmark):
# a few agents, low concurrency, against a real gateway with the CA key in SoftHSM.
# Asserts correctness only, never timing: every agent enrolled and renewed, no error,
# the keep-alive probe answered, no serial twice in the answers or in ca/index.txt.
# Also: est-bench fails (exit 1, errors counted) when the tokens are not valid.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cg_setup

BUILD=${CERTGATE_BUILD_DIR:-$CG_SRC/build}
[ -x "$BUILD/bench/est-bench" ] && [ -x "$BUILD/bench/responder" ] ||
	cg_fail "bench tools not built in $BUILD/bench"

TMPDIR=$T CERTGATE_BUILD_DIR=$BUILD "$CG_SRC/bench/est-run" --agents 20 --concurrency 5 \
    --baseline 1 --probe-rate 50 --json >"$T/out.json" 2>"$T/err" || {
	cat "$T/out.json" "$T/err" >&2
	cg_fail "est-run failed"
}
python3 - "$T/out.json" <<'PYEOF' || cg_fail "bad est-bench report: $(cat "$T/out.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is True, r
assert r["agents"] == 20 and r["concurrency"] == 5, r
for ph in ("cacerts", "enroll", "renew"):
    assert r[ph]["ok"] == 20 and r[ph]["errors"] == 0, (ph, r[ph])
    assert r[ph]["latency_ms"]["max"] >= r[ph]["latency_ms"]["p99"] > 0, (ph, r[ph])
for ph in ("keepalive_alone", "keepalive_during_renew"):
    assert r[ph]["errors"] == 0, (ph, r[ph])
assert r["keepalive_alone"]["ok"] > 0, r
assert r["serials"] == 40 and r["duplicate_serials"] == 0, r
# 40 issued here plus the server and the probe agent's certificates.
assert r["db_rows"] == 42 and r["db_duplicate_serials"] == 0 and r["db_missing"] == 0, r
print("enroll p99 %.1f ms, renew p99 %.1f ms" % (r["enroll"]["latency_ms"]["p99"],
      r["renew"]["latency_ms"]["p99"]))
PYEOF

# Nothing listening and tokens that are not tokens: every request is an error, exit 1.
printf 'ghost-1 cg1.nope\nghost-2 cg1.nope\n' >"$T/bad.tokens"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$T/ca.key" -out "$T/ca.pem" -subj /CN=x 2>/dev/null
P=$(cg_free_port)
rc=0
"$BUILD/bench/est-bench" --enroll "127.0.0.1:$P" --mtls "127.0.0.1:$P" --ca "$T/ca.pem" \
    --tokens "$T/bad.tokens" --concurrency 2 --json >"$T/bad.json" 2>/dev/null || rc=$?
cg_assert_eq "$rc" 1 "est-bench exit status with every request failing"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["ok"] is False and r["enroll"]["errors"]==2 and r["enroll"]["ok"]==0, r' \
    "$T/bad.json" || cg_fail "failures not counted: $(cat "$T/bad.json")"
cg_pass
