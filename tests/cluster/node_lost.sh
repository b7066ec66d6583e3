# A lost node is found in seconds and named, and nothing hangs.  A 4-rank job (2 ranks on each
# of n1 and n2, mpirun on n1) trains; past its first checkpoints one fault hits it:
#   power  n2 loses power: its link goes down and every process on it is killed
#   cut    n2's cable is pulled (a network partition): its processes live on, cut off
#   power0 n1, rank 0's node and mpirun's, loses power: n2's ranks must end on their own
# With the default settings (comm.heartbeat_s 5), every surviving rank must end within 10 s of
# the fault with exit status 76 ("a node was lost"), its output naming the lost node, its
# ranks and the step; mpirun must end too (its TCP keepalive, set in common.sh); the newest
# checkpoint must verify (a one-rank --resume auto starts from it).  Each fault
# CLUSTER_FAULT_REPS times (default 1, to keep the label quick; 3 for the medians printed).
# Then the heartbeat's cost: the step time with comm.heartbeat_s=0 vs 5.
source "$(dirname "$0")/common.sh"
cluster_up "$WORK/cluster" 2 || fail "the emulated nodes did not come up"
say "nodes up: ${CLUSTER_NODES[*]}"
REPS=${CLUSTER_FAULT_REPS:-1}
common=(--set data.train="$WORK/fashion-mnist/train.h5" --set data.test="" --set train.steps=1000000
        --set train.batch_size=64 --set log.every=10 --set log.progress=false --set checkpoint.every=20
        --set checkpoint.keep=3)
now() { date +%s.%N; }
last_step() { sed -n 's/.*"event":"train","step":\([0-9]*\).*/\1/p' "$1" 2>/dev/null | tail -1; }

# one_fault KIND DIR: prints "ranks_end_s mpirun_end_s"
one_fault() {
  local kind=$1 D=$2 mp t_fault s t
  rm -rf "$D"
  mkdir -p "$D/rc"
  # shellcheck disable=SC2046,SC2016
  node_bg n1 "$D/mpirun.log" "$MPIRUN" $(mpi_args) --host n1:2,n2:2 -np 4 --output-filename "$D/out" \
    sh -c '"$0" "$@"; rc=$?; echo "$rc $(date +%s.%N)" >"'"$D"'/rc/$OMPI_COMM_WORLD_RANK"; exit $rc' \
    "$HARNESS" train "${common[@]}" --set run.dir="$D/run"
  mp=$NODE_BG_PID
  t=$SECONDS
  until s=$(last_step "$D/run/metrics.jsonl") && [ -n "$s" ] && ((s >= 50)); do
    kill -0 "$mp" 2>/dev/null || { tail -20 "$D/mpirun.log" >&2; fail "$kind: the job ended before the fault"; }
    if ((SECONDS - t >= 60)); then
      for n in n1 n2; do echo "processes on $n:"; ps -o pid,stat,args -p "$(netns_pids "$(readlink /proc/${NODE_PID[$n]}/ns/net)" | tr '\n' , | sed 's/,$//')"; done >&2
      tail -20 "$D/mpirun.log" >&2
      fail "$kind: the job did not reach step 50"
    fi
    sleep 0.1
  done
  # a heartbeat interval more, so that the lost node's last heartbeat carries a step (an idle
  # machine reaches step 50 within the first interval)
  sleep 1.5
  t_fault=$(now)
  case $kind in
    power) node_power_off n2 ;;
    cut) node_link_down n2 ;;
    power0) node_power_off n1 ;;
  esac
  t=$SECONDS
  while kill -0 "$mp" 2>/dev/null && ((SECONDS - t < 30)); do sleep 0.1; done
  local t_mpirun
  t_mpirun=$(now)
  if kill -0 "$mp" 2>/dev/null; then
    kill -KILL "$mp" 2>/dev/null
    t_mpirun=hang
  fi
  wait "$mp" 2>/dev/null || true
  # the survivors: each must have ended with 76 within 10 s and named the lost node
  local survivors lost_node lost_ranks r line rc t_end worst=0 d
  case $kind in
    power) survivors="0 1" lost_node=n2 lost_ranks="ranks 2-3" ;;
    cut) survivors="0 1 2 3" lost_node=n2 lost_ranks="ranks 2-3" ;;
    power0) survivors="2 3" lost_node=n1 lost_ranks="ranks 0-1" ;;
  esac
  for r in $survivors; do
    # a partitioned n2 cannot tell which side is cut: it names n1, which it cannot reach
    local name=$lost_node ranks=$lost_ranks
    if [ "$kind" = cut ] && ((r >= 2)); then name=n1 ranks="ranks 0-1"; fi
    # the rank's own end may still be on its way (a cut-off node's ranks outlive mpirun)
    t=$SECONDS
    while [ ! -s "$D/rc/$r" ] && ((SECONDS - t < 15)); do sleep 0.1; done
    [ -s "$D/rc/$r" ] || fail "$kind: rank $r did not end (or its wrapper was killed); mpirun: $(tail -5 "$D/mpirun.log")"
    read -r rc t_end <"$D/rc/$r"
    [ "$rc" = 76 ] || fail "$kind: rank $r exited $rc, not 76 (a node was lost): $(cat "$D"/out/1/rank.$r/stderr 2>/dev/null | tail -5)"
    d=$(echo "$t_end - $t_fault" | bc)
    (($(echo "$d > 10" | bc))) && fail "$kind: rank $r ended $d s after the fault (more than 10 s)"
    (($(echo "$d > $worst" | bc))) && worst=$d
    line=$(grep -h "node $name ($ranks) was lost" "$D"/out/1/rank.$r/stderr 2>/dev/null | head -1) ||
      fail "$kind: rank $r did not name node $name ($ranks): $(tail -5 "$D"/out/1/rank.$r/stderr 2>/dev/null)"
    echo "$line" | grep -q "step [0-9]" || fail "$kind: rank $r's report names no step: $line"
  done
  echo "$kind: rank 0/leader report: $(grep -h "was lost" "$D"/out/1/rank.*/stderr | head -1)" >&2
  if [ "$t_mpirun" != hang ]; then t_mpirun=$(echo "$t_mpirun - $t_fault" | bc); fi
  echo "$worst $t_mpirun"
}

# verify_newest DIR: a one-rank --resume auto must start from the newest checkpoint file
verify_newest() {
  local D=$1 newest step
  newest=$(ls "$D/run/checkpoints"/step_*.h5 | sort | tail -1)
  step=$(basename "$newest" .h5)
  step=$((10#${step#step_}))
  "$HARNESS" train "${common[@]}" --set run.dir="$D/run" --set train.steps=$((step + 1)) \
    --set checkpoint.every=0 --resume auto >"$D/resume.log" 2>&1 ||
    { tail -5 "$D/resume.log" >&2; fail "resume after the fault failed"; }
  grep -q "resumed from .*$(basename "$newest")" "$D/resume.log" ||
    fail "the newest checkpoint $(basename "$newest") did not verify: $(grep -m2 'resum\|skip\|damag' "$D/resume.log")"
  say "newest checkpoint $(basename "$newest") verifies (resumed from it)"
}

median() { tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
summary=()
for kind in power cut power0; do
  ranks_t=() mp_t=()
  for ((i = 1; i <= REPS; i++)); do
    D=$WORK/$kind.$i
    read -r a b < <(one_fault "$kind" "$D")
    say "$kind #$i: surviving ranks all ended $a s after the fault, mpirun $b s"
    ranks_t+=("$a") mp_t+=("$b")
    [ "$i" = 1 ] && verify_newest "$D"
    node_link_up n2
    node_link_up n1
  done
  summary+=("$kind: median over $REPS: ranks end $(echo "${ranks_t[*]}" | median) s, mpirun $(echo "${mp_t[*]}" | median) s (each: ${ranks_t[*]} / ${mp_t[*]})")
done
printf '%s\n' "${summary[@]}"
