#!/usr/bin/env bash
# A real single-node Slurm for tests, from Debian's packages (munge, slurmctld, slurmd,
# slurm-client), with no systemd: every daemon runs in the background with all its state in DIR.
#
#   cluster.sh start DIR   starts munged, slurmctld and slurmd; returns once `srun true` works.
#                          Then use it with SLURM_CONF=DIR/slurm.conf. When it fails, it stops
#                          whatever it had started before exiting.
#   cluster.sh stop DIR    cancels every job, stops the daemons by pid (TERM, then KILL), and
#                          kills any step process they left. Safe to run twice.
#
# A start also leaves a watchdog (`cluster.sh watch DIR PID`): should the process that started the
# cluster (its parent, a test) die without stopping it, killed at its timeout say, the watchdog
# stops it. It ends by itself once DIR is gone.
#
# Must run as root (Slurm's daemons here run as root; so does CI). Settings and gotchas:
# see the project's notes on a single-node Slurm inside a test.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 || ($# -eq 3 && $1 == watch) ]] || usage
cmd=$1
dir=$(realpath -m "$2")
conf=$dir/slurm.conf
node=orqnode

# Stray SLURM_* variables (CI inside a real Slurm job) break srun: keep only ours.
while read -r var; do unset "$var"; done < <(env | sed -n 's/^\(SLURM_[A-Z_]*\)=.*/\1/p')
export SLURM_CONF=$conf

alive() {  # a zombie counts as dead: PID 1 here may reap slowly
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $state != Z ]]
}

stop_pid() {  # TERM, up to 5 s, then KILL
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

start() {
  for tool in munged slurmctld slurmd srun scontrol; do
    command -v "$tool" >/dev/null ||
      { echo "cluster.sh: $tool not found (scripts/setup.sh installs Slurm and munge)" >&2; exit 3; }
  done
  mkdir -p "$dir"/{munge,state,spool,log}
  # munged refuses a socket directory that others cannot traverse.
  chmod 755 "$dir" "$dir/munge"
  [[ -f $dir/munge/munge.key ]] || { head -c 1024 /dev/urandom >"$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"; }
  : >"$dir/plugstack.conf"
  local cpus
  cpus=$(nproc)
  ((cpus < 4)) && cpus=4  # room for a few single-CPU steps side by side
  cat >"$conf" <<EOF
ClusterName=orqtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=2
InactiveLimit=15
PlugStackConfig=$dir/plugstack.conf
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  setsid munged -F --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munge.seed" </dev/null >"$dir/log/munged.out" 2>&1 &
  echo $! >"$dir/munged.pids"
  for i in $(seq 100); do [[ -S $dir/munge/munge.socket ]] && break; sleep 0.05; done
  setsid slurmctld -D -f "$conf" </dev/null >"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.pids"
  setsid slurmd -D -N "$node" -f "$conf" </dev/null >"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.pids"
  setsid bash "$0" watch "$dir" "$PPID" </dev/null >/dev/null 2>&1 &
  local deadline=$((SECONDS + 60))
  until timeout 10 srun -N1 -n1 true >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "cluster.sh: Slurm did not run 'srun true' within 60 s; its logs:" >&2
      tail -n 20 "$dir"/log/*.log "$dir"/log/*.out >&2 || true
      exit 3
    fi
    scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    sleep 0.2
  done
}

stop() {
  [[ -f $conf ]] || return 0
  timeout 10 scancel --full --signal=KILL --user="$(id -un)" >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)) && [[ -n $(timeout 5 squeue -h -o %i 2>/dev/null) ]]; do sleep 0.2; done
  for daemon in slurmd slurmctld munged; do
    [[ -f $dir/$daemon.pids ]] && stop_pid "$(cat "$dir/$daemon.pids")"
    rm -f "$dir/$daemon.pids"
  done
  # Step daemons detach from slurmd; theirs is the spool directory of this cluster.
  local pid
  for pid in $(pgrep -x slurmstepd || true); do
    if ls -l "/proc/$pid/fd" 2>/dev/null | grep -q -- "$dir/"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

watch() {  # until DIR is gone (stopped and removed) or its owner died without stopping it
  local owner=$1
  while [[ -f $conf ]] && alive "$owner"; do sleep 1; done
  [[ -f $conf ]] && stop
  return 0
}

case $cmd in
  # A start that fails (a daemon that will not come up, the deadline) stops what it started.
  start) trap 'rc=$?; ((rc == 0)) || stop' EXIT; start ;;
  stop) stop ;;
  watch) watch "$3" ;;
  *) usage ;;
esac
