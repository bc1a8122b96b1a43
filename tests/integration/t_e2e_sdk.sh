#!/usr/bin/env bash
# End-to-end: the official MCP TypeScript SDK (tests/js/client.mjs) talks through
# certgate to the official MCP "everything" server (tests/js/upstream.mjs) with an
# agent certificate issued from the token CA: initialize, tools/list, tools/call echo,
# a server notification on the GET SSE stream, DELETE of the session, progress
# notifications streamed on a POST's SSE response. Checks the
# audit log and that a client without a certificate gets nowhere.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
cg_setup
e2e_require_node

UPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/mcp"
e2e_issue e2e-member --role member
e2e_upstream_start "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"

# --- the full MCP conversation ------------------------------------------------------
e2e_client basic e2e-member "$T/basic.out" || {
	cat "$T/basic.out" "$T/basic.err" >&2
	tail -30 "$T/gw.log" >&2
	cg_fail "client scenario basic failed"
}
cg_assert_contains "$T/basic.out" '"event":"initialized"'
cg_assert_contains "$T/basic.out" '"server":"mcp-servers/everything"'
cg_assert_contains "$T/basic.out" '"text":"Echo: hi"'
cg_assert_contains "$T/basic.out" '"event":"sse_open"'
cg_assert_contains "$T/basic.out" '"event":"sse_notification_ok","via":"get"'
cg_assert_contains "$T/basic.out" '"event":"terminated"'
cg_assert_contains "$T/basic.out" '"event":"ok","scenario":"basic"'
e2e_any "$T/basic.out" '.event == "tools" and any(.names[]; . == "echo")' ||
	cg_fail "echo not among the listed tools"
e2e_any "$T/basic.out" '.event == "tools" and (.names | length > 5)' ||
	cg_fail "a member should see all of server-everything's tools"

# --- a streamed POST response: progress notifications arrive while the tool runs ---
e2e_client progress e2e-member "$T/progress.out" || {
	cat "$T/progress.out" "$T/progress.err" >&2
	cg_fail "progress notifications were not streamed"
}
cg_assert_contains "$T/progress.out" '"event":"streamed"'

# --- audit log ----------------------------------------------------------------------
e2e_wait_audit '.method == "tools/call" and .name == "echo"' ||
	cg_fail "no audit line for tools/call echo"
AUDIT=$PKI/audit.jsonl
jq -e -s 'length > 0' "$AUDIT" >/dev/null || cg_fail "audit log is not JSON lines"
n=$(wc -l <"$AUDIT")
[ "$n" -ge 5 ] || cg_fail "audit log has $n lines, want >= 5 (initialize, initialized, list, calls, GET, DELETE)"
for m in initialize tools/list tools/call; do
	e2e_any "$AUDIT" ".method == \"$m\" and .agent == \"e2e-member\" and .decision == \"allow\"" ||
		cg_fail "no allowed audit line for $m by e2e-member"
done
e2e_any "$AUDIT" '.method == "tools/call" and .name == "echo" and
    (.ts | type == "string") and (.serial | type == "string") and (.peer | startswith("127.0.0.1:"))
    and .status == 200 and (.duration_ms | type == "number")' ||
	cg_fail "audit line for tools/call echo lacks ts/serial/peer/status/duration_ms"
if e2e_any "$AUDIT" '.decision != "allow"'; then
	jq -c 'select(.decision != "allow")' "$AUDIT" >&2
	cg_fail "member requests were denied"
fi

# --- no client certificate: no MCP at all --------------------------------------------
rc=0
node "$E2E_JS/client.mjs" --url "$(e2e_url)" --ca "$PKI/ca/ca.pem" --scenario list \
    --timeout 15000 >"$T/nocert.out" 2>"$T/nocert.err" || rc=$?
[ "$rc" -ne 0 ] || cg_fail "a client without a certificate got through"
cg_assert_not_contains "$T/nocert.out" '"event":"initialized"'

# --- the upstream listens on loopback only --------------------------------------------
if command -v ss >/dev/null 2>&1; then
	ss -Hltn "sport = :$UPORT" >"$T/ss.out"
	cg_assert_contains "$T/ss.out" "127.0.0.1:$UPORT"
	[ "$(wc -l <"$T/ss.out")" -eq 1 ] || cg_fail "upstream listens on more than loopback: $(cat "$T/ss.out")"
fi

gw_stop
cg_pass
