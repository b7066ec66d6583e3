/* comm_netcheck: the network check at start.  Before the first step, so that a slow node or
 * link is seen before it costs a day of training:
 *   - the gradient all-reduce at the bucket size (host memory, MPI) over all ranks, timed as
 *     the slowest rank sees it (median of reps), as bus bandwidth: 2 (n - 1) / n x bytes / time,
 *     the bytes every rank's link must carry in a ring all-reduce (NCCL's convention);
 *   - each other node's own path to rank 0's node: rank 0 and that node's leader exchange one
 *     bucket each way, 2 x reps times, one node at a time (a node's value is 2 x bytes / its
 *     fastest round trip).  A node under a tenth of the others' median is named.
 * Collective over all ranks; a few milliseconds for 256 KiB buckets on a fast network. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The timed all-reduce: reps rounds after one warm-up, each round's time the slowest rank's. */
static int time_allreduce(comm *c, float *buf, int count, int reps, double *out) {
    double *t = calloc((size_t)reps, sizeof *t);
    if (!t) return -1;
    for (int i = -1; i < reps; i++) {
        if (MPI_Barrier(c->world) != MPI_SUCCESS) goto fail;
        double t0 = MPI_Wtime();
        if (MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, c->world) != MPI_SUCCESS)
            goto fail;
        double dt = MPI_Wtime() - t0;
        if (MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, c->world) != MPI_SUCCESS)
            goto fail;
        if (i >= 0) t[i] = dt;
    }
    *out = median(t, reps);
    free(t);
    return 0;
fail:
    free(t);
    return -1;
}

/* Rank 0 <-> the leader of node k: reps round trips of count floats; rank 0 keeps the fastest
 * (a busy core delays single rounds by a factor of several; a slow link slows every round). */
static int time_node(comm *c, float *buf, int count, int leader, int reps, double *out) {
    double *t = calloc((size_t)reps, sizeof *t);
    if (!t) return -1;
    int tag = 7301, rc = MPI_SUCCESS;
    for (int i = -1; i < reps && rc == MPI_SUCCESS; i++) {
        double t0 = MPI_Wtime();
        if (c->rank == 0) {
            rc = MPI_Send(buf, count, MPI_FLOAT, leader, tag, c->world);
            if (rc == MPI_SUCCESS)
                rc = MPI_Recv(buf, count, MPI_FLOAT, leader, tag, c->world, MPI_STATUS_IGNORE);
        } else if (c->rank == leader) {
            rc = MPI_Recv(buf, count, MPI_FLOAT, 0, tag, c->world, MPI_STATUS_IGNORE);
            if (rc == MPI_SUCCESS) rc = MPI_Send(buf, count, MPI_FLOAT, 0, tag, c->world);
        }
        if (i >= 0) t[i] = MPI_Wtime() - t0;
    }
    if (c->rank == 0) {
        *out = t[0];
        for (int i = 1; i < reps; i++) *out = t[i] < *out ? t[i] : *out;
    }
    free(t);
    return rc == MPI_SUCCESS ? 0 : -1;
}

void comm_netcheck_free(comm_netcheck *nc) {
    free(nc->node_gbps);
    free(nc->node_host);
    memset(nc, 0, sizeof *nc);
}

int comm_netcheck_run(comm *c, size_t bytes, int reps, comm_netcheck *nc, char *err, size_t errlen) {
    memset(nc, 0, sizeof *nc);
    int n = c->world_size, count = (int)(bytes / sizeof(float));
    if (count < 1) count = 1;
    if (reps < 1) reps = 1;
    nc->bytes = (size_t)count * sizeof(float);
    /* every rank's host, in rank order: a node is a host name, led by its lowest rank */
    char(*hosts)[64] = calloc((size_t)n, sizeof *hosts);
    float *buf = calloc((size_t)count, sizeof *buf);
    nc->node_gbps = calloc((size_t)n, sizeof *nc->node_gbps);
    nc->node_host = calloc((size_t)n, sizeof *nc->node_host);
    if (!hosts || !buf || !nc->node_gbps || !nc->node_host) {
        free(hosts), free(buf);
        comm_netcheck_free(nc);
        return comm_error(err, errlen, "network check: out of memory for %d ranks", n);
    }
    char mine[64];
    snprintf(mine, sizeof mine, "%s", c->host);
    int rc = MPI_Allgather(mine, 64, MPI_CHAR, hosts, 64, MPI_CHAR, c->world);
    if (rc == MPI_SUCCESS && time_allreduce(c, buf, count, reps, &nc->allreduce_s) != 0) rc = -1;
    if (rc == MPI_SUCCESS) {
        nc->bus_gbps = 2.0 * (n - 1) / n * (double)nc->bytes / nc->allreduce_s * 1e-9;
        /* nodes in the order of their leaders; node 0 is rank 0's (its value: NAN, the reference) */
        for (int r = 0; r < n && rc == MPI_SUCCESS; r++) {
            int first = 1;
            for (int q = 0; q < r && first; q++) first = strcmp(hosts[q], hosts[r]) != 0;
            if (!first) continue;
            int k = nc->nodes++;
            snprintf(nc->node_host[k], sizeof nc->node_host[k], "%s", hosts[r]);
            nc->node_gbps[k] = NAN;
            if (r == 0) continue;
            double rt = 0;
            if (time_node(c, buf, count, r, 2 * reps, &rt) != 0) rc = -1;
            else if (c->rank == 0) nc->node_gbps[k] = 2.0 * (double)nc->bytes / rt * 1e-9;
        }
    }
    if (rc == MPI_SUCCESS)
        rc = MPI_Bcast(nc->node_gbps, nc->nodes, MPI_DOUBLE, 0, c->world);
    free(hosts), free(buf);
    if (rc != MPI_SUCCESS) {
        comm_netcheck_free(nc);
        return comm_error(err, errlen, "network check: an MPI call failed (MPI error %d)", rc);
    }
    /* slow: under a tenth of the median of the other nodes' values (node 0 has none); a
     * loaded machine was seen to slow even the fastest of 5 rounds of a free link 10x */
    nc->slowest = -1;
    for (int k = 1; k < nc->nodes && nc->nodes >= 3; k++) {
        double v[nc->nodes];
        int m = 0;
        for (int q = 1; q < nc->nodes; q++)
            if (q != k) v[m++] = nc->node_gbps[q];
        if (nc->node_gbps[k] < 0.1 * median(v, m) &&
            (nc->slowest < 0 || nc->node_gbps[k] < nc->node_gbps[nc->slowest]))
            nc->slowest = k;
    }
    return 0;
}
