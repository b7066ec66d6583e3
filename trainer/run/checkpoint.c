/* checkpoint: HDF5 checkpoint files (see checkpoint.h for the layout and the guarantees). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt_hdf5.h"
#include "ckpt_parts.h"
#include "fsutil.h"

static void format_shape(char *buf, size_t n, int ndim, const hsize_t *dims) {
    int used = snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < (int)n - 24; i++)
        used += snprintf(buf + used, n - (size_t)used, "%s%llu", i ? ", " : "",
                         (unsigned long long)dims[i]);
    snprintf(buf + used, n - (size_t)used, "]");
}


/* Reads dataset `name` under loc into out; its shape must be exactly dims.
 * Returns 0, CKPT_MISMATCH (other shape: message in err) or CKPT_CORRUPT. */
static int read_tensor(hid_t loc, const char *name, const char *display, float *out, int ndim,
                       const int64_t *dims, const char *path, ckpt_parts *parts, int64_t offset,
                       char *err, size_t errlen) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) {
        ckpt_errorf(err, errlen, "%s: the model has tensor %s but the checkpoint does not", path,
               display);
        return CKPT_MISMATCH;
    }
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) {
        ckpt_errorf(err, errlen, "%s: cannot open %s", path, display);
        return CKPT_CORRUPT;
    }
    int rc = CKPT_OK;
    hid_t space = H5Dget_space(ds);
    hsize_t got[H5S_MAX_RANK];
    int got_nd = space >= 0 ? H5Sget_simple_extent_dims(space, got, NULL) : -1;
    int same = got_nd == ndim;
    for (int i = 0; same && i < ndim; i++) same = got[i] == (hsize_t)dims[i];
    if (got_nd < 0) {
        ckpt_errorf(err, errlen, "%s: %s has an unreadable shape", path, display);
        rc = CKPT_CORRUPT;
    } else if (!same) {
        char want[96], have[128];
        hsize_t wd[4];
        for (int i = 0; i < ndim; i++) wd[i] = (hsize_t)dims[i];
        format_shape(want, sizeof want, ndim, wd);
        format_shape(have, sizeof have, got_nd, got);
        ckpt_errorf(err, errlen, "%s: tensor %s has shape %s in the checkpoint but %s in the model "
               "(does the config's model.layers match the run that wrote it?)", path, display,
               have, want);
        rc = CKPT_MISMATCH;
    } else if (parts) {   /* a virtual dataset: its slices come from the verified parts */
        int64_t count = 1;
        for (int i = 0; i < ndim; i++) count *= dims[i];
        rc = ckpt_parts_read(parts, display + 1, offset, count, out, err, errlen);
    } else if (!ckpt_stored_whole(ds)) {   /* hostile files: see ckpt_stored_whole */
        ckpt_errorf(err, errlen, "%s: %s is damaged (its data is not all stored in the file)", path,
               display);
        rc = CKPT_CORRUPT;
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        ckpt_errorf(err, errlen, "%s: %s fails its checksum or cannot be read", path, display);
        rc = CKPT_CORRUPT;
    }
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return rc;
}

/* ---- the meta checksum: CRC-32 over a canonical text of every meta value ---- */

static uint32_t meta_crc(const ckpt_state *s, const char *optimizer, const char *rng,
                         const char *config_yaml) {
    char head[512];
    int n = snprintf(head, sizeof head, "v%d|step %" PRId64 "|epoch %" PRId64 "|cursor %" PRId64
                     "|t %" PRId64 "|seed %" PRIu64 "|world %d|%s|%s|", CKPT_FORMAT_VERSION,
                     s->step, s->epoch, s->cursor, s->optimizer_steps, s->seed, s->world_size,
                     optimizer, rng);
    if (s->parts > 0)   /* written by every rank (ckpt_parts.h) */
        n += snprintf(head + n, sizeof head - (size_t)n, "parts %d|id %" PRIx64 "|", s->parts,
                      s->parts_id);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)head, (uInt)n);
    crc = crc32(crc, (const Bytef *)config_yaml, (uInt)strlen(config_yaml));
    return (uint32_t)crc;
}

/* "none": parameters only (an imported model, see ckpt_write_file) */
static const char *optimizer_name(const optim *o) {
    return !o ? "none" : o->type == OPT_ADAMW ? "adamw" : "sgd";
}

/* State tensors of the optimizer: names and buffers (NULL-terminated lists of 2). */
int ckpt_optim_states(const optim *o, const char **names, float **bufs) {
    if (!o) return 0;
    if (o->type == OPT_ADAMW) {
        names[0] = "exp_avg"; bufs[0] = o->m;
        names[1] = "exp_avg_sq"; bufs[1] = o->v;
        return 2;
    }
    if (o->m) { names[0] = "momentum_buffer"; bufs[0] = o->m; return 1; }
    return 0;
}

static const char *RNG_NOTE =
    "philox4x32-10, stateless: init from (seed, tensor index), dropout from (seed, step, sample)";

/* /meta of the open file f; 0 or -1. */
int ckpt_write_meta(hid_t f, const model *m, const optim *o, const ckpt_state *state,
                    const char *config_yaml) {
    hid_t g = H5Gcreate2(f, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int32_t version = CKPT_FORMAT_VERSION, world = state->world_size, parts = state->parts;
    uint32_t crc = meta_crc(state, optimizer_name(o), RNG_NOTE, config_yaml);
    int64_t vocab = m->n_classes;   /* a language model's vocabulary before padding */
    int rc = g >= 0 &&
        ckpt_attr_write(g, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version) >= 0 &&
        ckpt_attr_write(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &state->step) >= 0 &&
        ckpt_attr_write(g, "epoch", H5T_STD_I64LE, H5T_NATIVE_INT64, &state->epoch) >= 0 &&
        ckpt_attr_write(g, "cursor", H5T_STD_I64LE, H5T_NATIVE_INT64, &state->cursor) >= 0 &&
        ckpt_attr_write(g, "optimizer_steps", H5T_STD_I64LE, H5T_NATIVE_INT64, &state->optimizer_steps) >= 0 &&
        ckpt_attr_write(g, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &state->seed) >= 0 &&
        ckpt_attr_write(g, "world_size", H5T_STD_I32LE, H5T_NATIVE_INT32, &world) >= 0 &&
        ckpt_attr_write_string(g, "optimizer", optimizer_name(o)) >= 0 &&
        ckpt_attr_write_string(g, "rng", RNG_NOTE) >= 0 &&
        ckpt_attr_write_string(g, "config", config_yaml) >= 0 &&
        ckpt_attr_write(g, "meta_crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc) >= 0 &&
        (!m->input_desc.tokens ||
         ckpt_attr_write(g, "vocab_size", H5T_STD_I64LE, H5T_NATIVE_INT64, &vocab) >= 0) &&
        (parts == 0 ||
         (ckpt_attr_write(g, "parts", H5T_STD_I32LE, H5T_NATIVE_INT32, &parts) >= 0 &&
          ckpt_attr_write(g, "parts_id", H5T_STD_U64LE, H5T_NATIVE_UINT64, &state->parts_id) >= 0));
    if (g >= 0) H5Gclose(g);
    return rc ? 0 : -1;
}

/* ckpt_set_test_pause's pause (ms; 0: none). */
static long test_pause_ms = 0;

void ckpt_set_test_pause(long ms) { test_pause_ms = ms; }

void ckpt_fault_pause(void) {
    long v = test_pause_ms;
    if (v > 0) {
        struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void ckpt_prune(const char *dir, int keep) {
    static char paths[4096][1200];
    int n = ckpt_list(dir, paths, 4096);
    for (int i = keep; i < n; i++) unlink(paths[i]);
    /* leftovers of interrupted writes */
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1200];
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 7 && strncmp(e->d_name, "step_", 5) == 0 && strstr(e->d_name, ".h5.tmp")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
    ckpt_parts_prune(dir);   /* the parts of deleted checkpoints, and orphans */
}

static int write_path(const char *final, const model *m, const optim *o, const ckpt_state *state,
                      const char *config_yaml, ckpt_state_fetch fetch, void *fetch_user,
                      const ckpt_host_src *src, char *err, size_t errlen);

/* ckpt_write and ckpt_write_host: src NULL reads the backend (and fetch), else the host
 * snapshot src (no kernel calls: the background writer's thread may not use the backend). */
static int write_file(const char *dir, const model *m, const optim *o, const ckpt_state *state,
                      const char *config_yaml, int keep, ckpt_state_fetch fetch, void *fetch_user,
                      const ckpt_host_src *src, char *path_out, size_t path_len, char *err,
                      size_t errlen) {
    if (make_dirs(dir) != 0)
        return ckpt_errorf(err, errlen, "checkpoint.dir: cannot create %s: %s", dir, strerror(errno));
    char final[1200];
    snprintf(final, sizeof final, "%s/step_%08" PRId64 ".h5", dir, state->step);
    if (write_path(final, m, o, state, config_yaml, fetch, fetch_user, src, err, errlen) != 0)
        return -1;
    ckpt_prune(dir, keep);
    if (path_out) snprintf(path_out, path_len, "%s", final);
    return 0;
}

/* The file `final` (a temporary name, fsync, rename): from the backend (and fetch), or from
 * the host snapshot src when it is not NULL. */
static int write_path(const char *final, const model *m, const optim *o, const ckpt_state *state,
                      const char *config_yaml, ckpt_state_fetch fetch, void *fetch_user,
                      const ckpt_host_src *src, char *err, size_t errlen) {
    char tmp[1300], dir[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", final, (long)getpid());
    snprintf(dir, sizeof dir, "%s", final);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");

    /* One tensor at a time through a host buffer of the largest tensor: writing never holds
     * more than one extra tensor's worth (the optimizer state may come from other ranks). */
    const model_tensor *t = m->tensors;
    int nt = m->n_tensors;
    const char *snames[2];
    float *sbufs[2];
    int ns = ckpt_optim_states(o, snames, sbufs);
    int64_t largest = 1;
    for (int i = 0; i < nt; i++)
        if (t[i].count > largest) largest = t[i].count;
    float *host = src ? NULL : malloc((size_t)largest * sizeof(float));
    if (!src && !host)
        return ckpt_errorf(err, errlen, "%s: out of memory staging %lld bytes", final,
                      (long long)largest * 4);
    const char *what = "creating the file";
    hid_t fapl = ckpt_fapl_v110();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    hid_t gp = -1, go = -1, gt = -1, gb = -1;
    if (f < 0) goto fail;

    what = "writing /meta";
    if (ckpt_write_meta(f, m, o, state, config_yaml) != 0) goto fail;

    what = "writing /params";
    gp = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gp < 0) goto fail;
    for (int i = 0; i < nt; i++) {
        if (t[i].is_buffer) continue;
        const float *p = src ? src->params + t[i].offset : host;
        if (!src) kern_to_host(m->k, host, m->params + t[i].offset, (size_t)t[i].count * sizeof(float));
        if (ckpt_write_tensor(gp, t[i].name, p, t[i].ndim, t[i].dims) < 0) goto fail;
    }

    what = "writing /buffers";
    gb = H5Gcreate2(f, "buffers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gb < 0) goto fail;
    for (int i = 0; i < nt; i++) {
        if (!t[i].is_buffer) continue;
        const float *p = src ? src->buffers + t[i].offset : host;
        if (!src) kern_to_host(m->k, host, m->buffers + t[i].offset, (size_t)t[i].count * sizeof(float));
        if (ckpt_write_tensor(gb, t[i].name, p, t[i].ndim, t[i].dims) < 0) goto fail;
    }

    what = "writing /optim";
    go = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (go < 0) goto fail;
    for (int i = 0; i < nt && ns > 0; i++) {
        if (t[i].is_buffer) continue;
        gt = H5Gcreate2(go, t[i].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (gt < 0) goto fail;
        for (int s = 0; s < ns; s++) {
            const float *p = src ? src->state[s] + t[i].offset : host;
            if (src) {
                /* the snapshot holds it already */
            } else if (fetch) {
                what = "gathering the optimizer state";
                if (fetch(fetch_user, s, t[i].offset, t[i].count, host) != 0) goto fail;
                what = "writing /optim";
            } else {
                kern_to_host(m->k, host, sbufs[s] + t[i].offset, (size_t)t[i].count * sizeof(float));
            }
            if (ckpt_write_tensor(gt, snames[s], p, t[i].ndim, t[i].dims) < 0) goto fail;
        }
        H5Gclose(gt);
        gt = -1;
    }

    what = "closing the file";
    H5Gclose(gb); gb = -1;
    H5Gclose(go); go = -1;
    H5Gclose(gp); gp = -1;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) goto fail;
    herr_t closed = H5Fclose(f);
    f = -1;
    if (closed < 0) goto fail;
    H5Pclose(fapl);
    fapl = -1;
    free(host);
    host = NULL;

    if (fsync_path(tmp, 0) != 0) {
        what = "fsync";
        goto fail_errno;
    }
    ckpt_fault_pause();
    if (rename(tmp, final) != 0) {
        what = "rename";
        goto fail_errno;
    }
    fsync_path(dir, 1);   /* the rename itself is durable once the directory is synced */
    return 0;

fail_errno: {
    int e = errno;
    unlink(tmp);
    return ckpt_errorf(err, errlen, "%s: %s failed: %s", final, what, strerror(e));
}
fail:
    if (gb >= 0) H5Gclose(gb);
    if (gt >= 0) H5Gclose(gt);
    if (go >= 0) H5Gclose(go);
    if (gp >= 0) H5Gclose(gp);
    if (f >= 0) H5Fclose(f);
    if (fapl >= 0) H5Pclose(fapl);
    free(host);
    unlink(tmp);
    return ckpt_errorf(err, errlen, "%s: %s failed (disk full or not writable?)", final, what);
}

int ckpt_write_file(const char *path, const model *m, const optim *o, const ckpt_state *state,
                    const char *config_yaml, ckpt_state_fetch fetch, void *fetch_user,
                    char *err, size_t errlen) {
    return write_path(path, m, o, state, config_yaml, fetch, fetch_user, NULL, err, errlen);
}

int ckpt_write(const char *dir, const model *m, const optim *o, const ckpt_state *state,
               const char *config_yaml, int keep, ckpt_state_fetch fetch, void *fetch_user,
               char *path_out, size_t path_len, char *err, size_t errlen) {
    return write_file(dir, m, o, state, config_yaml, keep, fetch, fetch_user, NULL, path_out,
                      path_len, err, errlen);
}

int ckpt_write_host(const char *dir, const model *m, const optim *o, const ckpt_state *state,
                    const char *config_yaml, int keep, const ckpt_host_src *src, char *path_out,
                    size_t path_len, char *err, size_t errlen) {
    return write_file(dir, m, o, state, config_yaml, keep, NULL, NULL, src, path_out, path_len,
                      err, errlen);
}

/* Opens a checkpoint read-only with HDF5's error printing off. */
static hid_t open_ro(const char *path, char *err, size_t errlen) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    struct stat st;
    if (stat(path, &st) != 0) {
        ckpt_errorf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        ckpt_errorf(err, errlen, "%s: not a readable HDF5 file (truncated or damaged?)", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) ckpt_errorf(err, errlen, "%s: cannot open as HDF5 (damaged?)", path);
    return f;
}

static int read_meta(hid_t f, const char *path, ckpt_state *s, char **optimizer, char **config,
                     char *err, size_t errlen) {
    *optimizer = *config = NULL;
    if (H5Lexists(f, "meta", H5P_DEFAULT) <= 0)
        return ckpt_errorf(err, errlen, "%s: no /meta group: not a harness checkpoint", path), CKPT_CORRUPT;
    hid_t g = H5Gopen2(f, "meta", H5P_DEFAULT);
    if (g < 0) return ckpt_errorf(err, errlen, "%s: cannot open /meta", path), CKPT_CORRUPT;
    int32_t version = 0, world = 0, parts = 0;
    uint32_t crc = 0;
    char *rng = NULL;
    int rc = CKPT_OK;
    s->parts_id = 0;
    int has_parts = H5Aexists(g, "parts") > 0;   /* written by every rank (ckpt_parts.h) */
    if ((has_parts && (ckpt_attr_read(g, "parts", H5T_NATIVE_INT32, &parts) < 0 ||
                       ckpt_attr_read(g, "parts_id", H5T_NATIVE_UINT64, &s->parts_id) < 0 ||
                       parts < 1 || parts > (1 << 20))) ||
        ckpt_attr_read(g, "format_version", H5T_NATIVE_INT32, &version) < 0 ||
        ckpt_attr_read(g, "step", H5T_NATIVE_INT64, &s->step) < 0 ||
        ckpt_attr_read(g, "epoch", H5T_NATIVE_INT64, &s->epoch) < 0 ||
        ckpt_attr_read(g, "cursor", H5T_NATIVE_INT64, &s->cursor) < 0 ||
        ckpt_attr_read(g, "optimizer_steps", H5T_NATIVE_INT64, &s->optimizer_steps) < 0 ||
        ckpt_attr_read(g, "seed", H5T_NATIVE_UINT64, &s->seed) < 0 ||
        ckpt_attr_read(g, "world_size", H5T_NATIVE_INT32, &world) < 0 ||
        ckpt_attr_read(g, "meta_crc32", H5T_NATIVE_UINT32, &crc) < 0 ||
        !(*optimizer = ckpt_attr_read_string(g, "optimizer")) || !(rng = ckpt_attr_read_string(g, "rng")) ||
        !(*config = ckpt_attr_read_string(g, "config"))) {
        rc = CKPT_CORRUPT;
        ckpt_errorf(err, errlen, "%s: /meta attributes are missing or unreadable", path);
    } else if (version != CKPT_FORMAT_VERSION) {
        rc = CKPT_MISMATCH;
        ckpt_errorf(err, errlen, "%s: checkpoint format version %d, this harness reads version %d",
               path, version, CKPT_FORMAT_VERSION);
    } else {
        s->world_size = world;
        s->parts = parts;
        if (meta_crc(s, *optimizer, rng, *config) != crc) {
            rc = CKPT_CORRUPT;
            ckpt_errorf(err, errlen, "%s: /meta fails its CRC-32 checksum", path);
        } else if (s->step < 0 || s->epoch < 0 || s->cursor < 0 || s->optimizer_steps < 0) {
            rc = CKPT_CORRUPT;
            ckpt_errorf(err, errlen, "%s: /meta holds negative positions", path);
        }
    }
    free(rng);
    H5Gclose(g);
    if (rc != CKPT_OK) {
        free(*optimizer);
        free(*config);
        *optimizer = *config = NULL;
    }
    return rc;
}

int ckpt_read(const char *path, model *m, optim *o, ckpt_state *state, char *err, size_t errlen) {
    hid_t f = open_ro(path, err, errlen);
    if (f < 0) return CKPT_CORRUPT;
    ckpt_state s;
    char *opt_name = NULL, *config = NULL;
    int rc = read_meta(f, path, &s, &opt_name, &config, err, errlen);
    float *host = NULL;
    ckpt_parts *parts = NULL;
    hid_t gp = -1, go = -1, gb = -1;
    const model_tensor *t = m->tensors;
    int nt = m->n_tensors;
    const char *snames[2];
    float *sbufs[2];
    int ns = o ? ckpt_optim_states(o, snames, sbufs) : 0;
    if (rc != CKPT_OK) goto done;
    if (o && !strcmp(opt_name, "none")) {
        rc = CKPT_MISMATCH;
        ckpt_errorf(err, errlen, "%s holds parameters only (an imported model, no optimizer state): "
               "start a run from it with model.init_from, not --resume", path);
        goto done;
    }
    if (o && strcmp(opt_name, optimizer_name(o)) != 0) {
        rc = CKPT_MISMATCH;
        ckpt_errorf(err, errlen, "%s: written with train.optimizer=%s, but this run uses %s", path,
               opt_name, optimizer_name(o));
        goto done;
    }
    /* the parts' slices are checked tensor by tensor: another model's is a mismatch named by
     * its first differing tensor, as for a whole file */
    if (s.parts > 0 && (rc = ckpt_parts_open(path, &s, -1, &parts, err, errlen)) != CKPT_OK)
        goto done;
    size_t bytes = (size_t)m->n_params * sizeof(float);
    size_t bbytes = (size_t)m->n_buffers * sizeof(float);
    host = malloc(bytes * (size_t)(1 + ns) + bbytes + 1);
    float *host_buffers = host ? host + (size_t)(1 + ns) * m->n_params : NULL;
    if (!host) {
        rc = CKPT_CORRUPT;
        ckpt_errorf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    /* the model's tensors in order (the first mismatch is the one named), then anything extra */
    gp = H5Lexists(f, "params", H5P_DEFAULT) > 0 ? H5Gopen2(f, "params", H5P_DEFAULT) : -1;
    if (gp < 0) {
        rc = CKPT_CORRUPT;
        ckpt_errorf(err, errlen, "%s: no /params group", path);
        goto done;
    }
    gb = m->n_buffers && H5Lexists(f, "buffers", H5P_DEFAULT) > 0
             ? H5Gopen2(f, "buffers", H5P_DEFAULT) : -1;
    for (int i = 0; i < nt; i++) {
        char display[96];
        snprintf(display, sizeof display, "/%s/%s", t[i].is_buffer ? "buffers" : "params",
                 t[i].name);
        if (t[i].is_buffer && gb < 0) {
            rc = CKPT_MISMATCH;
            ckpt_errorf(err, errlen, "%s: the model has buffer %s but the checkpoint has no /buffers "
                   "(written for a model without batch norm?)", path, display);
            goto done;
        }
        rc = read_tensor(t[i].is_buffer ? gb : gp, t[i].name, display,
                         (t[i].is_buffer ? host_buffers : host) + t[i].offset, t[i].ndim,
                         t[i].dims, path, t[i].is_buffer ? NULL : parts, t[i].offset, err, errlen);
        if (rc != CKPT_OK) goto done;
    }
    H5G_info_t info;
    if (H5Gget_info(gp, &info) < 0) {
        rc = CKPT_CORRUPT;
        ckpt_errorf(err, errlen, "%s: /params is unreadable", path);
        goto done;
    }
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[256];
        if (H5Lget_name_by_idx(gp, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0)
            continue;
        int known = 0;
        for (int j = 0; j < nt && !known; j++) known = !t[j].is_buffer && strcmp(name, t[j].name) == 0;
        if (!known) {
            rc = CKPT_MISMATCH;
            ckpt_errorf(err, errlen, "%s: the checkpoint has tensor %s, which the model lacks "
                   "(does the config's model.layers match the run that wrote it?)", path, name);
            goto done;
        }
    }
    if (ns > 0) {
        go = H5Lexists(f, "optim", H5P_DEFAULT) > 0 ? H5Gopen2(f, "optim", H5P_DEFAULT) : -1;
        if (go < 0) {
            rc = CKPT_CORRUPT;
            ckpt_errorf(err, errlen, "%s: no /optim group", path);
            goto done;
        }
        for (int i = 0; i < nt; i++) {
            if (t[i].is_buffer) continue;
            for (int j = 0; j < ns; j++) {
                char rel[96], display[128];
                snprintf(rel, sizeof rel, "%s/%s", t[i].name, snames[j]);
                snprintf(display, sizeof display, "/optim/%s", rel);
                if (H5Lexists(go, t[i].name, H5P_DEFAULT) <= 0) {
                    rc = CKPT_MISMATCH;
                    ckpt_errorf(err, errlen, "%s: no optimizer state %s (written with other "
                           "optimizer settings?)", path, display);
                    goto done;
                }
                rc = read_tensor(go, rel, display, host + (size_t)(j + 1) * m->n_params + t[i].offset,
                                 t[i].ndim, t[i].dims, path, parts, t[i].offset, err, errlen);
                if (rc != CKPT_OK) goto done;
            }
        }
    }
    /* verified: now hand everything over */
    kern_to_device(m->k, m->params, host, bytes);
    for (int j = 0; j < ns; j++) {
        const float *src = host + (size_t)(j + 1) * m->n_params;
        if (o->state_on_host) memcpy(sbufs[j], src, bytes);   /* zero_stage 1: rank 0's staging */
        else kern_to_device(m->k, sbufs[j], src, bytes);
    }
    if (bbytes) kern_to_device(m->k, m->buffers, host_buffers, bbytes);
    if (o) o->t = s.optimizer_steps;
    *state = s;
    rc = CKPT_OK;
done:
    if (gb >= 0) H5Gclose(gb);
    if (go >= 0) H5Gclose(go);
    if (gp >= 0) H5Gclose(gp);
    ckpt_parts_close(parts);
    H5Fclose(f);
    free(host);
    free(opt_name);
    free(config);
    return rc;
}

char *ckpt_read_config(const char *path, char *err, size_t errlen) {
    hid_t f = open_ro(path, err, errlen);
    if (f < 0) return NULL;
    ckpt_state s;
    char *opt_name = NULL, *config = NULL;
    read_meta(f, path, &s, &opt_name, &config, err, errlen);
    free(opt_name);
    H5Fclose(f);
    return config;
}

static int by_step_desc(const void *a, const void *b) {
    return strcmp((const char *)b, (const char *)a);   /* zero-padded steps sort as text */
}

int ckpt_read_vocab_size(const char *path, int64_t *vocab, char *err, size_t errlen) {
    hid_t f = open_ro(path, err, errlen);
    if (f < 0) return -1;
    int rc = 1;
    *vocab = 0;
    hid_t g = H5Lexists(f, "meta", H5P_DEFAULT) > 0 ? H5Gopen2(f, "meta", H5P_DEFAULT) : -1;
    if (g >= 0 && H5Aexists(g, "vocab_size") > 0)
        rc = ckpt_attr_read(g, "vocab_size", H5T_NATIVE_INT64, vocab) < 0 || *vocab < 1 ? -1 : 0;
    if (rc < 0) ckpt_errorf(err, errlen, "%s: /meta/vocab_size is unreadable", path);
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return rc;
}

int ckpt_list(const char *dir, char (*paths)[1200], int max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        size_t len = strlen(e->d_name);
        if (len < 9 || strncmp(e->d_name, "step_", 5) != 0 || strcmp(e->d_name + len - 3, ".h5") != 0 ||
            strspn(e->d_name + 5, "0123456789") != len - 8)   /* not a part (ckpt_parts.h) */
            continue;
        snprintf(paths[n++], 1200, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(paths, (size_t)n, sizeof paths[0], by_step_desc);
    return n;
}

/* ---- inspect ---- */

typedef struct {
    FILE *out;
    const char *prefix;
    int depth;        /* groups below /params or /optim; bounded: links may form a cycle */
    long *left;       /* entries still to show (hostile files: a cycle of many links) */
    int parts_ok;     /* the parts of a checkpoint written by every rank are all there and
                       * carry its id: its virtual datasets read through them */
} walk_ctx;

static herr_t print_dataset(hid_t loc, const char *name, const H5L_info_t *info, void *user) {
    (void)info;
    walk_ctx *w = user;
    if (--*w->left < 0) return 1;  /* stops the iteration */
    H5O_info_t oi;   /* HDF5 1.10 API (Debian 12) */
    if (H5Oget_info_by_name2(loc, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
    if (oi.type == H5O_TYPE_GROUP) {
        if (w->depth >= 4) {  /* hostile files: a hard link to an ancestor recursed forever */
            fprintf(w->out, "  %s%s/  (nested too deep, not shown)\n", w->prefix, name);
            return 0;
        }
        hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
        char prefix[512];
        snprintf(prefix, sizeof prefix, "%s%s/", w->prefix, name);
        walk_ctx sub = {w->out, prefix, w->depth + 1, w->left, w->parts_ok};
        H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, print_dataset, &sub);
        H5Gclose(g);
        return 0;
    }
    if (oi.type != H5O_TYPE_DATASET) return 0;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_dims(space, dims, NULL);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    char shape[128];
    format_shape(shape, sizeof shape, nd, dims);
    char full[600];
    snprintf(full, sizeof full, "%s%s", w->prefix, name);
    hid_t dcpl = H5Dget_create_plist(ds);
    int virtual_ok = w->parts_ok && dcpl >= 0 && H5Pget_layout(dcpl) == H5D_VIRTUAL;
    if (dcpl >= 0) H5Pclose(dcpl);
    float *buf = n > 0 && (virtual_ok || ckpt_stored_whole(ds)) ? malloc((size_t)n * sizeof(float))
                                                               : NULL;
    if (buf && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
        double ss = 0;
        for (hssize_t i = 0; i < n; i++) ss += (double)buf[i] * buf[i];
        fprintf(w->out, "  %-40s %-14s norm %.6g\n", full, shape, sqrt(ss));
    } else {
        fprintf(w->out, "  %-40s %-14s UNREADABLE (checksum failure?)\n", full, shape);
    }
    free(buf);
    H5Sclose(space);
    H5Dclose(ds);
    return 0;
}

int ckpt_inspect(const char *path, FILE *out, char *err, size_t errlen) {
    hid_t f = open_ro(path, err, errlen);
    if (f < 0) return -1;
    ckpt_state s;
    char *opt_name = NULL, *config = NULL;
    int rc = read_meta(f, path, &s, &opt_name, &config, err, errlen);
    ckpt_parts *parts = NULL;
    if (rc == CKPT_OK && s.parts > 0) rc = ckpt_parts_open(path, &s, -1, &parts, err, errlen);
    ckpt_parts_close(parts);
    if (rc != CKPT_OK) {
        free(opt_name);
        free(config);
        H5Fclose(f);
        return -1;
    }
    fprintf(out, "checkpoint %s\n  format %d, step %" PRId64 ", epoch %" PRId64 ", cursor %" PRId64
            ", optimizer %s (%" PRId64 " steps), seed %" PRIu64 ", written by %d rank%s\n",
            path, CKPT_FORMAT_VERSION, s.step, s.epoch, s.cursor, opt_name, s.optimizer_steps,
            s.seed, s.world_size, s.world_size == 1 ? "" : "s");
    if (s.parts > 0) fprintf(out, "  written in %d parts, one per rank (HDF5 virtual datasets)\n", s.parts);
    static const char *groups[3] = {"params", "buffers", "optim"};
    for (int i = 0; i < 3; i++) {
        if (H5Lexists(f, groups[i], H5P_DEFAULT) <= 0) continue;
        fprintf(out, "/%s:\n", groups[i]);
        hid_t g = H5Gopen2(f, groups[i], H5P_DEFAULT);
        long left = 100000;
        walk_ctx w = {out, "", 0, &left, s.parts > 0};
        H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, print_dataset, &w);
        H5Gclose(g);
    }
    fprintf(out, "config:\n%s", config);
    free(opt_name);
    free(config);
    H5Fclose(f);
    return 0;
}
