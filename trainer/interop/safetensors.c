/* safetensors: header parsing with jansson, tensors as float32 (see safetensors.h).
 * Tensors are little-endian in the file; this code assumes a little-endian host (x86-64,
 * aarch64), like the rest of harness's binary formats. */
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A header larger than this is not a header (GPT-2 XL's is about 50 KiB). */
#define ST_MAX_HEADER (100ll << 20)

static int elem_size(st_dtype d) { return d == ST_F32 ? 4 : 2; }

static int parse_dtype(const char *s, st_dtype *d) {
    if (!strcmp(s, "F32")) *d = ST_F32;
    else if (!strcmp(s, "F16")) *d = ST_F16;
    else if (!strcmp(s, "BF16")) *d = ST_BF16;
    else return -1;
    return 0;
}

/* One header entry: {"dtype": ..., "shape": [...], "data_offsets": [b, e]}. */
static int parse_entry(const st_file *f, const char *name, json_t *v, st_tensor *t, char *err,
                       size_t errlen) {
    const char *p = f->path;
    if (strlen(name) >= sizeof t->name)
        return snprintf(err, errlen, "%s: tensor name '%.60s...' is too long", p, name), -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) ||
        json_array_size(off) != 2)
        return snprintf(err, errlen, "%s: tensor %s: header entry needs dtype, shape and "
                        "data_offsets [begin, end]", p, name), -1;
    if (parse_dtype(json_string_value(dt), &t->dtype) != 0)
        return snprintf(err, errlen, "%s: tensor %s has dtype %s; harness reads F32, F16 and "
                        "BF16", p, name, json_string_value(dt)), -1;
    size_t nd = json_array_size(sh);
    if (nd > ST_MAX_DIMS)
        return snprintf(err, errlen, "%s: tensor %s has %zu dimensions (at most %d)", p, name,
                        nd, ST_MAX_DIMS), -1;
    t->ndim = (int)nd;
    t->count = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(sh, i);
        json_int_t x = json_is_integer(d) ? json_integer_value(d) : -1;
        if (x < 0 || x > (json_int_t)1 << 40 || (t->count > 0 && x > ((int64_t)1 << 50) / t->count))
            return snprintf(err, errlen, "%s: tensor %s: shape[%zu] is not a sensible size", p,
                            name, i), -1;
        t->shape[i] = x;
        t->count *= x;
    }
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_integer(b) || !json_is_integer(e))
        return snprintf(err, errlen, "%s: tensor %s: data_offsets must be integers", p, name), -1;
    t->begin = json_integer_value(b);
    t->end = json_integer_value(e);
    int64_t need = t->count * elem_size(t->dtype);
    if (t->begin < 0 || t->end < t->begin)
        return snprintf(err, errlen, "%s: tensor %s: data_offsets [%" PRId64 ", %" PRId64 "] are "
                        "not a byte range", p, name, t->begin, t->end), -1;
    if (t->end - t->begin != need)
        return snprintf(err, errlen, "%s: tensor %s: its shape and dtype need %" PRId64 " bytes "
                        "but data_offsets span %" PRId64, p, name, need, t->end - t->begin), -1;
    if (t->end > f->data_bytes)
        return snprintf(err, errlen, "%s: tensor %s ends at data byte %" PRId64 " but the file "
                        "holds only %" PRId64 " bytes of data (truncated?)", p, name, t->end,
                        f->data_bytes), -1;
    return 0;
}

int st_open(const char *path, st_file *f, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1;
    struct stat sb;
    unsigned char len8[8];
    int rc = -1;
    char *text = NULL;
    json_t *root = NULL;
    if (fstat(fileno(fp), &sb) != 0 || fread(len8, 1, 8, fp) != 8) {
        snprintf(err, errlen, "%s: shorter than the 8-byte header length (not safetensors)", path);
        goto out;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n < 2 || n > (uint64_t)ST_MAX_HEADER || (int64_t)n > (int64_t)sb.st_size - 8) {
        snprintf(err, errlen, "%s: header length %" PRIu64 " does not fit the file's %lld bytes "
                 "(not safetensors, or truncated)", path, n, (long long)sb.st_size);
        goto out;
    }
    f->data_start = 8 + (int64_t)n;
    f->data_bytes = (int64_t)sb.st_size - f->data_start;
    if (!(text = malloc(n)) || fread(text, 1, n, fp) != n) {
        snprintf(err, errlen, "%s: cannot read the %" PRIu64 "-byte header", path, n);
        goto out;
    }
    json_error_t je;
    root = json_loadb(text, n, 0, &je);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: the header is not a JSON object (%s at byte %d)", path,
                 root ? "another JSON value" : je.text, je.position);
        goto out;
    }
    f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
    if (!f->tensors) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (!strcmp(name, "__metadata__")) continue;
        if (parse_entry(f, name, v, &f->tensors[f->n], err, errlen) != 0) goto out;
        f->n++;
    }
    rc = 0;
out:
    json_decref(root);
    free(text);
    fclose(fp);
    if (rc != 0) st_close(f);
    return rc;
}

void st_close(st_file *f) {
    free(f->tensors);
    f->tensors = NULL;
    f->n = 0;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* IEEE half: sign, 5-bit exponent (bias 15), 10-bit mantissa; subnormals and Inf/NaN too. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | man << 13;
    } else if (man == 0) {
        bits = sign;
    } else {   /* subnormal: shift the mantissa up until its leading 1 is the implicit bit */
        int e = 113;
        while (!(man & 0x400)) man <<= 1, e--;
        bits = sign | (uint32_t)e << 23 | (man & 0x3ff) << 13;
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

int st_read(const st_file *f, const st_tensor *t, float *out, char *err, size_t errlen) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return snprintf(err, errlen, "%s: %s", f->path, strerror(errno)), -1;
    size_t bytes = (size_t)(t->end - t->begin);
    int es = elem_size(t->dtype);
    /* 16-bit data is read into the second half of out, then widened front to back */
    unsigned char *raw = es == 4 ? (unsigned char *)out : (unsigned char *)(out + t->count) - bytes;
    int ok = fseeko(fp, (off_t)(f->data_start + t->begin), SEEK_SET) == 0 &&
             fread(raw, 1, bytes, fp) == bytes;
    fclose(fp);
    if (!ok)
        return snprintf(err, errlen, "%s: tensor %s: cannot read its %zu bytes (truncated?)",
                        f->path, t->name, bytes), -1;
    for (int64_t i = 0; i < t->count && es == 2; i++) {
        uint16_t h;
        memcpy(&h, raw + 2 * i, 2);
        if (t->dtype == ST_F16) {
            out[i] = half_to_float(h);
        } else {
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&out[i], &bits, 4);
        }
    }
    return 0;
}

int st_write(const char *path, const st_out *t, int n, char *err, size_t errlen) {
    json_t *root = json_object();
    json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        int64_t count = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].shape[d]));
            count *= t[i].shape[d];
        }
        json_object_set_new(root, t[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
                                      "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + 4 * count)));
        off += 4 * count;
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) return snprintf(err, errlen, "%s: out of memory", path), -1;
    /* the data section starts 8-aligned: the header is padded with spaces */
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    FILE *fp = fopen(path, "wb");
    int ok = fp != NULL && fwrite(len8, 1, 8, fp) == 8 && fwrite(text, 1, len, fp) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < n; i++) {
        size_t count = 1;
        for (int d = 0; d < t[i].ndim; d++) count *= (size_t)t[i].shape[d];
        ok = fwrite(t[i].data, sizeof(float), count, fp) == count;
    }
    int e = errno;
    if (fp && fclose(fp) != 0) ok = 0;
    free(text);
    if (!ok) return snprintf(err, errlen, "%s: cannot write: %s", path, strerror(e)), -1;
    return 0;
}
