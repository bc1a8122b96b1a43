#!/usr/bin/env bash
# certgate agent listen on SIGTERM drains: the listening socket closes at once (new
# connections are refused), an idle keep-alive connection and a GET stream are
# closed, a tool call in flight (server-everything's long-running operation, its
# progress streamed over SSE) is answered whole through the real gateway, and the
# bridge exits 0 once it is. With a short --grace a call that outlasts it is cut
# when the grace period ends; a second signal cuts at once. curl is the client.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
. "$(dirname "$0")/agent.sh"
cg_setup
e2e_require_node

UPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/mcp"
e2e_issue dr-member --role member
e2e_upstream_start "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"
DIR=$PKI/agents/dr-member

ACCEPT='Accept: application/json, text/event-stream'
JSON='Content-Type: application/json'
# session PORT: initialize through the listener on PORT; prints the session id
session() {
	local url=http://127.0.0.1:$1/mcp sid
	curl -s -D "$T/init.hdr" -o "$T/init.body" -H "$ACCEPT" -H "$JSON" -d \
	    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"drain","version":"1"}}}' \
	    "$url" || cg_fail "initialize through the listener failed"
	sid=$(grep -i '^mcp-session-id:' "$T/init.hdr" | cut -d: -f2 | tr -d ' \r')
	[ -n "$sid" ] || { cat "$T/init.hdr" "$T/init.body" >&2; cg_fail "no session id"; }
	curl -s -o /dev/null -H "$ACCEPT" -H "$JSON" -H "Mcp-Session-Id: $sid" \
	    -H 'MCP-Protocol-Version: 2025-06-18' \
	    -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$url"
	printf '%s\n' "$sid"
}
# long_call PORT SID SECONDS OUT: the long-running tool with progress, in the background
long_call() {
	curl -s -N -o "$4" -H "$ACCEPT" -H "$JSON" -H "Mcp-Session-Id: $2" \
	    -H 'MCP-Protocol-Version: 2025-06-18' -d \
	    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"trigger-long-running-operation\",\"arguments\":{\"duration\":$3,\"steps\":$3},\"_meta\":{\"progressToken\":\"p1\"}}}" \
	    "http://127.0.0.1:$1/mcp" &
	CALL_PID=$!
}
# wait_for WHAT SECONDS CMD...: until CMD succeeds
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for i in $(seq 1 $((secs * 10))); do
		"$@" && return 0
		sleep 0.1
	done
	cg_fail "$what: not within $secs s"
}
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
refuses() { ! accepts "$1"; }
alive() { kill -0 "$1" 2>/dev/null; }
gone() { ! alive "$1"; }
progressed() { grep -q 'notifications/progress' "$1" 2>/dev/null; }
# exit_is PID WANT WHAT: the exit status of a child of this shell
exit_is() { local rc=0; wait "$1" || rc=$?; cg_assert_eq "$rc" "$2" "$3"; }

# --- drain: the call in flight is answered, everything else stops ------------------
LPORT=$(cg_free_port)
agent_listen_start "$LPORT" "$(e2e_url)" "$DIR" --grace 60
LPID=$AGENT_LISTEN_PID
SID=$(session "$LPORT")
# An idle keep-alive connection, and a GET stream of the session.
python3 - "$LPORT" "$T/idle.out" <<'PY' &
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(120)
open(sys.argv[2], "w").write("connected\n")
d = s.recv(1)
open(sys.argv[2], "a").write("closed\n" if d == b"" else "data\n")
PY
IDLE_PID=$!
curl -s -N -o "$T/get.out" -H 'Accept: text/event-stream' -H "Mcp-Session-Id: $SID" \
    -H 'MCP-Protocol-Version: 2025-06-18' "http://127.0.0.1:$LPORT/mcp" &
GET_PID=$!
long_call "$LPORT" "$SID" 6 "$T/call.out"
wait_for "the first progress notification" 30 progressed "$T/call.out"
grep -q connected "$T/idle.out" || cg_fail "the idle connection was not open"
alive "$GET_PID" || cg_fail "the GET stream ended early"
kill -TERM "$LPID"
wait_for "new connections refused after SIGTERM" 10 refuses "$LPORT"
wait_for "the GET stream closed" 10 gone "$GET_PID"
wait_for "the idle connection closed" 10 grep -q closed "$T/idle.out"
wait "$IDLE_PID" || true
# The call needs five more seconds of the upstream: it is still being answered.
alive "$CALL_PID" || { cat "$T/call.out" >&2; cg_fail "the call in flight ended with the listener's socket"; }
alive "$LPID" || cg_fail "the listener exited with a request in flight"
exit_is "$CALL_PID" 0 "curl's exit status for the call in flight"
cg_assert_contains "$T/call.out" 'Long running operation completed. Duration: 6 seconds'
wait_for "the listener to exit after the last answer" 10 gone "$LPID"
exit_is "$LPID" 0 "the listener's exit status after a drain"
LOG=$T/listen-$LPORT.log
cg_assert_contains "$LOG" "1 request(s) in flight may finish for up to 60 s"
cg_assert_contains "$LOG" "every request in flight was answered"
e2e_wait_audit '.agent == "dr-member" and .name == "trigger-long-running-operation" and .status == 200' ||
	cg_fail "the gateway did not log the drained call as answered"
echo "drained: the call in flight answered, idle connection and GET stream closed"

# --- a call longer than --grace is cut when the grace period ends ------------------
L2=$(cg_free_port)
agent_listen_start "$L2" "$(e2e_url)" "$DIR" --grace 1
SID2=$(session "$L2")
long_call "$L2" "$SID2" 30 "$T/call2.out"
wait_for "the first progress notification" 30 progressed "$T/call2.out"
kill -TERM "$AGENT_LISTEN_PID"
wait_for "the listener to exit when the grace period ends" 20 gone "$AGENT_LISTEN_PID"
exit_is "$AGENT_LISTEN_PID" 0 "exit status after the grace period"
wait_for "the cut call to end" 10 gone "$CALL_PID"
cg_assert_not_contains "$T/call2.out" 'Long running operation completed'
cg_assert_contains "$T/listen-$L2.log" "grace period of 1 s over: cutting 1 connection(s)"

# --- a second signal cuts at once ---------------------------------------------------
L3=$(cg_free_port)
agent_listen_start "$L3" "$(e2e_url)" "$DIR" --grace 600
SID3=$(session "$L3")
long_call "$L3" "$SID3" 30 "$T/call3.out"
wait_for "the first progress notification" 30 progressed "$T/call3.out"
kill -TERM "$AGENT_LISTEN_PID"
wait_for "new connections refused after SIGTERM" 10 refuses "$L3"
alive "$AGENT_LISTEN_PID" || cg_fail "the listener exited with a request in flight"
kill -INT "$AGENT_LISTEN_PID"
wait_for "the listener to exit on the second signal" 20 gone "$AGENT_LISTEN_PID"
exit_is "$AGENT_LISTEN_PID" 0 "exit status after a second signal"
wait_for "the cut call to end" 10 gone "$CALL_PID"
cg_assert_not_contains "$T/call3.out" 'Long running operation completed'
cg_assert_contains "$T/listen-$L3.log" "again: stopping now"

# --- no request in flight: exits at once; a bad --grace is refused ---------------------
L4=$(cg_free_port)
agent_listen_start "$L4" "$(e2e_url)" "$DIR"
kill -TERM "$AGENT_LISTEN_PID"
wait_for "an idle listener to exit" 10 gone "$AGENT_LISTEN_PID"
exit_is "$AGENT_LISTEN_PID" 0 "exit status of an idle listener"
cg_assert_contains "$T/listen-$L4.log" "no request in flight"
for bad in -1 x 3601 ""; do
	cg_expect_fail 2 "$CERTGATE_BIN" agent listen --listen "127.0.0.1:$(cg_free_port)" \
	    --url "$(e2e_url)" --dir "$DIR" --grace "$bad"
	cg_assert_contains "$T/err" "--grace wants whole seconds"
done

gw_stop
cg_pass
