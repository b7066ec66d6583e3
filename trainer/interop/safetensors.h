/* safetensors: HuggingFace's tensor file, read and written without Python.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {...}, "NAME": {"dtype": "F32", "shape": [d0, d1], "data_offsets": [b, e]}}
 * then the raw little-endian tensors, tensor NAME in bytes [b, e) after the header.  The
 * reader checks every entry against the file before any tensor is used: a dtype it cannot
 * convert, a shape that needs another number of bytes than its offsets span, offsets past the
 * end of the file (a truncated download) are errors naming the file and the tensor.  F32, F16
 * and BF16 are read (as float32); the writer writes F32. */
#ifndef HARNESS_SAFETENSORS_H
#define HARNESS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum { ST_F32, ST_F16, ST_BF16 } st_dtype;

typedef struct {
    char name[160];
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t count;            /* elements: the product of shape */
    int64_t begin, end;       /* byte range within the data section */
} st_tensor;

typedef struct {
    char path[1100];
    int64_t data_start;       /* file offset of the data section: 8 + N */
    int64_t data_bytes;       /* bytes the file holds after the header */
    int n;
    st_tensor *tensors;       /* [n], in the header's order */
} st_file;

/* Reads and checks path's header.  0, or -1 with err naming the file (and the tensor). */
int st_open(const char *path, st_file *f, char *err, size_t errlen);
void st_close(st_file *f);

/* The tensor called name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);

/* Reads tensor t into out[t->count] as float32.  0, or -1 with err. */
int st_read(const st_file *f, const st_tensor *t, float *out, char *err, size_t errlen);

/* One tensor to write: float32 data of shape[ndim]. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} st_out;

/* Writes the tensors (F32) and the metadata {"format": "pt"} that transformers expects, to
 * path.  0, or -1 with err. */
int st_write(const char *path, const st_out *t, int n, char *err, size_t errlen);

#endif
