/* torch_file.h: the PyTorch reference file of the kernels tests, read and compared with.
 *
 * torch_reference.py and torch_cnn_reference.py write PyTorch's inputs, weights, outputs and
 * gradients as a flat list of named arrays (format: torch_ref_file.py); test_kernels_torch and
 * test_kernels_cnn_torch load one such file (one per process) at the start of main, and look
 * its arrays up and compare the kernels' results with them in their tests.  The getters and
 * torch_expect_close fail the running cmocka test with a message that names the array or the
 * worst element. */
#ifndef HARNESS_TESTS_KERNELS_TORCH_FILE_H
#define HARNESS_TESTS_KERNELS_TORCH_FILE_H

#include <stdint.h>

#include "kernels.h"

/* the dtype codes of the file */
enum { TORCH_FLOAT32 = 0, TORCH_INT32 = 1 };

typedef struct {
    char name[64];
    int dtype;   /* TORCH_FLOAT32 or TORCH_INT32 */
    int64_t count;
    void *data;  /* count values */
} torch_array;

/* The start of a torch test's main: loads the reference file named by its one argument
 * (written by `script`, the ctest fixture) and creates *K, a CPU kernels context with
 * `threads` threads.  0 when ready; else what main returns, the reason printed: 2 usage,
 * 77 (skipped) no file (the fixture was skipped for lack of torch), 1 not a reference file or
 * no context. */
int torch_test_start(int argc, char **argv, const char *script, int threads, kern_ctx **K);
/* The end of its main: destroys K and frees the file's arrays. */
void torch_test_finish(kern_ctx *K);

/* The array `name` ("case.key"), which must exist with that dtype. */
const torch_array *torch_array_named(const char *name, int dtype);
/* The values of "prefix.key"; want_count >= 0: there must be exactly that many. */
const float *torch_floats(const char *prefix, const char *key, int64_t want_count);
const int32_t *torch_ints(const char *prefix, const char *key, int64_t want_count);

/* Compares backend buffer dev[n] with torch's want[n]: fails the test unless, for every i,
 *   |got[i] - want[i]| <= rtol*|want[i]| + floor_rel*max_j|want[j]|   (scale == NULL), or
 *   |got[i] - want[i]| <= rtol*scale[i]                               (scale != NULL),
 * naming the element furthest outside its tolerance (NaN never passes). */
void torch_expect_close(kern_ctx *K, const char *what, const float *dev, const float *want,
                        int64_t n, const double *scale, double rtol, double floor_rel);

#endif
