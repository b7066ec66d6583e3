/* Shared by the fuzz harnesses: the libFuzzer entry points, and a scratch file for the
 * readers that take a path (HDF5 datasets and checkpoints). */
#ifndef HARNESS_FUZZ_UTIL_H
#define HARNESS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A per-process scratch file, in /dev/shm when it exists (tmpfs: no disk traffic per
 * input), else in $TMPDIR or /tmp: "DIR/harness-fuzz-NAME-PID.h5".  Removed at exit. */
const char *fuzz_scratch_path(const char *name);
/* Replaces the scratch file's contents with data[0..size).  0, or -1 (then skip the input). */
int fuzz_write_file(const char *path, const uint8_t *data, size_t size);

/* With FUZZ_VERBOSE=1 in the environment (replaying by hand), prints what each reader said. */
void fuzz_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A failed invariant: prints what and where, then abort()s so that libFuzzer (or the replay
 * test) reports the input as a crash. */
#define FUZZ_CHECK(cond, ...)                                                       \
    do {                                                                            \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);             \
    } while (0)
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#endif
