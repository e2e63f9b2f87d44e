#!/usr/bin/env bash
# Idempotent set-up of a real one-node SLURM cluster (slurmctld + slurmd + munged) on this Debian
# machine, for the slurm tests (tests/slurm) and local launcher runs. See scripts/slurm/README.md.
#
#   scripts/slurm/setup_cluster.sh           install if missing, (re)write config, start, wait idle
#   scripts/slurm/setup_cluster.sh --stop    stop slurmd, slurmctld and munged
#   scripts/slurm/setup_cluster.sh --status  print the summary line, exit 1 if the node is not usable
#
# Environment: SLURM_SETUP_PARTITION (default: debug), SLURM_SETUP_NO_INSTALL=1 (never call apt),
#              SLURM_SETUP_WAIT_S (default: 60, how long to wait for the node to become idle).
#
# Exit codes (tests/slurm/conftest.py turns them into skip reasons):
#   0 ok | 2 not root | 3 packages missing and apt unavailable or apt failed | 4 a daemon did not start
#   5 node did not become usable | 64 bad usage
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATE="$SCRIPT_DIR/slurm.conf.template"
PARTITION="${SLURM_SETUP_PARTITION:-debug}"
WAIT_S="${SLURM_SETUP_WAIT_S:-60}"

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
MUNGE_RUN=/run/munge
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID="$MUNGE_RUN/munged.pid"

log() { echo "[setup_cluster] $*" >&2; }
die() { local code=$1; shift; echo "[setup_cluster] ERROR: $*" >&2; exit "$code"; }

# ----------------------------------------------------------------------------- process helpers
# pid of a running daemon: from its pid file if that process is alive with the right name, else
# the first process with exactly that name (started by someone else). Empty when not running.
daemon_pid() {
    local name=$1 pidfile=$2 pid
    if [[ -r $pidfile ]]; then
        pid=$(tr -dc '0-9' <"$pidfile" || true)
        if [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
            echo "$pid"; return 0
        fi
    fi
    pgrep -x "$name" 2>/dev/null | head -n1 || true
}

stop_daemon() {
    local name=$1 pidfile=$2 pid i
    pid=$(daemon_pid "$name" "$pidfile")
    [[ -z $pid ]] && return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

stop_all() {
    stop_daemon slurmd "$RUN_DIR/slurmd.pid"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
    stop_daemon munged "$MUNGE_PID"
}

# ----------------------------------------------------------------------------- install
install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sinfo >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ ${SLURM_SETUP_NO_INSTALL:-0} == 1 ]] && die 3 "missing ${missing[*]} and SLURM_SETUP_NO_INSTALL=1"
    command -v apt-get >/dev/null || die 3 "missing ${missing[*]} and apt-get is not available"
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Recommends would pull ~20 plugin/-dev packages that are not needed (auth_munge, cons_tres,
    # linuxproc, task/none all live in slurm-wlm-basic-plugins, a hard dependency).
    local opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends)
    if ! apt-get install "${opts[@]}" slurmctld slurmd slurm-client munge >/tmp/slurm-setup-apt.log 2>&1; then
        apt-get update -q >>/tmp/slurm-setup-apt.log 2>&1 || die 3 "apt-get update failed (see /tmp/slurm-setup-apt.log)"
        apt-get install "${opts[@]}" slurmctld slurmd slurm-client munge >>/tmp/slurm-setup-apt.log 2>&1 \
            || die 3 "apt-get install failed (see /tmp/slurm-setup-apt.log)"
    fi
    for c in slurmctld slurmd sinfo munged; do
        command -v "$c" >/dev/null || die 3 "$c still missing after apt-get install"
    done
}

# ----------------------------------------------------------------------------- munge
setup_munge() {
    id munge >/dev/null 2>&1 || die 3 "user 'munge' does not exist (broken munge package?)"
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating munge key $MUNGE_KEY"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    if [[ -z $(daemon_pid munged "$MUNGE_PID") ]]; then
        log "starting munged"
        rm -f "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
        runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" \
            || die 4 "munged failed to start (see /var/log/munge/munged.log)"
    fi
    local i
    for i in $(seq 1 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die 4 "munge credential round trip (munge -n | unmunge) fails"
}

# ----------------------------------------------------------------------------- config
hw_value() { # key from `slurmd -C`
    sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$HW" | head -n1
}

render_config() {
    local host=$1 out=$2
    HW=$(slurmd -C 2>/dev/null | head -n1 || true)
    local cpus boards sockets cores threads mem
    cpus=$(hw_value CPUs); boards=$(hw_value Boards); sockets=$(hw_value SocketsPerBoard)
    cores=$(hw_value CoresPerSocket); threads=$(hw_value ThreadsPerCore); mem=$(hw_value RealMemory)
    if [[ -z $cpus || -z $mem || -z $sockets || -z $cores || -z $threads ]]; then
        cpus=$(nproc); boards=1; sockets=1; cores=$cpus; threads=1
        mem=$(free -m | awk '/^Mem:/ {print $2}')
    fi
    boards=${boards:-1}
    # Leave a small margin so that a slightly different memory report never drains the node.
    mem=$(( mem * 98 / 100 ))
    # Jobs without --mem get this per CPU (else CR_Core_Memory gives them the whole node's memory).
    local def_mem=$(( mem / cpus )); (( def_mem > 1024 )) && def_mem=1024
    sed -e "s|@HOST@|$host|g" -e "s|@CPUS@|$cpus|g" -e "s|@BOARDS@|$boards|g" \
        -e "s|@SOCKETS@|$sockets|g" -e "s|@CORES@|$cores|g" -e "s|@THREADS@|$threads|g" \
        -e "s|@MEMORY@|$mem|g" -e "s|@DEF_MEM_PER_CPU@|$def_mem|g" -e "s|@PARTITION@|$PARTITION|g" -e "s|@STATE_DIR@|$STATE_DIR|g" \
        -e "s|@SPOOL_DIR@|$SPOOL_DIR|g" -e "s|@LOG_DIR@|$LOG_DIR|g" -e "s|@RUN_DIR@|$RUN_DIR|g" \
        "$TEMPLATE" >"$out"
    if grep -q '@[A-Z_]*@' "$out"; then die 64 "unfilled placeholder in rendered config: $(grep -o '@[A-Z_]*@' "$out" | head -n1)"; fi
}

# ----------------------------------------------------------------------------- slurm daemons
start_slurmctld() {
    [[ -n $(daemon_pid slurmctld "$RUN_DIR/slurmctld.pid") ]] && return 0
    log "starting slurmctld"
    if ! slurmctld -f "$CONF" >>"$LOG_DIR/slurmctld.stdout" 2>&1; then
        die 4 "slurmctld failed to start: $(tail -n 3 "$LOG_DIR/slurmctld.stdout" "$LOG_DIR/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
    fi
    local i
    for i in $(seq 1 100); do
        if scontrol ping 2>/dev/null | grep -q 'is UP'; then return 0; fi
        if [[ -z $(daemon_pid slurmctld "$RUN_DIR/slurmctld.pid") ]]; then break; fi
        sleep 0.2
    done
    # A state save from an incompatible earlier configuration can prevent start-up: retry clean.
    log "slurmctld did not come up; retrying with cleared state (-c)"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
    slurmctld -c -f "$CONF" >>"$LOG_DIR/slurmctld.stdout" 2>&1 || true
    for i in $(seq 1 100); do
        if scontrol ping 2>/dev/null | grep -q 'is UP'; then return 0; fi
        sleep 0.2
    done
    die 4 "slurmctld is not responding; last log lines: $(tail -n 5 "$LOG_DIR/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
}

start_slurmd() {
    [[ -n $(daemon_pid slurmd "$RUN_DIR/slurmd.pid") ]] && return 0
    log "starting slurmd"
    slurmd -f "$CONF" >>"$LOG_DIR/slurmd.stdout" 2>&1 \
        || die 4 "slurmd failed to start: $(tail -n 3 "$LOG_DIR/slurmd.stdout" "$LOG_DIR/slurmd.log" 2>/dev/null | tr '\n' ' ')"
}

node_state() { sinfo -h -N -n "$1" -o '%t' 2>/dev/null | head -n1 || true; }

wait_node_usable() {
    local host=$1 deadline=$((SECONDS + WAIT_S)) state resumed=0
    while (( SECONDS < deadline )); do
        state=$(node_state "$host")
        case $state in
            idle|mix|mixed|alloc|allocated|comp|completing) return 0 ;;
            drain*|drng|down|fail|failg)  # responding but administratively unusable: resume it
                if (( resumed < 3 )); then
                    log "node $host is '$state'; resuming it"
                    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
                    resumed=$((resumed + 1))
                fi ;;
            inval) die 5 "node $host is INVALID (configured hardware exceeds what slurmd reports): $(scontrol show node "$host" | grep -o 'Reason=.*')" ;;
        esac
        # "down*" / "idle*" etc. (trailing *) = slurmd not responding yet: just wait.
        if [[ -z $(daemon_pid slurmd "$RUN_DIR/slurmd.pid") ]]; then
            die 4 "slurmd exited; last log lines: $(tail -n 5 "$LOG_DIR/slurmd.log" 2>/dev/null | tr '\n' ' ')"
        fi
        sleep 0.5
    done
    die 5 "node $host did not become idle within ${WAIT_S}s (state '$(node_state "$host")'): $(scontrol show node "$host" 2>/dev/null | grep -o 'Reason=.*')"
}

summary() {
    local host=$1 state version line
    state=$(node_state "$host")
    version=$(sinfo --version 2>/dev/null | awk '{print $2}')
    line=$(scontrol show node "$host" 2>/dev/null | tr ' ' '\n' | grep -E '^(CPUTot|RealMemory)=' | tr '\n' ' ')
    echo "slurm ${version:-?} cluster up: node=$host state=$state partition=$PARTITION ${line% } conf=$CONF"
}

# ----------------------------------------------------------------------------- main
main() {
    local mode=${1:-start}
    case $mode in
        start|--start) mode=start ;;
        --stop|stop) mode=stop ;;
        --status|status) mode=status ;;
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die 64 "unknown argument '$mode' (use --stop, --status or nothing)" ;;
    esac
    [[ $(id -u) -eq 0 ]] || die 2 "must run as root (it installs packages and starts system daemons)"

    local host
    host=$(hostname -s)

    if [[ $mode == stop ]]; then stop_all; log "stopped"; return 0; fi
    if [[ $mode == status ]]; then
        command -v sinfo >/dev/null || die 3 "slurm is not installed"
        case $(node_state "$host") in
            idle|mix|mixed|alloc|allocated|comp|completing) summary "$host"; return 0 ;;
            *) die 5 "cluster not usable: node $host state '$(node_state "$host")'" ;;
        esac
    fi

    install_packages
    [[ -f $TEMPLATE ]] || die 64 "template $TEMPLATE not found"
    id slurm >/dev/null 2>&1 || die 3 "user 'slurm' does not exist (broken slurm package?)"
    install -d -m 0755 "$CONF_DIR"
    install -d -o slurm -g slurm -m 0755 "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
    install -d -o root -g root -m 0755 "$SPOOL_DIR"

    setup_munge

    local tmp changed=0
    tmp=$(mktemp)
    render_config "$host" "$tmp"
    if ! cmp -s "$tmp" "$CONF"; then
        install -m 0644 "$tmp" "$CONF"
        changed=1
        log "wrote $CONF"
    fi
    rm -f "$tmp"

    if (( changed )); then
        # Node/partition definitions are not picked up by `scontrol reconfigure`: restart what runs.
        if [[ -n $(daemon_pid slurmctld "$RUN_DIR/slurmctld.pid") || -n $(daemon_pid slurmd "$RUN_DIR/slurmd.pid") ]]; then
            log "configuration changed: restarting slurm daemons"
            stop_daemon slurmd "$RUN_DIR/slurmd.pid"
            stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
        fi
    fi

    start_slurmctld
    start_slurmd
    wait_node_usable "$host"
    summary "$host"
}

main "$@"
