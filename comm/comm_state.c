/* comm_state: what each rank publishes about its collectives, for the watchdogs of its node.
 *
 * The ranks of a node share one small POSIX shared-memory segment: a header and one 192-byte
 * slot per local rank.  Rank 0 draws a name that no other job uses (its pid, the clock and the
 * address of a stack variable) and broadcasts it; each node's local rank 0 creates
 * /harness-comm-<name>-<its world rank>, the other local ranks map it, and after a node barrier
 * it is unlinked at once: the mapping lives on, and a job killed with SIGKILL leaves nothing
 * in /dev/shm.  A watchdog can then read the slot of a peer that is stopped (SIGSTOP), busy
 * or dead.  Where shared memory is unavailable a rank falls back to a private slot and its
 * watchdog sees only itself.
 *
 * Per collective the owning rank writes a handful of relaxed atomics under a sequence lock and
 * reads CLOCK_MONOTONIC (vDSO, no system call).  Nothing here calls MPI after comm_state_open. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"

_Static_assert(sizeof(comm_slot) == 192, "comm_slot is three 64-byte lines");
_Static_assert(sizeof(comm_shared_header) == 256, "comm_shared_header is four 64-byte lines");

#define COMM_SHARED_MAGIC 0x68726e73636f6d31ull   /* "hrnscom1" */
#define COMM_SHM_NAME_BYTES 96

#define RELAXED memory_order_relaxed

int64_t comm_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static const char *const op_names[COMM_OP_COUNT] = {
    [COMM_OP_NONE] = "(none)",
    [COMM_OP_BARRIER] = "comm_barrier",
    [COMM_OP_BROADCAST] = "comm_broadcast",
    [COMM_OP_ALLREDUCE_SUM_F64] = "comm_allreduce_sum_f64",
    [COMM_OP_ALLREDUCE_SUM_I64] = "comm_allreduce_sum_i64",
    [COMM_OP_ALLREDUCE_MAX_I32] = "comm_allreduce_max_i32",
    [COMM_OP_AGREE] = "comm_agree",
    [COMM_OP_GRADS_BUCKET] = "gradient bucket all-reduce",
    [COMM_OP_CHECK_FINGERPRINTS] = "comm_check_fingerprints",
    [COMM_OP_GPU_INIT] = "comm_gpu_init",
    [COMM_OP_NCCL_INIT] = "ncclCommInitRank (comm_gpu_init)",
    [COMM_OP_GRADS_SHARD] = "gradient bucket reduce-scatter",
    [COMM_OP_PARAMS_ALLGATHER] = "comm_shards_allgather",
    [COMM_OP_SHARD_GATHER] = "comm_shard_gather",
    [COMM_OP_SHARD_SCATTER] = "comm_shard_scatter",
};
static const char *const type_names[COMM_TYPE_COUNT] = {
    [COMM_TYPE_NONE] = "-", [COMM_TYPE_BYTE] = "byte", [COMM_TYPE_INT] = "int",
    [COMM_TYPE_I32] = "i32", [COMM_TYPE_I64] = "i64", [COMM_TYPE_F32] = "f32",
    [COMM_TYPE_F64] = "f64",
    [COMM_TYPE_BF16] = "bf16",
};

const char *comm_op_name(int32_t op) {
    return op >= 0 && op < COMM_OP_COUNT ? op_names[op] : "(unknown operation)";
}

const char *comm_type_name(int32_t type) {
    return type >= 0 && type < COMM_TYPE_COUNT ? type_names[type] : "?";
}

void comm_fingerprint_text(const comm_fingerprint *fp, char *out, size_t len) {
    if (fp->op == COMM_OP_NONE) {
        snprintf(out, len, "#%llu (none yet)", (unsigned long long)fp->seq);
    } else if (fp->op == COMM_OP_BARRIER) {
        snprintf(out, len, "#%llu %s", (unsigned long long)fp->seq, comm_op_name(fp->op));
    } else if (fp->op == COMM_OP_BROADCAST) {
        snprintf(out, len, "#%llu %s(%lld x %s, root %d)", (unsigned long long)fp->seq,
                 comm_op_name(fp->op), (long long)fp->count, comm_type_name(fp->type), fp->root);
    } else {
        snprintf(out, len, "#%llu %s(%lld x %s)", (unsigned long long)fp->seq,
                 comm_op_name(fp->op), (long long)fp->count, comm_type_name(fp->type));
    }
}

int comm_proc_stat(int pid, char *state, uint64_t *start) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    /* "PID (COMM) S ppid ...": COMM may hold spaces and parentheses, so parse after the last ')'.
     * After it: field 3 is the state, field 22 the start time. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ') return -1;
    p += 2;
    if (state) *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    if (start) *start = strtoull(p, NULL, 10);
    return 0;
}

/* ---- the sequence lock ------------------------------------------------------------------ */

static void slot_write_begin(comm_slot *s) {
    uint32_t v = atomic_load_explicit(&s->version, RELAXED);
    atomic_store_explicit(&s->version, v + 1, RELAXED);
    atomic_thread_fence(memory_order_release);
}

static void slot_write_end(comm_slot *s) {
    uint32_t v = atomic_load_explicit(&s->version, RELAXED);
    atomic_store_explicit(&s->version, v + 1, memory_order_release);
}

void comm_slot_read(const comm_slot *s, comm_slot_view *out) {
    comm_slot *m = (comm_slot *)s;   /* atomic loads take non-const pointers in C11 */
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t v1 = atomic_load_explicit(&m->version, memory_order_acquire);
        out->joined.seq = atomic_load_explicit(&m->seq, RELAXED);
        out->joined.op = atomic_load_explicit(&m->op, RELAXED);
        out->joined.type = atomic_load_explicit(&m->type, RELAXED);
        out->joined.root = atomic_load_explicit(&m->root, RELAXED);
        out->joined.count = atomic_load_explicit(&m->count, RELAXED);
        out->waiting = atomic_load_explicit(&m->waiting, RELAXED);
        out->wait.seq = atomic_load_explicit(&m->wait_seq, RELAXED);
        out->wait.op = atomic_load_explicit(&m->wait_op, RELAXED);
        out->wait.type = atomic_load_explicit(&m->wait_type, RELAXED);
        out->wait.count = atomic_load_explicit(&m->wait_count, RELAXED);
        out->wait.root = 0;
        out->wait_since_ns = atomic_load_explicit(&m->wait_since_ns, RELAXED);
        out->wait_allow_ns = atomic_load_explicit(&m->wait_allow_ns, RELAXED);
        out->done_seq = atomic_load_explicit(&m->done_seq, RELAXED);
        atomic_thread_fence(memory_order_acquire);
        uint32_t v2 = atomic_load_explicit(&m->version, RELAXED);
        out->consistent = v1 == v2 && (v1 & 1) == 0;
        if (out->consistent) break;
        if ((tries & 63) == 63) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
    /* GPU collectives: everything up to the newest one known done on the device has completed,
     * unless an older one is still in flight there (the host may have moved on past it). */
    out->device = atomic_load_explicit(&m->device, RELAXED);
    out->device_open_seq = atomic_load_explicit(&m->device_open_seq, RELAXED);
    out->device_open_since_ns = atomic_load_explicit(&m->device_open_since_ns, RELAXED);
    uint64_t device_done = atomic_load_explicit(&m->device_done_seq, RELAXED);
    if (device_done > out->done_seq) out->done_seq = device_done;
    if (out->device_open_seq != 0 && out->done_seq >= out->device_open_seq)
        out->done_seq = out->device_open_seq - 1;
    out->state = atomic_load_explicit(&m->state, RELAXED);
    out->pid = atomic_load_explicit(&m->pid, RELAXED);
    out->world_rank = atomic_load_explicit(&m->world_rank, RELAXED);
    out->proc_start = atomic_load_explicit(&m->proc_start, RELAXED);
    out->step = atomic_load_explicit(&m->step, RELAXED);
}

/* ---- the hot path: a few stores per collective ------------------------------------------- */

/* The fields that say "this rank is blocked in collective fp since now" (inside the slot's
 * write section): what the watchdog reads to name the wait. */
static void store_wait(comm *c, comm_slot *s, const comm_fingerprint *fp) {
    atomic_store_explicit(&s->wait_seq, fp->seq, RELAXED);
    atomic_store_explicit(&s->wait_op, fp->op, RELAXED);
    atomic_store_explicit(&s->wait_type, fp->type, RELAXED);
    atomic_store_explicit(&s->wait_count, fp->count, RELAXED);
    atomic_store_explicit(&s->wait_since_ns, comm_now_ns(), RELAXED);
    atomic_store_explicit(&s->wait_allow_ns, c->pending_allow_ns, RELAXED);
    atomic_store_explicit(&s->waiting, 1, RELAXED);
    c->pending_allow_ns = 0;
}

static void publish_join(comm *c, const comm_fingerprint *fp, int wait) {
    comm_slot *s = c->self;
    slot_write_begin(s);
    atomic_store_explicit(&s->seq, fp->seq, RELAXED);
    atomic_store_explicit(&s->op, fp->op, RELAXED);
    atomic_store_explicit(&s->type, fp->type, RELAXED);
    atomic_store_explicit(&s->root, fp->root, RELAXED);
    atomic_store_explicit(&s->count, fp->count, RELAXED);
    if (wait) store_wait(c, s, fp);
    slot_write_end(s);
}

static int start_collective(comm *c, comm_op op, comm_type type, int64_t count, int32_t root,
                            int wait, char *err, size_t errlen) {
    comm_fingerprint fp = {++c->sequence, op, type, count, root};
    publish_join(c, &fp, wait);
    if (c->check_fingerprints && c->world_size > 1) {
        if (!wait) comm_wait_begin(c, &fp);   /* the check itself blocks */
        int rc = comm_fingerprint_compare(c, &fp, err, errlen);
        if (!wait) comm_wait_end(c);
        return rc;
    }
    return 0;
}

int comm_collective_begin(comm *c, comm_op op, comm_type type, int64_t count, int32_t root,
                          char *err, size_t errlen) {
    return start_collective(c, op, type, count, root, 1, err, errlen);
}

int comm_collective_join(comm *c, comm_op op, comm_type type, int64_t count, int32_t root,
                         char *err, size_t errlen) {
    return start_collective(c, op, type, count, root, 0, err, errlen);
}

void comm_collective_end(comm *c) {
    comm_slot *s = c->self;
    slot_write_begin(s);
    atomic_store_explicit(&s->waiting, 0, RELAXED);
    atomic_store_explicit(&s->done_seq, c->sequence, RELAXED);
    slot_write_end(s);
}

void comm_wait_begin(comm *c, const comm_fingerprint *fp) {
    comm_slot *s = c->self;
    slot_write_begin(s);
    store_wait(c, s, fp);
    slot_write_end(s);
}

void comm_wait_end(comm *c) {
    comm_slot *s = c->self;
    slot_write_begin(s);
    atomic_store_explicit(&s->waiting, 0, RELAXED);
    slot_write_end(s);
}

void comm_state_set(comm *c, int32_t state) {
    if (c && c->self) atomic_store_explicit(&c->self->state, state, memory_order_release);
}

void comm_set_step(comm *c, int64_t step) { atomic_store_explicit(&c->self->step, step, RELAXED); }

void comm_watchdog_allow(comm *c, double seconds) {
    if (seconds > 0 && seconds < 1e9) c->pending_allow_ns = (int64_t)(seconds * 1e9);
}

/* ---- the segment ------------------------------------------------------------------------- */

static void use_private_slot(comm *c) {
    size_t bytes = sizeof(comm_shared_header) + sizeof(comm_slot);
    void *p = calloc(1, bytes);
    if (!p) {   /* a static fallback keeps the hot path free of NULL checks */
        static union { comm_shared_header h; char bytes[sizeof(comm_shared_header) + sizeof(comm_slot)]; } spare;
        p = &spare;
        bytes = 0;
    }
    c->mapping = p;
    c->mapping_bytes = bytes;
    c->shared = 0;
    c->header = p;
    c->slots = (comm_slot *)((char *)p + sizeof(comm_shared_header));
    c->shared_slots = 1;
    c->self = &c->slots[0];
    c->header->magic = COMM_SHARED_MAGIC;
    c->header->local_size = 1;
    atomic_store(&c->header->fired_by, -1);
}

static void fill_own_slot(comm *c) {
    comm_slot *s = c->self;
    uint64_t start = 0;
    comm_proc_stat((int)getpid(), NULL, &start);
    atomic_store(&s->pid, (int32_t)getpid());
    atomic_store(&s->world_rank, c->rank);
    atomic_store(&s->proc_start, start);
    atomic_store(&s->step, -1);
    atomic_store(&s->state, COMM_SLOT_RUNNING);
}

void comm_state_open(comm *c, MPI_Comm local) {
    if (gethostname(c->host, sizeof c->host) != 0) snprintf(c->host, sizeof c->host, "?");
    c->host[sizeof c->host - 1] = '\0';

    /* One name for the job, from rank 0. */
    char job[32] = "";
    if (c->rank == 0) {
        int here = 0;
        snprintf(job, sizeof job, "%x-%llx", (unsigned)getpid(),
                 (unsigned long long)comm_now_ns() ^ (unsigned long long)(uintptr_t)&here);
    }
    int ok = MPI_Bcast(job, sizeof job, MPI_CHAR, 0, c->world) == MPI_SUCCESS;
    job[sizeof job - 1] = '\0';

    /* The node leader creates the segment and shares its world rank (the node's name in it). */
    int info[2] = {c->rank, 0};   /* leader's world rank, segment created */
    size_t bytes = sizeof(comm_shared_header) + (size_t)c->local_size * sizeof(comm_slot);
    char name[COMM_SHM_NAME_BYTES];
    void *map = MAP_FAILED;
    if (c->local_rank == 0 && ok) {
        snprintf(name, sizeof name, "/harness-comm-%s-%d", job, c->rank);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) {
            if (ftruncate(fd, (off_t)bytes) == 0)
                map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
            if (map != MAP_FAILED) {
                comm_shared_header *h = map;   /* ftruncate zero-fills: slots start EMPTY */
                h->magic = COMM_SHARED_MAGIC;
                h->local_size = c->local_size;
                atomic_store(&h->fired_by, -1);
                atomic_store(&h->report_done, 0);
                info[1] = 1;
            } else {
                shm_unlink(name);
            }
        }
    }
    if (MPI_Bcast(info, 2, MPI_INT, 0, local) != MPI_SUCCESS) ok = 0;
    c->node_leader = ok ? info[0] : -1;
    if (ok && info[1] && c->local_rank != 0) {
        snprintf(name, sizeof name, "/harness-comm-%s-%d", job, info[0]);
        int fd = shm_open(name, O_RDWR, 0600);
        if (fd >= 0) {
            struct stat st;
            if (fstat(fd, &st) == 0 && (size_t)st.st_size == bytes)
                map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
        }
        if (map != MAP_FAILED && (((comm_shared_header *)map)->magic != COMM_SHARED_MAGIC ||
                                  ((comm_shared_header *)map)->local_size != c->local_size)) {
            munmap(map, bytes);
            map = MAP_FAILED;
        }
    }
    if (map != MAP_FAILED) {
        c->mapping = map;
        c->mapping_bytes = bytes;
        c->shared = 1;
        c->header = map;
        c->slots = (comm_slot *)((char *)map + sizeof(comm_shared_header));
        c->shared_slots = c->local_size;
        c->self = &c->slots[c->local_rank];
    } else {
        use_private_slot(c);
    }
    fill_own_slot(c);
    /* Everyone on the node has mapped it (or given up) and filled its slot: unlink the name. */
    MPI_Barrier(local);
    if (c->local_rank == 0 && info[1]) shm_unlink(name);
}

void comm_state_close(comm *c) {
    if (!c->mapping) return;
    if (c->shared) munmap(c->mapping, c->mapping_bytes);
    else if (c->mapping_bytes) free(c->mapping);
    c->mapping = NULL;
    c->header = NULL;
    c->slots = NULL;
    c->self = NULL;
}
