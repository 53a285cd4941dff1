#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting, for the cluster tests.
#
#   slurm_local.sh install            apt-get the packages (idempotent, fast when present)
#   slurm_local.sh up STATE_DIR       start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   slurm_local.sh down STATE_DIR     stop them (never fails when already down)
#   slurm_local.sh status STATE_DIR   exit 0 when the cluster answers, 1 otherwise
#   slurm_local.sh stop-daemon STATE_DIR slurmdbd|slurmctld    an outage, for status tests
#   slurm_local.sh start-daemon STATE_DIR slurmdbd|slurmctld   and its end
#   slurm_local.sh add-user STATE_DIR USER   let an ordinary user submit (STATE_DIR must be
#                                     reachable by others: not under a 0700 folder)
#
# Every config, state, spool, log, pid and socket file lives under STATE_DIR, so
# several clusters (one per test session) can coexist and nothing in /etc is touched.
# Clients use it with:  source STATE_DIR/env.sh; sbatch ...; sacct ...
#
# Must run as root (SlurmUser=root; jobs run as root). No systemd is assumed: each daemon
# is started by hand and tracked through its pid file.
set -euo pipefail

readonly PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
readonly CLUSTER_NAME=mnistfc-test
readonly PARTITION=debug
readonly MAX_ARRAY_SIZE=${SLURM_LOCAL_MAX_ARRAY_SIZE:-4}
readonly FEW_JOBS_QOS=fewjobs
readonly FEW_JOBS=3
# Bounded waits (seconds). Generous because the machine may be busy with other work.
readonly START_TIMEOUT=${SLURM_LOCAL_START_TIMEOUT:-90}
readonly STOP_TIMEOUT=${SLURM_LOCAL_STOP_TIMEOUT:-30}
# Seconds a requeued job waits before it may start again (see AuthInfo below).
readonly CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-15}
# Where unix sockets may live at most: sun_path is 108 bytes, and slurmstepd puts
# "<spool>/<node>_<jobid>.<stepid>" sockets in the spool dir, so keep headroom.
readonly MAX_SOCKET_BASE=60

log() { printf '[slurm_local] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ----------------------------------------------------------------------------- install

packages_installed() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || return 1
        [[ $status == "install ok installed" ]] || return 1
    done
    local bin
    for bin in munged slurmctld slurmd slurmdbd mariadbd mariadb-install-db sacctmgr; do
        command -v "$bin" >/dev/null || [[ -x /usr/sbin/$bin ]] || return 1
    done
}

# Debian's postinst scripts would start munge/mariadb/slurm as system services through
# invoke-rc.d. Those instances would hold the default ports, the /etc keys and /run
# sockets, so we block them with a policy-rc.d ("exit 101" = action forbidden) for the
# duration of the install, unless the machine already has one (docker-style images do).
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_CREATED=0
block_service_starts() {
    if [[ ! -e $POLICY_RC ]]; then
        printf '#!/bin/sh\n# temporary, from slurm_local.sh install\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_CREATED=1
    fi
}
unblock_service_starts() {
    if ((POLICY_RC_CREATED)); then
        rm -f "$POLICY_RC"
        POLICY_RC_CREATED=0
    fi
}

# Belt and braces: if a distribution instance did start anyway (no policy-rc.d honoured),
# stop it through its own pid file, so it cannot collide with ours.
stop_distro_services() {
    local pidfile pid
    for pidfile in /run/munge/munged.pid /run/mysqld/mysqld.pid /run/slurmctld.pid \
        /run/slurmd.pid /run/slurmdbd.pid /run/slurm/slurmctld.pid /run/slurm/slurmd.pid \
        /run/slurm/slurmdbd.pid /var/run/slurmctld.pid /var/run/slurmd.pid; do
        [[ -r $pidfile ]] || continue
        pid=$(<"$pidfile")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            log "stopping distribution service pid $pid ($pidfile)"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${PACKAGES[@]}"
}

cmd_install() {
    if packages_installed; then
        log "packages already installed: ${PACKAGES[*]}"
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "install must run as root"
    block_service_starts
    trap unblock_service_starts EXIT
    # Only refresh the package lists when they are missing or too old to know the
    # packages; a stale list is caught below when the download fails.
    # (captured first: `apt-cache | grep -q` fails under pipefail when grep exits early)
    local policy
    policy=$(apt-cache policy "${PACKAGES[@]}" 2>/dev/null || true)
    if [[ $policy != *"Candidate: "[0-9]* || $policy == *"Candidate: (none)"* ]]; then
        apt-get update -q
    fi
    if ! apt_install; then
        log "install failed, refreshing package lists and retrying"
        apt-get update -q
        apt_install
    fi
    unblock_service_starts
    trap - EXIT
    stop_distro_services
    packages_installed || die "packages still missing after apt-get install"
    log "installed: ${PACKAGES[*]}"
}

# ----------------------------------------------------------------------------- layout

# Sets every path and the settings of one STATE_DIR. Ports are read from ports.env
# when a previous `up` chose them.
init_paths() {
    [[ -n ${1:-} ]] || die "STATE_DIR is required"
    SPAWNED_PID=""
    mkdir -p "$1"
    STATE_DIR=$(cd "$1" && pwd -P)
    CONF=$STATE_DIR/slurm.conf
    DBD_CONF=$STATE_DIR/slurmdbd.conf
    ENV_SH=$STATE_DIR/env.sh
    PORTS_ENV=$STATE_DIR/ports.env
    LOG_DIR=$STATE_DIR/log
    PID_DIR=$STATE_DIR/run
    MUNGE_DIR=$STATE_DIR/munge
    MUNGE_KEY=$MUNGE_DIR/munge.key
    DB_DIR=$STATE_DIR/mysql
    DB_DATA=$DB_DIR/data
    CTLD_STATE=$STATE_DIR/slurmctld
    NODE_NAME=$(hostname -s)

    # Unix socket paths are limited to 108 bytes. For a long STATE_DIR (pytest's tmp
    # dirs can be long) the sockets and the slurmd spool are reached through a short
    # symlink in /tmp that points into STATE_DIR: the files still live in STATE_DIR.
    if ((${#STATE_DIR} > MAX_SOCKET_BASE)); then
        SHORT_LINK=/tmp/slurm-local-$(printf '%s' "$STATE_DIR" | md5sum | cut -c1-12)
        SOCK_BASE=$SHORT_LINK
    else
        SHORT_LINK=""
        SOCK_BASE=$STATE_DIR
    fi
    MUNGE_SOCKET=$SOCK_BASE/munge/munge.socket.2
    DB_SOCKET=$SOCK_BASE/mysql/mysqld.sock
    SPOOL_DIR=$SOCK_BASE/slurmd

    MUNGED_PID=$PID_DIR/munged.pid
    MARIADB_PID=$PID_DIR/mariadbd.pid
    SLURMDBD_PID=$PID_DIR/slurmdbd.pid
    SLURMCTLD_PID=$PID_DIR/slurmctld.pid
    SLURMD_PID=$PID_DIR/slurmd.pid

    DB_PORT="" DBD_PORT="" CTLD_PORT="" SLURMD_PORT=""
    if [[ -r $PORTS_ENV ]]; then
        # shellcheck source=/dev/null
        source "$PORTS_ENV"
    fi
}

# Serialises up/down on one STATE_DIR (e.g. two pytest workers bringing up the same
# cluster): the second waits, then finds the cluster up. Held on fd 9 until exit.
lock_state_dir() {
    exec 9>"$STATE_DIR/.lock"
    flock -w "$((START_TIMEOUT * 3))" 9 || die "could not lock $STATE_DIR/.lock"
}

make_short_link() {
    [[ -n $SHORT_LINK ]] || return 0
    ln -sfn "$STATE_DIR" "$SHORT_LINK.tmp.$$"
    mv -T "$SHORT_LINK.tmp.$$" "$SHORT_LINK"
}

remove_short_link() {
    [[ -n $SHORT_LINK && -L $SHORT_LINK ]] || return 0
    [[ $(readlink "$SHORT_LINK") == "$STATE_DIR" ]] && rm -f "$SHORT_LINK"
    return 0
}

# ----------------------------------------------------------------------------- processes

# True when the process exists and is not a zombie. Zombies matter here: daemons are
# reparented to pid 1, which on this kind of VM reaps them only every second or two,
# so `kill -0` would report a stopped daemon alive for that long.
pid_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # fields after "pid (comm) "; comm may contain spaces
    [[ ${stat%% *} != [ZX] ]]
}

# Pid of a daemon from its pid file when that process is alive and is the expected
# program (guards against pid reuse after a reboot or a crash); empty otherwise.
live_pid() {
    local pidfile=$1 name=$2 pid comm
    [[ -r $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name"* ]] || return 1
    pid_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

is_running() { live_pid "$1" "$2" >/dev/null; }

stop_daemon() {
    local pidfile=$1 name=$2 pid waited=0
    if ! pid=$(live_pid "$pidfile" "$name"); then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$pidfile"
}

# Polls a check command until it succeeds or the timeout passes:
#   wait_for WHAT TIMEOUT [--daemon PIDFILE NAME] CHECK...
# With --daemon, gives up early when the daemon has died: neither the process started by
# spawn nor the one in its pid file has been alive for 3 s in a row (a daemonizing
# program's first process exits before its child writes the pid file).
wait_for() {
    local what=$1 timeout=$2
    shift 2
    local pidfile="" name="" dead_since=""
    if [[ ${1:-} == --daemon ]]; then
        pidfile=$2 name=$3
        shift 3
    fi
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            fail_start "timed out after ${timeout}s waiting for $what"
        fi
        if [[ -n $pidfile ]]; then
            if is_running "$pidfile" "$name" || kill -0 "$SPAWNED_PID" 2>/dev/null; then
                dead_since=""
            elif [[ -z $dead_since ]]; then
                dead_since=$SECONDS
            elif ((SECONDS - dead_since >= 3)); then
                fail_start "$name exited while waiting for $what"
            fi
        fi
        sleep 0.5
    done
}

fail_start() {
    log "ERROR: $*"
    dump_logs
    exit 1
}

dump_logs() {
    local f
    for f in "$LOG_DIR"/*.log "$DB_DIR"/mariadbd.err; do
        [[ -s $f ]] || continue
        printf '\n===== last lines of %s =====\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}

# Runs a daemon detached from the caller: own session, stdio to its log. Otherwise a
# caller such as subprocess.run(capture_output=True) would wait forever for the pipes
# a long-lived child still holds, and a Ctrl-C in the caller's terminal would hit it.
spawn() {
    local logfile=$1
    shift
    # 9>&-: the daemon must not inherit (and so hold forever) the STATE_DIR lock.
    setsid "$@" </dev/null >>"$logfile" 2>&1 9>&- &
    SPAWNED_PID=$!
}

# ----------------------------------------------------------------------------- config

# Free TCP ports, searched from a base that depends on STATE_DIR so that two clusters
# started at once do not race for the same ones. Kept in 20000-31999, below Linux's
# ephemeral range (32768+), so an outgoing connection cannot take one first. Chosen
# anew on every start: a port just released may still be in TIME_WAIT.
choose_ports() {
    local base ports
    base=$((20000 + $(printf '%s' "$STATE_DIR" | cksum | cut -d' ' -f1) % 10000))
    if command -v python3 >/dev/null; then
        ports=$(python3 - "$base" <<'EOF'
import socket, sys
base, found, port = int(sys.argv[1]), [], int(sys.argv[1])
while len(found) < 4 and port < base + 2000:
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port))
        found.append(port)
    except OSError:
        pass
    finally:
        s.close()
    port += 1
print(" ".join(map(str, found)))
EOF
        )
    else
        ports="$base $((base + 1)) $((base + 2)) $((base + 3))"
    fi
    read -r DB_PORT DBD_PORT CTLD_PORT SLURMD_PORT <<<"$ports"
    [[ -n $SLURMD_PORT ]] || die "could not find 4 free TCP ports"
    cat >"$PORTS_ENV" <<EOF
DB_PORT=$DB_PORT
DBD_PORT=$DBD_PORT
CTLD_PORT=$CTLD_PORT
SLURMD_PORT=$SLURMD_PORT
EOF
}

# RealMemory must not exceed what slurmd detects, or the node is drained as "Low
# RealMemory". Leave some for the OS.
node_memory_mb() {
    local total_kb
    total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    local mb=$((total_kb / 1024 - 1024))
    ((mb < 1000)) && mb=1000
    printf '%s\n' "$mb"
}

write_configs() {
    local cpus mem db_pass
    cpus=$(nproc)
    mem=$(node_memory_mb)
    if [[ -r $DB_DIR/password ]]; then
        db_pass=$(<"$DB_DIR/password")
    else
        db_pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
        (umask 077 && printf '%s\n' "$db_pass" >"$DB_DIR/password")
    fi

    cat >"$CONF.tmp" <<EOF
# Generated by tests/cluster/slurm_local.sh for $STATE_DIR; rewritten on every 'up'.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE_NAME(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s): shorter for tests.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
# No MTA here; the default /usr/bin/mail is missing and slurmctld logs an error.
MailProg=/bin/true

StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups here (no systemd, cgroup v1 in a VM): track processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks no memory takes the whole node under CR_*_Memory.
DefMemPerCPU=512

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Clients and slurmctld authenticate to slurmdbd with the munge socket named here, NOT
# the one in AuthInfo: without it sacctmgr/sacct try /run/munge/munge.socket.2.
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none

# Short timers so tests do not wait: fast kill, finished jobs leave slurmctld's memory
# soon (sacct still has them), frequent scheduling so array throttles (%N) move on.
KillWait=5
MinJobAge=30
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
SchedulerParameters=sched_interval=2,bf_interval=2
# A node that comes back (slurmd restarted, up/down/up) is usable again at once.
ReturnToService=2
# Jobs may be requeued (scontrol requeue, preemption, node failure).
JobRequeue=1
# Site limits as real clusters set them, small enough for a test to reach: arrays of at
# most $MAX_ARRAY_SIZE tasks, and (enforced through accounting) QOS $FEW_JOBS_QOS allows a
# user $FEW_JOBS queued or running jobs.
MaxArraySize=$MAX_ARRAY_SIZE
AccountingStorageEnforce=limits,qos

NodeName=$NODE_NAME NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"

    # slurmdbd refuses a config readable by others; it must be owned by SlurmUser.
    (
        umask 077
        cat >"$DBD_CONF.tmp" <<EOF
# Generated by tests/cluster/slurm_local.sh for $STATE_DIR; rewritten on every 'up'.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$SLURMDBD_PID
LogFile=$LOG_DIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$DBD_CONF.tmp"
    mv "$DBD_CONF.tmp" "$DBD_CONF"

    # mariadbd runs this at every start: the user slurmdbd logs in with over TCP.
    cat >"$DB_DIR/init.sql" <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$db_pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
    chmod 600 "$DB_DIR/init.sql"

    cat >"$ENV_SH" <<EOF
# Source this to use the test cluster at $STATE_DIR with sbatch, squeue, sacct, ...
export SLURM_CONF=$CONF
EOF
}

# ----------------------------------------------------------------------------- daemons

start_munged() {
    is_running "$MUNGED_PID" munged && return 0
    if [[ ! -s $MUNGE_KEY ]]; then
        # 1024 random bytes, readable only by its owner: munged rejects a weaker key.
        (umask 077 && head -c 1024 /dev/urandom >"$MUNGE_KEY.tmp")
        mv "$MUNGE_KEY.tmp" "$MUNGE_KEY"
    fi
    # munged insists that the key be owned by the user it runs as. It runs as root here
    # (not as "munge"): the munge user could not enter a 0700 STATE_DIR such as pytest's.
    chown root:root "$MUNGE_KEY"
    chmod 400 "$MUNGE_KEY"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    log "starting munged"
    # munged daemonizes itself and writes the pid file. --force: munged wants every
    # directory above its socket to be world-executable, which a 0700 STATE_DIR or
    # pytest's 0700 /tmp/pytest-of-root is not ("Socket is inaccessible"). All clients
    # are root here, so the check only downgrades to a warning.
    spawn "$LOG_DIR/munged.out" munged --force \
        --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$MUNGED_PID" \
        --log-file="$LOG_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
        --num-threads=4
    wait_for "munged" "$START_TIMEOUT" --daemon "$MUNGED_PID" munged munge_works
}

munge_works() {
    munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null
}

start_mariadb() {
    is_running "$MARIADB_PID" mariadbd && return 0
    if [[ ! -d $DB_DATA/mysql ]]; then
        log "initialising the accounting database"
        mkdir -p "$DB_DATA"
        mariadb-install-db --no-defaults --user=root --datadir="$DB_DATA" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG_DIR/mariadb-install-db.log" 2>&1 ||
            fail_start "mariadb-install-db failed (see $LOG_DIR/mariadb-install-db.log)"
    fi
    rm -f "$DB_SOCKET"
    log "starting mariadbd on 127.0.0.1:$DB_PORT"
    # --no-defaults: ignore /etc/mysql (port 3306, /run/mysqld). No binlog: a throwaway
    # test database. Buffer pool, log file and lock wait are the least slurmdbd accepts
    # without logging "Database settings not recommended values" (the pool is only
    # reserved, not used, by a database this small).
    spawn "$DB_DIR/mariadbd.err" mariadbd --no-defaults --user=root \
        --datadir="$DB_DATA" --socket="$DB_SOCKET" --pid-file="$MARIADB_PID" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$DB_DIR/mariadbd.err" --init-file="$DB_DIR/init.sql" \
        --skip-log-bin --innodb-buffer-pool-size=512M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 --max-connections=200
    wait_for "mariadbd" "$START_TIMEOUT" --daemon "$MARIADB_PID" mariadbd db_works
}

db_works() {
    mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$DB_PORT" -u slurm \
        -p"$(<"$DB_DIR/password")" -e 'SELECT 1'
}

start_slurmdbd() {
    is_running "$SLURMDBD_PID" slurmdbd && return 0
    log "starting slurmdbd on 127.0.0.1:$DBD_PORT"
    spawn "$LOG_DIR/slurmdbd.out" slurmdbd
    # The first start creates the tables, which takes a while.
    wait_for "slurmdbd" "$START_TIMEOUT" --daemon "$SLURMDBD_PID" slurmdbd \
        sacctmgr -n -P show cluster format=cluster
}

register_cluster() {
    local clusters
    clusters=$(sacctmgr -n -P show cluster format=cluster)
    if ! grep -qx "$CLUSTER_NAME" <<<"$clusters"; then
        log "registering cluster $CLUSTER_NAME"
        sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
    fi
    if [[ -z $(sacctmgr -n -P show qos "$FEW_JOBS_QOS" format=Name) ]]; then
        log "adding QOS $FEW_JOBS_QOS (MaxSubmitJobsPerUser=$FEW_JOBS) for root"
        sacctmgr -i add qos "$FEW_JOBS_QOS" "MaxSubmitJobsPerUser=$FEW_JOBS" >/dev/null
        sacctmgr -i modify user root set "qos+=$FEW_JOBS_QOS" >/dev/null
    fi
}

start_slurmctld() {
    is_running "$SLURMCTLD_PID" slurmctld && return 0
    mkdir -p "$CTLD_STATE"
    log "starting slurmctld on port $CTLD_PORT"
    # -i: carry on if the saved state of a previous run cannot be read.
    spawn "$LOG_DIR/slurmctld.out" slurmctld -i
    wait_for "slurmctld" "$START_TIMEOUT" --daemon "$SLURMCTLD_PID" slurmctld \
        scontrol ping
}

start_slurmd() {
    is_running "$SLURMD_PID" slurmd && return 0
    mkdir -p "$SPOOL_DIR"
    log "starting slurmd on port $SLURMD_PORT"
    spawn "$LOG_DIR/slurmd.out" slurmd
    wait_for "node $NODE_NAME to be idle" "$START_TIMEOUT" --daemon "$SLURMD_PID" slurmd \
        node_idle
}

node_state() { sinfo -h -n "$NODE_NAME" -o '%T' 2>/dev/null | head -n1; }

# A node left drained or down by an earlier run is resumed once it has registered.
node_idle() {
    local state
    state=$(node_state)
    case $state in
    idle | mixed | allocated | completing) return 0 ;;
    *drain* | down*)
        if is_running "$SLURMD_PID" slurmd; then
            scontrol update nodename="$NODE_NAME" state=resume >/dev/null 2>&1 || true
        fi
        return 1
        ;;
    *) return 1 ;;
    esac
}

accounting_works() { sacct -n -X -a -S now-1hours --format=JobID >/dev/null; }

all_running() {
    is_running "$MUNGED_PID" munged && is_running "$MARIADB_PID" mariadbd &&
        is_running "$SLURMDBD_PID" slurmdbd && is_running "$SLURMCTLD_PID" slurmctld &&
        is_running "$SLURMD_PID" slurmd
}

any_running() {
    is_running "$MUNGED_PID" munged || is_running "$MARIADB_PID" mariadbd ||
        is_running "$SLURMDBD_PID" slurmdbd || is_running "$SLURMCTLD_PID" slurmctld ||
        is_running "$SLURMD_PID" slurmd
}

# ----------------------------------------------------------------------------- commands

cmd_up() {
    init_paths "${1:-}"
    [[ $EUID -eq 0 ]] || die "up must run as root (SlurmUser=root)"
    lock_state_dir
    packages_installed || die "packages missing: run '$0 install' first"
    export SLURM_CONF=$CONF
    if all_running && [[ -r $CONF ]] && sinfo -h >/dev/null 2>&1; then
        log "already up: source $ENV_SH"
        return 0
    fi
    # A half-started cluster (a crash, an interrupted 'up') is restarted from scratch;
    # its saved state and database are kept.
    if any_running; then
        log "cluster partially running, restarting it"
        stop_all
    fi
    mkdir -p "$LOG_DIR" "$PID_DIR" "$MUNGE_DIR" "$DB_DIR" "$CTLD_STATE"
    chmod 700 "$MUNGE_DIR" "$DB_DIR"
    make_short_link
    mkdir -p "$SPOOL_DIR"
    choose_ports
    write_configs
    local t0=$SECONDS
    start_munged
    start_mariadb
    start_slurmdbd
    register_cluster
    start_slurmctld
    start_slurmd
    wait_for "sacct" "$START_TIMEOUT" accounting_works
    log "up in $((SECONDS - t0))s: source $ENV_SH"
}

# Jobs still running when slurmd stops would live on (slurmstepd is detached), so
# cancel them first and wait, bounded, for them to end.
cancel_jobs() {
    is_running "$SLURMCTLD_PID" slurmctld || return 0
    local ids
    ids=$(timeout 15 squeue -h -o '%A' 2>/dev/null || true)
    [[ -n $ids ]] || return 0
    log "cancelling jobs: ${ids//$'\n'/ }"
    # shellcheck disable=SC2086
    timeout 15 scancel $ids 2>/dev/null || true
    # Without slurmd nothing will ever report the jobs' end: do not wait for it.
    is_running "$SLURMD_PID" slurmd || return 0
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while ((SECONDS < deadline)); do
        ids=$(timeout 15 squeue -h -o '%A' 2>/dev/null || true)
        [[ -z $ids ]] && return 0
        sleep 0.5
    done
    log "jobs still listed after ${STOP_TIMEOUT}s: ${ids//$'\n'/ }"
}

# Last resort for processes of this cluster's jobs that outlived slurmd: only those whose
# environment names this cluster's slurm.conf and that are slurmstepd or a job's task.
kill_leftover_job_processes() {
    local proc pid comm env
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        env=$(tr '\0' '\n' 2>/dev/null <"$proc/environ") || continue
        grep -qx "SLURM_CONF=$CONF" <<<"$env" || continue
        comm=$(cat "$proc/comm" 2>/dev/null) || continue
        if [[ $comm == slurmstepd ]] || grep -q '^SLURM_JOB_ID=' <<<"$env"; then
            log "killing leftover job process $pid ($comm)"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

stop_all() {
    export SLURM_CONF=$CONF
    cancel_jobs
    stop_daemon "$SLURMD_PID" slurmd
    kill_leftover_job_processes
    stop_daemon "$SLURMCTLD_PID" slurmctld
    stop_daemon "$SLURMDBD_PID" slurmdbd
    stop_daemon "$MARIADB_PID" mariadbd
    stop_daemon "$MUNGED_PID" munged
}

cmd_down() {
    [[ -n ${1:-} ]] || die "STATE_DIR is required"
    if [[ ! -d $1 ]]; then
        log "nothing to stop: $1 does not exist"
        return 0
    fi
    init_paths "$1"
    lock_state_dir
    stop_all
    remove_short_link
    log "down"
}

cmd_status() {
    [[ -n ${1:-} && -d $1 ]] || {
        log "down (no state dir)"
        return 1
    }
    init_paths "$1"
    export SLURM_CONF=$CONF
    local ok=0 pair
    for pair in "$MUNGED_PID:munged" "$MARIADB_PID:mariadbd" "$SLURMDBD_PID:slurmdbd" \
        "$SLURMCTLD_PID:slurmctld" "$SLURMD_PID:slurmd"; do
        if is_running "${pair%%:*}" "${pair##*:}"; then
            log "${pair##*:}: running (pid $(live_pid "${pair%%:*}" "${pair##*:}"))"
        else
            log "${pair##*:}: not running"
            ok=1
        fi
    done
    # (no slurmctld: sinfo would only retry until its timeout)
    if is_running "$SLURMCTLD_PID" slurmctld && [[ -r $CONF ]] &&
        timeout 15 sinfo -h >/dev/null 2>&1; then
        log "sinfo answers: node $NODE_NAME is $(node_state)"
    else
        log "sinfo does not answer"
        ok=1
    fi
    return $ok
}

# One daemon down and up again while the others (and the jobs) go on: a scheduler outage.
cmd_daemon() {
    local action=$1 name=${3:-}
    init_paths "${2:-}"
    export SLURM_CONF=$CONF
    case $name in
    slurmdbd) local pidfile=$SLURMDBD_PID ;;
    slurmctld) local pidfile=$SLURMCTLD_PID ;;
    *) die "daemon must be slurmdbd or slurmctld, not '$name'" ;;
    esac
    if [[ $action == stop ]]; then
        stop_daemon "$pidfile" "$name"
    else
        "start_$name"
    fi
}

# Jobs run as whoever submits them; an ordinary user needs the munge socket (its folder is
# 0700 for root-only clusters) and an association, which AccountingStorageEnforce demands.
cmd_add_user() {
    local user=${2:-}
    init_paths "${1:-}"
    export SLURM_CONF=$CONF
    if [[ -z $user ]] || ! id "$user" >/dev/null 2>&1; then die "add-user needs an existing user, not '$user'"; fi
    runuser -u "$user" -- test -r "$CONF" || die "$user cannot read $CONF: use a STATE_DIR others can reach"
    chmod 755 "$MUNGE_DIR"
    if [[ -z $(sacctmgr -n -P show user "$user" format=User) ]]; then
        log "adding user $user to account root"
        sacctmgr -i add user "$user" account=root >/dev/null
    fi
}

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
    install) cmd_install ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    stop-daemon) cmd_daemon stop "$@" ;;
    start-daemon) cmd_daemon start "$@" ;;
    add-user) cmd_add_user "$@" ;;
    *) usage ;;
    esac
}

main "$@"
