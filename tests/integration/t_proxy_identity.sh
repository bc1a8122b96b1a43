#!/bin/bash
# Proxy: identity headers reach the upstream and spoofed client copies never do; HSTS
# on every response; unmapped agent -> 403 JSON-RPC; missing scope -> 403 with the
# request id; tools/list filtered (JSON and event stream); Mcp-Session-Id bound to the
# agent that created it; unknown MCP-Protocol-Version -> 400; 405; rate limit -> 429
# with Retry-After; one audit line per request with the the README fields.
#
# Uses the software PKI of gw.sh (gw_soft_pki): what is under test is the HTTP side,
# not the token.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
PKI=$T/pki
gw_tool_upstream "$UP_PORT" "$T/up.log"
gw_soft_pki "$PKI" "$LPORT" "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
for a in alice bob carol mallory; do
	gw_soft_issue "$PKI" "$a" || cg_fail "issue $a"
done
# bob is a guest that may call search_* tools only; carol has a tiny rate; mallory
# has a valid certificate but is not in the map.
python3 - "$PKI/agents.json" "$PKI/certgate.json" <<'EOF'
import json, sys
u = "spiffe://certgate.local/agent/"
m = {"roles": {"admin": ["*"],
               "guest": ["mcp:tools/list", "mcp:resources/list", "mcp:prompts/list"]},
     "agents": [
        {"id": "alice", "uri": u + "alice", "roles": ["admin"]},
        {"id": "bob", "uri": u + "bob", "roles": ["guest"], "scopes": ["tools:search_*"]},
        {"id": "carol", "uri": u + "carol", "roles": ["admin"],
         "rate": {"per_second": 0.2, "burst": 2}}]}
json.dump(m, open(sys.argv[1], "w"), indent=1)
c = json.load(open(sys.argv[2]))
c["hsts_max_age"] = 1234
json.dump(c, open(sys.argv[2], "w"), indent=1)
EOF
gw_start "$PKI/certgate.json"

URL=https://localhost:$LPORT
# req AGENT NAME [curl args...]: response headers in $T/NAME.h, body in $T/NAME.b,
# status printed.
req() {
	local agent=$1 name=$2
	shift 2
	curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/$agent/cert.pem" \
	    --key "$PKI/agents/$agent/key.pem" -D "$T/$name.h" -o "$T/$name.b" \
	    -w '%{http_code}' "$@"
}
rpc() {
	local agent=$1 name=$2 body=$3
	shift 3
	req "$agent" "$name" -H 'Content-Type: application/json' \
	    -H 'Accept: application/json, text/event-stream' --data-binary "$body" "$@"
}
jq_() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# --- identity headers and spoofing ---------------------------------------------------
st=$(req alice echo1 "$URL/echo?q=1" -H 'X-Agent-Id: evil' -H 'x-agent-scopes: *' \
    -H 'X-Forwarded-Client-Cert: Hash=0;URI=spiffe://x/agent/root' \
    -H 'X-Forwarded-For: 10.6.6.6' -H 'X_Agent_Id: underscore-evil' \
    -H 'X-AGENT-ID: upper-evil' -H 'Forwarded: for=10.6.6.6' -H 'Connection: X-Secret' \
    -H 'X-Secret: hop' -H 'Proxy-Authorization: Basic Zm9v' -H 'X-Keep: yes' \
    --data-binary '{"jsonrpc":"2.0","id":9,"method":"ping"}')
cg_assert_eq "$st" 200 "echo status"
cg_assert_eq "$(jq_ "$T/echo1.b" 'd["headers"]["X-Agent-Id"]')" alice "X-Agent-Id"
cg_assert_eq "$(jq_ "$T/echo1.b" 'd["headers"]["X-Agent-Scopes"]')" "*" "X-Agent-Scopes"
cg_assert_eq "$(jq_ "$T/echo1.b" 'd["headers"]["X-Forwarded-For"]')" 127.0.0.1 "XFF"
cg_assert_eq "$(jq_ "$T/echo1.b" 'd["path"]')" "/echo?q=1" "path forwarded as is"
cg_assert_eq "$(jq_ "$T/echo1.b" 'd["headers"]["X-Keep"]')" yes "end-to-end header kept"
xfcc=$(jq_ "$T/echo1.b" 'd["headers"]["X-Forwarded-Client-Cert"]')
case $xfcc in
Hash=*\;Subject=\"CN=alice\"\;URI=spiffe://certgate.local/agent/alice) ;;
*) cg_fail "XFCC: $xfcc" ;;
esac
# every identity header exactly once, no spoofed value anywhere, hop-by-hop gone
n=$(jq_ "$T/echo1.b" 'sum(1 for n,v in d["header_list"] if n.lower().replace("_","-") in ("x-agent-id","x-agent-scopes","x-forwarded-client-cert","x-forwarded-for"))')
cg_assert_eq "$n" 4 "identity header count"
cg_assert_not_contains "$T/echo1.b" "evil"
cg_assert_not_contains "$T/echo1.b" "10.6.6.6"
cg_assert_not_contains "$T/echo1.b" "X-Secret"
cg_assert_not_contains "$T/echo1.b" "Proxy-Authorization"
cg_assert_not_contains "$T/echo1.b" "spiffe://x/agent/root"
cg_assert_contains "$T/up.log" '"X-Agent-Id":"alice"'
cg_assert_not_contains "$T/up.log" "evil"
grep -qi '^Strict-Transport-Security: max-age=1234; includeSubDomains' "$T/echo1.h" ||
    cg_fail "HSTS missing on a forwarded response"

# --- unmapped agent ----------------------------------------------------------------------
st=$(rpc mallory unmapped '{"jsonrpc":"2.0","id":41,"method":"tools/list"}' "$URL/mcp")
cg_assert_eq "$st" 403 "unmapped agent"
cg_assert_eq "$(jq_ "$T/unmapped.b" 'd["error"]["code"]')" -32001 "unmapped error code"
cg_assert_eq "$(jq_ "$T/unmapped.b" 'd["id"]')" 41 "unmapped error id"
cg_assert_contains "$T/unmapped.b" "not mapped"
grep -qi '^Content-Type: application/json' "$T/unmapped.h" || cg_fail "403 content type"
grep -qi '^Strict-Transport-Security:' "$T/unmapped.h" || cg_fail "HSTS missing on a refusal"

# --- scopes --------------------------------------------------------------------------------
st=$(rpc bob call_denied '{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"delete_file"}}' "$URL/mcp")
cg_assert_eq "$st" 403 "bob calling delete_file"
cg_assert_eq "$(jq_ "$T/call_denied.b" 'd["id"]')" c1 "denied call id"
st=$(rpc bob call_ok '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_docs"}}' "$URL/mcp")
cg_assert_eq "$st" 200 "bob calling search_docs"
st=$(rpc bob list '{"jsonrpc":"2.0","id":3,"method":"tools/list"}' "$URL/mcp")
cg_assert_eq "$st" 200 "bob tools/list"
cg_assert_eq "$(jq_ "$T/list.b" '",".join(t["name"] for t in d["result"]["tools"])')" search_docs "filtered JSON listing"
st=$(rpc alice list_all '{"jsonrpc":"2.0","id":3,"method":"tools/list"}' "$URL/mcp")
cg_assert_eq "$(jq_ "$T/list_all.b" 'len(d["result"]["tools"])')" 4 "admin sees every tool"
st=$(rpc bob list_sse '{"jsonrpc":"2.0","id":4,"method":"tools/list"}' "$URL/sse-list")
cg_assert_eq "$st" 200 "bob tools/list over SSE"
cg_assert_contains "$T/list_sse.b" "search_docs"
cg_assert_not_contains "$T/list_sse.b" "delete_file"
cg_assert_contains "$T/list_sse.b" "event: message"
st=$(rpc bob badjson '{"jsonrpc":"2.0","id":' "$URL/mcp")
cg_assert_eq "$st" 400 "malformed JSON"

# --- sessions ------------------------------------------------------------------------------
st=$(rpc alice init '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}' "$URL/mcp")
cg_assert_eq "$st" 200 "initialize"
sid=$(grep -i '^Mcp-Session-Id:' "$T/init.h" | cut -d' ' -f2 | tr -d '\r')
[ -n "$sid" ] || cg_fail "no Mcp-Session-Id in the initialize response"
st=$(rpc alice sess_ok '{"jsonrpc":"2.0","id":2,"method":"ping"}' "$URL/mcp" -H "Mcp-Session-Id: $sid")
cg_assert_eq "$st" 200 "own session"
st=$(rpc bob sess_steal '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' "$URL/mcp" -H "Mcp-Session-Id: $sid")
cg_assert_eq "$st" 403 "another agent's session"
st=$(rpc alice sess_dup '{"jsonrpc":"2.0","id":2,"method":"ping"}' "$URL/mcp" -H "Mcp-Session-Id: $sid" -H "Mcp-Session-Id: other")
cg_assert_eq "$st" 400 "two Mcp-Session-Id headers"
st=$(req alice sess_del -X DELETE "$URL/mcp" -H "Mcp-Session-Id: $sid")
cg_assert_eq "$st" 200 "DELETE session"
# the binding is gone with the session: bob now gets the upstream's 404, not our 403
st=$(rpc bob sess_after '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' "$URL/mcp" -H "Mcp-Session-Id: $sid")
cg_assert_eq "$st" 404 "deleted session"

# --- protocol version, methods -----------------------------------------------------------
st=$(rpc alice ver '{"jsonrpc":"2.0","id":2,"method":"ping"}' "$URL/mcp" -H 'MCP-Protocol-Version: 1999-01-01')
cg_assert_eq "$st" 400 "unknown MCP-Protocol-Version"
st=$(rpc alice ver_ok '{"jsonrpc":"2.0","id":2,"method":"ping"}' "$URL/mcp" -H 'MCP-Protocol-Version: 2025-06-18')
cg_assert_eq "$st" 200 "known MCP-Protocol-Version"
st=$(req alice put -X PUT "$URL/mcp" --data-binary '{}')
cg_assert_eq "$st" 405 "PUT"
grep -qi '^Allow: GET, POST, DELETE' "$T/put.h" || cg_fail "405 without Allow"

# --- Expect: 100-continue (curl sends it for bodies over 1 MiB) ---------------------------
python3 -c 'import json; print(json.dumps({"jsonrpc":"2.0","id":8,"method":"ping","params":{"pad":"x"*1500000}}))' >"$T/bigbody.json"
st=$(rpc alice expect "@$T/bigbody.json" "$URL/echo" -H 'Expect: 100-continue')
cg_assert_eq "$st" 200 "large body with Expect: 100-continue"
cg_assert_contains "$T/up.log" '"body_len":1500'
st=$(rpc mallory expect_denied "@$T/bigbody.json" "$URL/echo" -H 'Expect: 100-continue')
cg_assert_eq "$st" 403 "Expect: 100-continue refused before the body"

# --- rate limit ------------------------------------------------------------------------------
for i in 1 2 3 4; do
	st=$(rpc carol rate$i '{"jsonrpc":"2.0","id":'$i',"method":"ping"}' "$URL/mcp")
	[ "$st" = 429 ] && break
done
cg_assert_eq "$st" 429 "rate limit"
grep -qi '^Retry-After: [1-9]' "$T/rate$i.h" || cg_fail "429 without Retry-After"
cg_assert_eq "$(jq_ "$T/rate$i.b" 'd["error"]["code"]')" -32002 "429 error code"
cg_assert_eq "$(jq_ "$T/rate$i.b" 'd["id"]')" "$i" "429 error id"
nreq=$((19 + i))

# --- audit ---------------------------------------------------------------------------------
gw_stop
lines=$(wc -l <"$PKI/audit.jsonl")
cg_assert_eq "$lines" "$nreq" "audit lines (one per request)"
python3 - "$PKI/audit.jsonl" <<'EOF' || cg_fail "audit records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
for r in recs:
    for k in ("ts", "agent", "serial", "peer", "method", "decision", "status", "duration_ms"):
        assert k in r, (k, r)
    assert r["decision"] in ("allow", "deny"), r
    if r["decision"] == "deny":
        assert r.get("reason"), r
def find(**kw):
    return [r for r in recs if all(r.get(k) == v for k, v in kw.items())]
assert find(agent="bob", method="tools/call", name="delete_file", decision="deny", status=403)
assert find(agent="bob", method="tools/call", name="search_docs", decision="allow", status=200)
assert find(agent=None, method="tools/list", decision="deny", status=403), "unmapped"
assert find(agent="carol", decision="deny", status=429)
assert find(agent="alice", method="initialize", decision="allow")[0].get("session")
assert find(agent="alice", method="DELETE", status=200)
assert find(agent="alice", method="GET", status=405) or find(agent="alice", method="PUT", status=405)
EOF
cg_pass
