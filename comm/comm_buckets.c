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
