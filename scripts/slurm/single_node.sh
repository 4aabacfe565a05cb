#!/usr/bin/env bash
# A one-machine Slurm cluster for the tests and CI: installs Debian's packages if they are
# missing, writes a minimal slurm.conf, and starts munged, slurmctld and slurmd.
#
#   bash scripts/slurm/single_node.sh              install if needed, then start
#   bash scripts/slurm/single_node.sh --no-install start only; exit 3 if Slurm is not installed
#
# Safe to run again: what already runs is left running. Needs root (or sudo) and Debian or
# Ubuntu's apt. A machine where Slurm already answers and whose slurm.conf is not this
# script's is left alone: that is someone's real cluster.
set -euo pipefail

MARKER="# Written by movingline scripts/slurm/single_node.sh"
CONF=/etc/slurm/slurm.conf
KEY=/etc/munge/munge.key
PACKAGES="slurmd slurmctld slurm-client munge"
# srun --resv-ports hands each step ports from this range (SLURM_STEP_RESV_PORTS).
RESV_PORTS=12000-12999
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm

say() { echo "single_node.sh: $*" >&2; }
die() { say "$*"; exit "${2:-1}"; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

installed() {
    command -v srun >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v munged >/dev/null
}

install_packages() {
    command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install it ($PACKAGES)"
    say "installing $PACKAGES"
    $sudo apt-get update -qq
    # The packages' own start scripts need systemd; without it they fail harmlessly, and this
    # script starts the daemons itself below.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
}

# The running node: its short host name and core count, as slurmd itself finds them.
write_conf() {
    local host cpus wanted
    host=$(hostname -s)
    cpus=$(nproc)
    wanted=$(cat <<CONF
$MARKER
ClusterName=movingline
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# How long a requeued job waits before it starts again (the default is 120 s); short here so
# that tests/test_slurm.py sees a requeued job run without forcing its start time.
AuthInfo=cred_expire=20
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
MpiParams=ports=$RESV_PORTS
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
    if [ -e "$CONF" ] && ! head -n 1 "$CONF" | grep -qxF "$MARKER"; then
        die "$CONF exists and was not written by this script; not replacing it" 2
    fi
    if [ "$(cat "$CONF" 2>/dev/null)" != "$wanted" ]; then
        $sudo mkdir -p "$(dirname "$CONF")"
        echo "$wanted" | $sudo tee "$CONF" >/dev/null
        CONF_CHANGED=1
    fi
    $sudo mkdir -p "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
}

running() {  # pid file
    [ -s "$1" ] && $sudo kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if [ ! -s "$KEY" ]; then
        $sudo mkdir -p "$(dirname "$KEY")"
        $sudo dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
    fi
    $sudo chown munge:munge "$KEY" && $sudo chmod 0400 "$KEY"
    $sudo mkdir -p /run/munge && $sudo chown munge:munge /run/munge
    say "starting munged"
    $sudo runuser -u munge -- munged
    munge -n | unmunge >/dev/null || die "munged started but does not answer (munge -n | unmunge)"
}

start_slurm() {
    if running /run/slurmctld.pid; then
        if [ "${CONF_CHANGED:-0}" = 1 ]; then $sudo scontrol reconfigure; fi
    else
        say "starting slurmctld"
        $sudo slurmctld
    fi
    if ! running /run/slurmd.pid; then
        say "starting slurmd"
        $sudo slurmd
    fi
}

# Waits until the node takes jobs; a node left down by an earlier run is resumed.
wait_for_node() {
    local host state deadline=$((SECONDS + 60))
    host=$(hostname -s)
    while [ $SECONDS -lt $deadline ]; do
        state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
        case "$state" in
            idle | mix | alloc | comp) return ;;
            down* | drain*) $sudo scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "node $host did not become idle within 60 s (sinfo says '${state:-nothing}'; see $LOG_DIR)"
}

install=1
for arg in "$@"; do
    case "$arg" in
        --no-install) install=0 ;;
        *) die "unknown option $arg (option: --no-install)" 2 ;;
    esac
done

if ! installed; then
    [ "$install" = 1 ] || die "Slurm is not installed ($PACKAGES)" 3
    install_packages
fi
if [ -e "$CONF" ] && ! head -n 1 "$CONF" | grep -qxF "$MARKER" && sinfo -h >/dev/null 2>&1; then
    say "a Slurm cluster already answers here ($CONF is not this script's); leaving it alone"
    exit 0
fi
write_conf
start_munge
start_slurm
wait_for_node
say "Slurm is up: $(sinfo -h -o '%P %D node(s) %c CPUs %t')"
