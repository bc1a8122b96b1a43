# gw.sh: helpers to run a certgate gateway in integration tests. Source it after
# lib.sh (which sets up CERTGATE_BIN, the temporary directory and cg_fail/cg_pass).
#
#   gw_start CONFIG [LOG]     start `certgate serve -c CONFIG` in the background
#                             (stderr to LOG, default CONFIG's dir/gw.log); waits until
#                             it listens; fails after 10 s or when it exits early
#   gw_stop                   SIGTERM, wait, assert exit status 0
#   gw_log_contains PATTERN   grep -E PATTERN in the gateway log
#   gw_wait_log PATTERN [S]   wait up to S (default 5) seconds for PATTERN in the log
#   gw_client ARGS...         run tests/tools/tlsclient against the gateway
#   gw_upstream_start PORT    tests/tools/upstream.py on 127.0.0.1:PORT (JSON-RPC echo)
#   gw_rpc_request FILE METHOD [PATH]   raw HTTP POST of a JSON-RPC call into FILE
#   gw_soft_pki DIR PORT UPSTREAM_URL   a software PKI (openssl ca, PEM keys) with a
#                             certgate.json, for cases the token CA cannot produce
#                             (backdated, expired certificates)
#   gw_soft_issue DIR NAME [STARTDATE ENDDATE]   issue DIR/agents/NAME/{cert,key}.pem
#   gw_soft_revoke DIR NAME   revoke and re-sign DIR/ca/crl.pem

GW_PID=
GW_LOG=
GW_PORT=
TLSCLIENT=${TLSCLIENT:-${CERTGATE_TOOLS_DIR:-${CERTGATE_BUILD_DIR:-.}/tests}/tlsclient}

_gw_fail() {
	if declare -F cg_fail >/dev/null; then
		cg_fail "$@"
	else
		echo "FAIL: $*" >&2
		exit 1
	fi
}

# Prints "host port" of the config's listen address.
gw_listen_of() {
	python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["listen"]; h,p=l.rsplit(":",1); print(h.strip("[]"), p)' "$1"
}

gw_start() {
	local cfg=$1 i host port
	GW_LOG=${2:-$(dirname "$cfg")/gw.log}
	read -r host port < <(gw_listen_of "$cfg")
	GW_PORT=$port
	GW_HOST=$host
	"${CERTGATE_BIN:?CERTGATE_BIN not set}" serve -c "$cfg" 2>>"$GW_LOG" &
	GW_PID=$!
	for i in $(seq 1 100); do
		if ! kill -0 "$GW_PID" 2>/dev/null; then
			wait "$GW_PID" || true
			echo "--- gateway log ($GW_LOG):" >&2
			cat "$GW_LOG" >&2
			GW_PID=
			_gw_fail "gateway exited during start-up"
			return 1
		fi
		if grep -q "listening on" "$GW_LOG" 2>/dev/null &&
		    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "--- gateway log ($GW_LOG):" >&2
	cat "$GW_LOG" >&2
	kill -KILL "$GW_PID" 2>/dev/null || true
	GW_PID=
	_gw_fail "gateway did not start listening within 10 s"
	return 1
}

gw_stop() {
	local rc
	[ -n "$GW_PID" ] || return 0
	kill -TERM "$GW_PID" 2>/dev/null || true
	rc=0
	wait "$GW_PID" || rc=$?
	GW_PID=
	if [ "$rc" -ne 0 ]; then
		echo "--- gateway log ($GW_LOG):" >&2
		tail -50 "$GW_LOG" >&2
		_gw_fail "gateway exited with status $rc after SIGTERM (expected 0)"
		return 1
	fi
	return 0
}

# Kills a gateway left running by a failed test (use in an EXIT trap).
gw_cleanup() {
	if [ -n "$GW_PID" ]; then
		kill -KILL "$GW_PID" 2>/dev/null || true
	fi
	GW_PID=
	if [ -n "${GW_UP_PID:-}" ]; then
		kill -TERM "$GW_UP_PID" 2>/dev/null || true
	fi
	GW_UP_PID=
	return 0
}

gw_log_contains() {
	grep -Eq -- "$1" "$GW_LOG"
}

gw_wait_log() {
	local pat=$1 secs=${2:-5} i
	for i in $(seq 1 $((secs * 10))); do
		grep -Eq -- "$pat" "$GW_LOG" && return 0
		sleep 0.1
	done
	return 1
}

# Starts tests/tools/upstream.py on PORT and waits until it answers.
gw_upstream_start() {
	local port=$1 i
	python3 "${CERTGATE_SOURCE_DIR:-$(dirname "${BASH_SOURCE[0]}")/../..}/tests/tools/upstream.py" \
	    "$port" &
	GW_UP_PID=$!
	for i in $(seq 1 50); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	_gw_fail "upstream on port $port did not start"
}

# Starts the C test upstream (tests/tools/upstream.c) on PORT, logging each request to
# LOG when given, and waits until it accepts. Sets GW_TOOL_UP_PID (tracked for cleanup).
gw_tool_upstream() {
	local port=$1 log=${2:-} i
	local tools=${CERTGATE_TOOLS_DIR:-${CERTGATE_BUILD_DIR:-$CG_SRC/build}/tests}
	[ -x "$tools/upstream" ] || _gw_fail "upstream tool not found in $tools"
	if [ -n "$log" ]; then
		"$tools/upstream" --port "$port" --log "$log" 2>"$T/up.err" &
	else
		"$tools/upstream" --port "$port" 2>"$T/up.err" &
	fi
	GW_TOOL_UP_PID=$!
	cg_track_pid "$GW_TOOL_UP_PID"
	for i in $(seq 1 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	_gw_fail "test upstream on port $port did not start (see $T/up.err)"
}

# Writes a raw HTTP JSON-RPC request for METHOD to FILE (id 1).
gw_rpc_request() {
	local file=$1 method=$2 path=${3:-/mcp} body
	body="{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$method\"}"
	printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s' \
	    "$path" "${#body}" "$body" >"$file"
}

gw_client() {
	"$TLSCLIENT" --connect "${GW_HOST:-127.0.0.1}:$GW_PORT" "$@"
}

_gw_soft_ca_conf() {
	local dir=$1
	cat >"$dir/ca/openssl.cnf" <<EOF
[ ca ]
default_ca = soft
[ soft ]
dir = $dir/ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
certificate = \$dir/ca.pem
private_key = \$dir/ca.key
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha256
default_days = 1
default_crl_days = 7
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
[ agent_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = \${ENV::GW_SAN}
[ server_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
EOF
}

gw_soft_pki() {
	local dir=$1 port=$2 upstream=${3:-http://127.0.0.1:9/}
	mkdir -p "$dir/ca/newcerts" "$dir/server" "$dir/agents"
	: >"$dir/ca/index.txt"
	echo 1000 >"$dir/ca/serial"
	echo 01 >"$dir/ca/crlnumber"
	_gw_soft_ca_conf "$dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$dir/ca/ca.key" -out "$dir/ca/ca.pem" -days 30 -subj "/CN=soft test CA" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$dir/server/key.pem" -out "$dir/server/req.pem" -subj "/CN=localhost" \
	    2>/dev/null || return 1
	GW_SAN=DNS:localhost openssl ca -batch -config "$dir/ca/openssl.cnf" -extensions server_ext \
	    -days 30 -in "$dir/server/req.pem" -out "$dir/server/cert.pem" -notext \
	    2>/dev/null || return 1
	GW_SAN=DNS:x openssl ca -batch -config "$dir/ca/openssl.cnf" -gencrl \
	    -out "$dir/ca/crl.pem" 2>/dev/null || return 1
	cat >"$dir/agents.json" <<EOF
{ "roles": { "admin": ["*"] }, "agents": [] }
EOF
	cat >"$dir/certgate.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "workers": 2,
  "upstream": { "url": "$upstream" },
  "tls": {
    "cert": "server/cert.pem",
    "key": "server/key.pem",
    "ca": "ca/ca.pem",
    "crl": "ca/crl.pem",
    "crl_check": true
  },
  "identity_map": "agents.json",
  "audit": { "file": "audit.jsonl" },
  "limits": { "grace_ms": 2000 }
}
EOF
}

# Adds NAME to the soft PKI's identity map (SAN URI spiffe://certgate.local/agent/NAME).
_gw_soft_map_add() {
	python3 - "$1/agents.json" "$2" <<'EOF'
import json, sys, os
p, name = sys.argv[1], sys.argv[2]
m = json.load(open(p))
m["agents"] = [a for a in m["agents"] if a["id"] != name]
m["agents"].append({"id": name, "uri": "spiffe://certgate.local/agent/" + name, "roles": ["admin"]})
tmp = p + ".tmp"
json.dump(m, open(tmp, "w"), indent=1)
os.rename(tmp, p)
EOF
}

gw_soft_issue() {
	local dir=$1 name=$2 start=${3:-} end=${4:-} dates=()
	mkdir -p "$dir/agents/$name"
	if [ -n "$start" ]; then
		dates=(-startdate "$start" -enddate "$end")
	else
		dates=(-days 1)
	fi
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$dir/agents/$name/key.pem" -out "$dir/agents/$name/req.pem" \
	    -subj "/CN=$name" 2>/dev/null || return 1
	GW_SAN="URI:spiffe://certgate.local/agent/$name" openssl ca -batch \
	    -config "$dir/ca/openssl.cnf" -extensions agent_ext "${dates[@]}" \
	    -in "$dir/agents/$name/req.pem" -out "$dir/agents/$name/cert.pem" -notext \
	    2>/dev/null || return 1
	cp "$dir/ca/ca.pem" "$dir/agents/$name/ca.pem"
	_gw_soft_map_add "$dir" "$name"
}

gw_soft_revoke() {
	local dir=$1 name=$2
	GW_SAN=DNS:x openssl ca -batch -config "$dir/ca/openssl.cnf" \
	    -revoke "$dir/agents/$name/cert.pem" 2>/dev/null || return 1
	GW_SAN=DNS:x openssl ca -batch -config "$dir/ca/openssl.cnf" -gencrl \
	    -out "$dir/ca/crl.pem.tmp" 2>/dev/null || return 1
	mv "$dir/ca/crl.pem.tmp" "$dir/ca/crl.pem"
}
