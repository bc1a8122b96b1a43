#!/bin/bash
# Session binding and stream filtering that no header spelling or stream kind bypasses:
# - Mcp_Session_Id (underscore spelling, which some upstream stacks fold into the real
#   header) is refused with 400, the real header of another agent's session with 403;
# - a session id the gateway never bound (restart, eviction, made up) gets 404, so the
#   client initializes anew instead of riding another agent's live session;
# - a listing response on a GET event stream (what a server replays for Last-Event-ID)
#   is filtered like one on a POST stream.
#
# Uses the software PKI of gw.sh: what is under test is the HTTP side.
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
for a in alice bob; do
	gw_soft_issue "$PKI" "$a" || cg_fail "issue $a"
done
APORT=$(cg_free_port)
python3 - "$PKI/agents.json" "$PKI/certgate.json" "$APORT" <<'EOF'
import json, os, sys
u = "spiffe://certgate.local/agent/"
m = {"roles": {"admin": ["*"], "guest": ["mcp:tools/list"]},
     "agents": [
        {"id": "alice", "uri": u + "alice", "roles": ["admin"]},
        {"id": "bob", "uri": u + "bob", "roles": ["guest"], "scopes": ["tools:search_*"]}]}
json.dump(m, open(sys.argv[1] + ".tmp", "w"), indent=1)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
c = json.load(open(sys.argv[2]))
c["admin"] = "127.0.0.1:" + sys.argv[3]
json.dump(c, open(sys.argv[2], "w"), indent=1)
EOF
gw_start "$PKI/certgate.json"
sessions() { curl -s "http://127.0.0.1:$APORT/metrics" | awk '$1 == "certgate_sessions" { print $2 }'; }

URL=https://localhost:$LPORT
# rpc AGENT NAME BODY URL [curl args...]: status printed; headers/body in $T/NAME.{h,b}
rpc() {
	local agent=$1 name=$2 body=$3
	shift 3
	curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/$agent/cert.pem" \
	    --key "$PKI/agents/$agent/key.pem" -D "$T/$name.h" -o "$T/$name.b" -w '%{http_code}' \
	    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
	    --data-binary "$body" "$@"
}
get() {
	local agent=$1 name=$2
	shift 2
	curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/$agent/cert.pem" \
	    --key "$PKI/agents/$agent/key.pem" -D "$T/$name.h" -o "$T/$name.b" -w '%{http_code}' \
	    -H 'Accept: text/event-stream' "$@"
}

# --- GET event stream: listings filtered ------------------------------------------------
st=$(get bob get_list "$URL/sse-list")
cg_assert_eq "$st" 200 "bob GET event stream"
cg_assert_contains "$T/get_list.b" "search_docs"
cg_assert_not_contains "$T/get_list.b" "delete_file"
st=$(get alice get_list_admin "$URL/sse-list")
cg_assert_eq "$st" 200 "alice GET event stream"
cg_assert_contains "$T/get_list_admin.b" "delete_file"

# --- session binding ---------------------------------------------------------------------
cg_assert_eq "$(sessions)" 0 "certgate_sessions before any initialize"
st=$(rpc alice init '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}' "$URL/mcp")
cg_assert_eq "$st" 200 "alice initialize"
sid=$(grep -i '^Mcp-Session-Id:' "$T/init.h" | cut -d' ' -f2 | tr -d '\r')
[ -n "$sid" ] || cg_fail "no Mcp-Session-Id in the initialize response"
cg_assert_eq "$(sessions)" 1 "certgate_sessions after alice's initialize"
ping='{"jsonrpc":"2.0","id":2,"method":"ping"}'
st=$(rpc alice own "$ping" "$URL/mcp" -H "Mcp-Session-Id: $sid")
cg_assert_eq "$st" 200 "alice in her own session"
st=$(rpc bob hijack "$ping" "$URL/mcp" -H "Mcp-Session-Id: $sid")
cg_assert_eq "$st" 403 "bob with alice's session id"
st=$(rpc bob hijack_us "$ping" "$URL/mcp" -H "Mcp_Session_Id: $sid")
cg_assert_eq "$st" 400 "bob with alice's session id as Mcp_Session_Id"
st=$(rpc alice twice "$ping" "$URL/mcp" -H "Mcp-Session-Id: $sid" -H "mcp_session_id: $sid")
cg_assert_eq "$st" 400 "session header given twice in two spellings"
st=$(rpc bob unknown "$ping" "$URL/mcp" -H "Mcp-Session-Id: sess-made-up")
cg_assert_eq "$st" 404 "a session id the gateway never bound"
python3 - "$T/unknown.b" <<'EOF' || cg_fail "404 body is not a JSON-RPC error with the id"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["jsonrpc"] == "2.0" and d["id"] == 2 and "error" in d, d
EOF
# of the requests carrying the session id only alice's own reached the upstream
n=$(grep -c "$sid" "$T/up.log" || true)
cg_assert_eq "$n" 1 "upstream requests carrying alice's session id"
# DELETE ends the binding
st=$(curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/alice/cert.pem" \
    --key "$PKI/agents/alice/key.pem" -o /dev/null -w '%{http_code}' -X DELETE \
    -H "Mcp-Session-Id: $sid" "$URL/mcp")
cg_assert_eq "$st" 200 "alice DELETEs her session"
cg_assert_eq "$(sessions)" 0 "certgate_sessions after the DELETE"

gw_stop
cg_pass
