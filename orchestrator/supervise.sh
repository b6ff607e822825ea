# casecap's capture supervisor, for ESXi hosts that refuse to run the
# uploaded agent (execInstalledOnly). It is read by the host's own shell
# (sh FILE, so a noexec datastore does not matter) and written for BusyBox
# ash and dash alike: no bash, no /proc, nothing ESXi lacks.
#
#   sh supervise.sh hold STATE   check, answer {"arming_ns":0}, then "ping" ->
#                                "pong", "begin TIME" -> start "run" detached
#   sh supervise.sh run STATE    start every pktcap-uw, stop each at its end
#
# STATE holds job.sh (written by casecap: CASE_J, HOST_J, N, CASEDIR, GRACE,
# and per capture CAPi_FILE, CAPi_JSON, CAPi_DUR, CAPi_DURS, CAPi_COUNT,
# CAPi_MAXBYTES, CAPi_MINFREE and a function capi that runs its pktcap-uw).
# "run" is the parent of every pktcap-uw it starts and stops each by the PID
# it got ($!), never by name: SIGINT, then SIGTERM, then SIGKILL, GRACE
# seconds apart. Each capture's end is a timer on the host, so captures end
# even if casecap is gone; the file "stop" in STATE stops them all now.
# It keeps STATE/status.json in the agent's format.

mode=$1
state=$2
# hold reads the new job and puts it in place only once its checks pass:
# a refused start leaves a running one's files alone.
job=job.sh
[ "$mode" = hold ] && job=job.sh.new
. "$state/$job" || exit 1

# now is the time in RFC 3339, to the nanosecond where date knows %N.
now() {
	d=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
	case $d in *N* | *.Z) d=$(date -u +%Y-%m-%dT%H:%M:%SZ) ;; esac
	printf '%s\n' "$d"
}
# get prints the value of the variable named $1.
get() { eval "printf '%s' \"\${$1-}\""; }
# jstr prints $1 as the inside of a JSON string.
jstr() { printf '%s' "$1" | tr '\n\r\t' '   ' | sed 's/\\/\\\\/g; s/"/\\"/g; s/[[:cntrl:]]/ /g'; }
fail() { echo "casecap: $1" >&2; exit 1; }

# cap_json prints capture $1's status.
cap_json() {
	f=$(get "CAP$1_FILE")
	size=0
	[ -f "$f" ] && size=$(wc -c <"$f" | tr -d ' ')
	printf '{%s,"state":"%s","size":%s' "$(get "CAP$1_JSON")" "$(get "ST$1")" "$size"
	v=$(get "START$1") && [ -n "$v" ] && printf ',"start":"%s"' "$v"
	v=$(get "STOPPED$1") && [ -n "$v" ] && printf ',"stopped_at":"%s","stop":"%s"' "$v" "$v"
	v=$(get "REASON$1") && [ -n "$v" ] && printf ',"stop_reason":"%s"' "$v"
	v=$(get "ERR$1") && [ -n "$v" ] && printf ',"error":"%s"' "$(jstr "$v")"
	v=$(get "SUM$1") && [ -n "$v" ] && printf ',"sha256":"%s"' "$v"
	v=$(get "PK$1") && [ -n "$v" ] && printf ',"packets":%s,"drops":%s,"received":%s' "$v" "$(get "DR$1")" "$(($v + $(get "DR$1")))"
	printf '}'
}

# write_status replaces status.json at once (state $1).
write_status() {
	{
		printf '{"case":"%s","host":"%s","pid":%s,"agent":"casecap-ssh","state":"%s","updated":"%s","captures":[' \
			"$CASE_J" "$HOST_J" "$$" "$1" "$(now)"
		i=1
		while [ "$i" -le "$N" ]; do
			[ "$i" -gt 1 ] && printf ','
			cap_json "$i"
			i=$((i + 1))
		done
		printf ']}\n'
	} >"$state/status.json.tmp" && mv -f "$state/status.json.tmp" "$state/status.json"
}

# signal stops capture $1 (reason $2) by its PID: SIGINT first, SIGTERM
# GRACE seconds later, SIGKILL as long again. Called on every round.
signal() {
	pid=$(cat "$state/cap$1.pid" 2>/dev/null) || return 0
	[ -e "$state/cap$1.exit" ] && return 0
	s=$(get "SIG$1")
	at=$(get "SIGAT$1")
	t=$(date +%s)
	case $s in
	"")
		kill -INT "$pid" 2>/dev/null
		eval "SIG$1=INT SIGAT$1=$t REASON$1=\$2 STOPPED$1=\$(now)"
		;;
	INT)
		if [ $((t - at)) -ge "$GRACE" ]; then
			kill -TERM "$pid" 2>/dev/null
			eval "SIG$1=TERM SIGAT$1=$t"
		fi
		;;
	TERM)
		if [ $((t - at)) -ge "$GRACE" ]; then
			kill -KILL "$pid" 2>/dev/null
			eval "SIG$1=KILL SIGAT$1=$t"
		fi
		;;
	esac
	return 0
}

# finish records capture $1 once its pktcap-uw has exited: packets and drops
# from its last words, size and sha256 of its file, and why it ended.
finish() {
	f=$(get "CAP$1_FILE")
	out="$state/cap$1.out"
	code=$(cat "$state/cap$1.exit")
	last=$(sed -n 's/.*Dumped \([0-9][0-9]*\) packets* to file .*, dropped \([0-9][0-9]*\) packets*.*/\1 \2/p' "$out" | tail -n 1)
	pk=""
	dr=0
	if [ -n "$last" ]; then
		pk=${last% *}
		dr=${last#* }
	fi
	sum=""
	if [ -f "$f" ]; then
		chmod 640 "$f" # pktcap-uw makes it world-readable; it holds traffic
		sum=$(sha256sum "$f" | cut -d ' ' -f 1)
	fi
	s=$(get "SIG$1")
	reason=$(get "REASON$1")
	err=""
	said=$(tail -n 4 "$out" | tr '\n' ';')
	if [ -z "$s" ]; then
		eval "STOPPED$1=\$(now)"
		if [ "$code" = 0 ] && [ "$(get "CAP$1_COUNT")" -gt 0 ]; then
			reason=packet-count
		else
			err="pktcap-uw ended by itself (exit status $code): $said"
		fi
	elif [ "$s" = KILL ]; then
		err="pktcap-uw did not exit on SIGINT nor SIGTERM and was killed; its file may lack its last packets: $said"
	fi
	[ -z "$sum" ] && [ -z "$err" ] && err="pktcap-uw wrote no file: $said"
	st=stopped
	if [ -n "$err" ]; then
		st=failed
		reason=error
	fi
	eval "ST$1=\$st REASON$1=\$reason ERR$1=\$err SUM$1=\$sum PK$1=\$pk DR$1=\$dr"
}

hold() {
	command -v pktcap-uw >/dev/null 2>&1 || fail "no pktcap-uw on this host's PATH"
	[ "$(id -u)" = 0 ] || fail "capturing needs root; casecap runs as uid $(id -u) there (set ssh.user: root)"
	if [ -f "$state/agent.pid" ] && kill -0 "$(cat "$state/agent.pid")" 2>/dev/null; then
		fail "casecap already captures this case here (pid $(cat "$state/agent.pid")); stop it first"
	fi
	mkdir -p "$CASEDIR" 2>/dev/null
	[ -d "$CASEDIR" ] && [ -w "$CASEDIR" ] || fail "cannot write into $CASEDIR"
	i=1
	while [ "$i" -le "$N" ]; do
		f=$(get "CAP${i}_FILE")
		[ -e "$f" ] && fail "$f already exists: a capture file is never overwritten"
		eval "ST$i=armed"
		i=$((i + 1))
	done
	rm -f "$state/stop" "$state"/end.* "$state"/cap*.pid "$state"/cap*.exit
	mv -f "$state/job.sh.new" "$state/job.sh" && mv -f "$state/run.json.new" "$state/run.json" ||
		fail "cannot put the job in place in $state"
	write_status armed
	echo '{"arming_ns":0}'
	while read -r cmd arg; do
		case $cmd in
		ping) echo pong ;;
		begin)
			sh "$0" run "$state" </dev/null >>"$state/agent.log" 2>&1 &
			echo '{"begun":true}'
			exit 0
			;;
		*) fail "unexpected $cmd" ;;
		esac
	done
	# The session ended without a begin: nothing was started, and no file
	# was made (disarmed).
	i=1
	while [ "$i" -le "$N" ]; do
		eval "ST$i=stopped REASON$i=disarmed"
		i=$((i + 1))
	done
	write_status done
}

run() {
	trap '' HUP
	echo $$ >"$state/agent.pid"
	tick=0.1
	sleep 0.01 2>/dev/null || tick=1
	i=1
	while [ "$i" -le "$N" ]; do
		(
			"cap$i" >"$state/cap$i.out" 2>&1 &
			echo $! >"$state/cap$i.pid"
			wait $!
			echo $? >"$state/cap$i.exit"
		) &
		d=$(get "CAP${i}_DUR")
		[ "$tick" = 1 ] && d=$(get "CAP${i}_DURS")
		# The capture's end, kept on the host: a sleep that a TERM cuts short.
		(
			trap 'kill $p 2>/dev/null; exit 0' TERM
			sleep "$d" &
			p=$!
			wait $p && : >"$state/end.$i"
		) &
		eval "TIMER$i=\$! ST$i=capturing START$i=\$(now)"
		i=$((i + 1))
	done
	write_status running
	last=$(date +%s)
	while :; do
		running=0
		t=$(date +%s)
		i=1
		while [ "$i" -le "$N" ]; do
			if [ "$(get "ST$i")" = capturing ]; then
				if [ -e "$state/cap$i.exit" ]; then
					finish "$i"
				else
					running=1
					why=""
					[ -e "$state/stop" ] && why=stop-request
					[ -z "$why" ] && [ -e "$state/end.$i" ] && why=window-end
					if [ -z "$why" ] && [ "$t" != "$last" ]; then
						f=$(get "CAP${i}_FILE")
						m=$(get "CAP${i}_MAXBYTES")
						if [ "$m" -gt 0 ] && [ -f "$f" ] && [ "$(wc -c <"$f" | tr -d ' ')" -ge "$m" ]; then
							why=max-bytes
						fi
						m=$(get "CAP${i}_MINFREE")
						if [ "$m" -gt 0 ]; then
							free=$(df -Pk "$CASEDIR" 2>/dev/null | tail -n 1 | awk '{print $4}')
							[ -n "$free" ] && [ "$free" -lt "$m" ] && why=min-free
						fi
					fi
					[ -n "$why" ] || [ -n "$(get "SIG$i")" ] && signal "$i" "$why"
				fi
			fi
			i=$((i + 1))
		done
		[ "$running" = 0 ] && break
		if [ "$t" != "$last" ]; then
			write_status running
			last=$t
		fi
		sleep "$tick"
	done
	i=1
	state_all=done
	while [ "$i" -le "$N" ]; do
		kill -TERM "$(get "TIMER$i")" 2>/dev/null
		[ "$(get "ST$i")" = failed ] && state_all=failed
		i=$((i + 1))
	done
	wait
	write_status "$state_all"
	rm -f "$state/agent.pid"
}

case $mode in
hold) hold ;;
run) run ;;
*) fail "usage: sh supervise.sh hold|run STATE" ;;
esac
