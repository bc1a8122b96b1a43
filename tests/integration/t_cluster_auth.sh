#!/bin/bash
# Redis with passwords (README "Running several instances", "Redis with a password"):
# - gw0 authenticates with cluster.password_file (Redis's default user), gw1 with an
#   ACL user (cluster.user) and cluster.password_env; a session opened on gw0 continues
#   on gw1, the binding is in Redis;
# - gw2 has a wrong password: it fails closed as with an unreachable Redis (the log
#   gives Redis's refusal, a session it does not hold is refused with 503 and a
#   JSON-RPC error, never forwarded), and no password appears in any log;
# - bad settings stop `certgate check` / `serve` with a clear message: both sources,
#   an unset variable, a missing or empty file.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/cluster.sh"
cg_setup
command -v redis-server >/dev/null || cg_fail "redis-server not installed (scripts/test installs it)"

UP_PORT=$(cg_free_port)
RPORT=$(cg_free_port)
gw_tool_upstream "$UP_PORT" "$T/up.log"

# --- Redis with a default-user password and an ACL user (config file: no secrets
# in argv) ---
printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\nlogfile %s\nrequirepass default-secret-4711\nuser agentgw on >acl-secret-0815 ~* &* +@all\n' \
    "$RPORT" "$T" "$T/redis.log" >"$T/redis.conf"
redis-server "$T/redis.conf" &
REDIS_PID=$!
cg_track_pid "$REDIS_PID"
export REDISCLI_AUTH=default-secret-4711
for _ in $(seq 1 50); do
	redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break
	sleep 0.1
done
redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG || cg_fail "redis-server did not start"
REDISCLI_AUTH= redis-cli -p "$RPORT" ping 2>&1 | grep -q NOAUTH || cg_fail "Redis does not require a password"

# --- one PKI, three copies ---
PKI=$T/pki
gw_soft_pki "$PKI" 1 "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
for a in alice bob; do
	gw_soft_issue "$PKI" "$a" || cg_fail "issue $a"
done
cluster_dirs 3 "$PKI" ""
edit() {   # I PYTHON-STATEMENTS on c["cluster"]
	python3 - "${DIRS[$1]}/certgate.json" "$2" <<'EOF'
import json, sys
p, code = sys.argv[1:]
c = json.load(open(p))
cl = c["cluster"]
exec(code)
json.dump(c, open(p, "w"), indent=1)
EOF
}
(umask 077; printf 'default-secret-4711\n' >"${DIRS[0]}/redis.pass"; printf 'wrong-password\n' >"${DIRS[2]}/redis.pass")
edit 0 'cl["password_file"] = "redis.pass"'
edit 1 'cl["user"] = "agentgw"; cl["password_env"] = "CG_TEST_REDIS_PW"'
edit 2 'cl["password_file"] = "redis.pass"'

inst_start 0
export CG_TEST_REDIS_PW=acl-secret-0815
inst_start 1
unset CG_TEST_REDIS_PW

rpc() {   # AGENT PORT NAME BODY [curl args...]: the status; headers/body in $T/NAME.{h,b}
	local agent=$1 port=$2 name=$3 body=$4
	shift 4
	curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/$agent/cert.pem" \
	    --key "$PKI/agents/$agent/key.pem" -D "$T/$name.h" -o "$T/$name.b" -w '%{http_code}' \
	    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
	    --data-binary "$body" "$@" "https://localhost:$port/mcp" || true
}
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}'
PING='{"jsonrpc":"2.0","id":2,"method":"ping"}'

st=$(rpc alice "${PORTS[0]}" init "$INIT")
cg_assert_eq "$st" 200 "alice initialize on gw0 (password file)"
SID=$(grep -i '^Mcp-Session-Id:' "$T/init.h" | cut -d' ' -f2 | tr -d '\r')
[ -n "$SID" ] || cg_fail "no Mcp-Session-Id from initialize"
cg_assert_eq "$(redis-cli -p "$RPORT" get "certgate:s:$SID")" alice "the binding in Redis"
st=$(rpc alice "${PORTS[1]}" cont "$PING" -H "Mcp-Session-Id: $SID")
cg_assert_eq "$st" 200 "alice continues on gw1 (ACL user, password from the environment)"
st=$(rpc bob "${PORTS[1]}" hijack "$PING" -H "Mcp-Session-Id: $SID")
cg_assert_eq "$st" 403 "bob with alice's session on gw1"

# --- a wrong password fails closed ---
"$CERTGATE_BIN" serve -c "${DIRS[2]}/certgate.json" 2>>"${DIRS[2]}/gw.log" &
PIDS[2]=$!
cg_track_pid "${PIDS[2]}"
for _ in $(seq 1 100); do
	grep -q "listening on" "${DIRS[2]}/gw.log" && grep -q "AUTH refused" "${DIRS[2]}/gw.log" && break
	kill -0 "${PIDS[2]}" 2>/dev/null || { cat "${DIRS[2]}/gw.log" >&2; cg_fail "gw2 exited"; }
	sleep 0.1
done
grep -q "AUTH refused: WRONGPASS" "${DIRS[2]}/gw.log" ||
    { cat "${DIRS[2]}/gw.log" >&2; cg_fail "gw2 does not log Redis's refusal of its password"; }
: >"$T/up.log.before"
cp "$T/up.log" "$T/up.log.before"
st=$(rpc alice "${PORTS[2]}" wrong "$PING" -H "Mcp-Session-Id: $SID")
cg_assert_eq "$st" 503 "alice's session on gw2 (its Redis refuses the password)"
cg_assert_contains "$T/wrong.b" '"error"'
cmp -s "$T/up.log" "$T/up.log.before" || cg_fail "gw2 forwarded a request it could not check"
for f in "${DIRS[0]}/gw.log" "${DIRS[1]}/gw.log" "${DIRS[2]}/gw.log"; do
	cg_assert_not_contains "$f" "default-secret-4711"
	cg_assert_not_contains "$f" "acl-secret-0815"
	cg_assert_not_contains "$f" "wrong-password"
done
echo "passwords: file and environment (ACL user) work across instances; a wrong one fails closed"

# --- bad settings ---
# a copy of gw0's folder (its own pid file), on a port of its own
cp -a "${DIRS[0]}" "$T/bad"
rm -f "$T/bad/certgate.pid"
B=$T/bad
python3 - "$B/certgate.json" "$(cg_free_port)" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["listen"] = "127.0.0.1:" + sys.argv[2]; c["admin"] = ""
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
python3 - "$B/certgate.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["cluster"]["password_env"] = "CG_X"
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
cg_expect_fail 1 "$CERTGATE_BIN" check -c "$B/certgate.json"
cg_assert_contains "$T/err" "set cluster.password_file or cluster.password_env, not both"
python3 - "$B/certgate.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); del c["cluster"]["password_file"]; c["cluster"]["password_env"] = "CG_TEST_UNSET_PW"
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
unset CG_TEST_UNSET_PW
cg_expect_fail 1 "$CERTGATE_BIN" serve -c "$B/certgate.json"
cg_assert_contains "$T/err" "environment variable CG_TEST_UNSET_PW (cluster.password_env) is not set or empty"
python3 - "$B/certgate.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); del c["cluster"]["password_env"]; c["cluster"]["password_file"] = "missing.pass"
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
cg_expect_fail 1 "$CERTGATE_BIN" serve -c "$B/certgate.json"
cg_assert_contains "$T/err" "cannot read cluster.password_file $B/missing.pass"
: >"$B/empty.pass"
python3 - "$B/certgate.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["cluster"]["password_file"] = "empty.pass"
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
cg_expect_fail 1 "$CERTGATE_BIN" serve -c "$B/certgate.json"
cg_assert_contains "$T/err" "cluster.password_file $B/empty.pass is empty"
echo "bad password settings refused with a clear message"
cg_pass
