/* Helpers for the comm tests: run a cmocka group on every rank of an MPI job, and a small
 * deterministic random generator so every rank can recompute every other rank's data. */
#ifndef HARNESS_COMM_TEST_UTIL_H
#define HARNESS_COMM_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "comm.h"

/* Every rank runs the same group (tests issue the same collectives in the same order on all
 * ranks and assert only after their collectives).  Rank 0 prints cmocka's report; another
 * rank's report is printed to stderr only when it saw a failure.  Returns the number of
 * failed tests summed over all ranks, identical on every rank. */
int comm_test_run_group(comm *c, const char *name, const struct CMUnitTest *tests, size_t count);

/* splitmix64: one state, uniform floats in [-1, 1). */
uint64_t comm_test_next_u64(uint64_t *state);
float comm_test_uniform(uint64_t *state);

#endif
