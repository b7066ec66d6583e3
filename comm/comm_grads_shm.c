/* Gradient averaging through node shared memory, for jobs whose ranks all share one node.
 *
 * Why: MPI's nonblocking all-reduce on host memory (libnbc over shared-memory FIFOs, moving
 * the data in fragments, advanced only inside MPI calls) took 0.4-0.8 ms for the MLP's 0.9 MB
 * of gradients on two cores - a third of a step - and part of it ran inside backward, in the
 * MPI_Test that pokes the buckets.  With every rank on one node the reduction needs no
 * messages: each rank copies a finished bucket into its own segment of an MPI-3 shared window
 * (while backward goes on), and at the wait each rank sums one slice of the buffer across all
 * segments (reduce-scatter) and then copies the other slices' sums (all-gather): about 4 n
 * floats of memory traffic per rank, no fragments, no progress engine.
 *
 * Layout: the window holds two sets (used on alternate steps) of world segments of n floats;
 * rank r owns segment r of each set.  Step parity p: rank r writes set p segment r (its
 * gradients), barrier, sums slice r over set p's segments into its grads and into set p
 * segment r slice r, barrier, copies slice s from set p segment s for every s != r.  A rank
 * writes set p again only two steps later, after a barrier the others reach only once they
 * have finished reading set p: no third barrier.
 *
 * Results: every element is summed once, in rank order, by its owner, and copied: the same
 * bits on every rank, and for two ranks the same bits as MPI's a + b.  Then / world, as on
 * the MPI path.
 *
 * Across nodes (comm_grads_hier.c chooses it) the same runs on each node's window - the node's
 * L ranks in place of the world's, local rank l owning segment l - and between the sum of a
 * slice and its division each local rank all-reduces its slice over `cross`, the ranks of its
 * local rank on the other nodes (MPI): n / L floats per rank cross the network.  That
 * all-reduce gives the same result on every member, so again the same bits on every rank.
 *
 * Sharded (train.zero_stage 1, one node): rank r's slice is its shard (both are floor(n r /
 * world) boundaries), so the reduce-scatter is the first half alone - the averaged slice goes
 * into the shard's gradients and nothing is copied back.  After the optimizer has updated its
 * shard, the parameters travel the same way (comm_shm_params_gather): rank r writes its
 * shard into slice r of its segment of the set just reduced (no other rank reads that slice
 * of that segment), barrier, each rank copies the other slices.  That set is written again
 * only two steps later, after the next reduction's barrier, which every rank reaches only once
 * it has copied: still no third barrier per step.  The gradient sums are the stage-0 sums, so
 * stage 1 on this path takes the same steps as stage 0 (the tests compare them).
 *
 * Large buffers (chunk > 0): the window above needs 2 L n floats per node - 2 GB for GPT-2
 * 124M on two ranks, and on a node of 64 ranks a 2M-parameter model already fills 1 GiB.
 * Over the window's limit (comm_shm_chunk) the exchange goes in rounds instead: round k takes
 * piece k (C floats) of every slice - slice s's floats [lo_s + k C, lo_s + (k + 1) C) - so that
 * a segment holds L pieces of C floats (piece s at s C) and the window 2 L L C floats,
 * whatever n.  Each round is the scheme above on those pieces: at the wait each rank copies
 * its pieces into its segment of the round's set (not during backward: the window is too
 * small to hold a whole step), barrier, sums its own piece, barrier, copies the others'
 * pieces; ZeRO-1's parameter gather goes in rounds of its own.  The set alternates per round,
 * and the argument above holds per round: a rank writes a set again two rounds later, after
 * the next round's first barrier, which the others reach only once they have read it.  The
 * same sums in the same order: the same bits as the whole-buffer exchange. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "comm_internal.h"

/* Slice s of n over parts: [lo, hi). */
static void slice(int64_t n, int parts, int s, int64_t *lo, int64_t *hi) {
    *lo = n * s / parts;
    *hi = n * (s + 1) / parts;
}

/* The hot loop below is compiled for AVX-512, AVX2 and the baseline, and the loader picks
 * one by the CPU's features (as KCPU_SIMD in kernels/cpu/cpu_internal.h): adds and divides
 * only, in the order written, so every clone gives the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define COMM_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define COMM_SIMD
#endif

/* out[i] = (seg_0[i] + seg_1[i] + ... + seg_{L-1}[i]) / world for i < m, summed in rank
 * order, where seg_s = first + s stride (L >= 2); world 0: no division; mirror (when not
 * NULL; it may be one of the segments) gets out's values too.  In blocks, so that each block
 * of the L segments is read once while it is in cache; with two segments, one pass. */
static COMM_SIMD void sum_segments(float *restrict out, float *mirror, const float *first,
                                   size_t stride, int L, int64_t m, float world) {
    for (int64_t b = 0; b < m; b += 4096) {
        const int64_t e = b + 4096 < m ? b + 4096 : m;
        const float *s0 = first, *s1 = first + stride;
        if (L == 2) {
            if (world != 0.0f) {
                if (mirror)
                    for (int64_t i = b; i < e; i++) mirror[i] = out[i] = (s0[i] + s1[i]) / world;
                else
                    for (int64_t i = b; i < e; i++) out[i] = (s0[i] + s1[i]) / world;
            } else {
                for (int64_t i = b; i < e; i++) out[i] = s0[i] + s1[i];
            }
            continue;
        }
        for (int64_t i = b; i < e; i++) out[i] = s0[i] + s1[i];
        for (int s = 2; s < L; s++) {
            const float *seg = first + (size_t)s * stride;
            for (int64_t i = b; i < e; i++) out[i] += seg[i];
        }
        if (world != 0.0f) {
            if (mirror)
                for (int64_t i = b; i < e; i++) mirror[i] = out[i] = out[i] / world;
            else
                for (int64_t i = b; i < e; i++) out[i] = out[i] / world;
        }
    }
}

void comm_shm_grads_close(comm *c) {
    struct comm_shm_grads *s = c->shm;
    if (!s) return;
    MPI_Win_unlock_all(s->win);
    MPI_Win_free(&s->win);
    if (s->cross != MPI_COMM_NULL) MPI_Comm_free(&s->cross);
    if (s->node != c->world) MPI_Comm_free(&s->node);
    free(s);
    c->shm = NULL;
}

/* Round k's piece of slice s: [a, b), empty once the slice is exhausted. */
static void piece(int64_t n, int L, int s, int64_t k, int64_t C, int64_t *a, int64_t *b) {
    int64_t lo, hi;
    slice(n, L, s, &lo, &hi);
    *a = lo + k * C < hi ? lo + k * C : hi;
    *b = *a + C < hi ? *a + C : hi;
}

/* Rounds of an exchange in pieces of C floats: as many as the longest slice needs. */
static int64_t rounds_of(int64_t n, int L, int64_t C) {
    int64_t longest = (n + L - 1) / L;
    return (longest + C - 1) / C;
}

int comm_shm_window_limit(comm *c, size_t max_bytes, size_t *limit, char *err, size_t errlen) {
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    if (!dir || !dir[0]) dir = "/dev/shm";
    struct statvfs fs;
    unsigned long long lim = max_bytes;
    if (statvfs(dir, &fs) == 0) {
        unsigned long long half = (unsigned long long)fs.f_bavail * fs.f_frsize / 2;
        if (half < lim) lim = half;
    }
    int rc = MPI_Allreduce(MPI_IN_PLACE, &lim, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, c->world);
    if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "MPI_Allreduce (the window's limit)", err, errlen);
    *limit = (size_t)lim;
    return 0;
}

int64_t comm_shm_chunk(int64_t n, int L, size_t max_bytes) {
    const size_t f = sizeof(float);
    if (L < 1 || n < 0) return -1;
    if ((size_t)n <= max_bytes / (2 * (size_t)L * f)) return 0;
    size_t C = max_bytes / (2 * (size_t)L * (size_t)L * f);
    return C >= 1024 ? (int64_t)C : -1;
}

int comm_shm_grads_open(comm *c, MPI_Comm node, MPI_Comm cross, int64_t chunk, char *err,
                        size_t errlen) {
    struct comm_shm_grads *s = calloc(1, sizeof *s);
    int ok = s != NULL;   /* agree before any collective, so that no rank waits alone */
    int rc = MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, c->world);
    if (rc == MPI_SUCCESS && !ok) rc = MPI_ERR_NO_MEM;
    if (rc == MPI_SUCCESS) {
        s->node = node;
        s->cross = cross;
        s->nodes = 1;
        rc = MPI_Comm_rank(node, &s->me);
        if (rc == MPI_SUCCESS) rc = MPI_Comm_size(node, &s->segs);
        if (rc == MPI_SUCCESS && cross != MPI_COMM_NULL) rc = MPI_Comm_size(cross, &s->nodes);
        s->chunk = chunk > 0 ? chunk : 0;
        s->seg = chunk > 0 ? (int64_t)s->segs * chunk : c->grads_n;
    }
    /* all of it from the node leader's allocation (contiguous); the others ask for none */
    size_t bytes = 2 * (size_t)(s ? s->segs : 0) * (size_t)(s ? s->seg : 0) * sizeof(float);
    float *base = NULL;
    if (rc == MPI_SUCCESS)
        rc = MPI_Win_allocate_shared(s->me == 0 ? (MPI_Aint)bytes : 0, sizeof(float),
                                     MPI_INFO_NULL, node, &base, &s->win);
    if (rc == MPI_SUCCESS) {
        MPI_Aint size;
        int disp;
        rc = MPI_Win_shared_query(s->win, 0, &size, &disp, &base);
        if (rc == MPI_SUCCESS && !base) rc = MPI_ERR_NO_MEM;
        if (rc != MPI_SUCCESS) MPI_Win_free(&s->win);
    }
    if (rc != MPI_SUCCESS) {
        free(s);
        if (cross != MPI_COMM_NULL) MPI_Comm_free(&cross);
        if (node != c->world) MPI_Comm_free(&node);
        return comm_mpi_error(c, rc, "the gradient window (MPI_Win_allocate_shared)", err, errlen);
    }
    s->set[0] = base;
    s->set[1] = base + (size_t)s->segs * (size_t)s->seg;
    MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    c->shm = s;
    return 0;
}

int comm_grads_use_node_memory(comm *c, size_t max_bytes, char *err, size_t errlen) {
    if (c->grads_on_device || c->world_size < 2 || c->local_size != c->world_size || c->grads_n == 0)
        return 0;
    if (c->grad_dtype != COMM_GRAD_FP32) return 0;   /* bf16 buckets: comm_zero.c's MPI path */
    /* errors return -1 (comm_error and comm_mpi_error return 1), as comm.h says */
    if (c->started > c->completed)
        return -comm_error(err, errlen, "comm_grads_use_node_memory: buckets in flight");
    comm_shm_grads_close(c);
    if (comm_shm_window_limit(c, max_bytes, &max_bytes, err, errlen)) return -1;
    int64_t chunk = comm_shm_chunk(c->grads_n, c->world_size, max_bytes);
    if (chunk < 0) return 0;
    return comm_shm_grads_open(c, c->world, MPI_COMM_NULL, chunk, err, errlen) ? -1 : 1;
}

size_t comm_grads_node_window(const comm *c, int64_t *rounds) {
    const struct comm_shm_grads *s = c->shm;
    *rounds = 0;
    if (!s) return 0;
    *rounds = s->chunk ? rounds_of(c->grads_n, s->segs, s->chunk) : 1;
    return 2 * (size_t)s->segs * (size_t)s->seg * sizeof(float);
}

/* Backward has finished a bucket: into this rank's segment of this step's set. */
void comm_shm_grads_bucket(comm *c, int64_t start, int64_t count) {
    if (c->shm->chunk) return;   /* in rounds: copied piece by piece at the wait */
    float *mine = c->shm->set[c->shm->parity] + (size_t)c->shm->me * (size_t)c->grads_n;
    memcpy(mine + start, c->grads + start, (size_t)count * sizeof(float));
}

/* Every rank's stores to the window are visible to the node's other ranks after this. */
static int sync_node(comm *c, char *err, size_t errlen) {
    MPI_Win_sync(c->shm->win);
    int rc = MPI_Barrier(c->shm->node);
    MPI_Win_sync(c->shm->win);
    return rc == MPI_SUCCESS ? 0 : comm_mpi_error(c, rc, "MPI_Barrier (gradients)", err, errlen);
}

/* Every segment's own slice of set is written: after a barrier, the other slices into dst
 * (each rank has its own already).  0 or an error. */
static int gather_slices(comm *c, float *dst, const float *set, char *err, size_t errlen) {
    const int L = c->shm->segs, me = c->shm->me;
    const int64_t n = c->grads_n;
    if (sync_node(c, err, errlen)) return 1;
    for (int s = 0; s < L; s++) {
        if (s == me) continue;
        int64_t lo, hi;
        slice(n, L, s, &lo, &hi);
        memcpy(dst + lo, set + (size_t)s * (size_t)n + lo, (size_t)(hi - lo) * sizeof(float));
    }
    return 0;
}

/* The node's sums of out[0, m) across the nodes (c->shm->cross); int counts, so in INT_MAX
 * pieces.  0 or an error. */
static int sum_across(comm *c, float *out, int64_t m, char *err, size_t errlen) {
    for (int64_t at = 0; at < m;) {
        int count = m - at < INT_MAX ? (int)(m - at) : INT_MAX;
        int rc = MPI_Allreduce(MPI_IN_PLACE, out + at, count, MPI_FLOAT, MPI_SUM, c->shm->cross);
        if (rc != MPI_SUCCESS)
            return comm_mpi_error(c, rc, "MPI_Allreduce (gradients across nodes)", err, errlen);
        at += count;
    }
    return 0;
}

/* comm_shm_grads_finish in rounds (chunk > 0; the header comment). */
static int finish_rounds(comm *c, char *err, size_t errlen) {
    struct comm_shm_grads *sh = c->shm;
    const int L = sh->segs, me = sh->me;
    const int64_t n = c->grads_n, C = sh->chunk, seg = sh->seg;
    const float world = (float)c->world_size;
    const int across = sh->cross != MPI_COMM_NULL;
    const int shard = c->shard && !across;
    int64_t lo, hi;
    slice(n, L, me, &lo, &hi);
    for (int64_t k = 0, K = rounds_of(n, L, C); k < K; k++) {
        float *set = sh->set[sh->parity];
        float *mine = set + (size_t)me * (size_t)seg;
        sh->parity ^= 1;
        int64_t a, b;
        for (int s = 0; s < L; s++) {
            piece(n, L, s, k, C, &a, &b);
            if (b > a) memcpy(mine + (size_t)s * C, c->grads + a, (size_t)(b - a) * sizeof(float));
        }
        if (sync_node(c, err, errlen)) return 1;
        piece(n, L, me, k, C, &a, &b);
        float *out = shard ? c->shard_grads + (a - lo) : c->grads + a;
        float *own = mine + (size_t)me * C;   /* this round's piece of this rank's slice */
        sum_segments(out, shard || across ? NULL : own, set + (size_t)me * C, (size_t)seg, L,
                     b - a, across ? 0.0f : world);
        if (across) {   /* every member of cross has the same pieces: the same calls */
            if (sum_across(c, out, b - a, err, errlen)) return 1;
            for (int64_t i = 0; i < b - a; i++) own[i] = out[i] = out[i] / world;
        }
        if (shard) continue;   /* the parameters are gathered after the optimizer instead */
        if (sync_node(c, err, errlen)) return 1;
        for (int s = 0; s < L; s++) {
            if (s == me) continue;
            piece(n, L, s, k, C, &a, &b);
            if (b > a)
                memcpy(c->grads + a, set + (size_t)s * seg + (size_t)s * C,
                       (size_t)(b - a) * sizeof(float));
        }
    }
    return 0;
}

/* All buckets are in the segments: reduce-scatter on the node, the all-reduce of each slice
 * across nodes (if any), average, all-gather on the node.  0 or an error. */
int comm_shm_grads_finish(comm *c, char *err, size_t errlen) {
    struct comm_shm_grads *sh = c->shm;
    if (sh->chunk) return finish_rounds(c, err, errlen);
    const int L = sh->segs, me = sh->me;
    const int64_t n = c->grads_n;
    float *set = sh->set[sh->parity];
    sh->last = set;
    sh->parity ^= 1;
    if (sync_node(c, err, errlen)) return 1;
    int64_t lo, hi;
    slice(n, L, me, &lo, &hi);
    const float world = (float)c->world_size;
    const int across = sh->cross != MPI_COMM_NULL;
    /* sharded: the slice is the shard, averaged into shard_grads */
    const int shard = c->shard && !across;
    float *g = c->grads, *mine = set + (size_t)me * (size_t)n;
    float *out = shard ? c->shard_grads : g + lo;   /* element i of the slice at out[i - lo] */
    sum_segments(out, shard || across ? NULL : mine + lo, set + lo, (size_t)n, L, hi - lo,
                 across ? 0.0f : world);
    if (shard) return 0;   /* the parameters are gathered after the optimizer instead */
    if (across) {
        if (sum_across(c, g + lo, hi - lo, err, errlen)) return 1;
        for (int64_t i = lo; i < hi; i++) mine[i] = g[i] = g[i] / world;
    }
    return gather_slices(c, g, set, err, errlen);
}

int comm_shm_params_gather(comm *c, float *buf, char *err, size_t errlen) {
    struct comm_shm_grads *sh = c->shm;
    const int L = sh->segs, me = sh->me;
    const int64_t n = c->grads_n;
    if (sh->chunk) {   /* in rounds: this rank's piece of its shard out, the others' in */
        const int64_t C = sh->chunk, seg = sh->seg;
        for (int64_t k = 0, K = rounds_of(n, L, C); k < K; k++) {
            float *set = sh->set[sh->parity];
            sh->parity ^= 1;
            int64_t a, b;
            piece(n, L, me, k, C, &a, &b);
            if (b > a)
                memcpy(set + (size_t)me * seg + (size_t)me * C, buf + a, (size_t)(b - a) * sizeof(float));
            if (sync_node(c, err, errlen)) return 1;
            for (int s = 0; s < L; s++) {
                if (s == me) continue;
                piece(n, L, s, k, C, &a, &b);
                if (b > a)
                    memcpy(buf + a, set + (size_t)s * seg + (size_t)s * C, (size_t)(b - a) * sizeof(float));
            }
        }
        return 0;
    }
    float *set = sh->last;
    int64_t lo, hi;
    slice(n, L, me, &lo, &hi);
    memcpy(set + (size_t)me * (size_t)n + lo, buf + lo, (size_t)(hi - lo) * sizeof(float));
    return gather_slices(c, buf, set, err, errlen);
}
