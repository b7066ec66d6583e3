/* fuzz_util: scratch files and invariant failures for the fuzz harnesses. */
#include "fuzz_util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SCRATCH 4

static char scratch[MAX_SCRATCH][512];
static int n_scratch;

static void remove_scratch(void) {
    for (int i = 0; i < n_scratch; i++) unlink(scratch[i]);
}

const char *fuzz_scratch_path(const char *name) {
    for (int i = 0; i < n_scratch; i++)
        if (strstr(scratch[i], name)) return scratch[i];
    if (n_scratch == MAX_SCRATCH) abort();
    struct stat st;
    const char *dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                          ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = scratch[n_scratch];
    snprintf(p, sizeof scratch[0], "%s/harness-fuzz-%s-%ld.h5", dir, name, (long)getpid());
    if (n_scratch++ == 0) atexit(remove_scratch);
    return p;
}

int fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        return -1;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            perror(path);
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    return close(fd);
}

void fuzz_note(const char *fmt, ...) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") && atoi(getenv("FUZZ_VERBOSE")) > 0;
    if (!verbose) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "%s:%d: invariant failed: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
