# shellcheck shell=bash
# Sourced by the cluster tests: arguments, the emulated cluster, mpirun across its nodes.
#   bash TEST.sh HARNESS MPIRUN PYTHON WORKDIR          (exit 77: skipped)
set -euo pipefail
HARNESS=$1 MPIRUN=$2 PY=$3 WORK=$4
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/cluster.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
T0=$SECONDS
say() { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cluster_can_run
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
HARNESS=$(cd "$(dirname "$HARNESS")" && pwd)/$(basename "$HARNESS")
finish() {
  local rc=$? left
  trap - EXIT INT TERM
  left=$(cluster_strays)
  cluster_down
  if [ -n "$left" ]; then
    echo "cleaned up processes left in the nodes: $(echo $left)" >&2
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 1' INT TERM

[ -f "$WORK/fashion-mnist/train.h5" ] ||
  "$HARNESS" convert fashion-mnist --src /usr/share/datasets/fashion-mnist --out "$WORK/fashion-mnist" >/dev/null

# mpirun's options across the nodes: the rsh agent instead of ssh, TCP on eth0 between nodes
# (shared memory inside one), and a launcher that notices a lost daemon in seconds: its TCP
# keepalive (Open MPI's default waits 300 s + 9 x 20 s; here 9 to 14 s after the fault, so
# always after harness's heartbeat, 5 s, and the ranks end with harness's report), and no abort of its own on a rank's
# non-zero exit (harness's ranks end the job themselves: MPI_Abort, or the heartbeat) - an
# abort sends the lost daemon a message, and a connection with data in flight is not probed
# by keepalives but retried for the kernel's tcp_retries2 (about 15 minutes).
mpi_args() {
  echo --mca plm_rsh_agent "$RSH_AGENT" --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_if_include eth0 --mca btl_tcp_if_include eth0 --mca btl tcp,vader,self \
    --mca btl_vader_single_copy_mechanism none \
    --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 3 --mca oob_tcp_keepalive_probes 3 \
    --mca orte_abort_on_non_zero_status 0
}
