#!/bin/bash
# Observability (issue 17): /metrics passes Debian's `promtool check metrics`, label
# values are short snake_case, the counters tell the truth (one denial counted once,
# a revoked certificate refused at a full handshake counted in
# certgate_revoked_refused_total), the new gauges and families exist, TLS refusals
# (no certificate, unknown CA, revoked, expired) are audit lines, audit lines carry
# the request id and the JSON-RPC id, an unmapped certificate is logged with its
# subject and URI, every metric the Grafana dashboard uses exists, the alert rules
# pass `promtool check rules` and their unit tests, and `certgate audit summary`
# summarises the log the gateway wrote.
#
# Expired certificates: the token CA cannot backdate, so that case runs against a
# second gateway with a software CA (gw_soft_pki), as in t_tls_refusals.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup
command -v promtool >/dev/null || cg_fail "promtool not found (apt-get install prometheus)"

UP=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UP/mcp"
gw_upstream_start "$UP"
issue() {
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent "$1" --role "$2" >/dev/null 2>"$T/issue.err" ||
	    { cat "$T/issue.err" >&2; cg_fail "agent-issue $1 failed"; }
}
issue viewer guest
issue ghost guest
issue gone guest
gw_start "$PKI/certgate.json" "$T/gw.log"
A=$PKI/agents
URL=https://localhost:$CG_LISTEN_PORT/mcp
ADMIN=http://127.0.0.1:$CG_ADMIN_PORT

# rpc AGENT-DIR BODY: one JSON-RPC POST; prints the HTTP status.
rpc() {
	curl -s -o "$T/body" -w '%{http_code}' --max-time 10 --cert "$1/cert.pem" --key "$1/key.pem" \
	    --cacert "$PKI/ca/ca.pem" "$URL" -H 'Content-Type: application/json' \
	    -H 'Accept: application/json, text/event-stream' -d "$2" || true
}
metrics() {
	curl -sf --max-time 10 "$ADMIN/metrics" >"$T/metrics" || cg_fail "GET /metrics failed"
}
# metric LINE-PREFIX: the value of the first sample line starting with it (0 if none).
metric() {
	awk -v p="$1" 'index($0, p) == 1 { print $NF; found = 1; exit } END { if (!found) print 0 }' "$T/metrics"
}

INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
cg_assert_eq "$(rpc "$A/viewer" "$INIT")" 200 "initialize"
cg_assert_eq "$(rpc "$A/viewer" '{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"echo","arguments":{}}}')" 403 "tools/call without scope"
cg_assert_eq "$(rpc "$A/viewer" '[{"jsonrpc":"2.0","id":11,"method":"tools/list"},{"jsonrpc":"2.0","id":12,"method":"ping"}]')" 202 "batch (the test upstream answers batches with 202)"

# --- one denial, counted once --------------------------------------------------
metrics
cg_assert_eq "$(metric 'certgate_requests_denied_total{agent="viewer",reason="missing_scope"}')" 1 \
    "requests_denied_total for one denial"

# --- unmapped: audit line with subject and URI -----------------------------------
python3 - "$PKI/agents.json" <<'EOF'
import json, os, sys
p = sys.argv[1]
m = json.load(open(p))
m["agents"] = [a for a in m["agents"] if a["id"] != "ghost"]
json.dump(m, open(p + ".tmp", "w"), indent=1)
os.rename(p + ".tmp", p)
EOF
gw_wait_log "reloaded .*agents.json changed" 10 || cg_fail "identity map change not picked up"
cg_assert_eq "$(rpc "$A/ghost" '{"jsonrpc":"2.0","id":5,"method":"tools/list"}')" 403 "unmapped agent"

# --- TLS refusals: no certificate, unknown CA, revoked (full handshake) -------------
curl -s -o /dev/null --max-time 10 --cacert "$PKI/ca/ca.pem" "$URL" && cg_fail "no certificate: request succeeded"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=stranger/O=elsewhere" -addext "subjectAltName=URI:spiffe://elsewhere/agent/stranger" \
    -keyout "$T/stranger.key" -out "$T/stranger.pem" 2>/dev/null || cg_fail "openssl req failed"
curl -s -o /dev/null --max-time 10 --cert "$T/stranger.pem" --key "$T/stranger.key" \
    --cacert "$PKI/ca/ca.pem" "$URL" && cg_fail "unknown CA: request succeeded"
gone_serial=$(openssl x509 -in "$A/gone/cert.pem" -noout -serial | sed 's/^serial=//')
metrics
revoked_before=$(metric certgate_revoked_refused_total)
"$CG_SRC/scripts/agent-revoke" --dir "$PKI" --agent gone >/dev/null 2>"$T/revoke.err" ||
    { cat "$T/revoke.err" >&2; cg_fail "agent-revoke failed"; }
gw_wait_log "reloaded .*[1-9][0-9]* revoked serials" 10 || cg_fail "CRL change not picked up"
curl -s -o /dev/null --max-time 10 --cert "$A/gone/cert.pem" --key "$A/gone/key.pem" \
    --cacert "$PKI/ca/ca.pem" "$URL" && cg_fail "revoked: request succeeded"
metrics
revoked_after=$(metric certgate_revoked_refused_total)
[ "$revoked_after" -eq $((revoked_before + 1)) ] ||
    cg_fail "certgate_revoked_refused_total: $revoked_before -> $revoked_after for one full-handshake refusal (want +1)"
for r in no_certificate untrusted revoked; do
	[ "$(metric "certgate_handshake_failures_total{reason=\"$r\"}")" -ge 1 ] ||
	    cg_fail "certgate_handshake_failures_total{reason=\"$r\"} missing"
done

# --- audit lines -----------------------------------------------------------------
python3 - "$PKI/audit.jsonl" "$gone_serial" <<'EOF' || cg_fail "audit log checks failed (see above)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
gone = sys.argv[2]
def one(pred, what):
    found = [l for l in lines if pred(l)]
    if len(found) != 1:
        sys.exit("want exactly one audit line for %s, got %d: %s" % (what, len(found), found))
    return found[0]
for l in lines:
    if not l.get("request_id"):
        sys.exit("audit line without request_id: %s" % l)
ids = [l["request_id"] for l in lines]
if len(set(ids)) != len(ids):
    sys.exit("request ids repeat: %s" % ids)
init = one(lambda l: l["method"] == "initialize", "initialize")
assert init["rpc_id"] == 1, init
call = one(lambda l: l["method"] == "tools/call", "tools/call")
assert call["rpc_id"] == "call-7" and call["decision"] == "deny" and call["reason"] == "missing scope", call
batch = one(lambda l: l["method"] == "tools/list" and l["agent"] == "viewer", "batch")
assert batch["rpc_id"] == [11, 12], batch
un = one(lambda l: l["status"] == 403 and l["agent"] is None and l["method"] != "tls", "unmapped")
assert un["reason"] == "certificate is not mapped to an agent", un
assert un["subject"] == "CN=ghost" and un["uri"].endswith("/agent/ghost") and un["serial"], un
assert un["rpc_id"] == 5, un
nc = one(lambda l: l["method"] == "tls" and l["reason"] == "no_certificate", "no certificate")
assert nc["decision"] == "deny" and nc["serial"] is None, nc
st = one(lambda l: l["method"] == "tls" and l["reason"] == "untrusted", "unknown CA")
assert st["subject"] == "O=elsewhere,CN=stranger" or st["subject"] == "CN=stranger,O=elsewhere", st
assert st["uri"] == "spiffe://elsewhere/agent/stranger", st
rv = one(lambda l: l["method"] == "tls" and l["reason"] == "revoked", "revoked")
assert rv["serial"] == gone and rv["agent"] == "gone", rv
print("audit: %d lines checked" % len(lines))
EOF

# --- promtool, labels, the new families ------------------------------------------------
metrics
promtool check metrics <"$T/metrics" >"$T/promtool.out" 2>&1 ||
    { cat "$T/promtool.out" >&2; cg_fail "promtool check metrics failed"; }
bad=$(grep -v '^#' "$T/metrics" | grep -o '\(reason\|result\)="[^"]*"' | sed 's/^[a-z]*="\(.*\)"$/\1/' |
    grep -Ev '^[a-z0-9_]{1,32}$' || true)
[ -z "$bad" ] || cg_fail "label values that are not short snake_case: $bad"
grep -q '^certgate_requests_total{code="200"} ' "$T/metrics" || cg_fail "requests_total has no code label"
for m in certgate_crl_next_update_timestamp_seconds certgate_ca_certificate_expiry_timestamp_seconds \
    certgate_server_certificate_expiry_timestamp_seconds certgate_last_reload_successful \
    certgate_last_reload_success_timestamp_seconds certgate_config_last_reload_successful \
    certgate_token_up process_cpu_seconds_total process_resident_memory_bytes process_open_fds \
    process_start_time_seconds 'certgate_agent_requests_total{agent="viewer"}'; do
	grep -q "^$m " "$T/metrics" || cg_fail "$m missing from /metrics"
done
now=$(date +%s)
crl=$(metric certgate_crl_next_update_timestamp_seconds)
[ "$crl" -gt "$now" ] && [ "$crl" -lt $((now + 8 * 86400)) ] || cg_fail "CRL next update $crl is not within the next 8 days"
start=$(metric process_start_time_seconds | cut -d. -f1)
[ "$start" -le "$now" ] && [ "$start" -gt $((now - 600)) ] || cg_fail "process_start_time_seconds $start is not the start of this gateway"
cg_assert_eq "$(metric certgate_token_up)" 1 "certgate_token_up"

# --- the dashboard references only metrics that exist ------------------------------
python3 - "$CG_SRC/monitoring/certgate-dashboard.json" "$T/metrics" <<'EOF' || cg_fail "dashboard checks failed"
import json, re, sys
dash = json.load(open(sys.argv[1]))
have = set()
for line in open(sys.argv[2]):
    if line.startswith("# TYPE "):
        have.add(line.split()[2])
    elif line and not line.startswith("#"):
        have.add(re.split(r"[{ ]", line, 1)[0])
exprs = []
def walk(o):
    if isinstance(o, dict):
        if "expr" in o:
            exprs.append(o["expr"])
        for v in o.values():
            walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
walk(dash)
used = set()
for e in exprs:
    used.update(re.findall(r"\b((?:certgate|process)_[a-z0-9_]+)", e))
missing = sorted(m for m in used if m not in have and re.sub(r"_(bucket|sum|count)$", "", m) not in have)
if not exprs or missing:
    sys.exit("dashboard: %d expressions; metrics not in /metrics: %s" % (len(exprs), missing))
print("dashboard: %d expressions, %d metrics, all present" % (len(exprs), len(used)))
EOF

# --- alert rules ---------------------------------------------------------------------
promtool check rules "$CG_SRC/monitoring/certgate-alerts.yml" >"$T/rules.out" 2>&1 ||
    { cat "$T/rules.out" >&2; cg_fail "promtool check rules failed"; }
(cd "$CG_SRC/monitoring" && promtool test rules certgate-alerts.test.yml) >"$T/rulestest.out" 2>&1 ||
    { cat "$T/rulestest.out" >&2; cg_fail "promtool test rules failed"; }
python3 - "$CG_SRC/monitoring/certgate-alerts.yml" "$T/metrics" <<'EOF' || cg_fail "alert rules use metrics that do not exist"
import re, sys
text = open(sys.argv[1]).read()
have = {l.split()[2] for l in open(sys.argv[2]) if l.startswith("# TYPE ")}
used = set(re.findall(r"\b(certgate_[a-z0-9_]+)", "\n".join(l for l in text.splitlines() if "expr:" in l)))
missing = sorted(used - have)
if missing:
    sys.exit("alert rules: not in /metrics: %s" % missing)
EOF

# --- certgate audit summary over what the gateway wrote ----------------------------
"$CERTGATE_BIN" audit summary -c "$PKI/certgate.json" --since 1h >"$T/summary" 2>"$T/summary.err" ||
    { cat "$T/summary.err" >&2; cg_fail "certgate audit summary failed"; }
cg_assert_contains "$T/summary" "agent viewer: 3 calls, 2 allowed, 1 denied"
cg_assert_contains "$T/summary" "  denials:   missing scope 1"
cg_assert_contains "$T/summary" "  tools:     echo (denied) 1"
cg_assert_contains "$T/summary" "  from:      127.0.0.1 3"
cg_assert_contains "$T/summary" "agent (unmapped):"
cg_assert_contains "$T/summary" "no_certificate 1"
cg_assert_contains "$T/summary" "agent gone: 1 calls, 0 allowed, 1 denied"
"$CERTGATE_BIN" audit summary -f "$PKI/audit.jsonl" --until 2000-01-01 >"$T/summary2" ||
    cg_fail "audit summary --until failed"
cg_assert_contains "$T/summary2" "0 records, 0 agents"
"$CERTGATE_BIN" audit summary -f "$PKI/audit.jsonl" --json >"$T/summary.json" ||
    cg_fail "audit summary --json failed"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(a["agent"]=="viewer" for a in d["agents"]), d' \
    "$T/summary.json" || cg_fail "audit summary --json: no agent viewer"
cg_expect_fail 1 "$CERTGATE_BIN" audit summary -f "$T/no-such-file"
cg_assert_contains "$T/err" "no-such-file: No such file or directory"
cg_expect_fail 2 "$CERTGATE_BIN" audit summary -f "$PKI/audit.jsonl" --since yesterday
cg_assert_contains "$T/err" "--since yesterday: not a time"
cg_expect_fail 2 "$CERTGATE_BIN" audit summary
cg_assert_contains "$T/err" "give -c CONFIG or -f FILE"
gw_stop

# --- expired: a software CA can backdate ------------------------------------------------
SOFT=$T/soft
SPORT=$(cg_free_port)
gw_soft_pki "$SOFT" "$SPORT" "http://127.0.0.1:$UP/mcp" || cg_fail "soft PKI failed"
python3 - "$SOFT/certgate.json" "$(cg_free_port)" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["admin"] = "127.0.0.1:" + sys.argv[2]
json.dump(c, open(sys.argv[1], "w"))
EOF
gw_soft_issue "$SOFT" old 20200101000000Z 20200102000000Z || cg_fail "soft issue failed"
SADMIN=http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$SOFT/certgate.json")
gw_start "$SOFT/certgate.json" "$T/gw-soft.log"
curl -s -o /dev/null --max-time 10 --cert "$SOFT/agents/old/cert.pem" --key "$SOFT/agents/old/key.pem" \
    --cacert "$SOFT/ca/ca.pem" "https://localhost:$SPORT/mcp" && cg_fail "expired: request succeeded"
curl -sf "$SADMIN/metrics" >"$T/metrics" || cg_fail "soft gateway /metrics"
[ "$(metric 'certgate_handshake_failures_total{reason="expired"}')" -ge 1 ] ||
    cg_fail "certgate_handshake_failures_total{reason=\"expired\"} missing"
grep -q '"method":"tls","name":null,"decision":"deny","reason":"expired"' "$SOFT/audit.jsonl" ||
    { cat "$SOFT/audit.jsonl" >&2; cg_fail "no audit line for the expired certificate"; }
grep '"reason":"expired"' "$SOFT/audit.jsonl" | grep -q '"agent":"old"' ||
    cg_fail "the expired certificate's audit line does not name its agent"
gw_stop
cg_pass
