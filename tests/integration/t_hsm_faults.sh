#!/usr/bin/env bash
# A failing, slow or vanished HSM: the gateway's PKCS#11 module is tests/tools/p11fault
# (libp11fault.so) in front of SoftHSM, steered through a control file.
#   - C_Sign failing with CKR_DEVICE_ERROR, CKR_SESSION_HANDLE_INVALID and
#     CKR_TOKEN_NOT_PRESENT fails that handshake cleanly (alert, log line, metric) and
#     the next handshake after the fault is cleared succeeds without a restart;
#   - a 200 ms signature still completes; a signature slower than signer.timeout_ms
#     fails its handshake while requests on established connections keep flowing;
#   - with signatures serialised (sign_concurrency=1) parallel handshakes complete;
#   - a token that disappears (session, open and login fail) turns /healthz to 503,
#     handshakes fail within the handshake timeout (more of them than there are
#     signer threads), and when the token returns /healthz is 200 again and every
#     worker completes handshakes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
cg_setup

find_p11fault() {
	local d f
	for d in "${CERTGATE_TOOLS_DIR:-}" "${CERTGATE_BUILD_DIR:-}/tests" "${CERTGATE_BUILD_DIR:-}"; do
		[ -n "$d" ] && [ -f "$d/libp11fault.so" ] && { echo "$d/libp11fault.so"; return 0; }
	done
	if [ -n "${CERTGATE_BUILD_DIR:-}" ]; then
		f=$(find "$CERTGATE_BUILD_DIR" -name libp11fault.so -print -quit 2>/dev/null)
		[ -n "$f" ] && { echo "$f"; return 0; }
	fi
	return 1
}
FAULT_SO=$(find_p11fault) || cg_fail "libp11fault.so not found (build the p11fault target)"

UPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/mcp"
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent bot --role member >/dev/null 2>"$T/issue.err" ||
    { cat "$T/issue.err" >&2; cg_fail "agent-issue failed"; }

# Short handshake limit so a stuck handshake shows within the test's patience; the
# signer (when the gateway has one) gives up on a signature after 1 s.
python3 - "$PKI/certgate.json" "$FAULT_SO" <<'EOF'
import json, sys
p, so = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["pkcs11"]["module"] = so
c["workers"] = 2
c["limits"]["handshake_timeout_ms"] = 3000
if "signer" in c:
    c["signer"]["timeout_ms"] = 1000
    # Few signer threads, so that the token-loss case below outnumbers them.
    c["signer"]["threads"] = 2
json.dump(c, open(p, "w"), indent=1)
EOF
HAS_SIGNER=$(python3 -c 'import json,sys; print(1 if "signer" in json.load(open(sys.argv[1])) else 0)' "$PKI/certgate.json")

CTL=$T/p11fault.ctl
: >"$CTL"
export P11FAULT_MODULE=$CG_MODULE P11FAULT_CONTROL=$CTL P11FAULT_STATS=$T/p11fault.stats

gw_upstream_start "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"
ADMIN=http://127.0.0.1:$CG_ADMIN_PORT
URL=https://127.0.0.1:$GW_PORT/mcp
BODY='{"jsonrpc":"2.0","id":1,"method":"tools/list"}'

# ctl CONTENT: writes the control file and waits past p11fault's 100 ms re-read.
ctl() {
	printf '%s\n' "$@" >"$CTL.tmp"
	mv "$CTL.tmp" "$CTL"
	sleep 0.25
}

# req NAME [CURL ARGS...]: one mTLS JSON-RPC request; prints "exit code/http code/
# seconds to TLS done"; curl's stderr in $T/NAME.err.
req() {
	local name=$1 rc=0 out
	shift
	out=$(curl -sS --max-time 8 --cacert "$PKI/ca/ca.pem" \
	    --cert "$PKI/agents/bot/cert.pem" --key "$PKI/agents/bot/key.pem" \
	    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
	    -d "$BODY" -o "$T/$name.body" -w '%{http_code} %{time_appconnect}' "$@" "$URL" \
	    2>"$T/$name.err") || rc=$?
	echo "$rc $out"
}

expect_ok() {
	local name=$1 rc code tt
	shift
	read -r rc code tt < <(req "$name" "$@")
	[ "$rc" = 0 ] && [ "$code" = 200 ] || {
		cat "$T/$name.err" >&2
		tail -20 "$T/gw.log" >&2
		cg_fail "$name: want a 200 through the gateway, got curl exit $rc, status $code"
	}
	cg_assert_contains "$T/$name.body" '"agent": "bot"'
	echo "$tt"
}

metric() {
	curl -sS --max-time 5 "$ADMIN/metrics" | awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'
}
HS_FAILED='certgate_handshakes_total{result="failed"}'

alive() {
	kill -0 "$GW_PID" 2>/dev/null || { tail -30 "$T/gw.log" >&2; cg_fail "gateway died: $*"; }
}

# wait_health WANT FILE: /healthz is checked by a monitor thread (every 5 s, at once
# after a failed signature, failed logins retried after a back-off of 1 s doubling),
# so a change shows within one interval plus a back-off step: wait up to 20 s.
wait_health() {
	local want=$1 out=$2 code i
	for i in $(seq 1 100); do
		code=$(curl -sS --max-time 5 -o "$out" -w '%{http_code}' "$ADMIN/healthz") || code=000
		[ "$code" = "$want" ] && return 0
		sleep 0.2
	done
	cat "$out" >&2
	return 1
}

expect_ok warmup >/dev/null
curl -sS --max-time 5 "$ADMIN/healthz" >"$T/healthz0.json" || cg_fail "/healthz unreachable"
cg_assert_contains "$T/healthz0.json" '"token":"ok"'

# --- C_Sign failures ---------------------------------------------------------------
for code in CKR_DEVICE_ERROR CKR_SESSION_HANDLE_INVALID CKR_TOKEN_NOT_PRESENT; do
	for tls in 1.3 1.2; do
		name=$code-$tls
		before=$(metric "$HS_FAILED")
		nlog=$(grep -c 'handshake' "$T/gw.log" || true)
		ctl "sign_error=$code"
		start=$(date +%s%N)
		read -r rc code_http _ < <(req "$name" --tls-max "$tls")
		ms=$((($(date +%s%N) - start) / 1000000))
		# 35: TLS handshake failed (alert); anything else (timeout 28, 200...) is wrong.
		[ "$rc" = 35 ] || {
			cat "$T/$name.err" >&2
			cg_fail "$name: want a failed handshake (curl exit 35), got exit $rc status $code_http"
		}
		[ "$ms" -lt 3000 ] || cg_fail "$name: the handshake took $ms ms to fail"
		grep -Eqi 'alert|handshake' "$T/$name.err" || {
			cat "$T/$name.err" >&2
			cg_fail "$name: client saw no TLS alert"
		}
		alive "after $name"
		after=$(metric "$HS_FAILED")
		[ "$after" -gt "$before" ] ||
		    cg_fail "$name: $HS_FAILED did not grow ($before -> $after)"
		nlog2=$(grep -c 'handshake' "$T/gw.log" || true)
		[ "$nlog2" -gt "$nlog" ] || cg_fail "$name: the gateway logged nothing about the failure"
		ctl ""
		expect_ok "$name-recovered" --tls-max "$tls" >/dev/null
	done
done
# While signing fails the token session itself is fine.
curl -sS --max-time 5 "$ADMIN/healthz" >"$T/healthz1.json" || cg_fail "/healthz unreachable"
cg_assert_contains "$T/healthz1.json" '"status":"ok"'

# --- a slow token: 200 ms per signature still completes ---------------------------------
ctl "sign_delay_ms=200"
tt=$(expect_ok slow200)
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 0.19 else 1)' "$tt" ||
    cg_fail "slow200: the handshake took $tt s: the 200 ms delay was not applied (is p11fault loaded?)"
grep -q 'signs=' "$T/p11fault.stats" || cg_fail "p11fault saw no C_Sign"

# --- serialised signatures: 6 parallel handshakes through one signing slot ---------------
ctl "sign_delay_ms=100" "sign_concurrency=1"
pids=()
for i in 1 2 3 4 5 6; do
	(expect_ok "par$i" >/dev/null) &
	pids+=($!)
done
for p in "${pids[@]}"; do
	wait "$p" || cg_fail "a parallel handshake with serialised signing failed"
done
grep -q 'max_concurrent=1$' "$T/p11fault.stats" ||
    cg_fail "signatures overlapped despite sign_concurrency=1: $(cat "$T/p11fault.stats")"
ctl ""

# --- a signature slower than the signer timeout (async signer only) ----------------------
if [ "$HAS_SIGNER" = 1 ]; then
	# An established keep-alive connection must keep working meanwhile: a python
	# client sends a request every 100 ms for 3 s and reports the slowest answer.
	cat >"$T/keepalive.py" <<'EOF'
import json, socket, ssl, sys, time
port, ca, cert, key, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
req = (b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
       b"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
f = s.makefile("rb")
worst, n, end = 0.0, 0, time.time() + secs
while time.time() < end:
    t0 = time.time()
    s.sendall(req)
    status = f.readline()
    clen = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == "content-length":
            clen = int(v)
    f.read(clen)
    if b" 200 " not in status:
        print("bad status", status)
        sys.exit(1)
    worst = max(worst, time.time() - t0)
    n += 1
    if n == 1:
        print("ready", flush=True)      # the handshake is done: the test may go on
    time.sleep(0.1)
print(json.dumps({"requests": n, "worst_ms": round(worst * 1000)}))
EOF
	python3 "$T/keepalive.py" "$GW_PORT" "$PKI/ca/ca.pem" "$PKI/agents/bot/cert.pem" \
	    "$PKI/agents/bot/key.pem" 3 >"$T/keepalive.out" 2>&1 &
	ka=$!
	# The keep-alive connection must be established before signatures get slow
	# (python may take a while to start on a loaded machine): wait for its first
	# answer rather than for a fixed time.
	for i in $(seq 1 100); do
		grep -q '^ready' "$T/keepalive.out" 2>/dev/null && break
		kill -0 "$ka" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^ready' "$T/keepalive.out" ||
	    { cat "$T/keepalive.out" >&2; cg_fail "the keep-alive client did not get its first answer"; }
	ctl "sign_delay_ms=2500"
	before=$(metric "$HS_FAILED")
	start=$(date +%s%N)
	read -r rc code_http _ < <(req stuck)
	ms=$((($(date +%s%N) - start) / 1000000))
	[ "$rc" != 0 ] || cg_fail "stuck: a handshake waiting 2.5 s for a 1 s signer timeout succeeded"
	[ "$ms" -lt 2400 ] || cg_fail "stuck: the handshake failed only after $ms ms (signer timeout 1000 ms)"
	wait "$ka" || { cat "$T/keepalive.out" >&2; cg_fail "keep-alive requests failed during a stuck signature"; }
	python3 - "$T/keepalive.out" <<'EOF' || { cat "$T/keepalive.out" >&2; cg_fail "keep-alive requests stalled during a stuck signature"; }
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
sys.exit(0 if r["requests"] >= 10 and r["worst_ms"] < 1000 else 1)
EOF
	alive "after a stuck signature"
	# Let the slow C_Sign finish inside the token before clearing the fault.
	sleep 2
	ctl ""
	after=$(metric "$HS_FAILED")
	[ "$after" -gt "$before" ] || cg_fail "stuck: $HS_FAILED did not grow"
	expect_ok stuck-recovered >/dev/null
fi

# --- the token disappears and comes back ----------------------------------------------
token_loss() {
	local what=$1 i start ms rc code_h
	ctl "token_error=CKR_TOKEN_NOT_PRESENT" "sign_error=CKR_TOKEN_NOT_PRESENT"
	wait_health 503 "$T/healthz2.json" ||
	    cg_fail "$what: /healthz: want 503 while the token is gone"
	cg_assert_contains "$T/healthz2.json" '"token":"down"'
	for i in 1 2 3 4; do
		start=$(date +%s%N)
		read -r rc _ _ < <(req "gone$i")
		ms=$((($(date +%s%N) - start) / 1000000))
		[ "$rc" != 0 ] || cg_fail "$what: gone$i: a handshake succeeded without a token"
		# handshake_timeout_ms is 3000: a handshake may never hang longer.
		[ "$ms" -lt 4500 ] || cg_fail "$what: gone$i: the handshake hung for $ms ms without a token (handshake_timeout_ms 3000)"
	done
	alive "$what: while the token is gone"
	ctl ""
	wait_health 200 "$T/healthz3.json" ||
	    cg_fail "$what: /healthz: want 200 after the token returned"
	cg_assert_contains "$T/healthz3.json" '"token":"ok"'
	# Enough handshakes to land on every worker.
	for i in 1 2 3 4 5 6; do
		expect_ok "back$i" >/dev/null
	done
}
token_loss "$([ "$HAS_SIGNER" = 1 ] && echo "async signer" || echo "signing on the workers")"
gw_stop

# --- the same with signatures made on the worker threads (signer.async false) -----------
if [ "$HAS_SIGNER" = 1 ]; then
	python3 - "$PKI/certgate.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["signer"]["async"] = False
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
	: >"$CTL"
	gw_start "$PKI/certgate.json" "$T/gw-sync.log"
	expect_ok sync-warmup >/dev/null
	ctl "sign_error=CKR_DEVICE_ERROR"
	read -r rc _ _ < <(req sync-fail)
	[ "$rc" = 35 ] || cg_fail "sync: want a failed handshake (curl exit 35) on CKR_DEVICE_ERROR, got $rc"
	ctl ""
	expect_ok sync-recovered >/dev/null
	token_loss "signing on the workers"
	gw_stop
fi
cg_pass
