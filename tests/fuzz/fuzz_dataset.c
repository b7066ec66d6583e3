/* fuzz_dataset: hostile bytes as an HDF5 dataset file into data/ (schema check and loader).
 *
 * Each input is written to a scratch file (tmpfs) and read three ways:
 *   data_inspect                       the schema check, every label validated
 *   loader, evaluation, no cache       world 2 rank 1, global batch 5: sorted, merged
 *                                      hyperslab reads of a few batches, then close
 *   loader, training, shuffle, cache   world 1, global batch 3: whole dataset read once
 * Invariants: what data_inspect accepts is within the schema's limits, every batch the
 * loader hands out has labels in [0, num_classes) and no more samples than its slice, and
 * no HDF5 identifier is left open afterwards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_h5.h"
#include "fuzz_util.h"

#define MAX_BATCHES 5

static void check_info(const data_info *info) {
    if (info->kind == DATA_TOKENS) return;  /* token files: fuzz_tokens */
    FUZZ_CHECK(info->n >= 1, "n = %lld", (long long)info->n);
    FUZZ_CHECK(info->sample_ndim >= 1 && info->sample_ndim <= DATA_MAX_DIMS - 1, "ndim %d",
               info->sample_ndim);
    int64_t elems = 1;
    for (int i = 0; i < info->sample_ndim; i++) {
        FUZZ_CHECK(info->sample_shape[i] >= 1, "dim %d = %lld", i, (long long)info->sample_shape[i]);
        elems *= info->sample_shape[i];
    }
    FUZZ_CHECK(elems == info->sample_elems, "sample_elems %lld, shape says %lld",
               (long long)info->sample_elems, (long long)elems);
    FUZZ_CHECK(info->dtype == DATA_U8 || info->dtype == DATA_F32, "dtype %d", (int)info->dtype);
    FUZZ_CHECK(info->num_classes >= 1 && info->num_classes <= DATA_MAX_CLASSES, "num_classes %d",
               info->num_classes);
    FUZZ_CHECK(info->n_class_names == 0 || info->n_class_names == info->num_classes,
               "%d class names for %d classes", info->n_class_names, info->num_classes);
    for (int i = 0; i < info->n_class_names; i++)
        FUZZ_CHECK(info->class_names[i] != NULL, "class name %d is NULL", i);
}

static void run_loader(const char *path, data_mode mode, int rank, int world, int64_t batch,
                       int shuffle, int64_t cache_bytes) {
    data_config dc = {0};
    dc.path = path;
    dc.mode = mode;
    dc.rank = rank;
    dc.world = world;
    dc.global_batch = batch;
    dc.seed = 7;
    dc.shuffle = shuffle;
    dc.cache_bytes = cache_bytes;
    data_loader *l = NULL;
    char err[1024];
    if (data_loader_open(&dc, &l, err, sizeof err) != 0) {
        fuzz_note("  data_loader_open(%s): %s", mode == DATA_EVAL ? "eval" : "train", err);
        FUZZ_CHECK(l == NULL, "failed open returned a loader");
        return;
    }
    const data_info *info = data_loader_info(l);
    check_info(info);
    int64_t most = (batch + world - 1) / world;
    for (int i = 0; i < MAX_BATCHES; i++) {
        data_batch b;
        int rc = data_loader_next(l, &b, err, sizeof err);
        fuzz_note("  data_loader_next: %s", rc == 0 ? "batch" : rc == 1 ? "end of pass" : err);
        if (rc != 0) break;  /* end of the evaluation pass, or an error (e.g. damaged chunk) */
        FUZZ_CHECK(b.count >= 0 && b.count <= most, "batch of %lld samples, slice holds %lld",
                   (long long)b.count, (long long)most);
        size_t elem = info->dtype == DATA_U8 ? 1 : 4;
        volatile unsigned char sink = 0;
        const unsigned char *x = b.x;
        if (b.count > 0) sink ^= x[(size_t)b.count * (size_t)info->sample_elems * elem - 1];
        (void)sink;
        for (int64_t j = 0; j < b.count; j++)
            FUZZ_CHECK(b.y[j] >= 0 && b.y[j] < info->num_classes, "label %d of %d classes",
                       (int)b.y[j], info->num_classes);
    }
    data_loader_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int started;
    if (!started) {
        fuzz_h5_baseline();
        started = 1;
    }
    const char *path = fuzz_scratch_path("dataset");
    if (fuzz_write_file(path, data, size) != 0) return 0;

    data_info info;
    char err[1024];
    memset(err, 'X', sizeof err);
    if (data_inspect(path, &info, err, sizeof err) == 0) {
        fuzz_note("  data_inspect: ok, %lld samples, %d classes", (long long)info.n, info.num_classes);
        check_info(&info);
        data_info_free(&info);
        fuzz_h5_check_closed("data_inspect");
    } else {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0], "no error message");
        fuzz_note("  data_inspect: %s", err);
        fuzz_h5_check_closed("data_inspect (failed)");
        return 0;  /* the loader runs the same schema check first */
    }
    run_loader(path, DATA_EVAL, 1, 2, 5, 0, 0);
    run_loader(path, DATA_TRAIN, 0, 1, 3, 1, (int64_t)1 << 20);
    fuzz_h5_check_closed("the loaders");
    return 0;
}
