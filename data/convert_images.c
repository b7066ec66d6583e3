/* convert_images: ROOT/CLASS/NAME.jpg|png -> out_dir/train.h5 and val.h5 (see data.h).
 *
 * Classes are ROOT's subdirectories in name order (label i = the i-th name); images are
 * decoded one at a time, resized to HxW and appended to their split's /images [N,H,W,3]
 * (chunked, extendible), so memory does not grow with the dataset.  Each file is written to a
 * temporary name, fsynced and renamed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data_internal.h"

int data_image_decode(const char *path, unsigned char **rgb, int *h, int *w, char *err,
                      size_t errlen);
void data_image_resize(const unsigned char *src, int sh, int sw, unsigned char *dst, int dh,
                       int dw);

typedef struct {
    char **names;
    int n;
} name_list;

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *s) {
    const char *dot = strrchr(s, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    l->names = NULL;
    l->n = 0;
}

/* dir's subdirectories (dirs = 1) or image files (dirs = 0), sorted; hidden ones skipped. */
static int list_dir(const char *dir, int dirs, name_list *out, char *err, size_t errlen) {
    out->names = NULL;
    out->n = 0;
    DIR *d = opendir(dir);
    if (!d) return data_errorf(err, errlen, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4200];
        struct stat sb;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            stat(path, &sb) != 0)
            continue;
        if (dirs ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode) || !is_image_name(e->d_name))
            continue;
        if (out->n == cap) {
            char **p = realloc(out->names, (size_t)(cap = 2 * cap + 16) * sizeof *p);
            if (!p) break;
            out->names = p;
        }
        if (!(out->names[out->n] = strdup(e->d_name))) break;
        out->n++;
    }
    int short_of_memory = e != NULL;
    closedir(d);
    if (short_of_memory) {
        names_free(out);
        return data_errorf(err, errlen, "%s: out of memory listing it", dir);
    }
    qsort(out->names, (size_t)out->n, sizeof *out->names, by_name);
    return 0;
}

/* One output file being written. */
typedef struct {
    char final[4200], tmp[4300];
    hid_t file, images;
    int64_t n, cap_labels;
    int32_t *labels;
    double sum, sumsq;      /* of pixel / 255, for the mean and std attributes */
} split_file;

static int split_open(split_file *s, const char *dir, const char *name, int h, int w, char *err,
                      size_t errlen) {
    memset(s, 0, sizeof *s);
    s->file = s->images = -1;
    snprintf(s->final, sizeof s->final, "%s/%s", dir, name);
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp.%ld", s->final, (long)getpid());
    hsize_t dims[4] = {0, (hsize_t)h, (hsize_t)w, 3}, maxd[4] = {H5S_UNLIMITED, dims[1], dims[2], 3};
    hsize_t chunk[4] = {1, dims[1], dims[2], 3};
    s->file = H5Fcreate(s->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = H5Screate_simple(4, dims, maxd), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (s->file >= 0 && space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 4, chunk) >= 0)
        s->images = H5Dcreate2(s->file, "images", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (s->images < 0) {
        char detail[256];
        data_h5_error_detail(detail, sizeof detail);
        if (s->file >= 0) H5Fclose(s->file), remove(s->tmp);
        s->file = -1;
        return data_errorf(err, errlen, "%s: cannot create: %s", s->tmp, detail);
    }
    return 0;
}

static int split_append(split_file *s, const unsigned char *img, int h, int w, int32_t label) {
    hsize_t size[4] = {(hsize_t)s->n + 1, (hsize_t)h, (hsize_t)w, 3};
    hsize_t start[4] = {(hsize_t)s->n, 0, 0, 0}, count[4] = {1, (hsize_t)h, (hsize_t)w, 3};
    if (s->n == s->cap_labels) {
        int32_t *p = realloc(s->labels, (size_t)(s->cap_labels = 2 * s->cap_labels + 256) * 4);
        if (!p) return -1;
        s->labels = p;
    }
    if (H5Dset_extent(s->images, size) < 0) return -1;
    hid_t fs = H5Dget_space(s->images), ms = H5Screate_simple(4, count, NULL);
    int rc = fs >= 0 && ms >= 0 &&
             H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dwrite(s->images, H5T_NATIVE_UCHAR, ms, fs, H5P_DEFAULT, img) >= 0 ? 0 : -1;
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    if (rc != 0) return -1;
    size_t px = (size_t)h * (size_t)w * 3;
    for (size_t i = 0; i < px; i++) {
        double v = img[i] / 255.0;
        s->sum += v;
        s->sumsq += v * v;
    }
    s->labels[s->n++] = label;
    return 0;
}

static int attr_scalar(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR), a = sp >= 0 ? H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = a >= 0 && H5Awrite(a, mtype, v) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* /labels, attributes num_classes, class_names, mean, std; then closed, fsynced, renamed. */
static int split_finish(split_file *s, const name_list *classes, char *err, size_t errlen) {
    hsize_t n = (hsize_t)s->n, nc = (hsize_t)classes->n;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = sp >= 0 ? H5Dcreate2(s->file, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = ds >= 0 && (n == 0 || H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->labels) >= 0) ? 0 : -1;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    hsize_t dims[4];
    hid_t isp = H5Dget_space(s->images);
    H5Sget_simple_extent_dims(isp, dims, NULL);
    H5Sclose(isp);
    double px = (double)dims[0] * (double)dims[1] * (double)dims[2] * 3.0;
    double mean = px > 0 ? s->sum / px : 0.0, var = px > 0 ? s->sumsq / px - mean * mean : 0.0;
    float stats[2] = {(float)mean, (float)sqrt(var > 0.0 ? var : 0.0)};
    if (!(stats[1] > 0.0f)) stats[1] = 1.0f;   /* constant images: no scaling */
    int32_t ncls = classes->n;
    hid_t st = H5Tcopy(H5T_C_S1);
    if (rc == 0)
        rc = attr_scalar(s->file, "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, &ncls) |
             attr_scalar(s->file, "mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &stats[0]) |
             attr_scalar(s->file, "std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &stats[1]);
    if (rc == 0 && st >= 0 && H5Tset_size(st, H5T_VARIABLE) >= 0 && H5Tset_cset(st, H5T_CSET_UTF8) >= 0) {
        hid_t csp = H5Screate_simple(1, &nc, NULL);
        hid_t a = csp >= 0 ? H5Acreate2(s->file, "class_names", st, csp, H5P_DEFAULT, H5P_DEFAULT) : -1;
        rc = a >= 0 && H5Awrite(a, st, classes->names) >= 0 ? 0 : -1;
        if (a >= 0) H5Aclose(a);
        if (csp >= 0) H5Sclose(csp);
    }
    if (st >= 0) H5Tclose(st);
    char detail[256];
    data_h5_error_detail(detail, sizeof detail);
    H5Dclose(s->images);
    if (H5Fclose(s->file) < 0) rc = -1;
    s->file = s->images = -1;
    int fd = rc == 0 ? open(s->tmp, O_RDONLY) : -1;
    if (rc == 0 && (fd < 0 || fsync(fd) != 0 || rename(s->tmp, s->final) != 0)) rc = -1;
    if (fd >= 0) close(fd);
    if (rc != 0) {
        remove(s->tmp);
        return data_errorf(err, errlen, "%s: writing failed: %s", s->final,
                           detail[0] ? detail : strerror(errno));
    }
    return 0;
}

static void split_abandon(split_file *s) {
    if (s->images >= 0) H5Dclose(s->images);
    if (s->file >= 0) H5Fclose(s->file), remove(s->tmp);
    s->file = s->images = -1;
    free(s->labels);
    s->labels = NULL;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* to_val[n]: per class, round(fraction * n) images drawn from (seed, class) go to val.h5 (at
 * least one when fraction > 0 and the class has two or more; never all of them). */
static void pick_val(char *to_val, int n, double fraction, uint64_t seed, int cls) {
    memset(to_val, 0, (size_t)n);
    int k = (int)floor(fraction * n + 0.5);
    if (fraction > 0 && k < 1 && n >= 2) k = 1;
    if (k > n - 1) k = n - 1;
    int *order = malloc((size_t)n * sizeof *order);
    if (!order || k <= 0) { free(order); return; }
    uint64_t st = seed ^ (0x632be59bd9b4e019ULL * (uint64_t)(cls + 1));
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(splitmix64(&st) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < k; i++) to_val[order[i]] = 1;
    free(order);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *root;
    const data_images_options *o;
    const data_images_callbacks *cb;
    name_list classes;
    name_list *files;          /* [classes.n] */
    int64_t total;
    int h, w;                  /* output size */
    split_file split[2];       /* train, val */
    data_images_stats *st;
    double t0, last_report;
} images_job;

/* Decodes one file into the right split.  0, 1 = skipped (unreadable, skip_bad), -1 = error. */
static int convert_one(images_job *j, int c, int i, const char *to_val, unsigned char **resized,
                       char *err, size_t errlen) {
    char path[8400], why[512];
    snprintf(path, sizeof path, "%s/%s/%s", j->root, j->classes.names[c], j->files[c].names[i]);
    unsigned char *rgb = NULL;
    int h = 0, w = 0;
    if (data_image_decode(path, &rgb, &h, &w, why, sizeof why) != 0) {
        if (!j->o->skip_bad)
            return data_errorf(err, errlen, "%s: cannot decode: %s (--on-bad skip leaves such "
                               "files out)", path, why);
        if (j->cb && j->cb->skipped) j->cb->skipped(path, why, j->cb->user);
        j->st->skipped++;
        return 1;
    }
    if (j->h == 0) {   /* the first image decides the size */
        j->h = h;
        j->w = w;
    }
    if (j->split[0].file < 0) {
        int bad = !(*resized = malloc((size_t)j->h * (size_t)j->w * 3));
        if (bad) data_errorf(err, errlen, "out of memory");
        else bad = split_open(&j->split[0], j->o->out_dir, "train.h5", j->h, j->w, err, errlen) != 0 ||
                   (j->o->val_fraction > 0 &&
                    split_open(&j->split[1], j->o->out_dir, "val.h5", j->h, j->w, err, errlen) != 0);
        if (bad) {
            free(rgb);
            return -1;
        }
    }
    data_image_resize(rgb, h, w, *resized, j->h, j->w);
    free(rgb);
    split_file *s = &j->split[to_val[i] ? 1 : 0];
    if (split_append(s, *resized, j->h, j->w, c) != 0) {
        char detail[256];
        data_h5_error_detail(detail, sizeof detail);
        return data_errorf(err, errlen, "%s: cannot append %s: %s", s->tmp, path, detail);
    }
    return 0;
}

static int convert_all(images_job *j, char *err, size_t errlen) {
    unsigned char *resized = NULL;
    int64_t done = 0;
    int rc = 0;
    for (int c = 0; c < j->classes.n && rc == 0; c++) {
        char *to_val = malloc((size_t)j->files[c].n + 1);
        if (!to_val) { rc = data_errorf(err, errlen, "out of memory"); break; }
        pick_val(to_val, j->files[c].n, j->o->val_fraction, j->o->seed, c);
        for (int i = 0; i < j->files[c].n && rc == 0; i++) {
            rc = convert_one(j, c, i, to_val, &resized, err, errlen);
            if (rc > 0) rc = 0;
            done++;
            double t = now_s();
            if (j->cb && j->cb->progress && (t - j->last_report > 0.2 || done == j->total)) {
                data_images_progress p = {done, j->total, j->st->skipped, t - j->t0};
                j->cb->progress(&p, j->cb->user);
                j->last_report = t;
            }
        }
        free(to_val);
    }
    free(resized);
    return rc;
}

int data_convert_images(const char *root, const data_images_options *o,
                        const data_images_callbacks *cb, data_images_stats *st, char *err,
                        size_t errlen) {
    images_job j;
    memset(&j, 0, sizeof j);
    memset(st, 0, sizeof *st);
    j.root = root;
    j.o = o;
    j.cb = cb;
    j.st = st;
    j.h = o->height;
    j.w = o->width;
    j.split[0].file = j.split[1].file = j.split[0].images = j.split[1].images = -1;
    j.t0 = j.last_report = now_s();
    if (list_dir(root, 1, &j.classes, err, errlen) != 0) return -1;
    int rc = -1;
    if (j.classes.n == 0) {
        data_errorf(err, errlen, "%s: no class subdirectories (expected ROOT/CLASS/*.jpg|png)", root);
        goto out;
    }
    if (j.classes.n > DATA_MAX_CLASSES) {
        data_errorf(err, errlen, "%s: %d classes, at most %d", root, j.classes.n, DATA_MAX_CLASSES);
        goto out;
    }
    if (!(j.files = calloc((size_t)j.classes.n, sizeof *j.files))) goto out;
    for (int c = 0; c < j.classes.n; c++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, j.classes.names[c]);
        if (list_dir(dir, 0, &j.files[c], err, errlen) != 0) goto out;
        if (j.files[c].n == 0) {
            data_errorf(err, errlen, "%s: no .jpg, .jpeg or .png files (class %d, %s)", dir, c,
                        j.classes.names[c]);
            goto out;
        }
        j.total += j.files[c].n;
    }
    data_h5_scope scope;
    data_h5_begin(&scope);
    rc = convert_all(&j, err, errlen);
    if (rc == 0 && j.split[0].file < 0)
        rc = data_errorf(err, errlen, "%s: none of the %lld images could be decoded", root,
                         (long long)j.total);
    st->train = j.split[0].n;
    st->val = j.split[1].n;
    if (rc == 0) rc = split_finish(&j.split[0], &j.classes, err, errlen);
    if (rc == 0 && j.split[1].file >= 0) rc = split_finish(&j.split[1], &j.classes, err, errlen);
    split_abandon(&j.split[0]);
    split_abandon(&j.split[1]);
    data_h5_end(&scope);
    if (rc == 0 && o->val_fraction <= 0) {   /* no val.h5: an old one would mislead */
        char old[4200];
        snprintf(old, sizeof old, "%s/val.h5", o->out_dir);
        remove(old);
    }
    st->classes = j.classes.n;
    st->height = j.h;
    st->width = j.w;
    st->seconds = now_s() - j.t0;
out:
    for (int c = 0; j.files && c < j.classes.n; c++) names_free(&j.files[c]);
    free(j.files);
    names_free(&j.classes);
    return rc;
}
