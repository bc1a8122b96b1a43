# shellcheck shell=bash
# e2e.sh: helpers for the end-to-end tests with the official MCP TypeScript SDK
# (tests/integration/t_e2e_*.sh). Source after lib.sh and gw.sh, then call cg_setup.
#
#   e2e_require_node            fails unless node and tests/js/node_modules are there
#   e2e_issue ID ARGS...        scripts/agent-issue --dir $PKI --agent ID ARGS...
#   e2e_upstream_start PORT     starts server-everything on 127.0.0.1:PORT (/mcp),
#                               killed at exit; log in $T/upstream.log
#   e2e_url                     prints the gateway's MCP URL (after cg_pki_init)
#   e2e_client SCENARIO AGENT OUT [ARGS...]
#                               runs tests/js/client.mjs as AGENT; JSON lines to OUT,
#                               stderr to OUT with .err; returns the client's status
#   e2e_wait_audit JQ-PREDICATE [SECONDS]
#                               waits until PREDICATE holds for a line of $PKI/audit.jsonl
#   e2e_any FILE JQ-PREDICATE   0 when PREDICATE holds for some JSON line of FILE

E2E_JS=

e2e_require_node() {
	E2E_JS=$CG_SRC/tests/js
	command -v node >/dev/null 2>&1 || cg_fail "node not found (Node.js >= 20.18.1 is needed)"
	local m
	for m in @modelcontextprotocol/sdk @modelcontextprotocol/server-everything undici; do
		[ -d "$E2E_JS/node_modules/$m" ] ||
			cg_fail "npm package $m missing: run 'npm ci' in $E2E_JS (scripts/test does)"
	done
}

e2e_issue() {
	local id=$1
	shift
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent "$id" "$@" \
	    >"$T/issue-$id.out" 2>"$T/issue-$id.err" || {
		cat "$T/issue-$id.out" "$T/issue-$id.err" >&2
		cg_fail "agent-issue $id failed"
	}
}

e2e_upstream_start() {
	local port=$1 pid _
	PORT=$port HOST=127.0.0.1 node "$E2E_JS/upstream.mjs" >>"$T/upstream.log" 2>&1 &
	pid=$!
	cg_track_pid "$pid"
	for _ in $(seq 1 100); do
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$T/upstream.log" >&2
			cg_fail "server-everything exited during start-up"
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	cat "$T/upstream.log" >&2
	cg_fail "server-everything did not listen on 127.0.0.1:$port within 10 s"
}

e2e_url() {
	printf 'https://127.0.0.1:%s/mcp\n' "${CG_LISTEN_PORT:?cg_pki_init first}"
}

e2e_client() {
	local scenario=$1 agent=$2 out=$3 a
	shift 3
	a=$PKI/agents/$agent
	timeout -k 5 90 node "$E2E_JS/client.mjs" --url "$(e2e_url)" \
	    --cert "$a/cert.pem" --key "$a/key.pem" --ca "$a/ca.pem" \
	    --scenario "$scenario" "$@" >"$out" 2>"${out%.out}.err"
}

e2e_wait_audit() {
	local filter=$1 secs=${2:-5} _
	for _ in $(seq 1 $((secs * 10))); do
		if [ -f "$PKI/audit.jsonl" ] && e2e_any "$PKI/audit.jsonl" "$filter"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# e2e_any FILE PREDICATE: 0 when PREDICATE (a jq boolean expression) holds for some
# JSON line of FILE. (jq 1.6's -e looks only at the last line, so slurp instead.)
e2e_any() {
	jq -e -s "any(.[]; $2)" "$1" >/dev/null 2>&1
}
