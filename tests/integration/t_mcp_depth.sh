#!/usr/bin/env bash
# MCP depth, end to end with real servers from npm and the official SDK client:
#  - a stdio upstream (upstream.command): @modelcontextprotocol/server-filesystem, one
#    process per MCP session, behind the gateway; an agent whose argument rule is
#    path_under one directory reads inside it, and every escape (../, encoded dots,
#    absolute paths elsewhere, a sibling prefix, backslashes) is refused by the gateway:
#    the server's stdin (logged by a tee in front of it) never sees one;
#  - schema checks (mcp.validate_arguments) against what server-everything advertises,
#    over stdio too: wrong type, missing required, a tool never listed -> -32602;
#  - the full protocol over stdio: notifications on the GET stream, and sampling (a
#    server-to-client request answered by the client);
#  - process limits and clean-up: max_processes refuses a session beyond it (503), and
#    no server process is left after the sessions end.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
cg_setup
e2e_require_node

NODE=$(command -v node)
FS_SERVER=$E2E_JS/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js
EV_SERVER=$E2E_JS/node_modules/@modelcontextprotocol/server-everything/dist/index.js
[ -f "$FS_SERVER" ] || cg_fail "server-filesystem missing: npm ci in tests/js"

DATA=$T/data
mkdir -p "$DATA/sub" "$T/data2"
echo "inside the data directory" >"$DATA/readme.txt"
echo "top secret" >"$T/secret.txt"
echo "sibling" >"$T/data2/x.txt"
STDIN_LOG=$T/fs-stdin.log

cg_pki_init --upstream "http://127.0.0.1:9/mcp"
e2e_issue fsbot --role member
e2e_issue checker --role member

# configure: NAME COMMAND-JSON [VALIDATE]
configure() {
	python3 - "$PKI/certgate.json" "$PKI/agents.json" "$1" "$DATA" "${2:-false}" "$3" <<'EOF'
import json, sys
cfgp, mapp, command, data, validate, maxp = sys.argv[1:7]
c = json.load(open(cfgp))
c["upstream"] = {"command": json.loads(command), "max_processes": int(maxp),
                 "idle_timeout_ms": 4000}
c["mcp"] = {"validate_arguments": validate == "true"}
c["rate"] = {"per_second": 1000, "burst": 1000}
json.dump(c, open(cfgp, "w"), indent=1)
m = json.load(open(mapp))
for a in m["agents"]:
    if a["id"] == "fsbot":
        a["arguments"] = {"*": {"path": {"path_under": data, "optional": True},
                                "paths": {"path_under": data, "optional": True}}}
json.dump(m, open(mapp, "w"), indent=1)
EOF
}

fs_cmd=$(python3 -c 'import json,sys; print(json.dumps(["sh", "-c", "tee -a \"$0\" | exec \"$1\" \"$2\" \"$3\"", sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]]))' \
    "$STDIN_LOG" "$NODE" "$FS_SERVER" "$DATA")
configure "$fs_cmd" false 4
gw_start "$PKI/certgate.json" "$T/gw.log"

children() {
	# processes whose parent is the gateway (server processes, through sh)
	pgrep -P "$GW_PID" 2>/dev/null | wc -l
}

# --- path_under through a stdio server -------------------------------------------------
e2e_client call fsbot "$T/in.out" read_text_file --args "{\"path\":\"$DATA/readme.txt\"}" ||
    { cat "$T/in.out" "$T/in.err" >&2; tail -20 "$T/gw.log" >&2; cg_fail "reading inside the directory failed"; }
e2e_any "$T/in.out" '.event == "result" and (.text | contains("inside the data directory"))' ||
    { cat "$T/in.out" >&2; cg_fail "the file's content did not come back"; }
echo "read inside $DATA: ok"

n=0
for p in "$DATA/../secret.txt" "$DATA/sub/../../secret.txt" "$DATA/./../secret.txt" \
    "$DATA/%2e%2e/secret.txt" "$DATA/..%2fsecret.txt" "$T/secret.txt" "/etc/passwd" \
    "$T/data2/x.txt" "$DATA/..\\\\secret.txt" "relative/readme.txt" "$DATA//../secret.txt"; do
	n=$((n + 1))
	args=$(python3 -c 'import json,sys; print(json.dumps({"path": sys.argv[1]}))' "$p")
	if e2e_client call fsbot "$T/esc$n.out" read_text_file --args "$args"; then
		cat "$T/esc$n.out" >&2
		cg_fail "path $p was allowed"
	fi
	e2e_any "$T/esc$n.out" '.event == "error" and (.message | contains("argument rule"))' ||
	    { cat "$T/esc$n.out" "$T/esc$n.err" >&2; cg_fail "path $p: not refused by the gateway's argument rule"; }
done
echo "$n escapes refused by the gateway"
# read_multiple_files: every element of the array is checked
args=$(python3 -c 'import json,sys; print(json.dumps({"paths": [sys.argv[1], sys.argv[2]]}))' \
    "$DATA/readme.txt" "$DATA/../secret.txt")
if e2e_client call fsbot "$T/multi.out" read_multiple_files --args "$args"; then
	cg_fail "read_multiple_files with one escaping element was allowed"
fi
e2e_any "$T/multi.out" '.event == "error" and (.message | contains("paths[1]"))' ||
    { cat "$T/multi.out" >&2; cg_fail "the refusal does not name the element"; }
# The server never saw any of them: its stdin holds the good read only.
[ -s "$STDIN_LOG" ] || cg_fail "the tee in front of the server logged nothing"
if grep -q 'secret' "$STDIN_LOG"; then
	grep 'secret' "$STDIN_LOG" | head -3 >&2
	cg_fail "a refused path reached the stdio server"
fi
grep -q 'readme.txt' "$STDIN_LOG" || cg_fail "the allowed read did not reach the server"
# Audited with the rule.
e2e_wait_audit '.decision == "deny" and .reason == "argument rule" and (.detail | contains("path_under"))' ||
    cg_fail "no audit line names the argument rule"
# Another agent without rules reads the sibling directory's file: the server's own check
# (it only serves $DATA) answers, proving the rule above was the gateway's.
if e2e_client call checker "$T/srv.out" read_text_file --args "{\"path\":\"$T/data2/x.txt\"}"; then
	cg_fail "server-filesystem served a file outside its directory"
fi
e2e_any "$T/srv.out" '.event == "result" or (.event == "error" and (.message | contains("argument rule") | not))' ||
    { cat "$T/srv.out" >&2; cg_fail "the server's own refusal did not come back"; }

# --- process limits and clean-up ------------------------------------------------------
# Sessions end with DELETE (the SDK client terminates): their processes are gone.
for i in $(seq 1 50); do [ "$(children)" = 0 ] && break; sleep 0.1; done
[ "$(children)" = 0 ] || { ps -o pid,args --ppid "$GW_PID" >&2; cg_fail "server processes left after the sessions ended"; }
# max_processes 4: six sessions started at once and left open (idle timeout 4 s): four
# run, two are refused with 503.
pids=()
for i in 1 2 3 4 5 6; do
	( trap - ERR; set +e; e2e_client init fsbot "$T/open$i.out"; echo $? >"$T/open$i.rc" ) &
	pids+=($!)
done
wait "${pids[@]}" || true
ok=0 refused=0
for i in 1 2 3 4 5 6; do
	if [ "$(cat "$T/open$i.rc")" = 0 ]; then
		ok=$((ok + 1))
	elif e2e_any "$T/open$i.out" '.status == 503 or ((.message // "") | contains("503"))'; then
		refused=$((refused + 1))
	else
		cat "$T/open$i.out" "$T/open$i.err" >&2
		cg_fail "session $i failed other than with 503"
	fi
done
echo "six sessions at once with max_processes 4: $ok started, $refused refused (503)"
[ "$ok" = 4 ] && [ "$refused" = 2 ] || cg_fail "want 4 started and 2 refused"
gw_log_contains 'too many stdio sessions|max_processes|cannot start a session' ||
    cg_fail "the refusal was not logged"
# They were left open: the idle timeout (4 s) ends them, with no zombie.
for i in $(seq 1 200); do [ "$(children)" = 0 ] && break; sleep 0.1; done
[ "$(children)" = 0 ] || cg_fail "idle sessions' processes were not ended"
zombies=$(ps -o stat= --ppid "$GW_PID" 2>/dev/null | grep -c Z || true)
[ "$zombies" = 0 ] || cg_fail "$zombies zombie processes"
echo "max_processes enforced, idle sessions ended, no zombie"
gw_stop

# --- schema checks and the full protocol, server-everything over stdio -----------------
ev_cmd=$(python3 -c 'import json,sys; print(json.dumps([sys.argv[1], sys.argv[2], "stdio"]))' \
    "$NODE" "$EV_SERVER")
configure "$ev_cmd" true 8
gw_start "$PKI/certgate.json" "$T/gw2.log"
e2e_client call checker "$T/ok.out" echo --list-first --args '{"message":"hi"}' ||
    { cat "$T/ok.out" "$T/ok.err" >&2; tail -20 "$T/gw2.log" >&2; cg_fail "a valid echo call failed"; }
check_invalid() {
	local name=$1 args=$2 first=${3---list-first}
	# shellcheck disable=SC2086
	if e2e_client call checker "$T/$name.out" echo $first --args "$args"; then
		cat "$T/$name.out" >&2
		cg_fail "$name: the call was allowed"
	fi
	e2e_any "$T/$name.out" '.event == "error" and (.message | contains("Invalid params") or contains("-32602"))' ||
	    { cat "$T/$name.out" "$T/$name.err" >&2; cg_fail "$name: not refused with -32602"; }
}
check_invalid wrong_type '{"message":5}'
check_invalid missing_required '{}'
check_invalid never_listed '{"message":"hi"}' ""
# echo's schema does not forbid other properties (no server-everything tool does):
# an extra one passes.
e2e_client call checker "$T/extra_ok.out" echo --list-first --args '{"message":"hi","extra":1}' ||
    { cat "$T/extra_ok.out" >&2; cg_fail "an extra property the schema allows was refused"; }
e2e_wait_audit '.decision == "deny" and (.reason == "invalid arguments" or .reason == "tool never listed")' ||
    cg_fail "schema refusals not audited"
echo "schema checks: wrong type, missing required, never listed refused"
e2e_client basic checker "$T/basic.out" ||
    { cat "$T/basic.out" "$T/basic.err" >&2; tail -30 "$T/gw2.log" >&2; cg_fail "the basic scenario over stdio failed"; }
e2e_any "$T/basic.out" '.event == "sse_notification_ok"' || cg_fail "no notification on the GET stream"
e2e_client sampling checker "$T/sampling.out" ||
    { cat "$T/sampling.out" "$T/sampling.err" >&2; tail -30 "$T/gw2.log" >&2; cg_fail "sampling over stdio failed"; }
e2e_any "$T/sampling.out" '.event == "sampling_request"' || cg_fail "the client saw no sampling request"
echo "notifications and sampling over stdio: ok"
gw_log_contains 'stdio session [0-9a-f]+: stderr' || echo "(the server wrote nothing on stderr)"
gw_stop

# --- an extra property where the schema forbids it (an SDK server with .strict()) -------
st_cmd=$(python3 -c 'import json,sys; print(json.dumps([sys.argv[1], sys.argv[2]]))' \
    "$NODE" "$E2E_JS/strict-server.mjs")
configure "$st_cmd" true 8
gw_start "$PKI/certgate.json" "$T/gw3.log"
e2e_client call checker "$T/strict_ok.out" strict-echo --list-first --args '{"message":"hi"}' ||
    { cat "$T/strict_ok.out" "$T/strict_ok.err" >&2; cg_fail "a valid strict-echo call failed"; }
if e2e_client call checker "$T/strict_extra.out" strict-echo --list-first \
    --args '{"message":"hi","extra":1}'; then
	cg_fail "an extra property was allowed where the schema forbids it"
fi
e2e_any "$T/strict_extra.out" '.event == "error" and (.message | contains("Invalid params"))' ||
    { cat "$T/strict_extra.out" >&2; cg_fail "extra property: not refused with -32602"; }
echo "schema checks: an extra property where forbidden refused"
gw_stop
for i in $(seq 1 50); do [ "$(pgrep -f "$EV_SERVER" | wc -l)" = 0 ] && break; sleep 0.1; done
[ "$(pgrep -f "$EV_SERVER" | wc -l)" = 0 ] || cg_fail "server processes survived the gateway's shutdown"
cg_pass
