/* fuzz_tokens: hostile bytes as an HDF5 token dataset (/tokens + vocab_size) into data/.
 *
 * Each input is written to a scratch file (tmpfs) and read three ways:
 *   data_inspect                       the schema check of a token file
 *   loader, evaluation, no cache       world 2 rank 1, global batch 5, context 4: windows
 *                                      sorted and merged into runs, one hyperslab read each,
 *                                      each run validated as read
 *   loader, training, shuffle, cache   world 1, global batch 3, context 3: /tokens read and
 *                                      validated whole, the grid shifted by an offset
 * Invariants: accepted files are within the schema's limits; every batch holds no more
 * windows than its slice, every id lies in [0, vocab_size) and the targets are the inputs
 * shifted by one; no HDF5 identifier is left open afterwards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_h5.h"
#include "fuzz_util.h"

#define MAX_BATCHES 5

static void check_info(const data_info *info) {
    FUZZ_CHECK(info->kind == DATA_TOKENS, "kind %d", (int)info->kind);
    FUZZ_CHECK(info->n_tokens >= 1, "n_tokens %lld", (long long)info->n_tokens);
    FUZZ_CHECK(info->token_bits == 16 || info->token_bits == 32, "token_bits %d",
               info->token_bits);
    FUZZ_CHECK(info->vocab_size >= 1 && info->vocab_size <= INT32_MAX, "vocab_size %lld",
               (long long)info->vocab_size);
    FUZZ_CHECK(info->eot_token >= -1 && info->eot_token < info->vocab_size, "eot_token %lld",
               (long long)info->eot_token);
    FUZZ_CHECK(memchr(info->tokenizer, '\0', sizeof info->tokenizer) != NULL,
               "tokenizer name not terminated");
}

static void run_loader(const char *path, const data_info *file, data_mode mode, int rank,
                       int world, int64_t batch, int64_t context, int shuffle,
                       int64_t cache_bytes) {
    data_config dc = {0};
    dc.path = path;
    dc.mode = mode;
    dc.rank = rank;
    dc.world = world;
    dc.global_batch = batch;
    dc.seed = 7;
    dc.shuffle = shuffle;
    dc.cache_bytes = cache_bytes;
    dc.context = context;
    data_loader *l = NULL;
    char err[1024];
    if (data_loader_open(&dc, &l, err, sizeof err) != 0) {
        fuzz_note("  data_loader_open(%s): %s", mode == DATA_EVAL ? "eval" : "train", err);
        FUZZ_CHECK(l == NULL, "failed open returned a loader");
        return;
    }
    const data_info *info = data_loader_info(l);
    check_info(info);
    FUZZ_CHECK(info->n_tokens == file->n_tokens && info->vocab_size == file->vocab_size,
               "loader and inspect disagree");
    FUZZ_CHECK(info->sample_elems == context && info->dtype == DATA_I32, "sample %lld dtype %d",
               (long long)info->sample_elems, (int)info->dtype);
    FUZZ_CHECK(info->n >= 1 && info->n * context + 1 <= info->n_tokens, "%lld windows of %lld "
               "in %lld tokens", (long long)info->n, (long long)context,
               (long long)info->n_tokens);
    int64_t most = (batch + world - 1) / world;
    for (int i = 0; i < MAX_BATCHES; i++) {
        data_batch b;
        int rc = data_loader_next(l, &b, err, sizeof err);
        fuzz_note("  data_loader_next: %s", rc == 0 ? "batch" : rc == 1 ? "end of pass" : err);
        if (rc != 0) break;  /* end of the evaluation pass, or an error (e.g. a bad token) */
        FUZZ_CHECK(b.count >= 0 && b.count <= most, "batch of %lld windows, slice holds %lld",
                   (long long)b.count, (long long)most);
        const int32_t *x = b.x;
        for (int64_t k = 0; k < b.count * context; k++) {
            FUZZ_CHECK(x[k] >= 0 && x[k] < info->vocab_size && b.y[k] >= 0 &&
                       b.y[k] < info->vocab_size, "token %d/%d of vocabulary %lld", (int)x[k],
                       (int)b.y[k], (long long)info->vocab_size);
            if (k % context != context - 1)
                FUZZ_CHECK(b.y[k] == x[k + 1], "targets are not the inputs shifted by one");
        }
    }
    data_loader_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int started;
    if (!started) {
        fuzz_h5_baseline();
        started = 1;
    }
    const char *path = fuzz_scratch_path("tokens");
    if (fuzz_write_file(path, data, size) != 0) return 0;

    data_info info;
    char err[1024];
    memset(err, 'X', sizeof err);
    if (data_inspect(path, &info, err, sizeof err) != 0) {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0], "no error message");
        fuzz_note("  data_inspect: %s", err);
        fuzz_h5_check_closed("data_inspect (failed)");
        return 0;
    }
    int tokens = info.kind == DATA_TOKENS;
    fuzz_note("  data_inspect: ok, kind %d, %lld tokens", (int)info.kind,
              (long long)info.n_tokens);
    data_info file = info;
    if (tokens) check_info(&info);
    data_info_free(&info);
    fuzz_h5_check_closed("data_inspect");
    if (!tokens) return 0;  /* image files: fuzz_dataset */
    run_loader(path, &file, DATA_EVAL, 1, 2, 5, 4, 0, 0);
    run_loader(path, &file, DATA_TRAIN, 0, 1, 3, 3, 1, (int64_t)1 << 20);
    fuzz_h5_check_closed("the loaders");
    return 0;
}
