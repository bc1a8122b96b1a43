#!/usr/bin/env bash
# End-to-end authorization with the official MCP TypeScript SDK in front of the
# official "everything" server: a guest sees no tools it cannot call and is refused
# tools/call; an agent with scope tools:echo sees and calls only echo; a second agent
# presenting another agent's Mcp-Session-Id is refused while the owner keeps working.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
cg_setup
e2e_require_node

UPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/mcp"
e2e_issue guest-bot --role guest
e2e_issue echo-bot --role guest --scope 'tools:echo'
e2e_issue member-a --role member
e2e_issue member-b --role member
e2e_upstream_start "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"

show() {
	cat "$1" "${1%.out}.err" >&2
}

# --- guest: listing filtered to nothing, calls refused ---------------------------------
e2e_client list guest-bot "$T/guest-list.out" || { show "$T/guest-list.out"; cg_fail "guest tools/list failed"; }
e2e_any "$T/guest-list.out" '.event == "tools" and .names == []' || {
	show "$T/guest-list.out"
	cg_fail "guest should see no tools (it may call none)"
}
rc=0
e2e_client call guest-bot "$T/guest-call.out" echo --args '{"message":"x"}' || rc=$?
[ "$rc" -ne 0 ] || { show "$T/guest-call.out"; cg_fail "guest could call echo"; }
e2e_any "$T/guest-call.out" '.event == "error" and .status == 403' || {
	show "$T/guest-call.out"
	cg_fail "guest tools/call was not refused with 403"
}
cg_assert_not_contains "$T/guest-call.out" 'Echo: x'

# --- tools:echo: sees and calls echo only ----------------------------------------------
e2e_client list echo-bot "$T/echo-list.out" || { show "$T/echo-list.out"; cg_fail "echo-bot tools/list failed"; }
e2e_any "$T/echo-list.out" '.event == "tools" and .names == ["echo"]' || {
	show "$T/echo-list.out"
	cg_fail "echo-bot should see exactly [echo]"
}
e2e_client call echo-bot "$T/echo-call.out" echo --args '{"message":"yo"}' || {
	show "$T/echo-call.out"
	cg_fail "echo-bot could not call echo"
}
cg_assert_contains "$T/echo-call.out" '"text":"Echo: yo"'
rc=0
e2e_client call echo-bot "$T/echo-sum.out" get-sum --args '{"a":1,"b":2}' || rc=$?
[ "$rc" -ne 0 ] || { show "$T/echo-sum.out"; cg_fail "echo-bot could call get-sum"; }
e2e_any "$T/echo-sum.out" '.event == "error" and .status == 403' || {
	show "$T/echo-sum.out"
	cg_fail "echo-bot get-sum was not refused with 403"
}

# --- a member can call anything ---------------------------------------------------------
e2e_client call member-a "$T/member-sum.out" get-sum --args '{"a":1,"b":2}' || {
	show "$T/member-sum.out"
	cg_fail "member could not call get-sum"
}
cg_assert_contains "$T/member-sum.out" 'The sum of 1 and 2 is 3'

# --- session hijack: member-b presents member-a's session id ------------------------------
e2e_client hijack member-a "$T/hijack.out" \
    --cert2 "$PKI/agents/member-b/cert.pem" --key2 "$PKI/agents/member-b/key.pem" || {
	show "$T/hijack.out"
	cg_fail "second agent reusing a session id was not refused"
}
e2e_any "$T/hijack.out" '.event == "hijack_refused" and .status == 403' || {
	show "$T/hijack.out"
	cg_fail "session reuse by another agent was not refused with 403"
}
for m in GET DELETE; do
	e2e_any "$T/hijack.out" ".event == \"hijack_refused\" and .method == \"$m\" and .status == 403" || {
		show "$T/hijack.out"
		cg_fail "$m with another agent's session id was not refused with 403"
	}
done
cg_assert_contains "$T/hijack.out" '"event":"owner_ok"'
cg_assert_not_contains "$T/hijack.out" '"event":"hijack_allowed"'

# --- audit: the refusals are recorded ----------------------------------------------------
e2e_wait_audit '.agent == "guest-bot" and .method == "tools/call" and .decision == "deny" and .status == 403 and (.reason | type == "string")' ||
	cg_fail "no deny audit line for guest-bot tools/call"
e2e_wait_audit '.agent == "echo-bot" and .method == "tools/call" and .name == "get-sum" and .decision == "deny"' ||
	cg_fail "no deny audit line for echo-bot get-sum"
e2e_wait_audit '.agent == "member-b" and .decision == "deny"' ||
	cg_fail "no deny audit line for member-b's session reuse"

gw_stop
cg_pass
