/* Sharding: which samples form each global batch, and which of them a rank takes.
 *
 * The order of an epoch is a Fisher-Yates shuffle of [0,N) driven by splitmix64 keyed by
 * (seed, epoch): a pure function of its arguments, so every rank computes the same order and
 * a resumed run recomputes it without stored state.  The same generator, keyed apart, draws
 * the training augmentation (augment.c). */
#include "data_internal.h"

/* splitmix64's finaliser: a bijective mix of 64 bits. */
uint64_t data_splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t data_rng_next(data_rng *r) {
    r->state += DATA_GOLDEN_GAMMA;
    return data_splitmix64_mix(r->state);
}

/* Uniform in [0, bound) without modulo bias: reject the lowest 2^64 mod bound values. */
uint64_t data_rng_below(data_rng *r, uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t x = data_rng_next(r);
        if (x >= threshold) return x % bound;
    }
}

void data_epoch_permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
    /* Mixing epoch before combining keeps (seed, epoch) and (seed+1, epoch-1) apart. */
    uint64_t epoch_key = data_splitmix64_mix((uint64_t)epoch + DATA_GOLDEN_GAMMA);
    data_rng r = {data_splitmix64_mix(seed ^ epoch_key)};
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)data_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* floor(r * g / world) without overflowing r * g: with g = q*world + m it is
 * r*q + floor(r*m / world), and r*m < world^2. */
static int64_t slice_bound(int64_t g, int r, int world) {
    int64_t q = g / world, m = g % world;
    return (int64_t)r * q + ((int64_t)r * m) / world;
}

void data_rank_slice(int64_t g, int rank, int world, int64_t *begin, int64_t *end) {
    *begin = slice_bound(g, rank, world);
    *end = slice_bound(g, rank + 1, world);
}

void data_plan_normalize(data_mode mode, int64_t n, int64_t g, int64_t *epoch,
                         int64_t *cursor) {
    if (mode == DATA_TRAIN && *cursor + g > n) {
        *epoch += 1;
        *cursor = 0;
    }
}

void data_plan_next(data_mode mode, int64_t n, int64_t g, int64_t epoch, int64_t cursor,
                    data_plan *plan) {
    data_plan_normalize(mode, n, g, &epoch, &cursor);
    plan->epoch = epoch;
    plan->cursor = cursor;
    plan->end_of_pass = 0;
    plan->last = 0;
    if (mode == DATA_TRAIN) {
        /* Training drops the incomplete tail: the next batch starts a new epoch when it would
         * not fit. */
        plan->global_count = g;
        plan->next_epoch = epoch;
        plan->next_cursor = cursor + g;
        data_plan_normalize(mode, n, g, &plan->next_epoch, &plan->next_cursor);
        return;
    }
    if (cursor >= n) {
        /* Eval: the batch after the last one is the end-of-pass marker; then a new pass. */
        plan->end_of_pass = 1;
        plan->global_count = 0;
        plan->next_epoch = epoch + 1;
        plan->next_cursor = 0;
        return;
    }
    plan->global_count = n - cursor < g ? n - cursor : g;
    plan->last = cursor + plan->global_count >= n;
    plan->next_epoch = epoch;
    plan->next_cursor = cursor + plan->global_count;
}
