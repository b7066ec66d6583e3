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
 * Layout: the window holds world segments of n floats, rank r's gradients in segment r, and
 * one more buffer of n floats, the sums.  Rank r writes segment r (its gradients), barrier,
 * sums slice r over the segments into its grads and into slice r of the sums, barrier, copies
 * slice s of the sums for every s != r.  A rank that has moved its gradients into its segment
 * (comm_grads_node_buffer: the trainer does) lets backward write them there, and copies
 * nothing; otherwise each finished bucket is copied in while backward goes on.  Why one set is
 * enough: after the second barrier nobody reads a segment any more (the slices were summed
 * before it), so the next backward may write its own; and rank r writes slice r of the sums
 * again only after the next step's first barrier, which every rank reaches only once it has
 * copied this step's sums.
 *
 * The gradient norm: while rank r averages slice r it adds up the squares of the averages (in
 * double, in cache) and leaves that in its slot, a double per rank after the floats; after the
 * second barrier every rank adds the slots in rank order: the sum of squares of all averaged
 * gradients, the same bits on every rank (comm_grads_sumsq), so the optimizer does not read n
 * floats again for the norm.  Sharded, each rank's slot is its shard's (the trainer sums those
 * over the ranks with one scalar all-reduce, as before).  Slot r is written again only after
 * the next step's first barrier, as slice r of the sums.
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
 * shard into slice r of the sums (unused at stage 1), barrier, each rank copies the other
 * slices.  Each rank has summed its slice of every segment before it reaches that barrier, so
 * the next backward may write the segments; and slice r of the sums is written again only after
 * the next step's first barrier, which every rank reaches only once it has copied the
 * parameters: still no third barrier per step.  The gradient sums are the stage-0 sums, so
 * stage 1 on this path takes the same steps as stage 0 (the tests compare them).
 *
 * Large buffers (chunk > 0): the window above needs (L + 1) n floats per node - 1.5 GB for
 * GPT-2 124M on two ranks.  Once the gradients have moved in, only the sums are memory the
 * job would not use anyway, so the limit (max_bytes, comm.window_mb) applies to those; but
 * the directory backing the window must hold all of it (comm_shm_window_room).  Where either
 * does not fit (comm_shm_chunk) the exchange goes in rounds instead: round k takes
 * piece k (C floats) of every slice - slice s's floats [lo_s + k C, lo_s + (k + 1) C) - so that
 * a segment holds L pieces of C floats (piece s at s C) and the window two sets of L such
 * segments, 2 L L C floats, whatever n; the gradients stay in the rank's own memory.  Each
 * round: at the wait each rank copies its pieces into its segment of the round's set (not
 * during backward: the window is too small to hold a whole step), barrier, sums its own piece
 * into its grads and into its own piece of its segment, barrier, copies the others' pieces;
 * ZeRO-1's parameter gather goes in rounds of its own.  The set alternates per round: a rank
 * writes a set again two rounds later, after the next round's first barrier, which the others
 * reach only once they have read it.  The same sums in the same order: the same bits as the
 * whole-buffer exchange. */
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

typedef float f32x8 __attribute__((vector_size(32)));
typedef double f64x8 __attribute__((vector_size(64)));

/* The sum of squares of x[0, m) in double, element i into lane (at + i) mod 8 of acc[8], in
 * order: for a slice taken in pieces (at: where x starts in the slice), the same lanes in the
 * same order whatever the pieces, so whole buffers and rounds give the same bits. */

static inline void add_squares(double *restrict acc, const float *restrict x, int64_t m,
                               int64_t at) {
    int64_t i = 0;
    for (; i < m && (at + i) % 8; i++) acc[(at + i) % 8] += (double)x[i] * (double)x[i];
    /* the 8 lanes as one vector (gcc's SLP assembled them element by element): a multiply,
     * then an add (no fma: -ffp-contract=off), as the scalar lines */
    f64x8 a;
    memcpy(&a, acc, sizeof a);
    for (; i + 8 <= m; i += 8) {
        f32x8 xf;
        memcpy(&xf, x + i, sizeof xf);
        f64x8 xd = __builtin_convertvector(xf, f64x8);
        a += xd * xd;
    }
    memcpy(acc, &a, sizeof a);
    for (; i < m; i++) acc[(at + i) % 8] += (double)x[i] * (double)x[i];
}

static double lanes_total(const double *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* out[i] = (seg_0[i] + seg_1[i] + ... + seg_{L-1}[i]) / world for i < m, summed in rank
 * order, where seg_s = first + s stride (L >= 2); world 0: no division; mirror (when not
 * NULL; it may be one of the segments) gets out's values too.  In blocks, so that each block
 * of the L segments is read once while it is in cache; with two segments, one pass.  With
 * world != 0, the squares of out go into acc (add_squares; out[0] is element `at` of the
 * slice) block by block while they are in cache: the gradient norm's share of this slice, so
 * that nobody reads the gradients for it again. */
static COMM_SIMD void sum_segments(float *restrict out, float *mirror, const float *first,
                                   size_t stride, int L, int64_t m, float world, int64_t at,
                                   double *restrict acc) {
    for (int64_t b = 0; b < m; b += 4096) {
        const int64_t e = b + 4096 < m ? b + 4096 : m;
        const float *s0 = first, *s1 = first + stride;
        if (L == 2) {
            if (world != 0.0f) {
                if (mirror)
                    for (int64_t i = b; i < e; i++) mirror[i] = out[i] = (s0[i] + s1[i]) / world;
                else
                    for (int64_t i = b; i < e; i++) out[i] = (s0[i] + s1[i]) / world;
                add_squares(acc, out + b, e - b, at + b);
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
            add_squares(acc, out + b, e - b, at + b);
        }
    }
}

/* Across nodes: out[0, m) = out[0, m) / world, into mirror as well (unless NULL); the squares
 * into acc as in sum_segments. */
static COMM_SIMD void average_across(float *restrict out, float *restrict mirror, int64_t m,
                                     float world, int64_t at, double *restrict acc) {
    if (mirror)
        for (int64_t i = 0; i < m; i++) mirror[i] = out[i] = out[i] / world;
    else
        for (int64_t i = 0; i < m; i++) out[i] = out[i] / world;
    add_squares(acc, out, m, at);
}

void comm_shm_grads_close(comm *c) {
    struct comm_shm_grads *s = c->shm;
    if (!s) return;
    if (s->adopted) c->grads = NULL;   /* they were in the window: register again */
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

/* The window of segs segments of seg floats: its floats (whole buffers: one set and the sums;
 * in rounds: two sets), then from *slots_at (bytes, a 64-byte boundary) a double per rank.
 * Its size in bytes. */
static size_t window_layout(int64_t chunk, size_t segs, size_t seg, size_t *slots_at) {
    size_t floats = (chunk ? 2 * segs : segs + 1) * seg;
    *slots_at = (floats * sizeof(float) + 63) / 64 * 64;
    return *slots_at + segs * sizeof(double);
}

int comm_shm_window_room(comm *c, size_t *room, char *err, size_t errlen) {
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    if (!dir || !dir[0]) dir = "/dev/shm";
    struct statvfs fs;
    unsigned long long half = ULLONG_MAX;
    if (statvfs(dir, &fs) == 0) half = (unsigned long long)fs.f_bavail * fs.f_frsize / 2;
    int rc = MPI_Allreduce(MPI_IN_PLACE, &half, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, c->world);
    if (rc != MPI_SUCCESS)
        return comm_mpi_error(c, rc, "MPI_Allreduce (the window's room)", err, errlen);
    *room = half < SIZE_MAX ? (size_t)half : SIZE_MAX;
    return 0;
}

int64_t comm_shm_chunk(int64_t n, int L, size_t max_bytes, size_t room) {
    const size_t f = sizeof(float);
    if (L < 1 || n < 0) return -1;
    size_t slots_at, whole = window_layout(0, (size_t)L, (size_t)n, &slots_at);
    /* whole: beyond the gradients (which move in) only the sums and the slots */
    if ((size_t)n <= max_bytes / f && whole <= room) return 0;
    size_t cap = max_bytes < room ? max_bytes : room;
    size_t C = cap / (2 * (size_t)L * (size_t)L * f);   /* (the slots: 64 + 8 L bytes more) */
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
    /* all of it from the node leader's allocation (contiguous); the others ask for none.
     * Whole buffers: the segments and the sums; in rounds: two sets of segments. */
    size_t slots_at = 0;
    size_t bytes = s ? window_layout(s->chunk, (size_t)s->segs, (size_t)s->seg, &slots_at) : 0;
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
    s->set[1] = s->chunk ? base + (size_t)s->segs * (size_t)s->seg : NULL;
    s->sums = s->chunk ? NULL : base + (size_t)s->segs * (size_t)s->seg;
    s->slots = (double *)((char *)base + slots_at);
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
    if (c->shm && c->shm->adopted)
        return -comm_error(err, errlen, "comm_grads_use_node_memory: the gradients are in the "
                           "window (comm_grads_node_buffer); register a buffer again first");
    comm_shm_grads_close(c);
    size_t room;
    if (comm_shm_window_room(c, &room, err, errlen)) return -1;
    int64_t chunk = comm_shm_chunk(c->grads_n, c->world_size, max_bytes, room);
    if (chunk < 0) return 0;
    return comm_shm_grads_open(c, c->world, MPI_COMM_NULL, chunk, err, errlen) ? -1 : 1;
}

size_t comm_grads_node_window(const comm *c, int64_t *rounds) {
    const struct comm_shm_grads *s = c->shm;
    *rounds = 0;
    if (!s) return 0;
    *rounds = s->chunk ? rounds_of(c->grads_n, s->segs, s->chunk) : 1;
    size_t slots_at;
    return window_layout(s->chunk, (size_t)s->segs, (size_t)s->seg, &slots_at);
}

float *comm_grads_node_buffer(comm *c) {
    struct comm_shm_grads *s = c->shm;
    if (!s || s->chunk || !comm_grads_node_memory(c)) return NULL;
    float *mine = s->set[0] + (size_t)s->me * (size_t)c->grads_n;
    if (!s->adopted) {
        if (c->grads_n) memcpy(mine, c->grads, (size_t)c->grads_n * sizeof(float));
        c->grads = mine;
        s->adopted = 1;
    }
    return mine;
}

/* Backward has finished a bucket: into this rank's segment, unless backward wrote it there. */
void comm_shm_grads_bucket(comm *c, int64_t start, int64_t count) {
    if (c->shm->chunk || c->shm->adopted) return;   /* in rounds: piece by piece at the wait */
    float *mine = c->shm->set[0] + (size_t)c->shm->me * (size_t)c->grads_n;
    memcpy(mine + start, c->grads + start, (size_t)count * sizeof(float));
}

/* Every rank's stores to the window are visible to the node's other ranks after this. */
static int sync_node(comm *c, char *err, size_t errlen) {
    MPI_Win_sync(c->shm->win);
    int rc = MPI_Barrier(c->shm->node);
    MPI_Win_sync(c->shm->win);
    return rc == MPI_SUCCESS ? 0 : comm_mpi_error(c, rc, "MPI_Barrier (gradients)", err, errlen);
}

/* Every rank has written its slice of the sums: after a barrier, the other slices into dst
 * (each rank has its own already).  0 or an error. */
static int gather_slices(comm *c, float *dst, char *err, size_t errlen) {
    const int L = c->shm->segs, me = c->shm->me;
    const int64_t n = c->grads_n;
    const float *sums = c->shm->sums;
    if (sync_node(c, err, errlen)) return 1;
    for (int s = 0; s < L; s++) {
        if (s == me) continue;
        int64_t lo, hi;
        slice(n, L, s, &lo, &hi);
        memcpy(dst + lo, sums + lo, (size_t)(hi - lo) * sizeof(float));
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

/* The node's ranks have written their slices' sums of squares into the slots (before the
 * barrier the caller has passed since): their total in rank order, the same bits on every
 * rank, for comm_grads_sumsq. */
static void total_of_slots(struct comm_shm_grads *sh) {
    double t = 0.0;
    for (int s = 0; s < sh->segs; s++) t += sh->slots[s];
    sh->sumsq = t;
    sh->have_sumsq = 1;
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
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};   /* this slice's squares, round by round */
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
                     b - a, across ? 0.0f : world, a - lo, acc);
        if (across) {   /* every member of cross has the same pieces: the same calls */
            if (sum_across(c, out, b - a, err, errlen)) return 1;
            average_across(out, own, b - a, world, a - lo, acc);
        }
        if (shard) continue;   /* the parameters are gathered after the optimizer instead */
        if (k == K - 1) sh->slots[me] = lanes_total(acc);   /* read after the barrier below */
        if (sync_node(c, err, errlen)) return 1;
        for (int s = 0; s < L; s++) {
            if (s == me) continue;
            piece(n, L, s, k, C, &a, &b);
            if (b > a)
                memcpy(c->grads + a, set + (size_t)s * seg + (size_t)s * C,
                       (size_t)(b - a) * sizeof(float));
        }
    }
    if (shard) {
        sh->sumsq = lanes_total(acc);
        sh->have_sumsq = 1;
    } else {
        total_of_slots(sh);
    }
    return 0;
}

/* All buckets are in the segments: reduce-scatter on the node, the all-reduce of each slice
 * across nodes (if any), average, all-gather on the node; the sum of squares on the way.  0
 * or an error. */
int comm_shm_grads_finish(comm *c, char *err, size_t errlen) {
    struct comm_shm_grads *sh = c->shm;
    sh->have_sumsq = 0;
    if (sh->chunk) return finish_rounds(c, err, errlen);
    const int L = sh->segs, me = sh->me;
    const int64_t n = c->grads_n;
    if (sync_node(c, err, errlen)) return 1;
    int64_t lo, hi;
    slice(n, L, me, &lo, &hi);
    const float world = (float)c->world_size;
    const int across = sh->cross != MPI_COMM_NULL;
    float *g = c->grads, *sums = sh->sums;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (c->shard && !across) {   /* sharded: the slice is the shard, averaged into shard_grads */
        sum_segments(c->shard_grads, NULL, sh->set[0] + lo, (size_t)n, L, hi - lo, world, 0, acc);
        sh->sumsq = lanes_total(acc);
        sh->have_sumsq = 1;
        return 0;   /* the parameters are gathered after the optimizer instead */
    }
    /* g may be this rank's segment: only this rank reads slice me of it, and sum_segments
     * writes each block of the mirror after reading that block of every segment.  With the
     * gradients in the window (adopted) the averages stay in the sums (comm_grads_averaged)
     * and g keeps this rank's own gradients. */
    float *mirror = sh->adopted ? NULL : g + lo;
    sum_segments(sums + lo, across ? NULL : mirror, sh->set[0] + lo, (size_t)n, L, hi - lo,
                 across ? 0.0f : world, 0, acc);
    if (across) {
        if (sum_across(c, sums + lo, hi - lo, err, errlen)) return 1;
        average_across(sums + lo, mirror, hi - lo, world, 0, acc);
    }
    sh->slots[me] = lanes_total(acc);   /* read after the barrier below */
    if (sh->adopted ? sync_node(c, err, errlen) : gather_slices(c, g, err, errlen)) return 1;
    total_of_slots(sh);
    return 0;
}

const float *comm_grads_averaged(const comm *c) {
    const struct comm_shm_grads *sh = c->shm;
    if (sh && sh->adopted && comm_grads_node_memory(c) && !c->shard) return sh->sums;
    return NULL;
}

int comm_grads_sumsq(const comm *c, double *sumsq) {
    if (!c->shm || !comm_grads_node_memory(c) || !c->shm->have_sumsq) return 0;
    *sumsq = c->shm->sumsq;
    return 1;
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
    int64_t lo, hi;
    slice(n, L, me, &lo, &hi);
    memcpy(sh->sums + lo, buf + lo, (size_t)(hi - lo) * sizeof(float));
    return gather_slices(c, buf, err, errlen);
}
