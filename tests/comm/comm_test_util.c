/* See comm_test_util.h. */
#include <stdio.h>
#include <unistd.h>

#include "comm_test_util.h"

int comm_test_run_group(comm *c, const char *name, const struct CMUnitTest *tests, size_t count) {
    int rank = comm_rank(c);
    FILE *captured = NULL;
    int saved_stdout = -1;
    if (rank != 0) {
        /* Hold this rank's report so N identical reports do not interleave. */
        fflush(stdout);
        captured = tmpfile();
        saved_stdout = dup(STDOUT_FILENO);
        if (captured && saved_stdout >= 0) dup2(fileno(captured), STDOUT_FILENO);
    }

    int failed = _cmocka_run_group_tests(name, tests, count, NULL, NULL);

    if (rank != 0 && captured && saved_stdout >= 0) {
        fflush(stdout);
        dup2(saved_stdout, STDOUT_FILENO);
        close(saved_stdout);
        if (failed != 0) {
            fprintf(stderr, "---- cmocka report of rank %d ----\n", rank);
            rewind(captured);
            char line[1024];
            while (fgets(line, sizeof line, captured)) fputs(line, stderr);
        }
    }
    if (captured) fclose(captured);

    int64_t total = failed;
    char err[256];
    if (comm_allreduce_sum_i64(c, &total, 1, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: could not sum test results: %s\n", rank, err);
        return failed != 0 ? failed : 1;
    }
    if (rank == 0 && total != failed)
        fprintf(stderr, "%s: %lld test failure(s) on other ranks\n", name, (long long)(total - failed));
    return (int)total;
}

uint64_t comm_test_next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float comm_test_uniform(uint64_t *state) {
    /* 24 random bits -> [0, 1) exactly representable, then [-1, 1). */
    float u = (float)(comm_test_next_u64(state) >> 40) * (1.0f / 16777216.0f);
    return 2.0f * u - 1.0f;
}
