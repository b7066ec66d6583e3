/* comm_watchdog: a thread that turns a stalled collective or a lost rank into a prompt end of
 * the job with a report, instead of a silent hang.
 *
 * The thread never calls MPI (MPI stays FUNNELED).  Every poll interval (100 ms, less for
 * short timeouts) it reads the node's published slots (comm_state.c) and the clock:
 *   - stall: this rank has waited in one collective longer than the timeout (plus what
 *     comm_watchdog_allow granted for it);
 *   - lost rank: a rank of this node that has not finalised or aborted no longer exists
 *     (kill(pid, 0) fails, or /proc shows it a zombie or a new process under the same pid).
 *     Its peers are usually blocked waiting for it; shared-memory transports never notice.
 * The first watchdog of a node to fire claims the report (compare-and-swap in the segment),
 * writes it to stderr in one write(2), SIGKILLs the local ranks that have not joined the
 * stalled collective (a stopped or wedged rank cannot end itself), and ends its process with
 * _exit(1).  The other local watchdogs see the claim and end their processes too, after the
 * report is out.  So every rank of the node ends within the timeout (stall) or about one poll
 * interval (lost rank) whether or not the launcher kills the remaining ranks; under mpirun the
 * first non-zero exit also makes mpirun end the job everywhere.  Ranks on other nodes end
 * through the launcher, or through their own watchdog when they next wait on the lost rank.
 *
 * GPU collectives (NCCL buckets) never block the host: the thread also polls them
 * (comm_gpu_watch.c) - an NCCL asynchronous error, or a bucket still queued on the GPU after the
 * timeout, ends the job the same way, after ncclCommAbort. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"

#define POLL_MAX_NS INT64_C(100000000)       /* 100 ms */
#define POLL_MIN_NS INT64_C(5000000)         /* 5 ms */
#define FOLLOW_WAIT_NS INT64_C(2000000000)   /* how long the others wait for the report */
#define REPORT_BYTES 8192
#define REPORT_MAX_RANKS 16                  /* per-rank lines in a stall report */

/* How a peer's liveness can be checked. */
enum { WATCH_NONE = 0, WATCH_KILL, WATCH_PROC };

void comm_watchdog_init(comm *c) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->watchdog_wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&c->watchdog_lock, NULL);
    atomic_store(&c->timeout_ns, 0);
}

void comm_watchdog_destroy(comm *c) {
    pthread_cond_destroy(&c->watchdog_wake);
    pthread_mutex_destroy(&c->watchdog_lock);
}

/* ---- report text ------------------------------------------------------------------------- */

typedef struct {
    char text[REPORT_BYTES];
    size_t len;
} report;

static void say(report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void say(report *r, const char *fmt, ...) {
    if (r->len >= sizeof r->text - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->text + r->len, sizeof r->text - r->len, fmt, ap);
    va_end(ap);
    if (n > 0) r->len += (size_t)n < sizeof r->text - r->len ? (size_t)n : sizeof r->text - 1 - r->len;
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void step_text(int64_t step, char *out, size_t len) {
    if (step < 0) snprintf(out, len, "before its first step");
    else snprintf(out, len, "in step %lld", (long long)step);
}

static const char *proc_state_text(char st) {
    switch (st) {
    case 'R': return "running";
    case 'S': return "sleeping";
    case 'D': return "in uninterruptible I/O";
    case 'T': return "stopped (SIGSTOP)";
    case 't': return "stopped by a debugger";
    case 'Z': return "a zombie";
    default: return "alive";
    }
}

/* ---- liveness ---------------------------------------------------------------------------- */

static int peer_watch_mode(const comm_slot_view *v) {
    if (v->state == COMM_SLOT_EMPTY || v->pid <= 0) return WATCH_NONE;
    uint64_t start = 0;
    char st = 0;
    if (v->proc_start != 0 && comm_proc_stat(v->pid, &st, &start) == 0 && start == v->proc_start)
        return WATCH_PROC;
    /* A pid we cannot match to the process that published it: a different PID namespace (a
     * container per rank) or no /proc.  Only trust kill() when there is no /proc at all. */
    if (v->proc_start == 0 && (kill(v->pid, 0) == 0 || errno == EPERM)) return WATCH_KILL;
    return WATCH_NONE;
}

static int peer_alive(int mode, const comm_slot_view *v) {
    if (kill(v->pid, 0) != 0 && errno == ESRCH) return 0;
    if (mode == WATCH_KILL) return 1;
    char st = 0;
    uint64_t start = 0;
    if (comm_proc_stat(v->pid, &st, &start) != 0) return 0;
    if (start != v->proc_start) return 0;      /* the pid now belongs to someone else */
    return st != 'Z' && st != 'X' && st != 'x';
}

/* ---- ending ------------------------------------------------------------------------------ */

static void sleep_ns(int64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* The end of this process once the report is out: NCCL's communicator is aborted first (its
 * kernels and proxy threads let go of the GPU and network), within a bounded time. */
static void end_process(comm *c) {
    comm_gpu_exit_abort(c);
    int code = atomic_load(&c->header->exit_code);
    _exit(code != 0 ? code : 1);
}


/* Another local watchdog has fired: let it finish its report, then end this process (with
 * the line it left for us, if any). */
static void follow(comm *c) {
    comm_state_set(c, COMM_SLOT_FIRED);
    int64_t until = comm_now_ns() + FOLLOW_WAIT_NS;
    while (!atomic_load(&c->header->report_done) && comm_now_ns() < until) sleep_ns(10000000);
    char line[sizeof c->header->follow_line + 64];
    char note[sizeof c->header->follow_line];
    memcpy(note, c->header->follow_line, sizeof note);
    note[sizeof note - 1] = '\0';
    if (note[0]) {
        int n = snprintf(line, sizeof line, "harness: rank %d: %s\n", c->rank, note);
        if (n > 0) write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
    end_process(c);
}

/* A peer still in the job: running, or already following another watchdog's report (its own
 * watchdog noticed the claim first - its main thread may still be stuck, so it is treated like
 * a running rank and, when it holds the collective up, killed, not left to its own exit). */
static int still_running(const comm_slot_view *v) {
    return v->state == COMM_SLOT_RUNNING || v->state == COMM_SLOT_FIRED;
}

static int claim_report(comm *c) {
    int32_t none = -1;
    if (atomic_compare_exchange_strong(&c->header->fired_by, &none, c->rank)) {
        comm_state_set(c, COMM_SLOT_FIRED);
        return 1;
    }
    return 0;
}

static void finish(comm *c, report *r) {
    write_all(2, r->text, r->len);
    atomic_store(&c->header->report_done, 1);
}

/* ---- the two faults ---------------------------------------------------------------------- */

/* What a rank has that others need: "it had completed #D", "waiting in #W op(...)", ... */
static void progress_text(const comm_slot_view *v, char *out, size_t len) {
    char fp[200];
    if (v->waiting) {
        comm_fingerprint_text(&v->wait, fp, sizeof fp);
        snprintf(out, len, "waiting in collective %s (it had completed #%llu)", fp,
                 (unsigned long long)v->done_seq);
    } else if (v->done_seq >= v->joined.seq) {
        comm_fingerprint_text(&v->joined, fp, sizeof fp);
        snprintf(out, len, "its last collective was %s, which it had completed", fp);
    } else {
        comm_fingerprint_text(&v->joined, fp, sizeof fp);
        snprintf(out, len, "it had started collective %s and completed #%llu", fp,
                 (unsigned long long)v->done_seq);
    }
}

static void fire_lost(comm *c, int slot) {
    if (!claim_report(c)) follow(c);
    comm_slot_view v, me;
    comm_slot_read(&c->slots[slot], &v);
    comm_slot_read(c->self, &me);
    report r = {.len = 0};
    char what[300], stp[64];
    step_text(v.step, stp, sizeof stp);
    progress_text(&v, what, sizeof what);
    say(&r, "harness: rank %d: rank %d (pid %d on %s) is gone - killed, crashed, out of memory "
        "or exited without comm_finalize - while it was %s; %s.\n", c->rank, v.world_rank, v.pid,
        c->host, stp, what);
    step_text(me.step, stp, sizeof stp);
    progress_text(&me, what, sizeof what);
    say(&r, "harness: rank %d: this rank was %s, %s; ending the job\n", c->rank, stp, what);
    finish(c, &r);
    end_process(c);
}

/* A local rank's process as the watchdog sees it: its /proc state letter ('T' stopped, ...),
 * 'g' gone, '?' unknown (no /proc, another PID namespace). */
static char process_state(const comm *c, int i, const unsigned char *watch, const comm_slot_view *v) {
    char st = 0;
    uint64_t start = 0;
    int known = i == c->local_rank || watch[i] == WATCH_PROC;
    if (known && comm_proc_stat(v->pid, &st, &start) == 0 && start == v->proc_start) return st;
    if (i != c->local_rank && watch[i] != WATCH_NONE && !peer_alive(watch[i], v)) return 'g';
    return '?';
}

/* Why rank v holds up collective seq (0: it does not): its process is stopped or gone, it has
 * not joined the collective, or it started it (a gradient bucket) but is not in MPI to
 * complete it: computing, stopped or stuck. */
enum { HOLD_NONE = 0, HOLD_STOPPED, HOLD_GONE, HOLD_NOT_JOINED, HOLD_OUTSIDE_MPI };
static const char *const hold_text[] = {
    "", "is stopped", "is gone", "has not joined it",
    "started it but is not in MPI to finish it: computing, stopped or stuck"};
static int holds_up(const comm_slot_view *v, char st, uint64_t seq) {
    if (v->state == COMM_SLOT_EMPTY) return HOLD_NONE;
    if (st == 'T' || st == 't') return HOLD_STOPPED;
    if (st == 'g' || st == 'Z') return HOLD_GONE;
    if (v->joined.seq < seq) return HOLD_NOT_JOINED;
    /* NCCL: its GPU has the collective queued or running - it takes part, whatever its host
     * does meanwhile. */
    if (v->device_open_seq != 0 && v->device_open_seq <= seq) return HOLD_NONE;
    if (!v->waiting && v->done_seq < seq) return HOLD_OUTSIDE_MPI;
    return HOLD_NONE;
}

/* gpu_line: an extra line after the first (a GPU collective's bucket), or NULL. */
static void fire_stall(comm *c, const comm_slot_view *me, int64_t now, const unsigned char *watch,
                       const char *gpu_line) {
    if (!claim_report(c)) follow(c);
    report r = {.len = 0};
    char fp[200], stp[64];
    int n = c->shared_slots;
    uint64_t W = me->wait.seq;
    double waited = (double)(now - me->wait_since_ns) * 1e-9;
    double timeout = (double)atomic_load(&c->timeout_ns) * 1e-9;
    comm_fingerprint_text(&me->wait, fp, sizeof fp);
    step_text(me->step, stp, sizeof stp);
    say(&r, "harness: rank %d: collective %s %s has not completed after %.1f s (comm timeout "
        "%.1f s", c->rank, fp, stp, waited, timeout);
    if (me->wait_allow_ns > 0) say(&r, " + %.1f s allowed", (double)me->wait_allow_ns * 1e-9);
    say(&r, ")\n");
    if (gpu_line) say(&r, "%s", gpu_line);

    /* Which ranks of this node hold it up? */
    comm_slot_view *views = calloc((size_t)n, sizeof *views);
    char *states = calloc((size_t)n, 1);
    if (!states) { free(views); views = NULL; }
    int holding = 0, unknown = 0;
    char who[1024] = "";
    size_t wl = 0;
    for (int i = 0; views && i < n; i++) {
        comm_slot_read(&c->slots[i], &views[i]);
        if (views[i].state == COMM_SLOT_EMPTY) { unknown++; continue; }
        states[i] = process_state(c, i, watch, &views[i]);
        int why = holds_up(&views[i], states[i], W);
        if (why == HOLD_NONE) continue;
        if (wl < sizeof who - 100)
            wl += (size_t)snprintf(who + wl, sizeof who - wl, "%srank %d (%s)", holding ? ", " : "",
                                   views[i].world_rank, hold_text[why]);
        holding++;
    }
    int remote = c->world_size - n + unknown;
    if (holding > 0) {
        say(&r, "harness: rank %d: holding it up: %s", c->rank, who);
        if (remote > 0) say(&r, "; %d rank%s on other nodes cannot be seen from here", remote, remote > 1 ? "s" : "");
        say(&r, "\n");
    } else if (remote > 0) {
        say(&r, "harness: rank %d: every rank on this node has joined it; the rank%s holding it up %s among "
            "the %d rank%s on other nodes\n", c->rank, remote > 1 ? "s" : "", remote > 1 ? "are" : "is",
            remote, remote > 1 ? "s" : "");
    } else {
        say(&r, "harness: rank %d: every rank has joined it: the ranks disagree on what it is (fingerprint "
            "checks - comm_check_fingerprints, harness's comm.check_fingerprints - name the first "
            "mismatch), or %s itself is stuck\n", c->rank,
            gpu_line ? "the GPU (a kernel the bucket waits behind) or NCCL" : "MPI");
    }
    for (int i = 0; views && i < n && i < REPORT_MAX_RANKS; i++) {
        const comm_slot_view *v = &views[i];
        if (v->state == COMM_SLOT_EMPTY) continue;
        const char *life = states[i] == 'g' ? "gone" : states[i] == '?' ? "state unknown"
                           : proc_state_text(states[i]);
        if (v->state == COMM_SLOT_FINALIZED) life = "in comm_finalize";
        step_text(v->step, stp, sizeof stp);
        if (v->waiting) {
            comm_fingerprint_text(&v->wait, fp, sizeof fp);
            say(&r, "harness: rank %d:   rank %d (pid %d, %s) %s: waiting %.1f s in %s\n", c->rank,
                v->world_rank, v->pid, life, stp, (double)(now - v->wait_since_ns) * 1e-9, fp);
        } else {
            comm_fingerprint_text(&v->joined, fp, sizeof fp);
            say(&r, "harness: rank %d:   rank %d (pid %d, %s) %s: not in a collective; last joined %s, "
                "completed #%llu", c->rank, v->world_rank, v->pid, life, stp, fp,
                (unsigned long long)v->done_seq);
            if (v->device_open_seq != 0)
                say(&r, "; its GPU has had #%llu queued for %.1f s",
                    (unsigned long long)v->device_open_seq,
                    (double)(now - v->device_open_since_ns) * 1e-9);
            say(&r, "\n");
        }
        /* Same collective number, different collective: the usual cause of a silent hang. */
        if (v->waiting && v->wait.seq == W &&
            (v->wait.op != me->wait.op || v->wait.type != me->wait.type || v->wait.count != me->wait.count)) {
            char mine[200];
            comm_fingerprint_text(&me->wait, mine, sizeof mine);
            say(&r, "harness: rank %d:   ranks disagree on collective #%llu: rank %d calls %s, "
                "rank %d calls %s\n", c->rank, (unsigned long long)W, c->rank, mine,
                v->world_rank, fp);
        }
    }
    if (n > REPORT_MAX_RANKS) say(&r, "harness: rank %d:   (%d more ranks on this node)\n", c->rank, n - REPORT_MAX_RANKS);

    /* The ranks holding it up are killed: a stopped or wedged process cannot end itself. */
    int killed = 0;
    char victims[512] = "";
    size_t vl = 0;
    for (int i = 0; views && i < n; i++) {
        const comm_slot_view *v = &views[i];
        if (i == c->local_rank || !still_running(v) || watch[i] == WATCH_NONE) continue;
        if (holds_up(v, states[i], W) == HOLD_NONE || !peer_alive(watch[i], v)) continue;
        if (vl < sizeof victims - 40)
            vl += (size_t)snprintf(victims + vl, sizeof victims - vl, "%s%d (pid %d)",
                                   killed ? ", " : "", v->world_rank, v->pid);
        killed++;
    }
    if (killed > 0)
        say(&r, "harness: rank %d: ending the job; killing rank%s %s, which cannot be relied on "
            "to end %s\n", c->rank, killed > 1 ? "s" : "", victims, killed > 1 ? "themselves" : "itself");
    else
        say(&r, "harness: rank %d: ending the job\n", c->rank);
    finish(c, &r);
    for (int i = 0; views && i < n; i++) {
        const comm_slot_view *v = &views[i];
        if (i == c->local_rank || !still_running(v) || watch[i] == WATCH_NONE) continue;
        if (holds_up(v, states[i], W) != HOLD_NONE && peer_alive(watch[i], v)) kill(v->pid, SIGKILL);
    }
    end_process(c);
}

/* A GPU collective of this rank: stalled (reported like a host stall, with this rank "waiting"
 * in it since it was queued), or NCCL reported an asynchronous error. */
static void fire_gpu(comm *c, const comm_gpu_watch_report *g, int64_t now, const unsigned char *watch) {
    char fp[200], stp[64], line[700];
    comm_slot_view me;
    comm_slot_read(c->self, &me);
    step_text(me.step, stp, sizeof stp);
    if (g->kind == COMM_GPU_WATCH_STALL) {
        /* named by what was queued: a bucket's all-reduce or reduce-scatter (f32 or bf16), the
         * ZeRO parameter all-gather, the f64 sum */
        char what[160];
        if (g->bucket >= 0)
            snprintf(what, sizeof what, "%s (%s) of bucket %lld of %lld (elements [%lld, %lld))",
                     comm_op_name(g->fp.op), comm_type_name(g->fp.type), (long long)g->bucket,
                     (long long)g->buckets, (long long)g->start, (long long)(g->start + g->count));
        else
            snprintf(what, sizeof what, "%s (%lld x %s)", comm_op_name(g->fp.op),
                     (long long)g->count, comm_type_name(g->fp.type));
        snprintf(line, sizeof line, "harness: rank %d: on the GPU: NCCL %s, queued on comm's "
                 "stream %.1f s ago, has not finished%s%s\n", c->rank, what,
                 (double)(now - g->since_ns) * 1e-9, g->detail[0] ? "; " : "", g->detail);
        me.waiting = 1;
        me.wait = g->fp;
        me.wait_since_ns = g->since_ns;
        me.wait_allow_ns = 0;
        fire_stall(c, &me, now, watch, line);   /* does not return */
    }
    if (!claim_report(c)) follow(c);
    report r = {.len = 0};
    if (g->fp.seq != 0) {
        comm_fingerprint_text(&g->fp, fp, sizeof fp);
        say(&r, "harness: rank %d: NCCL reported an error during collective %s %s (gradient bucket "
            "%lld of %lld, queued %.1f s ago): %s\n", c->rank, fp, stp, (long long)g->bucket,
            (long long)g->buckets, (double)(now - g->since_ns) * 1e-9, g->detail);
    } else {
        say(&r, "harness: rank %d: NCCL reported an error %s, with no gradient all-reduce in flight "
            "(completed #%llu): %s\n", c->rank, stp, (unsigned long long)me.done_seq, g->detail);
    }
    say(&r, "harness: rank %d: aborting the NCCL communicator and ending the job\n", c->rank);
    finish(c, &r);
    end_process(c);
}

void comm_watchdog_fire_external(comm *c, const char *text, size_t len, const char *follow_line,
                                 int exit_code) {
    if (!claim_report(c)) follow(c);
    atomic_store(&c->header->exit_code, exit_code);
    if (follow_line) {
        snprintf(c->header->follow_line, sizeof c->header->follow_line, "%s", follow_line);
        atomic_thread_fence(memory_order_release);
    }
    write_all(2, text, len);
    atomic_store(&c->header->report_done, 1);
    end_process(c);
}

/* ---- the thread -------------------------------------------------------------------------- */

/* How each peer can be watched.  A peer that has not published its pid yet when the watchdog
 * starts (a slower rank) is looked at again on every tick until it has. */
static void resolve_watch(comm *c, unsigned char *watch) {
    for (int i = 0; i < c->shared_slots; i++) {
        if (i == c->local_rank || watch[i] != WATCH_NONE) continue;
        comm_slot_view v;
        comm_slot_read(&c->slots[i], &v);
        watch[i] = (unsigned char)peer_watch_mode(&v);
    }
}

static void check(comm *c, unsigned char *watch) {
    resolve_watch(c, watch);
    int32_t fired = atomic_load(&c->header->fired_by);
    if (fired >= 0 && fired != c->rank) follow(c);

    int64_t now = comm_now_ns(), timeout = atomic_load(&c->timeout_ns);
    comm_slot_view me;
    comm_slot_read(c->self, &me);
    if (me.consistent && me.waiting && now - me.wait_since_ns > timeout + me.wait_allow_ns)
        fire_stall(c, &me, now, watch, NULL);
    comm_gpu_watch_report gpu;
    if (comm_gpu_watch(c, now, timeout, &gpu)) fire_gpu(c, &gpu, now, watch);

    for (int i = 0; i < c->shared_slots; i++) {
        if (i == c->local_rank || watch[i] == WATCH_NONE) continue;
        comm_slot *s = &c->slots[i];
        if (atomic_load(&s->state) != COMM_SLOT_RUNNING) continue;
        comm_slot_view v;
        comm_slot_read(s, &v);
        if (peer_alive(watch[i], &v)) continue;
        /* It may have finalised, aborted or fired just before it went. */
        if (atomic_load(&s->state) != COMM_SLOT_RUNNING || atomic_load(&c->header->fired_by) >= 0) continue;
        fire_lost(c, i);
    }
}

static void *watchdog_main(void *arg) {
    comm *c = arg;
    int n = c->shared_slots;
    unsigned char *watch = calloc((size_t)n, 1);
    if (!watch) return NULL;
    resolve_watch(c, watch);
    pthread_mutex_lock(&c->watchdog_lock);
    while (!c->watchdog_stop) {
        int64_t poll = atomic_load(&c->timeout_ns) / 10;
        if (poll > POLL_MAX_NS) poll = POLL_MAX_NS;
        if (poll < POLL_MIN_NS) poll = POLL_MIN_NS;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)poll;
        while (until.tv_nsec >= 1000000000L) { until.tv_nsec -= 1000000000L; until.tv_sec++; }
        int rc = 0;
        while (!c->watchdog_stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&c->watchdog_wake, &c->watchdog_lock, &until);
        if (c->watchdog_stop) break;
        pthread_mutex_unlock(&c->watchdog_lock);
        check(c, watch);
        pthread_mutex_lock(&c->watchdog_lock);
    }
    pthread_mutex_unlock(&c->watchdog_lock);
    free(watch);
    return NULL;
}

int comm_watchdog_start(comm *c, double timeout_s, char *err, size_t errlen) {
    if (!(timeout_s > 0) || timeout_s > 1e6)
        return comm_error(err, errlen, "comm_watchdog_start: timeout %g s is not in (0, 1e6]", timeout_s);
    atomic_store(&c->timeout_ns, (int64_t)(timeout_s * 1e9));
    if (c->watchdog_running) return 0;
    c->watchdog_stop = 0;
    /* The thread blocks every signal: the trainer's SIGTERM / SIGUSR1 handlers run on the
     * main thread, as they did before. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->watchdog, NULL, watchdog_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return comm_error(err, errlen, "comm_watchdog_start: cannot start the thread: %s", strerror(rc));
    c->watchdog_running = 1;
    return 0;
}

void comm_watchdog_shutdown(comm *c) {
    if (!c->watchdog_running) return;
    pthread_mutex_lock(&c->watchdog_lock);
    c->watchdog_stop = 1;
    pthread_cond_signal(&c->watchdog_wake);
    pthread_mutex_unlock(&c->watchdog_lock);
    pthread_join(c->watchdog, NULL);
    c->watchdog_running = 0;
}

void comm_watchdog_stop(comm *c) { comm_watchdog_shutdown(c); }
