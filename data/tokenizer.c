/* The tokenizer object: the bytes tokenizer, dispatch to GPT-2's BPE, and a tokenizer's place in
 * an HDF5 file (attributes tokenizer and eot_token on the root, the gpt2 files' raw bytes as
 * uint8 datasets /tokenizer/encoder.json and /tokenizer/vocab.bpe).
 *
 * Strings are written as fixed-length attributes (variable-length ones live in HDF5's global
 * heap, which has no checksum); both kinds are read, since h5py writes variable-length
 * strings by default. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "tokenizer_internal.h"

#define TOK_TABLE_MAX ((hsize_t)256 << 20)   /* largest /tokenizer table read back */

int tok_reserve(int32_t **ids, size_t *n, size_t *cap, size_t more) {
    if (*n + more <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < *n + more) c *= 2;
    int32_t *p = realloc(*ids, c * sizeof *p);
    if (p == NULL) return -1;
    *ids = p;
    *cap = c;
    return 0;
}

int tok_push(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap && tok_reserve(ids, n, cap, 1)) return -1;
    (*ids)[(*n)++] = id;
    return 0;
}

int data_tokenizer_bytes(data_tokenizer **out, char *err, size_t errlen) {
    *out = NULL;
    data_tokenizer *t = calloc(1, sizeof *t);
    if (t) {
        t->blob = malloc(256);
        t->off = malloc(257 * sizeof *t->off);
        t->present = malloc(256);
    }
    if (t == NULL || t->blob == NULL || t->off == NULL || t->present == NULL) {
        data_tokenizer_free(t);
        return data_errorf(err, errlen, "bytes tokenizer: out of memory");
    }
    t->kind = TOK_BYTES;
    t->vocab_size = 256;
    t->eot = -1;
    for (int i = 0; i < 256; i++) {
        t->blob[i] = (unsigned char)i;
        t->off[i] = (size_t)i;
        t->present[i] = 1;
    }
    t->off[256] = 256;
    *out = t;
    return 0;
}

/* Reads a whole file into memory (NUL-terminated for convenience). */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        data_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *p = cap > ((size_t)1 << 30) ? NULL : realloc(buf, 2 * cap + 1);
        if (p == NULL) { free(buf); buf = NULL; break; }
        buf = p;
        cap *= 2;
    }
    int bad = buf != NULL && ferror(f);
    fclose(f);
    if (buf == NULL) {
        data_errorf(err, errlen, "%s: out of memory (or larger than 1 GiB)", path);
        return NULL;
    }
    if (bad) {
        free(buf);
        data_errorf(err, errlen, "%s: read error: %s", path, strerror(errno));
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int data_tokenizer_gpt2(const char *encoder_json, const char *vocab_bpe, data_tokenizer **out,
                        char *err, size_t errlen) {
    *out = NULL;
    size_t enc_len = 0, bpe_len = 0;
    char *enc = read_file(encoder_json, &enc_len, err, errlen);
    if (enc == NULL) return -1;
    char *bpe = read_file(vocab_bpe, &bpe_len, err, errlen);
    if (bpe == NULL) { free(enc); return -1; }
    int rc = tok_gpt2_from_memory(enc, enc_len, encoder_json, bpe, bpe_len, vocab_bpe, out, err,
                                  errlen);
    free(enc);
    free(bpe);
    return rc;
}

void data_tokenizer_free(data_tokenizer *t) {
    if (t == NULL) return;
    if (t->gpt2) tok_gpt2_free(t->gpt2);
    free(t->blob);
    free(t->off);
    free(t->present);
    free(t->encoder_json);
    free(t->vocab_bpe);
    free(t);
}

const char *data_tokenizer_name(const data_tokenizer *t) {
    return t->kind == TOK_GPT2 ? "gpt2" : "bytes";
}
int64_t data_tokenizer_vocab_size(const data_tokenizer *t) { return t->vocab_size; }
int64_t data_tokenizer_eot(const data_tokenizer *t) { return t->eot; }

int data_tokenizer_encode(const data_tokenizer *t, const char *text, size_t len, int32_t **ids,
                          size_t *n, size_t *cap, char *err, size_t errlen) {
    if (len == 0) return 0;
    if (t->kind == TOK_GPT2) return tok_gpt2_encode(t, text, len, ids, n, cap, err, errlen);
    if (tok_reserve(ids, n, cap, len))
        return data_errorf(err, errlen, "bytes tokenizer: out of memory for %zu ids", len);
    const unsigned char *p = (const unsigned char *)text;
    int32_t *o = *ids + *n;
    for (size_t i = 0; i < len; i++) o[i] = p[i];
    *n += len;
    return 0;
}

const char *data_tokenizer_token_bytes(const data_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab_size || !t->present[id]) {
        *len = 0;
        return NULL;
    }
    *len = t->off[id + 1] - t->off[id];
    return (const char *)t->blob + t->off[id];
}

/* ---- HDF5 ---- */

/* uint8 [len] */
static herr_t write_bytes(hid_t loc, const char *name, const char *bytes, size_t len) {
    hsize_t dims[1] = {len};
    return data_h5_write_dataset(loc, name, H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, dims, bytes);
}

int tok_store_locked(const data_tokenizer *t, hid_t file, char *err, size_t errlen) {
    const char *what = "attribute tokenizer";
    if (data_h5_write_string_attr(file, "tokenizer", data_tokenizer_name(t)) < 0) goto fail;
    if (t->eot >= 0) {
        what = "attribute eot_token";
        if (data_h5_write_i64_attr(file, "eot_token", t->eot) < 0) goto fail;
    }
    if (t->kind == TOK_GPT2) {
        what = "group /tokenizer";
        hid_t g = H5Gcreate2(file, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) goto fail;
        what = "/tokenizer/encoder.json";
        herr_t rc = write_bytes(g, "encoder.json", t->encoder_json, t->encoder_json_len);
        if (rc >= 0) {
            what = "/tokenizer/vocab.bpe";
            rc = write_bytes(g, "vocab.bpe", t->vocab_bpe, t->vocab_bpe_len);
        }
        H5Gclose(g);
        if (rc < 0) goto fail;
    }
    return 0;
fail: {
    char detail[256];
    data_h5_error_detail(detail, sizeof detail);
    return data_errorf(err, errlen, "writing the tokenizer (%s) failed: %s", what,
                       detail[0] ? detail : "unknown HDF5 error");
}
}

int data_tokenizer_store(const data_tokenizer *t, int64_t h5_file, char *err, size_t errlen) {
    data_h5_scope scope;
    data_h5_begin(&scope);
    int rc = tok_store_locked(t, (hid_t)h5_file, err, errlen);
    data_h5_end(&scope);
    return rc;
}

/* A scalar string attribute, fixed-length or variable-length, into buf (NUL-terminated).
 * 1 absent, 0 read, -1 not a scalar string (or too long for buf). */
static int read_string_attr(hid_t loc, const char *name, char *buf, size_t len) {
    if (H5Aexists(loc, name) <= 0) return 1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    int rc = -1;
    hid_t ft = H5Aget_type(a), space = H5Aget_space(a);
    if (ft >= 0 && space >= 0 && H5Tget_class(ft) == H5T_STRING &&
        H5Sget_simple_extent_npoints(space) == 1) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(ft));   /* HDF5 does not convert ASCII <-> UTF-8 */
        if (H5Tis_variable_str(ft) > 0) {
            char *s = NULL;
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &s) >= 0 && s != NULL) {
                if (strlen(s) < len) {
                    strcpy(buf, s);
                    rc = 0;
                }
                H5free_memory(s);
            }
        } else {
            size_t size = H5Tget_size(ft);
            if (size > 0 && size < len && H5Aget_storage_size(a) == size) {
                H5Tset_size(mt, size);
                if (H5Aread(a, mt, buf) >= 0) {
                    buf[size] = '\0';
                    rc = 0;
                }
            }
        }
        H5Tclose(mt);
    }
    if (ft >= 0) H5Tclose(ft);
    if (space >= 0) H5Sclose(space);
    H5Aclose(a);
    return rc;
}

/* A 1-D integer dataset of bytes, malloc'd. */
static char *read_bytes_dataset(hid_t file, const char *path, const char *h5_path, size_t *len,
                                char *err, size_t errlen) {
    if (H5Lexists(file, "tokenizer", H5P_DEFAULT) <= 0 || H5Lexists(file, path, H5P_DEFAULT) <= 0) {
        data_errorf(err, errlen, "%s: tokenizer gpt2 but no %s (convert with --vocab DIR to "
                    "store the vocabulary)", h5_path, path);
        return NULL;
    }
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0) {
        data_errorf(err, errlen, "%s: cannot open %s", h5_path, path);
        return NULL;
    }
    char *buf = NULL;
    hid_t ft = H5Dget_type(d), space = H5Dget_space(d);
    hsize_t dims[1] = {0};
    if (ft < 0 || space < 0 || H5Tget_class(ft) != H5T_INTEGER || H5Tget_size(ft) != 1 ||
        H5Sget_simple_extent_ndims(space) != 1) {
        data_errorf(err, errlen, "%s: %s must be a 1-D uint8 dataset", h5_path, path);
    } else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0 || dims[0] > TOK_TABLE_MAX) {
        data_errorf(err, errlen, "%s: %s is larger than %llu bytes", h5_path, path,
                    (unsigned long long)TOK_TABLE_MAX);
    } else if ((buf = malloc((size_t)dims[0] + 1)) == NULL) {
        data_errorf(err, errlen, "%s: out of memory reading %s", h5_path, path);
    } else if (dims[0] > 0 &&
               H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char detail[256];
        data_h5_error_detail(detail, sizeof detail);
        data_errorf(err, errlen, "%s: reading %s failed: %s", h5_path, path, detail);
        free(buf);
        buf = NULL;
    } else {
        buf[dims[0]] = '\0';
        *len = (size_t)dims[0];
    }
    if (ft >= 0) H5Tclose(ft);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    return buf;
}

int data_tokenizer_from_dataset(const char *h5_path, data_tokenizer **out, char *err,
                                size_t errlen) {
    *out = NULL;
    data_h5_scope scope;
    data_h5_begin(&scope);
    char *enc = NULL, *bpe = NULL;
    size_t enc_len = 0, bpe_len = 0;
    int rc = -1;
    hid_t file = H5Fopen(h5_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        char detail[256];
        data_h5_error_detail(detail, sizeof detail);
        data_errorf(err, errlen, "%s: cannot open as HDF5: %s", h5_path,
                    detail[0] ? detail : "unknown error");
        goto done;
    }
    char name[64];
    int st = read_string_attr(file, "tokenizer", name, sizeof name);
    if (st == 1) {
        data_errorf(err, errlen, "%s: names no tokenizer (no attribute tokenizer)", h5_path);
        goto done;
    }
    if (st < 0) {
        data_errorf(err, errlen, "%s: attribute tokenizer is not a short string", h5_path);
        goto done;
    }
    if (!strcmp(name, "bytes")) {
        rc = 0;
    } else if (!strcmp(name, "gpt2")) {
        enc = read_bytes_dataset(file, "tokenizer/encoder.json", h5_path, &enc_len, err, errlen);
        if (enc) bpe = read_bytes_dataset(file, "tokenizer/vocab.bpe", h5_path, &bpe_len, err,
                                          errlen);
        if (enc && bpe) rc = 0;
    } else {
        data_errorf(err, errlen, "%s: unknown tokenizer '%s' (known: bytes, gpt2)", h5_path, name);
    }
done:
    if (file >= 0) H5Fclose(file);
    data_h5_end(&scope);
    if (rc == 0) {
        if (enc == NULL) {
            rc = data_tokenizer_bytes(out, err, errlen);
        } else {
            char en[1100], bn[1100];
            snprintf(en, sizeof en, "%s:/tokenizer/encoder.json", h5_path);
            snprintf(bn, sizeof bn, "%s:/tokenizer/vocab.bpe", h5_path);
            rc = tok_gpt2_from_memory(enc, enc_len, en, bpe, bpe_len, bn, out, err, errlen);
        }
    }
    free(enc);
    free(bpe);
    return rc;
}
