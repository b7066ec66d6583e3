# shellcheck shell=bash
# The slurm.conf lines that the two test clusters share (tests/slurm/slurm_cluster.sh: one node
# on loopback; tests/cluster/slurm_nodes.sh: emulated nodes): authentication through the
# cluster's own munged, root daemons, no cgroups, accounting or mail, and how jobs are
# scheduled, killed and requeued.  Each writer adds its own host names, ports, paths and nodes.
#
#   slurm_conf_policy MUNGE_SOCKET    (prints the lines)
slurm_conf_policy() {
  cat <<CONF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$1,cred_expire=10
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
JobRequeue=1
# seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or preempted: harness
# needs them to write its checkpoint
KillWait=15
MinJobAge=600
InactiveLimit=0
ReturnToService=2
MailProg=/bin/true
CONF
}
