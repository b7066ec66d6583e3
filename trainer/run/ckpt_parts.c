/* ckpt_parts: checkpoints that every rank writes a part of (see ckpt_parts.h for the layout
 * and the guarantees). */
#include "ckpt_parts.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_hdf5.h"
#include "fsutil.h"

void ckpt_part_bounds(int64_t n, int part, int parts, int64_t *lo, int64_t *hi) {
    /* n * parts stays far below 2^63 for any model a host can hold */
    *lo = n * part / parts;
    *hi = n * (part + 1) / parts;
}

static void part_name(char *out, size_t len, int64_t step, int part, int parts) {
    /* not *.h5: `ls step_*.h5` keeps listing checkpoints only */
    snprintf(out, len, "step_%08" PRId64 ".h5.part_%04d_of_%04d", step, part, parts);
}

/* The intersection of the tensor [off, off + count) with the slice [lo, hi): 0 when empty. */
static int meets(int64_t off, int64_t count, int64_t lo, int64_t hi, int64_t *a, int64_t *b) {
    *a = off > lo ? off : lo;
    *b = off + count < hi ? off + count : hi;
    return *a < *b;
}

/* ---- writing a part ---- */

/* One 1-D dataset rel of n floats, with its flat_offset attribute. */
static int write_slice(hid_t f, const char *rel, const float *data, int64_t n, int64_t flat_offset) {
    int64_t dims[1] = {n};
    if (ckpt_write_tensor(f, rel, data, 1, dims) < 0) return -1;
    hid_t ds = H5Dopen2(f, rel, H5P_DEFAULT);
    int rc = ds >= 0 ? ckpt_attr_write(ds, "flat_offset", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                       &flat_offset) : -1;
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

/* The slices of every tensor into the open part file f: params, then each optimizer state. */
static int write_slices(hid_t f, const model *m, const optim *o, int64_t lo, int64_t hi,
                        const ckpt_part_src *src, float *stage) {
    const char *snames[2];
    float *unused[2];
    int ns = ckpt_optim_states(o, snames, unused);
    hid_t gp = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t go = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = gp >= 0 && go >= 0 ? 0 : -1;
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const model_tensor *t = &m->tensors[i];
        int64_t a, b;
        if (t->is_buffer || !meets(t->offset, t->count, lo, hi, &a, &b)) continue;
        char rel[300];
        for (int s = -1; s < ns && rc == 0; s++) {   /* -1: the parameters */
            const float *from = (s < 0 ? src->params : src->state[s]) + (a - lo);
            if (src->k) {
                kern_to_host(src->k, stage, from, (size_t)(b - a) * sizeof(float));
                from = stage;
            }
            if (s < 0) {
                snprintf(rel, sizeof rel, "params/%s", t->name);
            } else {
                snprintf(rel, sizeof rel, "optim/%s", t->name);
                if (s == 0) {
                    hid_t g = H5Gcreate2(f, rel, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                    if (g < 0) rc = -1;
                    else H5Gclose(g);
                }
                snprintf(rel, sizeof rel, "optim/%s/%s", t->name, snames[s]);
            }
            if (rc == 0) rc = write_slice(f, rel, from, b - a, a);
        }
    }
    if (gp >= 0) H5Gclose(gp);
    if (go >= 0) H5Gclose(go);
    return rc;
}

int ckpt_part_write(const char *dir, const model *m, const optim *o, const ckpt_state *state,
                    int part, const ckpt_part_src *src, char *err, size_t errlen) {
    if (make_dirs(dir) != 0)
        return ckpt_errorf(err, errlen, "checkpoint.dir: cannot create %s: %s", dir, strerror(errno));
    char name[128], final[1400], tmp[1500];
    part_name(name, sizeof name, state->step, part, state->parts);
    snprintf(final, sizeof final, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", final, (long)getpid());
    int64_t lo, hi, largest = 1;
    ckpt_part_bounds(m->n_params, part, state->parts, &lo, &hi);
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].count > largest) largest = m->tensors[i].count;
    float *stage = src->k ? malloc((size_t)largest * sizeof(float)) : NULL;
    if (src->k && !stage) return ckpt_errorf(err, errlen, "%s: out of memory staging a tensor", final);
    const char *what = "writing";
    hid_t fapl = ckpt_fapl_v110();
    hid_t f = fapl >= 0 ? H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    hid_t g = f >= 0 ? H5Gcreate2(f, "part", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int32_t p32 = part, w32 = state->parts;
    int rc = g >= 0 &&
             ckpt_attr_write(g, "parts_id", H5T_STD_U64LE, H5T_NATIVE_UINT64, &state->parts_id) >= 0 &&
             ckpt_attr_write(g, "part", H5T_STD_I32LE, H5T_NATIVE_INT32, &p32) >= 0 &&
             ckpt_attr_write(g, "parts", H5T_STD_I32LE, H5T_NATIVE_INT32, &w32) >= 0 &&
             ckpt_attr_write(g, "lo", H5T_STD_I64LE, H5T_NATIVE_INT64, &lo) >= 0 &&
             ckpt_attr_write(g, "hi", H5T_STD_I64LE, H5T_NATIVE_INT64, &hi) >= 0 &&
             ckpt_attr_write(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &state->step) >= 0
                 ? 0 : -1;
    if (g >= 0) H5Gclose(g);
    if (rc == 0) rc = write_slices(f, m, o, lo, hi, src, stage);
    free(stage);
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rc = -1;
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (rc != 0) {
        unlink(tmp);
        return ckpt_errorf(err, errlen, "%s: writing the part failed (disk full or not writable?)", final);
    }
    what = fsync_path(tmp, 0) != 0 ? "fsync" : rename(tmp, final) != 0 ? "rename" : NULL;
    if (what) {
        int e = errno;
        unlink(tmp);
        return ckpt_errorf(err, errlen, "%s: %s failed: %s", final, what, strerror(e));
    }
    fsync_path(dir, 1);
    return 0;
}

/* ---- the main file: virtual datasets over the parts ---- */

/* The flat range [a, b) of an array of shape dims[nd] (C order, a < b) as hyperslab blocks,
 * each a contiguous flat range: calls add(start, count, flat_start) per block, in order.
 * A partial leading row, the whole rows, a partial trailing row; partial rows recurse. */
typedef struct {
    hid_t dcpl, vspace;
    const char *src_file, *src_dset;
    int64_t src_lo;           /* the flat index of the source dataset's element 0 */
    hsize_t src_len;          /* and its length */
    int nd;
    int rc;
} vmap;

static void add_block(vmap *v, const hsize_t *start, const hsize_t *count, int64_t flat) {
    hsize_t n = 1;
    for (int i = 0; i < v->nd; i++) n *= count[i];
    hsize_t s0 = (hsize_t)(flat - v->src_lo);
    hid_t src = H5Screate_simple(1, &v->src_len, NULL);   /* the source's own extent */
    if (src < 0 || H5Sselect_hyperslab(v->vspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Sselect_hyperslab(src, H5S_SELECT_SET, &s0, NULL, &n, NULL) < 0 ||
        H5Pset_virtual(v->dcpl, v->vspace, v->src_file, v->src_dset, src) < 0)
        v->rc = -1;
    if (src >= 0) H5Sclose(src);
}

/* [a, b) inside the sub-array dims[d..nd) whose element 0 is at flat index base, with the
 * leading coordinates prefix[0..d) fixed. */
static void decompose(vmap *v, const hsize_t *dims, int d, hsize_t *prefix, int64_t base,
                      int64_t a, int64_t b) {
    hsize_t start[H5S_MAX_RANK], count[H5S_MAX_RANK];
    int nd = v->nd;
    for (int i = 0; i < d; i++) start[i] = prefix[i], count[i] = 1;
    if (d == nd - 1) {
        start[d] = (hsize_t)a, count[d] = (hsize_t)(b - a);
        add_block(v, start, count, base + a);
        return;
    }
    int64_t inner = 1;
    for (int i = d + 1; i < nd; i++) inner *= (int64_t)dims[i];
    int64_t r0 = a / inner, r1 = b / inner;
    if (r0 == r1) {   /* inside one row */
        prefix[d] = (hsize_t)r0;
        decompose(v, dims, d + 1, prefix, base + r0 * inner, a - r0 * inner, b - r0 * inner);
        return;
    }
    if (a % inner) {  /* the partial leading row */
        prefix[d] = (hsize_t)r0;
        decompose(v, dims, d + 1, prefix, base + r0 * inner, a - r0 * inner, inner);
        r0++;
    }
    if (r1 > r0) {    /* whole rows */
        start[d] = (hsize_t)r0, count[d] = (hsize_t)(r1 - r0);
        for (int i = d + 1; i < nd; i++) start[i] = 0, count[i] = dims[i];
        add_block(v, start, count, base + r0 * inner);
    }
    if (b % inner) {  /* the partial trailing row */
        prefix[d] = (hsize_t)r1;
        decompose(v, dims, d + 1, prefix, base + r1 * inner, 0, b - r1 * inner);
    }
}

/* The virtual dataset `name` under loc for tensor t, source datasets src_dset in the parts. */
static int write_virtual(hid_t loc, const char *name, const model_tensor *t, const char *src_dset,
                         const ckpt_state *s, int64_t n) {
    hsize_t dims[H5S_MAX_RANK], prefix[H5S_MAX_RANK];
    for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->dims[i];
    float fill = NAN;
    vmap v = {H5Pcreate(H5P_DATASET_CREATE), H5Screate_simple(t->ndim, dims, NULL), NULL,
              src_dset, 0, 0, t->ndim, 0};
    if (v.dcpl < 0 || v.vspace < 0 || H5Pset_fill_value(v.dcpl, H5T_NATIVE_FLOAT, &fill) < 0)
        v.rc = -1;
    for (int p = 0; p < s->parts && v.rc == 0; p++) {
        int64_t lo, hi, a, b;
        ckpt_part_bounds(n, p, s->parts, &lo, &hi);
        if (!meets(t->offset, t->count, lo, hi, &a, &b)) continue;
        char file[128];
        part_name(file, sizeof file, s->step, p, s->parts);
        v.src_file = file;
        v.src_lo = a - t->offset;
        v.src_len = (hsize_t)(b - a);
        decompose(&v, dims, 0, prefix, 0, a - t->offset, b - t->offset);
    }
    hid_t ds = -1;
    if (v.rc == 0 && H5Sselect_all(v.vspace) >= 0)
        ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, v.vspace, H5P_DEFAULT, v.dcpl, H5P_DEFAULT);
    int rc = ds >= 0 ? 0 : -1;
    if (ds >= 0) H5Dclose(ds);
    if (v.vspace >= 0) H5Sclose(v.vspace);
    if (v.dcpl >= 0) H5Pclose(v.dcpl);
    return rc;
}

/* /params, /buffers (plain) and /optim of the main file. */
static int write_main_tensors(hid_t f, const model *m, const optim *o, const ckpt_state *s,
                              const float *buffers, float *stage) {
    const char *snames[2];
    float *unused[2];
    int ns = ckpt_optim_states(o, snames, unused);
    hid_t gp = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gb = H5Gcreate2(f, "buffers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t go = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = gp >= 0 && gb >= 0 && go >= 0 ? 0 : -1;
    char src[300];
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const model_tensor *t = &m->tensors[i];
        if (t->is_buffer) {
            const float *p = buffers ? buffers + t->offset : stage;
            if (!buffers)
                kern_to_host(m->k, stage, m->buffers + t->offset, (size_t)t->count * sizeof(float));
            rc = ckpt_write_tensor(gb, t->name, p, t->ndim, t->dims) < 0 ? -1 : 0;
            continue;
        }
        snprintf(src, sizeof src, "/params/%s", t->name);
        rc = write_virtual(gp, t->name, t, src, s, m->n_params);
        if (rc != 0 || ns == 0) continue;
        hid_t gt = H5Gcreate2(go, t->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (gt < 0) rc = -1;
        for (int k = 0; k < ns && rc == 0; k++) {
            snprintf(src, sizeof src, "/optim/%s/%s", t->name, snames[k]);
            rc = write_virtual(gt, snames[k], t, src, s, m->n_params);
        }
        if (gt >= 0) H5Gclose(gt);
    }
    if (gp >= 0) H5Gclose(gp);
    if (gb >= 0) H5Gclose(gb);
    if (go >= 0) H5Gclose(go);
    return rc;
}

int ckpt_parts_publish(const char *dir, const model *m, const optim *o, const ckpt_state *state,
                       const char *config_yaml, int keep, const float *buffers, char *path_out,
                       size_t path_len, char *err, size_t errlen) {
    char final[1200], tmp[1300];
    snprintf(final, sizeof final, "%s/step_%08" PRId64 ".h5", dir, state->step);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", final, (long)getpid());
    /* every part is there, with this save's id (a part on a file system rank 0 cannot see, or
     * a stale one, stops the checkpoint here) */
    ckpt_parts *parts = NULL;
    if (ckpt_parts_open(final, state, m->n_params, &parts, err, errlen) != CKPT_OK) return -1;
    ckpt_parts_close(parts);
    int64_t largest = 1;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].count > largest) largest = m->tensors[i].count;
    float *stage = buffers ? NULL : malloc((size_t)largest * sizeof(float));
    if (!buffers && !stage) return ckpt_errorf(err, errlen, "%s: out of memory", final);
    hid_t fapl = ckpt_fapl_v110();
    hid_t f = fapl >= 0 ? H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    int rc = f >= 0 && ckpt_write_meta(f, m, o, state, config_yaml) == 0 ? 0 : -1;
    if (rc == 0) rc = write_main_tensors(f, m, o, state, buffers, stage);
    free(stage);
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rc = -1;
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (rc != 0) {
        unlink(tmp);
        return ckpt_errorf(err, errlen, "%s: writing the file that maps the parts failed (disk full "
                      "or not writable?)", final);
    }
    const char *what = fsync_path(tmp, 0) != 0 ? "fsync" : NULL;
    if (!what) {
        ckpt_fault_pause();
        if (rename(tmp, final) != 0) what = "rename";
    }
    if (what) {
        int e = errno;
        unlink(tmp);
        return ckpt_errorf(err, errlen, "%s: %s failed: %s", final, what, strerror(e));
    }
    fsync_path(dir, 1);
    ckpt_prune(dir, keep);
    if (path_out) snprintf(path_out, path_len, "%s", final);
    return 0;
}

/* ---- reading ---- */

struct ckpt_parts {
    char main[1200], dir[1200];   /* the checkpoint (errors name it first) and its directory */
    int64_t step;
    int n;
    int64_t *lo, *hi;
    int open_part;            /* the part whose file is open (-1: none): reads go in flat order */
    hid_t f;
};

static hid_t open_part(const ckpt_parts *p, int part, char *path, size_t len) {
    char name[128];
    part_name(name, sizeof name, p->step, part, p->n);
    snprintf(path, len, "%s/%s", p->dir, name);
    struct stat st;
    if (stat(path, &st) != 0 || H5Fis_hdf5(path) <= 0) return -1;
    return H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
}

void ckpt_parts_close(ckpt_parts *p) {
    if (!p) return;
    if (p->f >= 0) H5Fclose(p->f);
    free(p->lo);
    free(p->hi);
    free(p);
}

int ckpt_parts_open(const char *path, const ckpt_state *s, int64_t n, ckpt_parts **out,
                    char *err, size_t errlen) {
    *out = NULL;
    ckpt_parts *p = calloc(1, sizeof *p);
    if (!p || s->parts < 1 || !(p->lo = calloc((size_t)s->parts, 8)) ||
        !(p->hi = calloc((size_t)s->parts, 8))) {
        ckpt_parts_close(p);
        return ckpt_errorf(err, errlen, "%s: out of memory", path), CKPT_CORRUPT;
    }
    p->f = -1;
    p->open_part = -1;
    p->n = s->parts;
    p->step = s->step;
    snprintf(p->main, sizeof p->main, "%s", path);
    snprintf(p->dir, sizeof p->dir, "%s", path);
    char *slash = strrchr(p->dir, '/');
    if (slash) *slash = '\0';
    else snprintf(p->dir, sizeof p->dir, ".");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int i = 0; i < p->n; i++) {
        char ppath[1400];
        hid_t f = open_part(p, i, ppath, sizeof ppath);
        if (f < 0) {
            ckpt_parts_close(p);
            return ckpt_errorf(err, errlen, "%s: its part %s is missing, truncated or not HDF5",
                          path, ppath), CKPT_CORRUPT;
        }
        hid_t g = H5Lexists(f, "part", H5P_DEFAULT) > 0 ? H5Gopen2(f, "part", H5P_DEFAULT) : -1;
        uint64_t id = 0;
        int32_t part = -1, parts = -1;
        int64_t step = -1, want_lo = 0, want_hi = 0;
        int ok = g >= 0 &&
                 ckpt_attr_read(g, "parts_id", H5T_NATIVE_UINT64, &id) >= 0 &&
                 ckpt_attr_read(g, "part", H5T_NATIVE_INT32, &part) >= 0 &&
                 ckpt_attr_read(g, "parts", H5T_NATIVE_INT32, &parts) >= 0 &&
                 ckpt_attr_read(g, "lo", H5T_NATIVE_INT64, &p->lo[i]) >= 0 &&
                 ckpt_attr_read(g, "hi", H5T_NATIVE_INT64, &p->hi[i]) >= 0 &&
                 ckpt_attr_read(g, "step", H5T_NATIVE_INT64, &step) >= 0;
        if (g >= 0) H5Gclose(g);
        H5Fclose(f);
        if (n >= 0) ckpt_part_bounds(n, i, p->n, &want_lo, &want_hi);
        const char *why = !ok ? "has no readable /part attributes"
                          : id != s->parts_id || step != s->step
                              ? "belongs to another save (a stale part of the same step?)"
                          : part != i || parts != p->n ? "is another part"
                          : p->lo[i] != (i ? p->hi[i - 1] : 0) || p->hi[i] < p->lo[i] ||
                                    (n >= 0 && (p->lo[i] != want_lo || p->hi[i] != want_hi))
                              ? "holds another slice than this model's"
                              : NULL;
        if (why) {
            ckpt_parts_close(p);
            return ckpt_errorf(err, errlen, "%s: its part %s %s", path, ppath, why), CKPT_CORRUPT;
        }
    }
    *out = p;
    return CKPT_OK;
}

/* The slice [a, b) of dataset rel from part i. */
static int read_slice(ckpt_parts *p, int i, const char *rel, int64_t a, int64_t b, float *out,
                      char *err, size_t errlen) {
    char path[1400];
    if (p->open_part != i) {
        if (p->f >= 0) H5Fclose(p->f);
        p->open_part = i;
        p->f = open_part(p, i, path, sizeof path);
    } else {
        char name[128];
        part_name(name, sizeof name, p->step, i, p->n);
        snprintf(path, sizeof path, "%s/%s", p->dir, name);
    }
    hid_t ds = p->f >= 0 && H5Lexists(p->f, rel, H5P_DEFAULT) > 0 ? H5Dopen2(p->f, rel, H5P_DEFAULT)
                                                                    : -1;
    hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t len = 0;
    int64_t flat = -1;
    int ok = space >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
             H5Sget_simple_extent_dims(space, &len, NULL) == 1 && len == (hsize_t)(b - a) &&
             ckpt_attr_read(ds, "flat_offset", H5T_NATIVE_INT64, &flat) >= 0 && flat == a &&
             ckpt_stored_whole(ds);
    int rc = CKPT_OK;
    if (!ok) {
        ckpt_errorf(err, errlen, "%s: /%s is missing or damaged in its part %s", p->main, rel, path);
        rc = CKPT_CORRUPT;
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        ckpt_errorf(err, errlen, "%s: /%s fails its checksum or cannot be read (in its part %s)",
               p->main, rel, path);
        rc = CKPT_CORRUPT;
    }
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

int ckpt_parts_read(ckpt_parts *p, const char *rel, int64_t offset, int64_t count, float *out,
                    char *err, size_t errlen) {
    int64_t covered = 0;
    for (int i = 0; i < p->n; i++) {
        int64_t a, b;
        if (!meets(offset, count, p->lo[i], p->hi[i], &a, &b)) continue;
        int rc = read_slice(p, i, rel, a, b, out + (a - offset), err, errlen);
        if (rc != CKPT_OK) return rc;
        covered += b - a;
    }
    if (covered != count)   /* the parts tile [0, hi of the last) without gaps (ckpt_parts_open) */
        return ckpt_errorf(err, errlen, "%s: its parts hold %lld of the %lld elements of /%s", p->main,
                      (long long)covered, (long long)count, rel), CKPT_CORRUPT;
    return CKPT_OK;
}

/* ---- keep-K ---- */

void ckpt_parts_prune(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1200], main_path[1200];
    while ((e = readdir(d))) {
        /* step_NNNNNNNN.h5.part_RRRR_of_WWWW, and its temporary names (.tmp.PID: leftovers
         * of interrupted writes, as no part is being written while rank 0 prunes) */
        const char *n = e->d_name, *dot = strchr(n, '.');
        if (strncmp(n, "step_", 5) != 0 || !dot || strncmp(dot, ".h5.part_", 9) != 0) continue;
        snprintf(main_path, sizeof main_path, "%s/%.*s.h5", dir, (int)(dot - n), n);
        struct stat st;
        if (!strstr(n, ".tmp.") && stat(main_path, &st) == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, n);
        unlink(path);
    }
    closedir(d);
}
