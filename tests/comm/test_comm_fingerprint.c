/* Fingerprint checks on N ranks: with checking on, ranks that disagree on a collective (count,
 * operation, root, a skipped collective) all get an error naming rank 0's collective and the
 * first rank whose collective differs, the collective is skipped everywhere, and the comm
 * stays usable.  Also: the watchdog runs quietly under ordinary traffic, and bad timeouts are
 * refused.  On 1 rank there is nobody to disagree with: only the quiet parts run. */
#include <stdio.h>
#include <string.h>

#include "comm_test_util.h"

static comm *g_comm;

/* Every rank must see the same verdict; returns the number of ranks that failed. */
static int64_t ranks_failing(comm *c, int failed) {
    int64_t n = failed != 0;
    char err[256];
    assert_int_equal(comm_check_fingerprints(c, 0, err, sizeof err), 0);
    assert_int_equal(comm_allreduce_sum_i64(c, &n, 1, err, sizeof err), 0);
    assert_int_equal(comm_check_fingerprints(c, 1, err, sizeof err), 0);
    return n;
}

static void test_matching_collectives_pass(void **state) {
    comm *c = g_comm;
    int world = comm_world(c);
    char err[512];
    assert_int_equal(comm_check_fingerprints(c, 1, err, sizeof err), 0);
    double x[4] = {1, 2, 3, 4};
    assert_int_equal(comm_allreduce_sum_f64(c, x, 4, err, sizeof err), 0);
    assert_true(x[3] == 4.0 * world);
    assert_int_equal(comm_barrier(c, err, sizeof err), 0);
    int32_t m = comm_rank(c);
    assert_int_equal(comm_allreduce_max_i32(c, &m, 1, err, sizeof err), 0);
    assert_int_equal(m, world - 1);
    char buf[100] = "";
    if (comm_rank(c) == 0) snprintf(buf, sizeof buf, "from rank 0");
    assert_int_equal(comm_broadcast(c, buf, sizeof buf, 0, err, sizeof err), 0);
    assert_string_equal(buf, "from rank 0");
    assert_int_equal(comm_agree(c, 0, err, sizeof err), 0);
    /* gradient buckets, each checked */
    float g[40];
    for (int i = 0; i < 40; i++) g[i] = 2.0f;
    assert_int_equal(comm_grads_register(c, g, 40, 32, err, sizeof err), 0);
    assert_int_equal(comm_grads_ready(c, 20, err, sizeof err), 0);
    assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
    for (int i = 0; i < 40; i++) assert_true(g[i] == 2.0f);
    assert_int_equal(comm_check_fingerprints(c, 0, err, sizeof err), 0);
}

static void test_count_mismatch_is_named(void **state) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    if (world < 2) skip();
    char err[512] = "";
    assert_int_equal(comm_check_fingerprints(c, 1, err, sizeof err), 0);
    uint64_t seq = comm_sequence(c) + 1;
    double x[4] = {1, 1, 1, 1};
    int rc = comm_allreduce_sum_f64(c, x, rank == 1 ? 3 : 4, err, sizeof err);
    assert_int_equal(ranks_failing(c, rc), world);
    char want[256];
    snprintf(want, sizeof want, "collective mismatch: rank 0 calls #%llu comm_allreduce_sum_f64(4 x f64) "
             "but rank 1 calls #%llu comm_allreduce_sum_f64(3 x f64)", (unsigned long long)seq,
             (unsigned long long)seq);
    if (!strstr(err, want)) fail_msg("rank %d: got '%s', want '%s'", rank, err, want);
    assert_true(x[0] == 1.0 && x[3] == 1.0);   /* skipped everywhere: nothing was summed */
    /* the comm is still in step */
    assert_int_equal(comm_allreduce_sum_f64(c, x, 4, err, sizeof err), 0);
    assert_true(x[2] == (double)world);
    assert_int_equal(comm_check_fingerprints(c, 0, err, sizeof err), 0);
}

static void test_skipped_collective_is_named(void **state) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    if (world < 2) skip();
    char err[512] = "";
    assert_int_equal(comm_check_fingerprints(c, 1, err, sizeof err), 0);
    /* the last rank skips a broadcast and goes on to the barrier everyone does next */
    int last = world - 1, rc = 0;
    char buf[8] = "";
    if (rank != last) rc = comm_broadcast(c, buf, sizeof buf, 0, err, sizeof err);
    else rc = comm_barrier(c, err, sizeof err);
    assert_int_equal(ranks_failing(c, rc), world);
    char want[64];
    snprintf(want, sizeof want, "but rank %d calls #", last);
    if (!strstr(err, "rank 0 calls #") || !strstr(err, "comm_broadcast(8 x byte, root 0)") ||
        !strstr(err, want) || !strstr(err, "comm_barrier"))
        fail_msg("rank %d: unexpected message '%s'", rank, err);
    assert_int_equal(comm_check_fingerprints(c, 0, err, sizeof err), 0);
}

static void test_root_mismatch_is_named(void **state) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    if (world < 2) skip();
    char err[512] = "";
    assert_int_equal(comm_check_fingerprints(c, 1, err, sizeof err), 0);
    int64_t v = 7;
    int rc = comm_broadcast(c, &v, sizeof v, rank == 1 ? 1 : 0, err, sizeof err);
    assert_int_equal(ranks_failing(c, rc), world);
    if (!strstr(err, "comm_broadcast(8 x byte, root 0) but rank 1 calls") ||
        !strstr(err, "comm_broadcast(8 x byte, root 1)"))
        fail_msg("rank %d: unexpected message '%s'", rank, err);
    assert_int_equal(comm_check_fingerprints(c, 0, err, sizeof err), 0);
}

static void test_agree_reports_mismatch_once(void **state) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    if (world < 2) skip();
    char err[512] = "";
    assert_int_equal(comm_check_fingerprints(c, 1, err, sizeof err), 0);
    int who;
    if (rank == 1) {
        int32_t m = 0;
        who = comm_allreduce_max_i32(c, &m, 1, err, sizeof err) != 0 ? 1 : 0;
    } else {
        who = comm_agree(c, 0, err, sizeof err);
    }
    assert_int_equal(who, 1);   /* comm_agree reports it as rank 0's, so one rank prints it */
    assert_non_null(strstr(err, "comm_agree"));
    assert_non_null(strstr(err, "comm_allreduce_max_i32(1 x i32)"));
    assert_int_equal(comm_check_fingerprints(c, 0, err, sizeof err), 0);
}

static void test_toggle_disagreement_refused(void **state) {
    comm *c = g_comm;
    int rank = comm_rank(c), world = comm_world(c);
    if (world < 2) skip();
    char err[512] = "";
    int rc = comm_check_fingerprints(c, rank == 1, err, sizeof err);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "ranks disagree"));
    /* nothing changed: checking is off everywhere, and plain collectives still work */
    double x = 1;
    assert_int_equal(comm_allreduce_sum_f64(c, &x, 1, err, sizeof err), 0);
    assert_true(x == (double)world);
}

static void test_watchdog_quiet_under_traffic(void **state) {
    comm *c = g_comm;
    char err[256];
    assert_int_not_equal(comm_watchdog_start(c, 0, err, sizeof err), 0);
    assert_non_null(strstr(err, "timeout"));
    assert_int_not_equal(comm_watchdog_start(c, -1, err, sizeof err), 0);
    assert_int_equal(comm_watchdog_start(c, 0.5, err, sizeof err), 0);
    assert_int_equal(comm_watchdog_start(c, 5, err, sizeof err), 0);   /* retune */
    float g[64];
    assert_int_equal(comm_grads_register(c, g, 64, 64, err, sizeof err), 0);
    for (int step = 1; step <= 100; step++) {
        comm_set_step(c, step);
        for (int i = 0; i < 64; i++) g[i] = 1.0f;
        assert_int_equal(comm_grads_ready(c, 32, err, sizeof err), 0);
        assert_int_equal(comm_grads_wait(c, err, sizeof err), 0);
        double x = 1;
        assert_int_equal(comm_allreduce_sum_f64(c, &x, 1, err, sizeof err), 0);
    }
    comm_watchdog_stop(c);
    comm_watchdog_stop(c);   /* twice is fine */
}

int main(int argc, char **argv) {
    char err[256];
    if (comm_init(&argc, &argv, &g_comm, err, sizeof err) != 0) {
        fprintf(stderr, "comm_init: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching_collectives_pass),
        cmocka_unit_test(test_count_mismatch_is_named),
        cmocka_unit_test(test_skipped_collective_is_named),
        cmocka_unit_test(test_root_mismatch_is_named),
        cmocka_unit_test(test_agree_reports_mismatch_once),
        cmocka_unit_test(test_toggle_disagreement_refused),
        cmocka_unit_test(test_watchdog_quiet_under_traffic),
    };
    int failed = comm_test_run_group(g_comm, "comm_fingerprint", tests, sizeof tests / sizeof tests[0]);
    comm_finalize(g_comm);
    return failed == 0 ? 0 : 1;
}
