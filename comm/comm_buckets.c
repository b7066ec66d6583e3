/* Bucket plan for the gradient all-reduce: see comm_buckets.h. */
#include "comm_buckets.h"

int64_t comm_bucket_elems(size_t bucket_bytes, int64_t max_elems) {
    size_t per = bucket_bytes / sizeof(float);
    if (per < 1) per = 1;
    if (max_elems < 1) max_elems = 1;
    if (per > (size_t)max_elems) per = (size_t)max_elems;
    return (int64_t)per;
}

int64_t comm_bucket_count(int64_t n, size_t bucket_bytes, int64_t max_elems) {
    if (n <= 0) return 0;
    int64_t per = comm_bucket_elems(bucket_bytes, max_elems);
    return n / per + (n % per != 0);
}

void comm_bucket_plan(int64_t n, size_t bucket_bytes, int64_t max_elems, comm_bucket *out) {
    int64_t per = comm_bucket_elems(bucket_bytes, max_elems);
    int64_t count = comm_bucket_count(n, bucket_bytes, max_elems);
    int64_t end = n;
    for (int64_t i = 0; i < count; i++) {
        int64_t start = end > per ? end - per : 0;
        out[i].start = start;
        out[i].count = (int)(end - start);
        end = start;
    }
}

/* n * rank can overflow int64 only for n > 2^53 with 1024 ranks: far beyond memory. */
void comm_shard_bounds(int64_t n, int world, int rank, int64_t *lo, int64_t *hi) {
    if (world < 1) world = 1;
    *lo = n * rank / world;
    *hi = n * (rank + 1) / world;
}

int64_t comm_range_overlap(int64_t start, int64_t count, int64_t lo, int64_t hi) {
    int64_t a = start > lo ? start : lo;
    int64_t b = start + count < hi ? start + count : hi;
    return b > a ? b - a : 0;
}
