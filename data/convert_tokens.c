/* Token datasets written from token ids: the writer both converters use, and the importers of
 * llm.c's and nanoGPT's token files.
 *
 *   llm.c .bin    int32[256] header, little-endian: [0] magic 20240520, [1] version 1,
 *                 [2] token count; then count uint16 tokens (GPT-2 ids, vocabulary 50257)
 *   nanoGPT .bin  raw little-endian uint16 tokens (np.memmap(..., dtype=np.uint16)), nothing
 *                 else: the vocabulary size has to be given
 *
 * Every input is checked whole before anything is written (headers, sizes), then streamed in
 * blocks of IO_TOKENS into one /tokens dataset of the final size. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data_internal.h"
#include "tokenizer_internal.h"

#define LLMC_MAGIC 20240520
#define LLMC_VERSION 1
#define LLMC_HEADER_INTS 256
#define LLMC_VOCAB 50257
#define GPT2_EOT 50256
#define IO_TOKENS (1 << 20)

/* ---- the writer ---- */

static int h5_fail(const char *path, const char *what, char *err, size_t errlen) {
    char detail[256];
    data_h5_error_detail(detail, sizeof detail);
    return data_errorf(err, errlen, "%s: %s failed: %s", path, what,
                       detail[0] ? detail : "unknown HDF5 error");
}

int tok_writer_open(tok_writer *w, const char *path, int64_t total, int64_t vocab_size,
                    const data_tokenizer *tok, const char *name, int64_t eot, char *err,
                    size_t errlen) {
    memset(w, 0, sizeof *w);
    w->path = path;
    w->file = w->dset = H5I_INVALID_HID;
    w->total = total;
    w->vocab_size = vocab_size;
    w->bits = vocab_size <= 65536 ? 16 : 32;
    size_t tl = strlen(path) + 32;
    w->tmp = malloc(tl);
    if (w->tmp == NULL) return data_errorf(err, errlen, "%s: out of memory", path);
    snprintf(w->tmp, tl, "%s.tmp.%ld", path, (long)getpid());

    data_h5_scope scope;
    data_h5_begin(&scope);
    int rc = -1;
    const char *what = "creating the file";
    hsize_t dims[1] = {(hsize_t)total};
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) goto fail;
    what = "creating /tokens";
    hid_t space = H5Screate_simple(1, dims, NULL);
    if (space < 0) goto fail;
    w->dset = H5Dcreate2(w->file, "tokens", w->bits == 16 ? H5T_STD_U16LE : H5T_STD_I32LE, space,
                         H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(space);
    if (w->dset < 0) goto fail;
    what = "writing attribute vocab_size";
    if (data_h5_write_i64_attr(w->file, "vocab_size", vocab_size) < 0) goto fail;
    if (tok != NULL) {
        if (tok_store_locked(tok, w->file, err, errlen)) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", err ? err : "");
            data_errorf(err, errlen, "%s: %s", path, msg);
            goto done;
        }
    } else {
        what = "writing attribute tokenizer";
        if (name != NULL && data_h5_write_string_attr(w->file, "tokenizer", name) < 0) goto fail;
        what = "writing attribute eot_token";
        if (eot >= 0 && data_h5_write_i64_attr(w->file, "eot_token", eot) < 0) goto fail;
    }
    rc = 0;
    goto done;
fail:
    h5_fail(path, what, err, errlen);
done:
    data_h5_end(&scope);
    if (rc) tok_writer_abort(w);
    return rc;
}

int tok_writer_append(tok_writer *w, const int32_t *ids, size_t n, char *err, size_t errlen) {
    if (n == 0) return 0;
    if ((int64_t)n > w->total - w->written)
        return data_errorf(err, errlen, "%s: more tokens than the %lld announced", w->path,
                           (long long)w->total);
    const void *src = ids;
    if (w->bits == 16) {
        if (n * 2 > w->buf_cap) {
            void *p = realloc(w->buf, n * 2);
            if (p == NULL) return data_errorf(err, errlen, "%s: out of memory", w->path);
            w->buf = p;
            w->buf_cap = n * 2;
        }
        uint16_t *o = w->buf;
        for (size_t i = 0; i < n; i++) o[i] = (uint16_t)ids[i];
        src = o;
    }
    data_h5_scope scope;
    data_h5_begin(&scope);
    hsize_t start[1] = {(hsize_t)w->written}, count[1] = {n};
    hid_t fs = H5Dget_space(w->dset);
    hid_t ms = H5Screate_simple(1, count, NULL);
    herr_t rc = (fs < 0 || ms < 0 ||
                 H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
                    ? -1
                    : H5Dwrite(w->dset, w->bits == 16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_INT32, ms,
                               fs, H5P_DEFAULT, src);
    if (rc < 0) h5_fail(w->path, "writing /tokens", err, errlen);
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    data_h5_end(&scope);
    if (rc < 0) return -1;
    w->written += (int64_t)n;
    return 0;
}

int tok_writer_finish(tok_writer *w, char *err, size_t errlen) {
    if (w->written != w->total) {
        data_errorf(err, errlen, "%s: %lld tokens written, %lld announced", w->path,
                    (long long)w->written, (long long)w->total);
        tok_writer_abort(w);
        return -1;
    }
    data_h5_scope scope;
    data_h5_begin(&scope);
    herr_t rc = H5Dclose(w->dset);
    w->dset = H5I_INVALID_HID;
    if (rc >= 0) rc = H5Fclose(w->file);
    else H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (rc < 0) h5_fail(w->path, "closing the file", err, errlen);
    data_h5_end(&scope);
    if (rc < 0) {
        tok_writer_abort(w);
        return -1;
    }
    if (data_fsync_path(w->tmp) != 0 || rename(w->tmp, w->path) != 0) {
        data_errorf(err, errlen, "%s: cannot move %s into place: %s", w->path, w->tmp,
                    strerror(errno));
        tok_writer_abort(w);
        return -1;
    }
    free(w->tmp);
    free(w->buf);
    w->tmp = NULL;
    w->buf = NULL;
    return 0;
}

void tok_writer_abort(tok_writer *w) {
    if (w->dset >= 0 || w->file >= 0) {
        data_h5_scope scope;
        data_h5_begin(&scope);
        if (w->dset >= 0) H5Dclose(w->dset);
        if (w->file >= 0) H5Fclose(w->file);
        data_h5_end(&scope);
    }
    w->dset = w->file = H5I_INVALID_HID;
    if (w->tmp) remove(w->tmp);
    free(w->tmp);
    free(w->buf);
    w->tmp = NULL;
    w->buf = NULL;
}

/* ---- importers ---- */

typedef struct {
    const char *path;
    int64_t offset;           /* where the tokens start */
    int64_t count;
    int64_t size;             /* file bytes */
} token_input;

static int32_t le32(const unsigned char *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

/* Opens an input, checks its header and size against the format: fills in. */
static int probe_input(data_token_format from, const char *path, token_input *in, char *err,
                       size_t errlen) {
    in->path = path;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return data_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return data_errorf(err, errlen, "%s: not a regular file", path);
    }
    in->size = st.st_size;
    int rc = 0;
    if (from == DATA_FROM_NANOGPT) {
        in->offset = 0;
        in->count = in->size / 2;
        if (in->size % 2)
            rc = data_errorf(err, errlen, "%s: %lld bytes, an odd number: not a file of uint16 "
                             "tokens (nanoGPT .bin)", path, (long long)in->size);
        else if (in->size == 0)
            rc = data_errorf(err, errlen, "%s: empty: no tokens", path);
    } else {
        unsigned char head[LLMC_HEADER_INTS * 4];
        size_t got = fread(head, 1, sizeof head, f);
        int32_t magic = got >= 4 ? le32(head) : 0, version = got >= 8 ? le32(head + 4) : 0;
        int64_t count = got >= 12 ? le32(head + 8) : 0;
        int64_t body = in->size - (int64_t)sizeof head;
        in->offset = sizeof head;
        in->count = count;
        if (got >= 4 && magic != LLMC_MAGIC)
            rc = data_errorf(err, errlen, "%s: not an llm.c token file: magic %d, expected %d",
                             path, magic, LLMC_MAGIC);
        else if (got < sizeof head)
            rc = data_errorf(err, errlen, "%s: truncated llm.c token file: the header needs %zu "
                             "bytes, the file has %zu", path, sizeof head, got);
        else if (version != LLMC_VERSION)
            rc = data_errorf(err, errlen, "%s: llm.c token file version %d, expected %d (uint16 "
                             "GPT-2 tokens)", path, version, LLMC_VERSION);
        else if (count <= 0)
            rc = data_errorf(err, errlen, "%s: llm.c header says %lld tokens: expected at least 1",
                             path, (long long)count);
        else if (body < 2 * count)
            rc = data_errorf(err, errlen, "%s: truncated llm.c token file: the header says %lld "
                             "tokens (%lld bytes), only %lld bytes follow it", path,
                             (long long)count, (long long)(2 * count), (long long)body);
        else if (body > 2 * count)
            rc = data_errorf(err, errlen, "%s: llm.c header says %lld tokens (%lld bytes) but "
                             "%lld bytes follow it", path, (long long)count,
                             (long long)(2 * count), (long long)body);
    }
    fclose(f);
    return rc;
}

int data_convert_tokens(data_token_format from, const char *const *inputs, int n_inputs,
                        int64_t vocab_size, const data_tokenizer *tok, const char *out_h5,
                        data_convert_stats *stats, char *err, size_t errlen) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (stats) memset(stats, 0, sizeof *stats);
    const char *fmt = from == DATA_FROM_LLMC ? "llmc" : "nanogpt";
    if (from != DATA_FROM_LLMC && from != DATA_FROM_NANOGPT)
        return data_errorf(err, errlen, "convert tokens: unknown input format %d", (int)from);
    if (n_inputs < 1 || inputs == NULL || out_h5 == NULL)
        return data_errorf(err, errlen, "convert tokens: needs at least one input and an output");
    if (vocab_size == 0) {
        if (from == DATA_FROM_NANOGPT)
            return data_errorf(err, errlen, "convert tokens --from nanogpt: the vocabulary size "
                               "is required (nanoGPT .bin files do not record it)");
        vocab_size = tok ? data_tokenizer_vocab_size(tok) : LLMC_VOCAB;
    }
    if (vocab_size < 1 || vocab_size > 65536)
        return data_errorf(err, errlen, "convert tokens --from %s: vocab_size %lld outside [1, "
                           "65536] (the files hold uint16 tokens)", fmt, (long long)vocab_size);
    if (tok && data_tokenizer_vocab_size(tok) > vocab_size)
        return data_errorf(err, errlen, "convert tokens: the tokenizer has %lld tokens, more "
                           "than vocab_size %lld", (long long)data_tokenizer_vocab_size(tok),
                           (long long)vocab_size);

    token_input *in = calloc((size_t)n_inputs, sizeof *in);
    unsigned char *raw = malloc((size_t)IO_TOKENS * 2);
    int32_t *ids = malloc((size_t)IO_TOKENS * sizeof *ids);
    FILE *f = NULL;
    int rc = -1, writing = 0;
    tok_writer w;
    if (in == NULL || raw == NULL || ids == NULL) {
        data_errorf(err, errlen, "%s: out of memory", out_h5);
        goto done;
    }
    int64_t total = 0, bytes = 0;
    for (int i = 0; i < n_inputs; i++) {
        if (probe_input(from, inputs[i], &in[i], err, errlen)) goto done;
        total += in[i].count;
        bytes += in[i].size;
    }
    /* llm.c's files are GPT-2 tokens: name the tokenizer even without its tables */
    const char *name = tok ? NULL : from == DATA_FROM_LLMC ? "gpt2" : NULL;
    int64_t eot = !tok && from == DATA_FROM_LLMC && vocab_size == LLMC_VOCAB ? GPT2_EOT : -1;
    if (tok_writer_open(&w, out_h5, total, vocab_size, tok, name, eot, err, errlen)) goto done;
    writing = 1;
    for (int i = 0; i < n_inputs; i++) {
        f = fopen(in[i].path, "rb");
        if (f == NULL || fseek(f, (long)in[i].offset, SEEK_SET) != 0) {
            data_errorf(err, errlen, "%s: cannot open: %s", in[i].path, strerror(errno));
            goto done;
        }
        for (int64_t pos = 0; pos < in[i].count;) {
            size_t want = (size_t)(in[i].count - pos < IO_TOKENS ? in[i].count - pos : IO_TOKENS);
            size_t got = fread(raw, 2, want, f);
            if (got != want) {
                data_errorf(err, errlen, "%s: truncated while reading: token %lld of %lld "
                            "missing (did the file change?)", in[i].path,
                            (long long)(pos + (int64_t)got), (long long)in[i].count);
                goto done;
            }
            for (size_t k = 0; k < got; k++) {
                int32_t v = (int32_t)(raw[2 * k] | raw[2 * k + 1] << 8);
                if (v >= vocab_size) {
                    data_errorf(err, errlen, "%s: token %lld (byte offset %lld) is %d, outside "
                                "[0, vocab_size = %lld)", in[i].path, (long long)(pos + (int64_t)k),
                                (long long)(in[i].offset + 2 * (pos + (int64_t)k)), v,
                                (long long)vocab_size);
                    goto done;
                }
                ids[k] = v;
            }
            if (tok_writer_append(&w, ids, got, err, errlen)) goto done;
            pos += (int64_t)got;
        }
        fclose(f);
        f = NULL;
    }
    writing = 0;
    if (tok_writer_finish(&w, err, errlen)) goto done;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (stats) {
        stats->bytes_in = bytes;
        stats->tokens = stats->train_tokens = total;
        stats->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    rc = 0;
done:
    if (writing) tok_writer_abort(&w);
    if (f) fclose(f);
    free(in);
    free(raw);
    free(ids);
    return rc;
}

int data_read_tokens(const char *path, int64_t start, int64_t count, int32_t *out, char *err,
                     size_t errlen) {
    data_h5_scope scope;
    data_h5_begin(&scope);
    int rc = -1;
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5I_INVALID_HID;
    hid_t ft = H5I_INVALID_HID, fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    if (file < 0) {
        h5_fail(path, "opening", err, errlen);
        goto done;
    }
    if (H5Lexists(file, "tokens", H5P_DEFAULT) <= 0 ||
        (d = H5Dopen2(file, "tokens", H5P_DEFAULT)) < 0) {
        data_errorf(err, errlen, "%s: no dataset /tokens", path);
        goto done;
    }
    ft = H5Dget_type(d);
    fs = H5Dget_space(d);
    hsize_t dims[1] = {0};
    if (ft < 0 || fs < 0 || H5Tget_class(ft) != H5T_INTEGER || H5Sget_simple_extent_ndims(fs) != 1 ||
        H5Sget_simple_extent_dims(fs, dims, NULL) < 0) {
        data_errorf(err, errlen, "%s: /tokens must be a 1-D integer dataset", path);
        goto done;
    }
    if (start < 0 || count < 0 || (uint64_t)start + (uint64_t)count > dims[0]) {
        data_errorf(err, errlen, "%s: tokens [%lld, %lld) are outside /tokens [%llu]", path,
                    (long long)start, (long long)(start + count), (unsigned long long)dims[0]);
        goto done;
    }
    if (count == 0) {
        rc = 0;
        goto done;
    }
    hsize_t off[1] = {(hsize_t)start}, cnt[1] = {(hsize_t)count};
    ms = H5Screate_simple(1, cnt, NULL);
    if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL) < 0 ||
        H5Dread(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, out) < 0) {
        h5_fail(path, "reading /tokens", err, errlen);
        goto done;
    }
    rc = 0;
done:
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (ft >= 0) H5Tclose(ft);
    if (d >= 0) H5Dclose(d);
    if (file >= 0) H5Fclose(file);
    data_h5_end(&scope);
    return rc;
}
