# cluster.sh: helpers for the scale-out tests (t_cluster*.sh); source after lib.sh and
# gw.sh, with cg_setup done.
#
#   redis_start / redis_stop     redis-server on $RPORT (no persistence), pid $REDIS_PID
#   cluster_dirs N PKI PY        N state folders $T/gw0.. (copies of PKI) on free ports:
#                                PORTS[], APORTS[], DIRS[]; PY (python, may be empty) edits
#                                each certgate.json further (argv: path)
#   inst_start I                 starts instance I (log DIRS[I]/gw.log), waits until it
#                                listens, reached Redis, and holds the shared ticket keys
#   metric I NAME                the sample's value on instance I (0 when absent)

redis_start() {
	redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
	    --dir "$T" --logfile "$T/redis.log" &
	REDIS_PID=$!
	cg_track_pid "$REDIS_PID"
	for _ in $(seq 1 50); do
		redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && return 0
		sleep 0.1
	done
	cg_fail "redis-server did not start"
}

redis_stop() {
	kill -TERM "$REDIS_PID"
	wait "$REDIS_PID" 2>/dev/null || true
	REDIS_PID=
}

cluster_dirs() {
	local n=$1 pki=$2 py=$3 i
	PORTS=() APORTS=() DIRS=() PIDS=()
	for i in $(seq 0 $((n - 1))); do
		PORTS[i]=$(cg_free_port)
		APORTS[i]=$(cg_free_port)
		DIRS[i]=$T/gw$i
		cp -a "$pki" "${DIRS[i]}"
		python3 - "${DIRS[i]}/certgate.json" "${PORTS[i]}" "${APORTS[i]}" "$RPORT" "gw$i" <<'EOF'
import json, sys
p, port, aport, rport, name = sys.argv[1:]
c = json.load(open(p))
c["listen"] = "127.0.0.1:" + port
c["admin"] = "127.0.0.1:" + aport
c["cluster"] = {"redis": "redis://127.0.0.1:%s/0" % rport, "name": name}
json.dump(c, open(p, "w"), indent=1)
EOF
		if [ -n "$py" ]; then
			python3 -c "$py" "${DIRS[i]}/certgate.json" || cg_fail "config edit gw$i"
		fi
	done
}

inst_start() {
	local i=$1 n
	"$CERTGATE_BIN" serve -c "${DIRS[i]}/certgate.json" 2>>"${DIRS[i]}/gw.log" &
	PIDS[i]=$!
	cg_track_pid "${PIDS[i]}"
	for n in $(seq 1 100); do
		kill -0 "${PIDS[i]}" 2>/dev/null || { cat "${DIRS[i]}/gw.log" >&2; cg_fail "gw$i exited"; }
		grep -q "listening on" "${DIRS[i]}/gw.log" 2>/dev/null &&
		    grep -q "connected to Redis" "${DIRS[i]}/gw.log" &&
		    grep -q "TLS ticket key of epoch" "${DIRS[i]}/gw.log" && return 0
		sleep 0.1
	done
	cat "${DIRS[i]}/gw.log" >&2
	cg_fail "gw$i did not start"
}

metric() {
	curl -s "http://127.0.0.1:${APORTS[$1]}/metrics" |
	    awk -v n="$2" '$1 == n { v = $2 } END { print v == "" ? 0 : v }'
}
