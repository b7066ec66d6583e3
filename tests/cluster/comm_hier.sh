# Hierarchical averaging (comm_grads_use_hierarchy) on emulated nodes, at the comm level: the
# bucketed gradient test (tests/comm/test_comm_grads.c: odd sizes, buckets below one element to
# larger than the buffer, every pattern of ready calls, two steps in a row) with
# COMM_TEST_HIERARCHY=1 on 2 nodes x 2 ranks and 3 nodes x 2 ranks: the average within float
# rounding of the one computed in double, the same bits on every rank, the hierarchy in use
# wherever the buffer is not empty (on 3 nodes through a small window, in rounds; on 2 nodes
# with the gradients written straight into the window, COMM_TEST_IN_WINDOW).
#   bash comm_hier.sh HARNESS MPIRUN PYTHON WORKDIR TEST_COMM_GRADS
source "$(dirname "$0")/common.sh"
TEST_GRADS=$5
cluster_up "$WORK/cluster" 3 || fail "the emulated nodes did not come up"
say "nodes up: ${CLUSTER_NODES[*]}"
# the 3-node run with a window of 128 KiB per node: the 100003-float buffers go through it in
# rounds (comm_shm_chunk), each round's pieces all-reduced across the nodes
for hosts in n1:2,n2:2 n1:2,n2:2,n3:2; do
  np=$(( $(tr -cd , <<<"$hosts" | wc -c) * 2 + 2 ))
  window=$(( np == 6 ? 131072 : 1073741824 ))
  inwin=(); ((np == 4)) && inwin=(-x COMM_TEST_IN_WINDOW=1)
  t=$SECONDS
  # shellcheck disable=SC2046
  node_run n1 "$MPIRUN" $(mpi_args) --host "$hosts" -np "$np" -x COMM_TEST_HIERARCHY=1 -x COMM_TEST_WINDOW_BYTES=$window "${inwin[@]}" \
    "$TEST_GRADS" >"$WORK/grads-$np.log" 2>&1 || { tail -30 "$WORK/grads-$np.log" >&2; fail "$hosts: test_comm_grads failed"; }
  grep -q "PASSED.*7 test" "$WORK/grads-$np.log" || { cat "$WORK/grads-$np.log" >&2; fail "$hosts: not every test passed"; }
  say "$hosts: hierarchical gradient averaging correct (window $((window >> 10)) KiB${inwin:+, gradients in it}), same bits on all $np ranks ($((SECONDS - t)) s)"
done
