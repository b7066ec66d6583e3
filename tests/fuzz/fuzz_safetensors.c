/* fuzz_safetensors: hostile bytes as a safetensors file into st_open and st_read (the reader
 * behind `harness convert weights --from hf`).
 * Invariants: a header that opens describes only byte ranges inside the file, each exactly as
 * long as its shape and dtype need, and every such tensor reads; a file that does not open
 * says why. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_scratch_path("safetensors");
    if (fuzz_write_file(path, data, size)) return 0;
    st_file f;
    char err[1024] = "";
    if (st_open(path, &f, err, sizeof err) != 0) {
        fuzz_note("  st_open: %s\n", err);
        FUZZ_CHECK(err[0] != '\0', "a refused file says nothing");
        return 0;
    }
    fuzz_note("  st_open: %d tensors\n", f.n);
    FUZZ_CHECK(f.data_start >= 10 && f.data_start + f.data_bytes == (int64_t)size,
               "header of %lld bytes, %lld data bytes, file of %zu", (long long)f.data_start,
               (long long)f.data_bytes, size);
    for (int i = 0; i < f.n; i++) {
        const st_tensor *t = &f.tensors[i];
        int64_t es = t->dtype == ST_F32 ? 4 : 2;
        FUZZ_CHECK(t->begin >= 0 && t->begin <= t->end && t->end <= f.data_bytes,
                   "tensor %s: [%lld, %lld) outside %lld bytes", t->name, (long long)t->begin,
                   (long long)t->end, (long long)f.data_bytes);
        FUZZ_CHECK(t->end - t->begin == t->count * es, "tensor %s: %lld bytes for %lld elements",
                   t->name, (long long)(t->end - t->begin), (long long)t->count);
        FUZZ_CHECK(st_find(&f, t->name) != NULL, "tensor %s not found by name", t->name);
        float *buf = malloc((size_t)t->count * sizeof(float) + 1);
        if (!buf) continue;
        FUZZ_CHECK(st_read(&f, t, buf, err, sizeof err) == 0, "tensor %s: %s", t->name, err);
        free(buf);
    }
    st_close(&f);
    return 0;
}
