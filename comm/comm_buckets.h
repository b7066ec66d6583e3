/* How comm cuts a flat gradient buffer of n floats into all-reduce buckets.  Pure arithmetic,
 * no MPI, so it can be tested with sizes that would not fit in memory.
 *
 * Buckets hold about bucket_bytes each (at least one element, at most max_elems elements, which
 * is INT_MAX in practice because MPI counts are int).  They are cut from the END of the buffer:
 * bucket 0 = the last elements, because backward produces the last layer's gradients first.
 * The bucket nearest the start of the buffer takes the remainder and may be smaller. */
#ifndef HARNESS_COMM_BUCKETS_H
#define HARNESS_COMM_BUCKETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t start;  /* first element */
    int count;      /* elements, 1..max_elems */
} comm_bucket;

/* Elements per full bucket: bucket_bytes / sizeof(float), clamped to [1, max_elems]. */
int64_t comm_bucket_elems(size_t bucket_bytes, int64_t max_elems);
/* Number of buckets for n >= 0 elements (0 when n == 0). */
int64_t comm_bucket_count(int64_t n, size_t bucket_bytes, int64_t max_elems);
/* Fills out[comm_bucket_count(...)]: out[i] covers [n - (i+1)*per, n - i*per) clipped at 0. */
void comm_bucket_plan(int64_t n, size_t bucket_bytes, int64_t max_elems, comm_bucket *out);

/* Shard r of `world` of an n-element buffer (ZeRO-1): [lo, hi) with lo = floor(n r / world);
 * the shards are contiguous, in rank order, cover [0, n) and differ in size by at most one. */
void comm_shard_bounds(int64_t n, int world, int rank, int64_t *lo, int64_t *hi);
/* Elements of [start, start + count) that lie in [lo, hi) (0 when none). */
int64_t comm_range_overlap(int64_t start, int64_t count, int64_t lo, int64_t hi);

#endif
