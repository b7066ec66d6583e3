# shellcheck shell=bash
# Sourced by the cluster tests: a cluster of emulated nodes on this one machine.
#
#   cluster_can_run                 exit 77 (skip) unless we are root and may make namespaces
#   cluster_up DIR N                N nodes n1..nN (10.77.0.1..N on one bridge); DIR is the
#                                   cluster's shared directory (every node sees it)
#   node_run NODE CMD...            runs CMD on NODE (its network, hostname and mounts)
#   node_bg NODE LOG CMD...         the same in the background, output to LOG; pid in NODE_BG_PID
#   node_power_off NODE             link down and every process of the node killed (the anchor,
#                                   which holds the namespaces, stays: node_link_up revives it)
#   node_link_down/up NODE          the node's cable out / back in (a network partition)
#   node_bytes NODE                 bytes received + sent on the node's eth0 so far
#   cluster_down                    kills every process in our namespaces and the anchors
#   RSH_AGENT                       for mpirun --mca plm_rsh_agent: enters a node instead of ssh
#
# A node is a long-lived "anchor" process (sleep) in new network, UTS and mount namespaces: its
# own hostname (Open MPI and Slurm tell nodes apart by it), its own loopback and eth0, a
# private /tmp and /dev/shm (Open MPI's session directory and Slurm's PMIx files have the same
# names on every node), a fresh /sys (so /sys/class/net is the node's), the host's cgroup tree
# bound back in (slurmd wants it), and an /etc/hosts naming every node.  Everything else of the
# file system - the build tree, DIR - is the host's, shared by all nodes.  A second anchor
# holds the bridge's network namespace; each node's eth0 is one end of a veth pair whose other
# end (vN) is on the bridge.  Addresses exist only inside these namespaces and there is no
# route out: nothing the tests send leaves them.  No PID namespace: pids are global, so the
# test can kill anything by pid, and a launcher in one node can enter another (nsenter).
#
# Cleanup is by pid and by namespace: every process whose network namespace is one of ours is
# killed (so are the orted, slurmd, munged and ranks started inside), then the anchors; the
# namespaces vanish with their last process.

CLUSTER_SHARED=""
CLUSTER_NODES=()        # n1 n2 ...
declare -A NODE_PID     # node -> anchor pid
BRIDGE_PID=""
CLUSTER_NET=10.77.0

cluster_skip() { echo "SKIP: $*" >&2; exit 77; }

cluster_can_run() {
  [ "$(id -u)" -eq 0 ] || cluster_skip "needs root to make network namespaces"
  command -v ip >/dev/null || cluster_skip "needs iproute2 (ip)"
  command -v nsenter >/dev/null && command -v unshare >/dev/null || cluster_skip "needs util-linux (nsenter, unshare)"
  unshare --net --uts --mount true 2>/dev/null || cluster_skip "this machine does not allow new namespaces (unshare --net --uts --mount)"
  ip link add hxprobe0 type bridge 2>/dev/null && ip link del hxprobe0 2>/dev/null || true
}

# The anchor: sets up the node's private mounts, then sleeps holding the namespaces.  It
# reports readiness by creating DIR/nodes/NODE.ready.
anchor_script() {
  cat <<'EOF'
set -e
node=$1 dir=$2
shift 2   # then: the folders under /tmp that must stay visible (the checkout, the shared dir)
hostname "$node"
mount --make-rprivate /
# The node's own /tmp hides the host's, and with it a checkout or build that lives under /tmp
# (CI clones anywhere): hold the host's /tmp on /mnt (this namespace only), mount the private
# tmpfs, then bind each kept folder back at its own path.
mount --bind /tmp /mnt
mount -t tmpfs -o mode=1777 tmpfs /tmp
for keep in "$@"; do
  mkdir -p "$keep"
  mount --bind "/mnt/${keep#/tmp/}" "$keep"
done
umount -l /mnt
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# a /sys of this network namespace (ip netns exec does the same), the host's cgroups in it
mkdir -p "/tmp/.hostcg"
mount --rbind /sys/fs/cgroup /tmp/.hostcg 2>/dev/null || true
mount -t sysfs sysfs /sys 2>/dev/null && mount --rbind /tmp/.hostcg /sys/fs/cgroup 2>/dev/null || true
mount --bind "$dir/hosts" /etc/hosts
touch "$dir/nodes/$node.ready"
exec sleep 1000000
EOF
}

cluster_up() {
  CLUSTER_SHARED=$1
  local n=$2 i node t0
  mkdir -p "$CLUSTER_SHARED/nodes"
  rm -f "$CLUSTER_SHARED"/nodes/*
  {
    echo "127.0.0.1 localhost"
    for ((i = 1; i <= n; i++)); do echo "$CLUSTER_NET.$i n$i"; done
  } >"$CLUSTER_SHARED/hosts"
  anchor_script >"$CLUSTER_SHARED/anchor.sh"
  # folders under /tmp the nodes must still see: the top folder under /tmp of the shared dir,
  # of this checkout and of anything in CLUSTER_KEEP (absolute paths, space-separated)
  local keep=() p rest top
  for p in "$(cd "$CLUSTER_SHARED" && pwd -P)" "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)" \
           ${CLUSTER_KEEP:-}; do
    case $p in
      /tmp/?*) rest=${p#/tmp/}; top=/tmp/${rest%%/*}
               [[ " ${keep[*]} " == *" $top "* ]] || keep+=("$top") ;;
    esac
  done
  # the bridge's namespace
  unshare --net sleep 1000000 &
  BRIDGE_PID=$!
  for ((i = 1; i <= n; i++)); do
    node=n$i
    unshare --net --uts --mount bash "$CLUSTER_SHARED/anchor.sh" "$node" "$CLUSTER_SHARED" \
      "${keep[@]}" >"$CLUSTER_SHARED/nodes/$node.anchor.log" 2>&1 &
    NODE_PID[$node]=$!
    CLUSTER_NODES+=("$node")
    echo "${NODE_PID[$node]}" >"$CLUSTER_SHARED/nodes/$node.pid"
  done
  t0=$SECONDS
  for node in "${CLUSTER_NODES[@]}"; do
    until [ -e "$CLUSTER_SHARED/nodes/$node.ready" ]; do
      if ! kill -0 "${NODE_PID[$node]}" 2>/dev/null || ((SECONDS - t0 > 20)); then
        cat "$CLUSTER_SHARED/nodes/$node.anchor.log" >&2
        echo "node $node did not come up" >&2
        return 1
      fi
      sleep 0.05
    done
  done
  sleep 0.1   # the anchors exec sleep right after .ready
  nsenter -t "$BRIDGE_PID" -n ip link add br0 type bridge
  nsenter -t "$BRIDGE_PID" -n ip link set br0 up
  i=0
  for node in "${CLUSTER_NODES[@]}"; do
    i=$((i + 1))
    nsenter -t "$BRIDGE_PID" -n ip link add "v$i" type veth peer name eth0 netns "${NODE_PID[$node]}"
    nsenter -t "$BRIDGE_PID" -n ip link set "v$i" master br0 up
    nsenter -t "${NODE_PID[$node]}" -n ip addr add "$CLUSTER_NET.$i/24" dev eth0
    nsenter -t "${NODE_PID[$node]}" -n ip link set lo up
    nsenter -t "${NODE_PID[$node]}" -n ip link set eth0 up
  done
  write_rsh_agent
}

# The rsh agent Open MPI's launcher calls as "AGENT [ssh options] HOST COMMAND...": it drops
# the options and runs COMMAND in HOST's namespaces through a shell, as sshd would.
write_rsh_agent() {
  RSH_AGENT=$CLUSTER_SHARED/rsh-agent
  cat >"$RSH_AGENT" <<EOF
#!/bin/bash
dir=$CLUSTER_SHARED
EOF
  cat >>"$RSH_AGENT" <<'EOF'
while [ $# -gt 0 ]; do
  case $1 in
    -[lpoiFEcmJLRDWw]) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host=$1; shift
pid=$(cat "$dir/nodes/$host.pid" 2>/dev/null) || { echo "rsh-agent: no node $host" >&2; exit 255; }
exec nsenter -t "$pid" -n -u -m -- /bin/sh -c "$*"
EOF
  chmod +x "$RSH_AGENT"
}

node_index() { echo "${1#n}"; }

node_run() {
  local node=$1; shift
  nsenter -t "${NODE_PID[$node]}" -n -u -m -- "$@"
}

NODE_BG_PID=""
node_bg() {
  local node=$1 log=$2; shift 2
  nsenter -t "${NODE_PID[$node]}" -n -u -m -- "$@" >"$log" 2>&1 &
  NODE_BG_PID=$!
}

node_link_down() { nsenter -t "$BRIDGE_PID" -n ip link set "v$(node_index "$1")" down; }
# The cable back in; every node forgets what it learnt of the others' addresses meanwhile
# (failed neighbour entries would delay the next connection).
node_link_up() {
  local node
  nsenter -t "$BRIDGE_PID" -n ip link set "v$(node_index "$1")" up
  for node in "${CLUSTER_NODES[@]}"; do nsenter -t "${NODE_PID[$node]}" -n ip neigh flush dev eth0 2>/dev/null; done
  return 0
}

# Pids of every process in network namespace NETNS (a "net:[...]" link), but not EXCEPT.
netns_pids() {
  local netns=$1 except=${2:-} p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$except" ] && continue
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$netns" ] && echo "$pid"
  done
  return 0
}

node_power_off() {
  local node=$1 ns pids
  node_link_down "$node"
  ns=$(readlink "/proc/${NODE_PID[$node]}/ns/net")
  pids=$(netns_pids "$ns" "${NODE_PID[$node]}")
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  return 0
}

node_bytes() {
  node_run "$1" awk '$1 == "eth0:" {printf "%.0f\n", $2 + $10}' /proc/net/dev
}

cluster_down() {
  local node ns pid pids
  for node in "${CLUSTER_NODES[@]}"; do
    pid=${NODE_PID[$node]:-}
    [ -n "$pid" ] || continue
    ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || continue
    pids=$(netns_pids "$ns" "$pid")
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  done
  for pid in "${NODE_PID[@]}" $BRIDGE_PID; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  NODE_PID=()
  CLUSTER_NODES=()
  BRIDGE_PID=""
}

# Prints the pids of anything still alive in our namespaces (empty = clean); call before
# cluster_down forgets them.
cluster_strays() {
  local node pid ns
  for node in "${CLUSTER_NODES[@]}"; do
    pid=${NODE_PID[$node]:-}
    ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || continue
    netns_pids "$ns" "$pid"
  done
  return 0
}
