#!/usr/bin/env bash
# Smoke test of the benchmark tools: a token PKI, a gateway in front of bench/responder,
# and certgate-bench for a few seconds in each mode (small N). Each run must report
# requests > 0 and no errors, and --json must print valid JSON. No nginx (CI time).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
cg_setup

BENCH_DIR=${CERTGATE_BUILD_DIR:-$CG_SRC/build}/bench
BENCH=$BENCH_DIR/certgate-bench
RESPONDER=$BENCH_DIR/responder
[ -x "$BENCH" ] && [ -x "$RESPONDER" ] || cg_fail "bench tools not built in $BENCH_DIR"
SECS=${BENCH_SMOKE_SECONDS:-3}

UP_PORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UP_PORT/mcp"
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent bench-a --role member >/dev/null 2>&1 ||
	cg_fail "agent-issue bench-a failed"
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent bench-b --role member >/dev/null 2>&1 ||
	cg_fail "agent-issue bench-b failed"
# The default per-agent rate limit (50/s) would turn a benchmark into 429s.
python3 - "$PKI/certgate.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["workers"] = 2
c["rate"] = {"per_second": 1000000, "burst": 1000000}
json.dump(c, open(p, "w"), indent=1)
EOF

"$RESPONDER" --listen "127.0.0.1:$UP_PORT" --quiet &
cg_track_pid $!
gw_start "$PKI/certgate.json" "$T/gw.log"

common=(--connect "127.0.0.1:$GW_PORT" --servername localhost --certs-dir "$PKI/agents"
	--server-pid "$GW_PID" --connections 4 --threads 2 --json)
for mode in --keepalive --new --resume; do
	out=$T/bench${mode}.json
	"$BENCH" "${common[@]}" "$mode" --duration "$SECS" >"$out" 2>"$T/bench.err" || {
		cat "$out" "$T/bench.err" >&2
		cg_fail "certgate-bench $mode failed"
	}
	python3 -m json.tool "$out" >/dev/null || cg_fail "certgate-bench $mode: invalid JSON"
	python3 - "$out" "$mode" <<'EOF' || cg_fail "certgate-bench $mode: bad figures ($(cat "$out"))"
import json, sys
r = json.load(open(sys.argv[1]))
mode = sys.argv[2]
assert r["requests"] > 0 and r["errors"] == 0, r
assert r["latency_ms"]["p50"] > 0 and r["latency_ms"]["max"] >= r["latency_ms"]["p99"]
if mode == "--new":
    assert r["full_handshakes"] == r["requests"] and r["resumed_handshakes"] == 0, r
if mode == "--resume":
    assert r["resumed_handshakes"] > 0 and r["full_handshakes"] == 0, r
print(f'{mode}: {r["requests_per_s"]:.0f} req/s, p99 {r["latency_ms"]["p99"]} ms')
EOF
done

# Idle connections: established, held, none dropped.
out=$T/bench-idle.json
"$BENCH" "${common[@]}" --idle 40 --duration 1 >"$out" 2>"$T/bench.err" || {
	cat "$out" "$T/bench.err" >&2
	cg_fail "certgate-bench --idle failed"
}
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["idle"]["established"]==40 and r["errors"]==0, r' \
	"$out" || cg_fail "certgate-bench --idle: $(cat "$out")"

# A client the gateway does not trust is counted as an error, not a success. With TLS 1.3
# the client's handshake completes before the server has judged its certificate, so the
# refusal (the server's alert) reaches the client either in the handshake or at its
# first read, depending on timing: both are errors, no request may succeed.
mkdir -p "$T/rogue"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/rogue/key.pem" -out "$T/rogue/cert.pem" -subj /CN=rogue 2>/dev/null
rc=0
"$BENCH" --connect "127.0.0.1:$GW_PORT" --servername localhost --cert "$T/rogue/cert.pem" \
	--key "$T/rogue/key.pem" --ca "$PKI/ca/ca.pem" --new --requests 4 --connections 2 \
	--json >"$T/rogue.json" 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || cg_fail "untrusted client: exit $rc, want 1"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); k=r["errors_by_kind"]; assert r["requests"]==0 and k["handshake"]+k["read"]>0 and k["status"]==0, r' \
	"$T/rogue.json" || cg_fail "untrusted client: $(cat "$T/rogue.json")"

gw_stop
cg_pass
