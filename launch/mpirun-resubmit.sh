#!/usr/bin/env bash
# Runs harness under mpirun until training is done, restarting it from its newest checkpoint
# whenever it stops with "checkpointed, resubmit me" (exit 75): the Slurm recipe's requeue loop
# for machines and clusters without Slurm.
#
#   bash launch/mpirun-resubmit.sh CONFIG [--set KEY=VALUE]...
#   RANKS=4 MAX_ATTEMPTS=5 bash launch/mpirun-resubmit.sh launch/mlp.yaml --set run.dir=runs/a
#
# Each attempt runs `mpirun -np RANKS HARNESS train CONFIG --resume auto ARGS...`.
#   RANKS         MPI ranks [one per GPU (nvidia-smi -L), at least 2]
#   HARNESS       harness binary [build/trainer/harness of this checkout]
#   MPIRUN        mpirun [mpirun]
#   MPIRUN_ARGS   more mpirun options, split at spaces (e.g. "--hostfile hosts")
#   MAX_ATTEMPTS  runs in all, the first included [10]
#   RETRY_DELAY   seconds between attempts [2]
#
# Signals: SIGTERM, SIGINT (Ctrl-C), SIGHUP or SIGUSR1 to this script ask the ranks to
# checkpoint at the next step and stop (SIGUSR1 to mpirun, which forwards it to every rank;
# mpirun answers SIGTERM and SIGINT by killing its ranks, so they are not passed on as they
# are); the script then exits 75 without restarting.  A second SIGTERM or SIGINT stops at once
# (SIGTERM to mpirun).  mpirun runs in its own session, so Ctrl-C reaches only this script.
# A restart happens only when harness exited 75 without this script being signalled: someone
# signalled the ranks themselves (a node agent, a preemption hook, kill -USR1 on a rank).
#
# Exit status: 0 done; 75 checkpointed and stopped (signalled, or MAX_ATTEMPTS reached): run
# the same command again to continue; anything else: the failing attempt's status (1: error).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit $(($# < 1))
fi
config=$1
shift
harness=${HARNESS:-$here/../build/trainer/harness}
[ -x "$harness" ] || { echo "mpirun-resubmit: no harness binary at $harness (set HARNESS=...)" >&2; exit 1; }
if [ -z "${RANKS:-}" ]; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  RANKS=$((gpus > 1 ? gpus : 2))
fi
max_attempts=${MAX_ATTEMPTS:-10}
read -r -a mpirun_args <<<"${MPIRUN_ARGS:-}"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
cmd=("${MPIRUN:-mpirun}" -np "$RANKS" "${mpirun_args[@]}" "$harness" train "$config" --resume auto "$@")

log() { echo "[$(date +%FT%T)] mpirun-resubmit: $*" >&2; }

mpirun_pid=""
stopping=""
on_signal() {
  local sig=$1
  if [ -n "$stopping" ] && { [ "$sig" = TERM ] || [ "$sig" = INT ]; }; then
    log "second SIG$sig: stopping now (SIGTERM to mpirun)"
    [ -n "$mpirun_pid" ] && kill -TERM "$mpirun_pid" 2>/dev/null
    return
  fi
  stopping=$sig
  log "got SIG$sig: asking the ranks to checkpoint and stop (SIGUSR1 to mpirun)"
  [ -n "$mpirun_pid" ] && kill -USR1 "$mpirun_pid" 2>/dev/null
}
for sig in TERM INT HUP USR1; do
  # shellcheck disable=SC2064  # $sig is meant to expand now
  trap "on_signal $sig" "$sig"
done

status=1
for ((attempt = 1; attempt <= max_attempts; attempt++)); do
  log "attempt $attempt/$max_attempts: ${cmd[*]}"
  # Its own session: a terminal's Ctrl-C goes to this script alone, which turns it into a
  # checkpoint.  (A background child of a non-interactive shell is not a process group leader,
  # so setsid execs mpirun in place and $! is mpirun.)
  setsid "${cmd[@]}" &
  mpirun_pid=$!
  while :; do
    wait "$mpirun_pid"
    status=$?
    # wait returns early when a trapped signal arrives; bash keeps a finished child's status.
    if ! kill -0 "$mpirun_pid" 2>/dev/null; then
      wait "$mpirun_pid"
      status=$?
      break
    fi
  done
  mpirun_pid=""
  case $status in
    0)
      log "training finished"
      exit 0 ;;
    75)
      if [ -n "$stopping" ]; then
        log "checkpointed and stopped on SIG$stopping: run the same command again to continue"
        exit 75
      fi
      log "harness checkpointed and asks to be restarted (exit 75)" ;;
    *)
      log "mpirun exited with status $status${stopping:+ after SIG$stopping}"
      exit "$status" ;;
  esac
  if ((attempt < max_attempts)); then
    sleep "${RETRY_DELAY:-2}" &
    wait $! 2>/dev/null
    if [ -n "$stopping" ]; then
      log "stopped on SIG$stopping between attempts: the newest checkpoint is where the next run starts"
      exit 75
    fi
  fi
done
log "gave up after $max_attempts attempts; the newest checkpoint is where the next run starts"
exit 75
