/* comm_heartbeat: a lost node seen in seconds and named, independently of MPI's progress.
 *
 * A rank blocked in a collective with a node that lost power notices nothing: MPI waits (TCP
 * without keepalives waits for hours), and the watchdog only sees its own node.  So the node
 * leaders (local rank 0 of each node) keep a heartbeat with rank 0 on a UDP socket of their
 * own, on a thread of their own that never calls MPI:
 *   - every interval each leader sends rank 0 a PING (with its step); rank 0 answers PONG;
 *   - rank 0 counts a node lost when it has heard nothing from it for `silence` seconds; it
 *     tells the other leaders (LOST, naming the node) and ends its own node's ranks;
 *   - a leader counts rank 0's node lost when no PONG came for `silence` seconds (rank 0's
 *     node died, or this node is the one cut off: the report says both);
 *   - a leader told LOST ends its node's ranks with the same message.
 * Ending a node = the watchdog's report path (comm_watchdog_fire_external): the leader writes
 * the report, and every other local rank's watchdog follows with one line naming the lost node
 * and the caller's exit status ("a node was lost").  So every surviving rank ends within about
 * silence + one interval, named node, its ranks and its last step included.
 *
 * Addresses: every leader binds an ephemeral UDP port on all IPv4 addresses and the ranks
 * all-gather (leader, port, addresses with netmasks, host name) once at start.  A leader sends
 * to rank 0's address on a subnet it shares (the cluster network), else to rank 0's first
 * non-loopback address; rank 0 answers to where each PING came from.  Datagrams carry a random
 * job token, so strays from another job are ignored.
 * A thread that was itself stopped (SIGSTOP, a suspended job) restarts its clocks instead of
 * declaring everyone lost.  comm_finalize says BYE (three datagrams), so a node that finishes
 * early is not taken for lost.  Cost per step: none (the thread sleeps in poll() between
 * datagrams of 48 bytes). */
/* getifaddrs and IFF_* are BSD/GNU interfaces beyond the POSIX level the build sets */
#undef _POSIX_C_SOURCE
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm_internal.h"

#define HB_MAGIC 0x68726e62u          /* "hrnb" */
#define HB_MAX_ADDRS 8
#define HB_REPORT_BYTES 4096

enum { HB_PING = 1, HB_PONG, HB_LOST, HB_BYE };

/* What each rank tells the others at start (all-gathered; plain bytes, same layout on every
 * rank of the job). */
typedef struct {
    int32_t leader;                 /* world rank of this rank's node leader */
    int32_t port;                   /* leaders: the UDP port (host order), 0: none */
    int32_t naddr;
    uint32_t addr[HB_MAX_ADDRS];    /* IPv4, network order */
    uint32_t mask[HB_MAX_ADDRS];
    uint64_t token;                 /* rank 0's: the job's */
    char host[64];
} hb_card;

typedef struct {
    uint32_t magic, kind;
    uint64_t token;
    int32_t from;       /* sender's node index */
    int32_t lost;       /* LOST: the lost node's index */
    int64_t step;       /* sender's step */
    int64_t lost_step;  /* LOST: the lost node's last heard step */
    double lost_silence;
} hb_msg;

typedef struct {
    int leader;                     /* world rank */
    char host[64];
    char ranks[128];                /* "ranks 2-3" */
    struct sockaddr_in to;          /* rank 0: where its PINGs come from; leaders: node 0 */
    int known;                      /* rank 0: `to` is set */
    int64_t last_seen_ns;
    int64_t step;
    int departed;                   /* said BYE */
} hb_node;

struct comm_heartbeat {
    int fd, wake[2];                /* the socket; a pipe that wakes the thread to stop */
    int me;                         /* this node's index (0: rank 0's node) */
    int nodes;
    hb_node *node;                  /* [nodes] */
    uint64_t token;
    int64_t silence_ns, interval_ns;
    int exit_code;
    pthread_t thread;
    int running;
};

static int64_t ms_of(int64_t ns) { return ns / 1000000; }

/* "ranks 2-3" / "rank 4" / "ranks 0, 2, 4-5": the ranks whose node leader is `leader`. */
static void ranks_text(const hb_card *cards, int world, int leader, char *out, size_t len) {
    char body[120] = "";
    size_t n = 0;
    int count = 0, first = -1, prev = -1;
    for (int r = 0; r <= world; r++) {
        int in = r < world && cards[r].leader == leader;
        if (in && first >= 0 && r == prev + 1) { prev = r; count++; continue; }
        if (first >= 0 && n < sizeof body - 24) {   /* the run [first, prev] ends */
            n += (size_t)snprintf(body + n, sizeof body - n, "%s%d", n ? ", " : "", first);
            if (prev > first) n += (size_t)snprintf(body + n, sizeof body - n, "-%d", prev);
        }
        first = prev = in ? r : -1;
        count += in;
    }
    snprintf(out, len, "rank%s %s", count > 1 ? "s" : "", body);
}

/* This host's IPv4 addresses except loopback, up to HB_MAX_ADDRS. */
static int own_addresses(uint32_t *addr, uint32_t *mask) {
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0) return 0;
    int n = 0;
    for (struct ifaddrs *i = list; i && n < HB_MAX_ADDRS; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask) continue;
        if ((i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP)) continue;
        addr[n] = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
        mask[n] = ((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr;
        n++;
    }
    freeifaddrs(list);
    return n;
}

/* Rank 0's address as a leader reaches it: one on a subnet both share, else its first. */
static uint32_t pick_root_address(const hb_card *mine, const hb_card *root) {
    for (int i = 0; i < root->naddr; i++)
        for (int j = 0; j < mine->naddr; j++)
            if ((root->addr[i] & mine->mask[j]) == (mine->addr[j] & mine->mask[j])) return root->addr[i];
    return root->addr[0];
}

static int open_socket(int *port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- the thread ---------------------------------------------------------------------------- */

static void send_msg(struct comm_heartbeat *h, const struct sockaddr_in *to, int kind, int64_t step,
                     int lost, int64_t lost_step, double lost_silence) {
    hb_msg m = {.magic = HB_MAGIC, .kind = (uint32_t)kind, .token = h->token, .from = h->me,
                .lost = lost, .step = step, .lost_step = lost_step, .lost_silence = lost_silence};
    /* best effort: a full buffer or an unreachable network is what silence is for */
    (void)sendto(h->fd, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)to, sizeof *to);
}

static int64_t own_step(comm *c) { return atomic_load_explicit(&c->self->step, memory_order_relaxed); }

static void step_words(int64_t step, char *out, size_t len) {
    if (step < 0) snprintf(out, len, "before its first step");
    else snprintf(out, len, "in step %lld", (long long)step);
}

/* Ends this node: the report (several lines), then every local rank exits with exit_code. */
static void end_node(comm *c, int lost, double silence, int64_t lost_step, int told_by_root) {
    struct comm_heartbeat *h = c->hb;
    hb_node *n = &h->node[lost];
    char text[HB_REPORT_BYTES], last[64], mine[64], line[400];
    step_words(lost_step, last, sizeof last);
    step_words(own_step(c), mine, sizeof mine);
    size_t len = 0;
    if (told_by_root) {
        len += (size_t)snprintf(text + len, sizeof text - len, "harness: rank %d: node %s (%s) "
                                "was lost: rank 0 on %s has heard no heartbeat from it for %.1f s "
                                "(comm.heartbeat_s %.1f); it was last heard %s\n", c->rank,
                                n->host, n->ranks, h->node[0].host, silence,
                                (double)h->silence_ns * 1e-9, last);
    } else if (lost == 0) {
        len += (size_t)snprintf(text + len, sizeof text - len, "harness: rank %d: node %s (%s) "
                                "was lost: rank 0's node, it has not answered this node's heartbeats for "
                                "%.1f s (comm.heartbeat_s %.1f) - it lost power or crashed, or this "
                                "node (%s) is the one cut off from the network; it was last heard "
                                "%s\n", c->rank, n->host, n->ranks, silence,
                                (double)h->silence_ns * 1e-9, c->host, last);
    } else {
        len += (size_t)snprintf(text + len, sizeof text - len, "harness: rank %d: node %s (%s) "
                                "was lost: no heartbeat from it for %.1f s (comm.heartbeat_s %.1f) "
                                "- it lost power, crashed or is cut off from the network; it was "
                                "last heard %s\n", c->rank, n->host, n->ranks, silence,
                                (double)h->silence_ns * 1e-9, last);
    }
    if (len < sizeof text)
        len += (size_t)snprintf(text + len, sizeof text - len, "harness: rank %d: this rank is "
                                "%s; ending the ranks on %s with exit status %d (a node was lost)\n",
                                c->rank, mine, c->host, h->exit_code);
    if (len >= sizeof text) len = sizeof text - 1;
    snprintf(line, sizeof line, "node %s (%s) was lost %s; ending with exit status %d",
             n->host, n->ranks, last, h->exit_code);
    comm_watchdog_fire_external(c, text, len, line, h->exit_code);
}

/* Rank 0: node k is lost.  The other leaders are told (three datagrams each) first. */
static void root_lost(comm *c, int k, int64_t now) {
    struct comm_heartbeat *h = c->hb;
    double silence = (double)(now - h->node[k].last_seen_ns) * 1e-9;
    for (int rep = 0; rep < 3; rep++)
        for (int j = 1; j < h->nodes; j++)
            if (j != k && h->node[j].known && !h->node[j].departed)
                send_msg(h, &h->node[j].to, HB_LOST, own_step(c), k, h->node[k].step, silence);
    end_node(c, k, silence, h->node[k].step, 0);
}

static void receive_all(comm *c, int64_t now) {
    struct comm_heartbeat *h = c->hb;
    for (;;) {
        hb_msg m;
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t got = recvfrom(h->fd, &m, sizeof m, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return;
        if ((size_t)got != sizeof m || m.magic != HB_MAGIC || m.token != h->token) continue;
        if (m.from < 0 || m.from >= h->nodes || m.from == h->me) continue;
        hb_node *n = &h->node[m.from];
        if (h->me == 0) {
            if (m.kind == HB_BYE) { n->departed = 1; continue; }
            if (m.kind != HB_PING) continue;
            n->last_seen_ns = now;
            n->step = m.step;
            n->to = from;
            n->known = 1;
            send_msg(h, &from, HB_PONG, own_step(c), -1, 0, 0);
        } else {
            if (m.kind == HB_BYE) { n->departed = 1; continue; }
            if (m.kind == HB_PONG) { n->last_seen_ns = now; n->step = m.step; }
            if (m.kind == HB_LOST && m.lost > 0 && m.lost < h->nodes && m.lost != h->me)
                end_node(c, m.lost, m.lost_silence, m.lost_step, 1);
        }
    }
}

static void *heartbeat_main(void *arg) {
    comm *c = arg;
    struct comm_heartbeat *h = c->hb;
    int64_t last_tick = comm_now_ns(), last_ping = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = h->fd, .events = POLLIN}, {.fd = h->wake[0], .events = POLLIN}};
        int wait_ms = (int)ms_of(h->interval_ns);
        if (poll(p, 2, wait_ms > 0 ? wait_ms : 1) < 0 && errno != EINTR) break;
        if (p[1].revents) break;    /* comm_heartbeat_shutdown */
        int64_t now = comm_now_ns();
        /* This thread was not scheduled for half the silence (the process was stopped, the job
         * suspended): nobody can be judged on that gap. */
        if (now - last_tick > h->silence_ns / 2)
            for (int k = 0; k < h->nodes; k++) h->node[k].last_seen_ns = now;
        last_tick = now;
        receive_all(c, now);
        if (h->me != 0 && now - last_ping >= h->interval_ns) {
            send_msg(h, &h->node[0].to, HB_PING, own_step(c), -1, 0, 0);
            last_ping = now;
        }
        for (int k = 0; k < h->nodes; k++) {
            hb_node *n = &h->node[k];
            if (k == h->me || n->departed || now - n->last_seen_ns <= h->silence_ns) continue;
            if (h->me == 0) root_lost(c, k, now);   /* does not return */
            else if (k == 0) end_node(c, 0, (double)(now - n->last_seen_ns) * 1e-9, n->step, 0);
        }
    }
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------------------- */

static void hb_free(struct comm_heartbeat *h) {
    if (!h) return;
    if (h->fd >= 0) close(h->fd);
    if (h->wake[0] >= 0) close(h->wake[0]);
    if (h->wake[1] >= 0) close(h->wake[1]);
    free(h->node);
    free(h);
}

/* The node table from the cards: node 0 is rank 0's, the others in order of their leaders. */
static int build_nodes(comm *c, struct comm_heartbeat *h, const hb_card *cards) {
    int world = c->world_size;
    h->nodes = 0;
    for (int r = 0; r < world; r++) if (cards[r].leader == r) h->nodes++;
    h->node = calloc((size_t)h->nodes, sizeof *h->node);
    if (!h->node) return -1;
    int k = 0;
    for (int r = 0; r < world; r++) {
        if (cards[r].leader != r) continue;
        hb_node *n = &h->node[k];
        n->leader = r;
        snprintf(n->host, sizeof n->host, "%s", cards[r].host);
        ranks_text(cards, world, r, n->ranks, sizeof n->ranks);
        n->step = -1;
        if (r == c->node_leader) h->me = k;
        k++;
    }
    return 0;
}

int comm_heartbeat_start(comm *c, double silence_s, int exit_code, char *err, size_t errlen) {
    if (!(silence_s > 0) || silence_s > 1e6)
        return comm_error(err, errlen, "comm_heartbeat_start: silence %g s is not in (0, 1e6]", silence_s);
    if (c->hb) return 0;
    int leader = c->local_rank == 0;
    struct comm_heartbeat *h = calloc(1, sizeof *h);
    hb_card *cards = calloc((size_t)c->world_size, sizeof *cards);
    hb_card mine;
    memset(&mine, 0, sizeof mine);
    int fd = -1, port = 0;
    if (h && leader) fd = open_socket(&port);
    mine.leader = c->node_leader;
    mine.port = fd >= 0 ? port : 0;
    if (leader) mine.naddr = own_addresses(mine.addr, mine.mask);
    snprintf(mine.host, sizeof mine.host, "%s", c->host);
    if (c->rank == 0) {
        int here = 0;
        mine.token = (uint64_t)comm_now_ns() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() ^
                     (uint64_t)(uintptr_t)&here;
    }
    int ok = h && cards && c->node_leader >= 0;
    int32_t flags[1] = {!ok};
    int rc = MPI_Allreduce(MPI_IN_PLACE, flags, 1, MPI_INT32_T, MPI_MAX, c->world);
    if (rc == MPI_SUCCESS && !flags[0])
        rc = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, cards, (int)sizeof mine, MPI_BYTE, c->world);
    if (rc != MPI_SUCCESS || flags[0]) {
        if (fd >= 0) close(fd);
        free(cards);
        free(h);
        if (rc != MPI_SUCCESS) return comm_mpi_error(c, rc, "comm_heartbeat_start: MPI_Allgather", err, errlen);
        return comm_error(err, errlen, "comm_heartbeat_start: out of memory, or the node's "
                          "shared state could not be set up");
    }
    /* Every rank judges the same cards, so every rank gives the same verdict.  One node: the
     * watchdog sees every rank already. */
    int nodes = 0;
    for (int r = 0; r < c->world_size; r++) nodes += cards[r].leader == r;
    if (nodes <= 1) {
        if (fd >= 0) close(fd);
        free(cards);
        free(h);
        return 0;
    }
    const char *why = NULL;
    int bad = -1;
    for (int r = 0; r < c->world_size && !why; r++) {
        if (cards[r].leader != r) continue;
        if (cards[r].port == 0) why = "could not open a UDP socket", bad = r;
        else if (cards[r].naddr == 0 && r == 0) why = "has no IPv4 address but loopback", bad = r;
    }
    h->fd = fd;
    h->wake[0] = h->wake[1] = -1;
    h->token = cards[0].token;
    h->silence_ns = (int64_t)(silence_s * 1e9);
    /* 10 heartbeats per silence, at most 2 per second: one lost datagram never decides */
    h->interval_ns = h->silence_ns / 10 < INT64_C(500000000) ? h->silence_ns / 10 : INT64_C(500000000);
    h->exit_code = exit_code;
    if (why || build_nodes(c, h, cards) != 0) {
        free(cards);
        hb_free(h);
        if (why) return comm_error(err, errlen, "heartbeat between nodes: the leader of node %s "
                                   "(rank %d) %s; turn it off with comm.heartbeat_s=0",
                                   cards[bad].host, bad, why);
        return comm_error(err, errlen, "comm_heartbeat_start: out of memory");
    }
    if (h->nodes > 1 && leader) {
        hb_node *root = &h->node[0];
        root->to.sin_family = AF_INET;
        root->to.sin_port = htons((uint16_t)cards[0].port);
        root->to.sin_addr.s_addr = pick_root_address(&cards[c->rank], &cards[0]);
        root->known = 1;
    }
    free(cards);
    /* The other local ranks end through their watchdogs (follow): make sure one runs. */
    if (!c->watchdog_running && comm_watchdog_start(c, 1e6, err, errlen) != 0) {
        hb_free(h);
        return 1;
    }
    if (!leader) {
        hb_free(h);
        return 0;
    }
    int64_t now = comm_now_ns();
    for (int k = 0; k < h->nodes; k++) h->node[k].last_seen_ns = now;
    if (pipe(h->wake) != 0) {
        hb_free(h);
        return comm_error(err, errlen, "comm_heartbeat_start: pipe: %s", strerror(errno));
    }
    c->hb = h;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&h->thread, NULL, heartbeat_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        c->hb = NULL;
        hb_free(h);
        return comm_error(err, errlen, "comm_heartbeat_start: cannot start the thread: %s", strerror(prc));
    }
    h->running = 1;
    return 0;
}

void comm_heartbeat_shutdown(comm *c) {
    struct comm_heartbeat *h = c->hb;
    if (!h) return;
    if (h->running) {
        char b = 1;
        while (write(h->wake[1], &b, 1) < 0 && errno == EINTR) {}
        pthread_join(h->thread, NULL);
    }
    /* Goodbye (three times, datagrams may be dropped): a node that ends first is not lost. */
    for (int rep = 0; rep < 3; rep++) {
        if (h->me == 0) {
            for (int k = 1; k < h->nodes; k++)
                if (h->node[k].known) send_msg(h, &h->node[k].to, HB_BYE, own_step(c), -1, 0, 0);
        } else {
            send_msg(h, &h->node[0].to, HB_BYE, own_step(c), -1, 0, 0);
        }
    }
    c->hb = NULL;
    hb_free(h);
}
