#!/bin/bash
# OCSP for client certificates (tls.ocsp): agents of a corporate issuing CA (made with
# `openssl ca`, enterprise.sh) whose certificates name an OCSP responder that is
# `openssl ocsp -index` over the issuing CA's own database (ocsp_responder.py).
#
# Hard mode: good -> served, answered once per cache_s (cached); certgate's own agents
# (no AIA) are not queried; a revocation at the responder closes an open keep-alive
# connection within cache_s + 2 sweeps + the query, refuses new and resumed
# handshakes; garbage, an HTTP error, a replayed good answer (stale nonce) and a
# responder slower than timeout_ms give no good answer and are refused, the timeout
# within its bound; responder down -> refused. Soft mode: responder down -> served,
# but a revoked answer still refuses.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/enterprise.sh"
cg_setup

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
APORT=$(cg_free_port)
OPORT=$(cg_free_port)
PKI=$T/pki
ENT=$T/ent
CACHE_S=2
# The responder runs an `openssl ocsp` process per answer: ~50 ms on a quiet machine,
# seen above 800 ms under ASan with the suite running in parallel. The timeout must
# exceed that (a good answer must arrive), and the slow case below sleeps well past it.
TIMEOUT_MS=2500
SLOW_S=8
PPC=(python3 "$CG_SRC/tests/tools/ppclient.py" --connect "127.0.0.1:$LPORT")
gw_tool_upstream "$UP_PORT"
gw_soft_pki "$PKI" "$LPORT" "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
gw_soft_issue "$PKI" alice || cg_fail "issue alice"
ent_pki "$ENT" "http://127.0.0.1:$OPORT/ocsp" || cg_fail "enterprise PKI"
AGENTS="ext-a ext-b ext-c ext-d ext-e ext-f ext-g ext-h"
for a in $AGENTS; do
	ent_issue "$ENT" "$a" || cg_fail "issue $a"
done
cat "$PKI/ca/ca.pem" "$ENT/bundle.pem" >"$PKI/trust.pem"
# CRLs at every level (tls.crl a bundle): certgate's CA, the issuing CA and the root
cat "$PKI/ca/crl.pem" "$ENT/crls.pem" >"$PKI/crls.pem"
openssl verify -CAfile "$ENT/bundle.pem" "$ENT/agents/ext-a/cert.pem" >/dev/null ||
	cg_fail "the enterprise chain does not verify with openssl"

# the issuing CA's DN in RFC 4514, the form the identity map's "issuer" takes
ENT_ISSUER=$(openssl x509 -in "$ENT/issuing/ca.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
# config: ocsp MODE
config() {
	python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
c["admin"] = "127.0.0.1:" + sys.argv[2]
c["tls"]["ca"] = "trust.pem"
c["tls"]["crl"] = "crls.pem"
c["tls"]["crl_check"] = True
c["tls"]["ocsp"] = {"mode": sys.argv[3], "cache_s": int(sys.argv[4]), "timeout_ms": int(sys.argv[5])}
json.dump(c, open(sys.argv[1], "w"), indent=1)
m = json.load(open(sys.argv[6]))
for a in sys.argv[7].split():
    m["agents"].append({"id": a, "uri": "spiffe://corp.example/agent/" + a, "roles": ["admin"],
                        "issuer": sys.argv[8]})
json.dump(m, open(sys.argv[6], "w"), indent=1)
' "$PKI/certgate.json" "$APORT" "$1" "$CACHE_S" "$TIMEOUT_MS" "$PKI/agents.json" "$2" "$ENT_ISSUER"
}
config hard "$AGENTS"

responder_start() {
	python3 "$CG_SRC/tests/tools/ocsp_responder.py" "$OPORT" "$ENT/issuing/index.txt" \
	    "$ENT/issuing/ca.pem" "$ENT/issuing/ca.pem" "$ENT/issuing/ca.key" --nmin 5 \
	    --control "$T/ocsp.ctl" --log "$T/ocsp.log" 2>>"$T/ocsp.err" &
	OCSP_PID=$!
	cg_track_pid $OCSP_PID
	for i in $(seq 1 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$OPORT") 2>/dev/null && return 0
		sleep 0.1
	done
	cg_fail "OCSP responder did not start"
}
responder_start
# the responder answers openssl itself: the fixture is right
openssl ocsp -issuer "$ENT/issuing/ca.pem" -cert "$ENT/agents/ext-a/cert.pem" \
    -url "http://127.0.0.1:$OPORT/ocsp" -CAfile "$ENT/bundle.pem" >"$T/openssl-ocsp.out" 2>&1 ||
	{ cat "$T/openssl-ocsp.out" >&2; cg_fail "openssl ocsp client against the responder"; }
grep -q ": good" "$T/openssl-ocsp.out" || cg_fail "openssl ocsp: not good"
: >"$T/ocsp.log"
gw_start "$PKI/certgate.json"

agent() { local a=$1; shift; "${PPC[@]}" --cert "$ENT/agents/$a/chain.pem" \
    --key "$ENT/agents/$a/key.pem" --ca "$PKI/ca/ca.pem" "$@"; }
ok_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])'; }
queries() { wc -l <"$T/ocsp.log" | tr -d ' '; }
metric() { curl -s "http://127.0.0.1:$APORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
ctl() { echo "$*" >"$T/ocsp.ctl"; }

# --- good, cached, own agents not queried ----------------------------------------------
cg_assert_eq "$(agent ext-a | ok_of)" True "good answer: served"
cg_assert_eq "$(queries)" 1 "one query"
cg_assert_eq "$(agent ext-a | ok_of)" True "second connection"
cg_assert_eq "$(queries)" 1 "answered from the cache within cache_s"
cg_assert_eq "$("${PPC[@]}" --cert "$PKI/agents/alice/cert.pem" --key "$PKI/agents/alice/key.pem" \
    --ca "$PKI/ca/ca.pem" | ok_of)" True "certgate's own agent"
cg_assert_eq "$(queries)" 1 "a certificate without an OCSP responder is not queried"
cg_assert_eq "$(metric 'certgate_ocsp_queries_total{answer="good"}')" 1 "good metric"

# --- revocation reaches an open connection, new and resumed handshakes ------------------
agent ext-b --loop 15 >"$T/loop.json" &
loop_pid=$!
agent ext-c --resume --between 5 >"$T/resume.json" &
resume_pid=$!
sleep 1.5
t_rev=$(date +%s.%N)
ent_revoke "$ENT" ext-b || cg_fail "revoke ext-b"
ent_revoke "$ENT" ext-c || cg_fail "revoke ext-c"
wait $loop_pid
wait $resume_pid
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
t_rev, bound = float(sys.argv[2]), float(sys.argv[3])
assert r["served"] > 0, r
assert r["closed_at"] is not None, "the connection of the revoked agent stayed open: %s" % r
lag = r["closed_at"] - t_rev
assert 0 <= lag <= bound, "closed %.2f s after the revocation (bound %.1f)" % (lag, bound)
print("open connection closed %.2f s after the revocation" % lag)
' "$T/loop.json" "$t_rev" "$((CACHE_S + 3)).5" || cg_fail "open connection after revocation"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r[0]["ok"] and not r[0]["resumed"], r[0]
assert r[1]["resumed"], "the second handshake did not resume: %s" % r[1]
assert not r[1]["ok"], "a resumed session of a revoked certificate was served"
' "$T/resume.json" || cg_fail "resumed session after revocation"
cg_assert_eq "$(agent ext-b | ok_of)" False "new connection of the revoked agent"
gw_log_contains "refused .*OCSP says revoked" || cg_fail "no log line for the OCSP refusal"

# --- no good answer: refused in hard mode -----------------------------------------------
ctl garbage
cg_assert_eq "$(agent ext-d | ok_of)" False "garbage answer (hard)"
gw_wait_log "OCSP query to http:[^ ]* for serial [0-9A-F]+ failed: unreadable OCSP response" ||
	cg_fail "garbage not logged"
ctl http500
cg_assert_eq "$(agent ext-e | ok_of)" False "HTTP 500 (hard)"
# a good answer saved for ext-f, then ext-f revoked and the old answer replayed
ctl save "$T/ext-f.good.der"
r=$(agent ext-f | ok_of)
[ "$r" = True ] || { tail -n 20 "$GW_LOG" >&2; cat "$T/ocsp.err" >&2; cg_fail "ext-f good: got '$r'"; }
ent_revoke "$ENT" ext-f
sleep $((CACHE_S + 1))
ctl replay "$T/ext-f.good.der"
cg_assert_eq "$(agent ext-f | ok_of)" False "a replayed good answer"
gw_wait_log "nonce is not the request's" || cg_fail "replay not detected by the nonce"
# slower than timeout_ms: refused after about timeout_ms
ctl slow "$SLOW_S"
t0=$(date +%s.%N)
cg_assert_eq "$(agent ext-g | ok_of)" False "slow responder (hard)"
t1=$(date +%s.%N)
python3 -c '
import sys
d = float(sys.argv[2]) - float(sys.argv[1])
lo, hi = float(sys.argv[3]) / 1000 - 0.05, float(sys.argv[3]) / 1000 + 2.5
assert lo <= d <= hi, "refused after %.2f s (timeout %s ms)" % (d, sys.argv[3])
' "$t0" "$t1" "$TIMEOUT_MS" || cg_fail "timeout bound"
ctl normal
# down
kill "$OCSP_PID"
wait "$OCSP_PID" 2>/dev/null || true
cg_assert_eq "$(agent ext-h | ok_of)" False "responder down (hard)"
[ "$(metric 'certgate_ocsp_queries_total{answer="error"}')" -ge 4 ] || cg_fail "error metric"
gw_log_contains "closed.*ocsp_unavailable|refused .*OCSP gave no good answer" ||
	cg_fail "no log line for the hard-mode refusal"
gw_stop

# --- soft mode: down -> served; revoked still refused -----------------------------------
config soft ""
gw_start "$PKI/certgate.json"
cg_assert_eq "$(agent ext-h | ok_of)" True "responder down (soft): served"
responder_start
cg_assert_eq "$(agent ext-b | ok_of)" False "revoked (soft): refused"
cg_assert_eq "$(agent ext-a | ok_of)" True "good (soft)"
gw_stop
cg_pass
