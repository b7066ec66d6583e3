/* The bucket plan (pure arithmetic, no MPI): cut from the end, sizes clamped to one element and
 * to INT_MAX elements, contiguous cover of [0, n).  Sizes beyond memory are fine here. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "comm_buckets.h"
#include "comm_test_util.h"

/* Checks the plan's invariants and returns it (caller frees). */
static comm_bucket *checked_plan(int64_t n, size_t bytes, int64_t max_elems, int64_t *count_out) {
    int64_t per = comm_bucket_elems(bytes, max_elems);
    int64_t count = comm_bucket_count(n, bytes, max_elems);
    comm_bucket *plan = malloc((size_t)(count > 0 ? count : 1) * sizeof *plan);
    assert_non_null(plan);
    comm_bucket_plan(n, bytes, max_elems, plan);
    int64_t end = n;
    for (int64_t i = 0; i < count; i++) {
        assert_true(plan[i].count >= 1 && plan[i].count <= per);
        assert_true(plan[i].start + plan[i].count == end);  /* contiguous, from the end */
        if (i + 1 < count) assert_int_equal(plan[i].count, per);
        end = plan[i].start;
    }
    assert_int_equal(end, 0);
    *count_out = count;
    return plan;
}

static void test_exactly_dividing(void **state) {
    int64_t count;
    comm_bucket *p = checked_plan(1000, 400, INT_MAX, &count);
    assert_int_equal(count, 10);
    assert_int_equal(p[0].start, 900);  /* bucket 0 is the end of the buffer */
    assert_int_equal(p[9].start, 0);
    assert_int_equal(p[9].count, 100);
    free(p);
}

static void test_not_dividing(void **state) {
    int64_t count;
    comm_bucket *p = checked_plan(1003, 401, INT_MAX, &count);  /* 100 elements each */
    assert_int_equal(count, 11);
    assert_int_equal(p[0].start, 903);
    assert_int_equal(p[10].start, 0);
    assert_int_equal(p[10].count, 3);  /* the remainder sits at the start of the buffer */
    free(p);
}

static void test_smaller_than_one_element(void **state) {
    int64_t count;
    assert_int_equal(comm_bucket_elems(1, INT_MAX), 1);
    assert_int_equal(comm_bucket_elems(7, INT_MAX), 1);
    comm_bucket *p = checked_plan(5, 1, INT_MAX, &count);
    assert_int_equal(count, 5);
    assert_int_equal(p[0].start, 4);
    free(p);
}

static void test_larger_than_buffer_and_empty(void **state) {
    int64_t count;
    comm_bucket *p = checked_plan(1, (size_t)1 << 30, INT_MAX, &count);
    assert_int_equal(count, 1);
    assert_int_equal(p[0].start, 0);
    assert_int_equal(p[0].count, 1);
    free(p);
    p = checked_plan(0, 4096, INT_MAX, &count);
    assert_int_equal(count, 0);
    free(p);
}

static void test_split_at_int_max(void **state) {
    /* 5e9 floats (20 GB) in one "bucket" of SIZE_MAX bytes must become INT_MAX-sized pieces. */
    int64_t count, n = 5000000000ll;
    assert_int_equal(comm_bucket_elems(SIZE_MAX, INT_MAX), INT_MAX);
    comm_bucket *p = checked_plan(n, SIZE_MAX, INT_MAX, &count);
    assert_int_equal(count, 3);
    assert_int_equal(p[0].count, INT_MAX);
    assert_int_equal(p[1].count, INT_MAX);
    assert_int_equal(p[2].count, n - 2ll * INT_MAX);
    free(p);
    /* The same rule with a small cap. */
    p = checked_plan(10, 400, 3, &count);
    assert_int_equal(count, 4);
    assert_int_equal(p[3].count, 1);
    free(p);
}

static void test_many_random_shapes(void **state) {
    uint64_t s = 42;
    for (int t = 0; t < 2000; t++) {
        int64_t n = (int64_t)(comm_test_next_u64(&s) % 5000);
        size_t bytes = 1 + (size_t)(comm_test_next_u64(&s) % 9000);
        int64_t cap = 1 + (int64_t)(comm_test_next_u64(&s) % 3000);
        int64_t count;
        free(checked_plan(n, bytes, cap, &count));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_dividing),
        cmocka_unit_test(test_not_dividing),
        cmocka_unit_test(test_smaller_than_one_element),
        cmocka_unit_test(test_larger_than_buffer_and_empty),
        cmocka_unit_test(test_split_at_int_max),
        cmocka_unit_test(test_many_random_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
