/* ckpt_write_bench: how long R ranks take to write one GPT-2-shaped checkpoint (parameters and
 * AdamW's two moments, float32) when each rank owns the flat slice [floor(n r / R),
 * floor(n (r+1) / R)) - the trainer's checkpoint.writers 0 cut - in three ways:
 *   parts      each rank its own file of 1-D chunked Fletcher-32 datasets (what the trainer's
 *              part files are; the small file of virtual datasets rank 0 adds is not timed here)
 *   parts-raw  the same, contiguous without checksum (to compare with phdf5)
 *   phdf5      one shared file through parallel HDF5 (MPI-IO), datasets of the tensors' shapes,
 *              contiguous (no checksum: parallel HDF5 1.10 writes filtered datasets only
 *              collectively), each rank its hyperslab blocks, collective writes
 *   phdf5-f32  the same with chunks and Fletcher-32, as the trainer's files carry
 * Every variant ends with the data on disk (fsync) before the clock stops.  Built against
 * Debian's libhdf5-openmpi-dev by tests/perf/ckpt_write_bench.sh, apart from the trainer
 * (which links the serial library).
 *   mpirun -np R ckpt_write_bench MODE DIR [LAYERS VOCAB CONTEXT DIM]
 * prints one line: mode, ranks, bytes, seconds, GB/s. */
#include <fcntl.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TENSORS 256
#define CHUNK_ELEMS (1 << 20)

typedef struct {
    char name[64];
    int ndim;
    hsize_t dims[2];
    int64_t offset, count;
} tensor;

static int n_tensors;
static tensor tensors[MAX_TENSORS];

static void add(const char *name, hsize_t d0, hsize_t d1) {
    tensor *t = &tensors[n_tensors];
    int64_t off = n_tensors ? tensors[n_tensors - 1].offset + tensors[n_tensors - 1].count : 0;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 ? 2 : 1;
    t->dims[0] = d0, t->dims[1] = d1;
    t->offset = off;
    t->count = (int64_t)d0 * (d1 ? (int64_t)d1 : 1);
    n_tensors++;
}

/* nanoGPT's tensors of a GPT-2 with the given sizes (weights [out, in]). */
static void gpt2_tensors(int layers, int vocab, int context, int dim) {
    char n[64];
    add("transformer.wte.weight", vocab, dim);
    add("transformer.wpe.weight", context, dim);
    for (int l = 0; l < layers; l++) {
        static const char *names[] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight",
                                      "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
                                      "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                                      "mlp.c_proj.weight", "mlp.c_proj.bias"};
        hsize_t d0[] = {dim, dim, 3 * dim, 3 * dim, dim, dim, dim, dim, 4 * dim, 4 * dim, dim, dim};
        hsize_t d1[] = {0, 0, dim, 0, dim, 0, 0, 0, dim, 0, 4 * dim, 0};
        for (int i = 0; i < 12; i++) {
            snprintf(n, sizeof n, "transformer.h.%d.%s", l, names[i]);
            add(n, d0[i], d1[i]);
        }
    }
    add("transformer.ln_f.weight", dim, 0);
    add("transformer.ln_f.bias", dim, 0);
}

static int meets(int64_t off, int64_t count, int64_t lo, int64_t hi, int64_t *a, int64_t *b) {
    *a = off > lo ? off : lo;
    *b = off + count < hi ? off + count : hi;
    return *a < *b;
}

static hid_t chunked_f32(int ndim, const hsize_t *dims) {
    hsize_t chunk[2] = {dims[0], ndim > 1 ? dims[1] : 1};
    hsize_t inner = ndim > 1 ? dims[1] : 1;
    hsize_t rows = inner >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / inner;
    if (rows < chunk[0]) chunk[0] = rows;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, ndim, chunk);
    H5Pset_fletcher32(dcpl);
    return dcpl;
}

static void fsync_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* parts: this rank's file, 1-D chunked datasets of the slices (as the trainer writes them). */
static void write_part(const char *dir, int rank, int world, int64_t lo, int64_t hi,
                       float *const *data, int fletcher) {
    char path[1200];
    snprintf(path, sizeof path, "%s/bench.h5.part_%04d_of_%04d", dir, rank, world);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    static const char *states[3] = {"params", "exp_avg", "exp_avg_sq"};
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < n_tensors; i++) {
            int64_t a, b;
            if (!meets(tensors[i].offset, tensors[i].count, lo, hi, &a, &b)) continue;
            char name[160];
            snprintf(name, sizeof name, "%s.%s", tensors[i].name, states[s]);
            hsize_t n = (hsize_t)(b - a);
            hid_t space = H5Screate_simple(1, &n, NULL);
            hid_t dcpl = fletcher ? chunked_f32(1, &n) : H5Pcreate(H5P_DATASET_CREATE);
            hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
            H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data[s] + (a - lo));
            H5Dclose(ds);
            H5Pclose(dcpl);
            H5Sclose(space);
        }
    }
    H5Fclose(f);
    H5Pclose(fapl);
    fsync_file(path);
}

/* The flat range [a, b) of a [d0, d1] (or [d0]) array as at most 3 blocks, OR-ed into sel. */
static void select_range(hid_t sel, const tensor *t, int64_t a, int64_t b) {
    if (t->ndim == 1) {
        hsize_t s = (hsize_t)a, c = (hsize_t)(b - a);
        H5Sselect_hyperslab(sel, H5S_SELECT_OR, &s, NULL, &c, NULL);
        return;
    }
    int64_t w = (int64_t)t->dims[1], r0 = a / w, r1 = b / w;
    hsize_t s[2], c[2];
    if (r0 == r1) {
        s[0] = r0, s[1] = a % w, c[0] = 1, c[1] = b - a;
        H5Sselect_hyperslab(sel, H5S_SELECT_OR, s, NULL, c, NULL);
        return;
    }
    if (a % w) {
        s[0] = r0, s[1] = a % w, c[0] = 1, c[1] = w - a % w;
        H5Sselect_hyperslab(sel, H5S_SELECT_OR, s, NULL, c, NULL);
        r0++;
    }
    if (r1 > r0) {
        s[0] = r0, s[1] = 0, c[0] = r1 - r0, c[1] = w;
        H5Sselect_hyperslab(sel, H5S_SELECT_OR, s, NULL, c, NULL);
    }
    if (b % w) {
        s[0] = r1, s[1] = 0, c[0] = 1, c[1] = b % w;
        H5Sselect_hyperslab(sel, H5S_SELECT_OR, s, NULL, c, NULL);
    }
}

/* phdf5: one file, every rank its blocks of every dataset, collectively. */
static void write_shared(const char *dir, int rank, int64_t lo, int64_t hi, float *const *data,
                         int fletcher) {
    char path[1200];
    snprintf(path, sizeof path, "%s/bench_shared.h5", dir);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    static const char *states[3] = {"params", "exp_avg", "exp_avg_sq"};
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < n_tensors; i++) {
            const tensor *t = &tensors[i];
            char name[160];
            snprintf(name, sizeof name, "%s.%s", t->name, states[s]);
            hid_t space = H5Screate_simple(t->ndim, t->dims, NULL);
            hid_t dcpl = fletcher ? chunked_f32(t->ndim, t->dims) : H5Pcreate(H5P_DATASET_CREATE);
            if (!fletcher) H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
            hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
            int64_t a, b;
            hsize_t n = 0;
            H5Sselect_none(space);
            if (meets(t->offset, t->count, lo, hi, &a, &b)) {
                select_range(space, t, a - t->offset, b - t->offset);
                n = (hsize_t)(b - a);
            }
            hsize_t one = n ? n : 1;
            hid_t mem = H5Screate_simple(1, &one, NULL);
            if (!n) H5Sselect_none(mem);
            H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, dxpl, n ? data[s] + (a - lo) : data[s]);
            H5Sclose(mem);
            H5Dclose(ds);
            H5Pclose(dcpl);
            H5Sclose(space);
        }
    }
    H5Pclose(dxpl);
    H5Fclose(f);
    H5Pclose(fapl);
    if (rank == 0) fsync_file(path);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc < 3) {
        if (rank == 0) fprintf(stderr, "usage: ckpt_write_bench parts|parts-raw|phdf5|phdf5-f32 DIR [LAYERS VOCAB CONTEXT DIM]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *mode = argv[1], *dir = argv[2];
    int layers = argc > 3 ? atoi(argv[3]) : 12, vocab = argc > 4 ? atoi(argv[4]) : 50304;
    int context = argc > 5 ? atoi(argv[5]) : 64, dim = argc > 6 ? atoi(argv[6]) : 768;
    gpt2_tensors(layers, vocab, context, dim);
    int64_t n = tensors[n_tensors - 1].offset + tensors[n_tensors - 1].count;
    int64_t lo = n * rank / world, hi = n * (rank + 1) / world;
    float *data[3];
    for (int s = 0; s < 3; s++) {
        data[s] = malloc((size_t)(hi - lo + 1) * sizeof(float));
        uint32_t x = 2463534242u + (uint32_t)(rank * 3 + s);
        for (int64_t i = 0; i < hi - lo; i++) {   /* xorshift: not compressible, not zero */
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            data[s][i] = (float)(x >> 8) / 16777216.0f - 0.5f;
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    if (strcmp(mode, "parts") == 0) write_part(dir, rank, world, lo, hi, data, 1);
    else if (strcmp(mode, "parts-raw") == 0) write_part(dir, rank, world, lo, hi, data, 0);
    else if (strcmp(mode, "phdf5") == 0) write_shared(dir, rank, lo, hi, data, 0);
    else if (strcmp(mode, "phdf5-f32") == 0) write_shared(dir, rank, lo, hi, data, 1);
    else MPI_Abort(MPI_COMM_WORLD, 2);
    MPI_Barrier(MPI_COMM_WORLD);
    double dt = MPI_Wtime() - t0;
    double bytes = (double)n * 3 * sizeof(float);
    if (rank == 0)
        printf("%-10s ranks %d  %.3f GB  %.2f s  %.2f GB/s\n", mode, world, bytes / 1e9, dt,
               bytes / 1e9 / dt);
    for (int s = 0; s < 3; s++) free(data[s]);
    MPI_Finalize();
    return 0;
}
