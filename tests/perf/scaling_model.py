#!/usr/bin/env python3
"""Scaling model for harness's data-parallel step: predicted step time and weak-scaling
efficiency at 8 to 1024 GPUs, for train.zero_stage 0/1 and comm.grad_dtype fp32/bf16.

Input: one device's step breakdown (forward, backward, optimizer seconds; parameters) - either
measured (--metrics RUN/metrics.jsonl of a 1-rank harness run: the start event's params and
the train events' step_compute_s) or the built-in per-model estimates below - and the bucket
schedule of comm/comm_buckets.c (buckets of comm.bucket_kb cut from the end of the flat
buffer; bucket k is ready when backward has produced it).

The step, as harness runs it (one comm stream, buckets in order, overlapped with backward):
  ready_k   = forward + backward * (elements up to bucket k) / n     (gradients appear from the
                                                                      last layer back)
  done_k    = max(ready_k, done_{k-1}) + T_coll(bucket k)
  stage 0:  T_coll = all-reduce;      then the optimizer over all n elements
  stage 1:  T_coll = reduce-scatter;  then the optimizer over n / world elements; the
            parameters' all-gather goes out bucket by bucket from the start of the buffer and
            overlaps the next forward: gathered_j = sum of the all-gathers up to bucket j, and
            the forward reaches the end of bucket j at
            f_j = max(f_{j-1}, gathered_j) + forward * count_j / n; the step is delayed by
            f_last - forward (at least the first bucket's all-gather)
  step      = delay + max(forward + backward, done_last) + optimizer
  efficiency (weak scaling, same per-GPU batch) = step(1 GPU) / step(world)
Collective costs, ring algorithm (what NCCL and most MPIs use for large messages):
  all-reduce      2 (n-1)/n * S / busbw + 2 (n-1) * alpha
  reduce-scatter    (n-1)/n * S / busbw +   (n-1) * alpha     (all-gather the same)
with S the bucket bytes (halved for bf16 gradients; the parameter all-gather stays fp32), busbw
the bus bandwidth of the slowest link class in the ring and alpha its per-hop latency.

Bus bandwidths and latencies assumed (override with --nvlink-busbw etc.):
  NVLink (within a node of 8 H100 SXM, NVLink 4: 450 GB/s per direction per GPU): busbw
    360 GB/s - 80% of the link rate, the efficiency nccl-tests all_reduce_perf typically
    reports for large messages on such nodes; alpha 2 us per hop.
  InfiniBand (between nodes, one NDR 400 Gb/s = 50 GB/s NIC per GPU): a flat ring's
    inter-node hop runs at one NIC's rate: busbw 40 GB/s (80% of 50 GB/s); alpha 6 us per hop.
  These are assumptions from the hardware's link rates, not measurements (no multi-GPU machine
  was available); NCCL's multi-rail, tree and NVLS/SHARP algorithms do better than a flat ring
  across nodes, so at scale the figures are a lower bound on what NCCL would give.
Per-model device estimates (H100 SXM, bf16 tensor cores: 989 TFLOP/s dense), used when no
measurement is given: compute = FLOPs / (989e12 * MFU), forward = 1/3, backward = 2/3 of it;
optimizer = 16 bytes read+written per parameter per state pass at 3.35 TB/s HBM3 (AdamW:
param, grad, m, v read, param, m, v written: 28 bytes; SGD momentum: 16).
"""
import argparse
import json
import sys

H100_FLOPS = 989e12
HBM_BPS = 3.35e12

# name: params, FLOPs per GPU step (per-GPU batch), assumed MFU, bytes per param for the update
MODELS = {
    # launch/mlp.yaml: 235,146 params, 128 samples per GPU, 1.0 MFLOP/sample (harness's count);
    # tiny kernels are launch bound: a floor of 1.5 ms per step (about 60 kernel launches)
    "mlp": dict(params=235_146, flops=1.0e6 * 128, mfu=0.01, floor=1.5e-3),
    # launch/cnn.yaml: 824,650 params, 128 samples/GPU, 27.7 MFLOP/sample (harness's count)
    "cnn": dict(params=824_650, flops=27.7e6 * 128, mfu=0.05, floor=3e-3),
    # GPT-2 124M, 1024-token context, 32 sequences per GPU micro-step (launch/gpt2-124m.yaml);
    # 6N + 12 L d T FLOPs per token; MFU 40% (llm.c-class)
    "gpt2-124m": dict(params=124_439_808, flops=(6 * 124_439_808 + 12 * 12 * 768 * 1024) * 32 * 1024,
                      mfu=0.40, floor=0.0),
    # GPT-2 1.5B (48 layers, d 1600), 8 sequences of 1024 per GPU, MFU 40%
    "gpt2-1.5b": dict(params=1_557_611_200, flops=(6 * 1_557_611_200 + 12 * 48 * 1600 * 1024) * 8 * 1024,
                      mfu=0.40, floor=0.0),
}


def breakdown(name, optimizer="adamw"):
    m = MODELS[name]
    compute = max(m["flops"] / (H100_FLOPS * m["mfu"]), m["floor"])
    per_param = 28 if optimizer == "adamw" else 16
    return dict(params=m["params"], forward=compute / 3, backward=2 * compute / 3,
                optim_bytes_per_param=per_param)


def ring(kind, nbytes, world, busbw, alpha):
    if world == 1:
        return 0.0
    steps = 2 * (world - 1) if kind == "allreduce" else world - 1
    frac = steps / world
    return frac * nbytes / busbw + steps * alpha


def fabric(world, a):
    """busbw and alpha of the slowest link class in a ring over `world` GPUs."""
    if world <= a.gpus_per_node:
        return a.nvlink_busbw, a.nvlink_alpha
    return a.ib_busbw, a.ib_alpha


def step_time(b, world, stage, dtype, bucket_bytes, a, optimizer=True):
    n = b["params"]
    per = max(1, bucket_bytes // 4)
    busbw, alpha = fabric(world, a)
    fwd, bwd = b["forward"], b["backward"]
    wire = 2 if dtype == "bf16" else 4
    # stage 1: the previous step's all-gather runs during this forward, bucket by bucket from
    # the start of the buffer; a layer waits for the bucket holding its parameters
    delay = 0.0
    if stage == 1 and world > 1:
        gathered, t_fwd, start = 0.0, 0.0, 0
        while start < n:
            count = min(per, n - start)
            gathered += ring("allgather", count * 4, world, busbw, alpha)
            t_fwd = max(t_fwd, gathered) + fwd * count / n
            start += count
        delay = t_fwd - fwd
    done, produced, end = delay, 0, n
    while end > 0:                       # bucket 0 = the end of the buffer (comm_buckets.h)
        start = max(0, end - per)
        count = end - start
        produced += count
        ready = delay + fwd + bwd * produced / n
        kind = "allreduce" if stage == 0 else "reducescatter"
        done = max(ready, done) + ring(kind, count * wire, world, busbw, alpha)
        end = start
    t = max(delay + fwd + bwd, done)
    shard = n / world if stage == 1 else n
    if optimizer:   # stage 1: over the shard only, so it shrinks as world grows
        t += shard * b["optim_bytes_per_param"] / HBM_BPS
    return t


def from_metrics(path):
    rows = [json.loads(line) for line in open(path)]
    start = next(r for r in rows if r["event"] == "start")
    if start.get("world", 1) != 1:
        sys.exit(f"{path}: measure on 1 rank (world {start['world']})")
    comp = [r["step_compute_s"] for r in rows if r["event"] == "train" and "step_compute_s" in r]
    comp = comp[len(comp) // 2:] or comp          # skip warm-up intervals
    c = sorted(comp)[len(comp) // 2]
    return dict(params=start["params"], forward=c / 3, backward=2 * c / 3,
                optim_bytes_per_param=28)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", choices=sorted(MODELS), help="default: all")
    p.add_argument("--metrics", help="1-rank metrics.jsonl: use its measured step instead")
    p.add_argument("--bucket-kb", type=int, default=1024, help="comm.bucket_kb (default 1024)")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--nvlink-busbw", type=float, default=360e9)
    p.add_argument("--nvlink-alpha", type=float, default=2e-6)
    p.add_argument("--ib-busbw", type=float, default=40e9)
    p.add_argument("--ib-alpha", type=float, default=6e-6)
    p.add_argument("--worlds", default="8,16,64,256,1024")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="also assert the model's invariants (ctest): efficiency <= 100%%, "
                        "falling with the world, bf16 never slower than fp32")
    a = p.parse_args()
    worlds = [int(w) for w in a.worlds.split(",")]
    cases = [(s, d) for s in (0, 1) for d in ("fp32", "bf16")]
    models = [("measured", from_metrics(a.metrics))] if a.metrics else \
             [(m, breakdown(m)) for m in (a.model or MODELS)]
    bucket = a.bucket_kb * 1024
    print(f"# bucket {a.bucket_kb} KiB; NVLink busbw {a.nvlink_busbw / 1e9:.0f} GB/s "
          f"(alpha {a.nvlink_alpha * 1e6:.0f} us) up to {a.gpus_per_node} GPUs, IB busbw "
          f"{a.ib_busbw / 1e9:.0f} GB/s (alpha {a.ib_alpha * 1e6:.0f} us) beyond")
    head = ["model", "1-GPU step"] + [f"stage {s} {d}" for s, d in cases]
    if a.markdown:
        print("| model | GPUs | 1-GPU step (ms) | " + " | ".join(head[2:]) + " |")
        print("|---" * (len(head) + 1) + "|")
    for name, b in models:
        t1 = step_time(b, 1, 0, "fp32", bucket, a)
        if a.check:
            for s, d in cases:
                # more GPUs never make compute + communication faster (the optimizer of
                # stage 1 does get cheaper: 1/world of it)
                ts = [step_time(b, w, s, d, bucket, a, optimizer=False) for w in [1] + worlds]
                assert all(x <= y * (1 + 1e-12) for x, y in zip(ts, ts[1:])), (name, s, d, ts)
                # the all-gather hidden behind the forward costs at least its first bucket
                if s == 1:
                    assert ts[1] > ts[0], (name, d, ts)
                assert s == 1 or step_time(b, 1, s, d, bucket, a) >= t1 * (1 - 1e-12)
            for w in worlds:
                for s in (0, 1):
                    assert step_time(b, w, s, "bf16", bucket, a) <= step_time(b, w, s, "fp32", bucket, a)
        for w in worlds:
            cells = []
            for s, d in cases:
                t = step_time(b, w, s, d, bucket, a)
                cells.append(f"{t * 1e3:.1f} ms / {t1 / t * 100:.0f}%")
            if a.markdown:
                print(f"| {name} | {w} | {t1 * 1e3:.1f} | " + " | ".join(cells) + " |")
            else:
                print(f"{name:10s} {w:5d} GPUs  1-GPU {t1 * 1e3:8.1f} ms  " + "  ".join(
                    f"[z{s} {d}] {c}" for (s, d), c in zip(cases, cells)))


if __name__ == "__main__":
    main()
