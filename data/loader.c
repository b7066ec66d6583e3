/* The loader: one background thread per loader fills batches ahead of the caller.
 *
 * Two slots, used in turn (double buffering): while the caller holds the batch in slot k the
 * thread fills slot k+1; data_loader_next gives slot k back and takes k+1, waiting if it is not
 * ready.  Each slot carries one item of the stream: a batch, the end-of-pass marker (eval) or
 * an error, which stays in its slot so every later call reports it until a seek restarts the
 * stream.  After open the thread makes every HDF5 call; seek and close stop it (join) and seek
 * starts a fresh one at the new position.
 *
 * Training augmentation (augment.c) runs in the thread on the filled slot, after the samples are
 * in batch order, whether they came from the cache or from HDF5 reads, outside the HDF5 lock.
 *
 * Ownership: slot state, `stop` and the wait are guarded by mu.  The thread alone touches the
 * plan position, permutation, reader and the contents of a slot it is filling; the caller
 * alone touches take/held, the handed-out position and the wait time. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data_internal.h"

enum { SLOT_FREE = 0, SLOT_READY = 1 };
enum { ITEM_BATCH = 0, ITEM_END = 1, ITEM_ERROR = 2 };

#define NSLOTS 2

typedef struct {
    int state;
    int kind;
    void *x;                /* [cap, sample elems] */
    int32_t *y;             /* [cap] */
    data_batch batch;
    int64_t next_epoch, next_cursor;
    char err[512];          /* kind == ITEM_ERROR */
} data_slot;

struct data_loader {
    data_config cfg;        /* path points at our own copy */
    char *path;
    data_info info;
    data_h5_file h5;
    int32_t *labels;        /* [N], validated at open */
    int64_t cap;            /* most samples of one rank in one batch */
    size_t x_bytes, y_bytes;
    data_slot slots[NSLOTS];

    /* Prefetch thread side. */
    data_reader reader;
    data_token_reader tokens;  /* token datasets (info.kind == DATA_TOKENS) */
    int64_t *starts;        /* [cap] token offsets of the windows being filled */
    data_augment augment;   /* on only in training with augment_pad > 0 or augment_hflip */
    int64_t *perm;          /* [N] order of perm_epoch (training with shuffle) */
    int64_t perm_epoch;
    int64_t *indices;       /* [cap] this rank's sample indices of the batch being filled */
    int64_t plan_epoch, plan_cursor;
    int fill;

    pthread_t thread;
    int thread_running;
    pthread_mutex_t mu;
    pthread_cond_t slot_freed, slot_ready;
    int stop;

    /* Caller side. */
    int take, held;
    int64_t pos_epoch, pos_cursor;
    double wait_seconds;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *host_alloc(const data_config *cfg, size_t bytes) {
    if (bytes == 0) bytes = 1;
    return cfg->alloc_host != NULL ? cfg->alloc_host(bytes, cfg->alloc_user) : malloc(bytes);
}

static void host_free(const data_config *cfg, void *p) {
    if (p == NULL) return;
    if (cfg->free_host != NULL) cfg->free_host(p, cfg->alloc_user);
    else free(p);
}

/* ---- the prefetch thread ---- */

static int shuffled(const data_loader *l) {
    return l->cfg.mode == DATA_TRAIN && l->cfg.shuffle;
}

static void fill_slot(data_loader *l, data_slot *s) {
    data_plan p;
    data_plan_next(l->cfg.mode, l->info.n, l->cfg.global_batch, l->plan_epoch, l->plan_cursor,
                   &p);
    memset(&s->batch, 0, sizeof s->batch);
    s->batch.x = s->x;
    s->batch.y = s->y;
    s->batch.epoch = p.epoch;
    s->batch.cursor = p.cursor;
    s->next_epoch = p.next_epoch;
    s->next_cursor = p.next_cursor;
    l->plan_epoch = p.next_epoch;
    l->plan_cursor = p.next_cursor;
    if (p.end_of_pass) {
        s->kind = ITEM_END;
        return;
    }

    int64_t begin, end;
    data_rank_slice(p.global_count, l->cfg.rank, l->cfg.world, &begin, &end);
    s->batch.rank_offset = begin;
    if (shuffled(l) && l->perm_epoch != p.epoch) {
        data_epoch_permutation(l->perm, l->info.n, l->cfg.seed, p.epoch);
        l->perm_epoch = p.epoch;
    }
    int64_t count = end - begin;
    for (int64_t i = 0; i < count; i++) {
        int64_t at = p.cursor + begin + i;
        l->indices[i] = shuffled(l) ? l->perm[at] : at;
    }

    int rc;
    if (l->info.kind == DATA_TOKENS) {
        int64_t windows, offset;
        data_token_grid(l->info.n_tokens, l->cfg.context, l->cfg.mode, l->cfg.shuffle,
                        l->cfg.seed, p.epoch, &windows, &offset);
        for (int64_t i = 0; i < count; i++) l->starts[i] = offset + l->indices[i] * l->cfg.context;
        data_h5_scope scope;
        int h5 = l->tokens.cache == NULL;
        if (h5) data_h5_begin(&scope);
        rc = data_token_reader_load_cache(&l->tokens, s->err, sizeof s->err);
        if (rc == 0)
            rc = data_token_reader_read(&l->tokens, l->starts, count, s->x, s->y, s->err,
                                        sizeof s->err);
        if (h5) data_h5_end(&scope);
        if (rc) {
            s->kind = ITEM_ERROR;
            return;
        }
        s->kind = ITEM_BATCH;
        s->batch.count = count;
        s->batch.global_count = p.global_count;
        s->batch.last = p.last;
        return;
    }
    if (l->reader.cache != NULL) {
        rc = data_reader_read(&l->reader, l->indices, count, s->x, s->err, sizeof s->err);
    } else {
        data_h5_scope scope;
        data_h5_begin(&scope);
        rc = data_reader_read(&l->reader, l->indices, count, s->x, s->err, sizeof s->err);
        data_h5_end(&scope);
    }
    if (rc) {
        s->kind = ITEM_ERROR;
        return;
    }
    for (int64_t i = 0; i < count; i++) s->y[i] = l->labels[l->indices[i]];
    data_augment_batch(&l->augment, l->cfg.seed, p.epoch, l->indices, count, s->x);
    s->kind = ITEM_BATCH;
    s->batch.count = count;
    s->batch.global_count = p.global_count;
    s->batch.last = p.last;
}

static void *prefetch_main(void *arg) {
    data_loader *l = arg;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->stop && l->slots[l->fill].state != SLOT_FREE)
            pthread_cond_wait(&l->slot_freed, &l->mu);
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;

        data_slot *s = &l->slots[l->fill];
        fill_slot(l, s);

        pthread_mutex_lock(&l->mu);
        s->state = SLOT_READY;
        pthread_cond_signal(&l->slot_ready);
        pthread_mutex_unlock(&l->mu);
        l->fill = (l->fill + 1) % NSLOTS;
        if (s->kind == ITEM_ERROR) break; /* the stream stops here until a seek */
    }
    return NULL;
}

/* Starts the thread at (epoch, cursor) with every slot free. */
static int start_thread(data_loader *l, int64_t epoch, int64_t cursor, char *err,
                        size_t errlen) {
    for (int i = 0; i < NSLOTS; i++) l->slots[i].state = SLOT_FREE;
    l->fill = l->take = 0;
    l->held = -1;
    l->stop = 0;
    l->plan_epoch = l->pos_epoch = epoch;
    l->plan_cursor = l->pos_cursor = cursor;

    /* The thread blocks asynchronous signals so that SIGTERM/SIGINT/SIGUSR1 reach the training
     * thread (preemption handling), whatever way the trainer waits for them. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&l->thread, NULL, prefetch_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return data_errorf(err, errlen, "%s: cannot start the prefetch thread: %s", l->path,
                           strerror(rc));
    l->thread_running = 1;
    return 0;
}

static void stop_thread(data_loader *l) {
    if (!l->thread_running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->slot_freed);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->thread_running = 0;
}

/* A token dataset: the window grid, the sizes of this rank's batches, the reader.  The
 * windows become the samples (info.n) that the plan, permutation and slices work on. */
static int open_tokens(data_loader *l, char *err, size_t errlen) {
    const data_config *cfg = &l->cfg;
    if (cfg->augment_pad || cfg->augment_hflip)
        return data_errorf(err, errlen, "%s: data.augment_pad / data.augment_hflip apply to images; "
                           "this is a token dataset (/tokens)", l->path);
    if (cfg->context <= 0)
        return data_errorf(err, errlen, "%s: a token dataset (/tokens) needs the model's context "
                           "(model.gpt.context, or an embedding layer with context first in "
                           "model.layers)", l->path);
    int64_t ctx = cfg->context, windows, offset;
    if (l->info.n_tokens < ctx + 1)
        return data_errorf(err, errlen, "%s: dataset /tokens: %lld tokens are fewer than one "
                           "window of context + 1 = %lld tokens", l->path,
                           (long long)l->info.n_tokens, (long long)(ctx + 1));
    data_token_grid(l->info.n_tokens, ctx, cfg->mode, cfg->shuffle, cfg->seed, 0, &windows, &offset);
    l->info.n = windows;
    l->info.context = ctx;
    l->info.sample_ndim = 1;
    l->info.sample_shape[0] = ctx;
    l->info.sample_elems = ctx;
    l->info.dtype = DATA_I32;
    int64_t g = cfg->global_batch;
    if (cfg->mode == DATA_TRAIN && g > windows)
        return data_errorf(err, errlen, "%s: global batch %lld is larger than the dataset's %lld "
                           "windows of %lld + 1 tokens; training needs at least one full global "
                           "batch", l->path, (long long)g, (long long)windows, (long long)ctx);
    int64_t most = g < windows ? g : windows;
    l->cap = (most + cfg->world - 1) / cfg->world;
    l->x_bytes = l->y_bytes = (size_t)l->cap * (size_t)ctx * sizeof(int32_t);
    uint64_t total = (uint64_t)l->info.n_tokens * sizeof(int32_t);
    int use_cache = cfg->cache_bytes > 0 && total <= (uint64_t)cfg->cache_bytes;
    if (data_token_reader_init(&l->tokens, l->path, l->h5.images, &l->info, ctx, l->cap,
                               use_cache, err, errlen))
        return -1;
    l->starts = malloc((size_t)(l->cap > 0 ? l->cap : 1) * sizeof *l->starts);
    if (!l->starts) return data_errorf(err, errlen, "%s: out of memory", l->path);
    return 0;
}

/* ---- public API ---- */

static int check_config(const data_config *cfg, char *err, size_t errlen) {
    const char *path = cfg->path != NULL ? cfg->path : "(no path)";
    if (cfg->path == NULL || cfg->path[0] == '\0')
        return data_errorf(err, errlen, "data: no dataset path given");
    if (cfg->mode != DATA_TRAIN && cfg->mode != DATA_EVAL)
        return data_errorf(err, errlen, "%s: unknown loader mode %d", path, (int)cfg->mode);
    if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world)
        return data_errorf(err, errlen, "%s: rank %d of world %d is not valid", path, cfg->rank,
                           cfg->world);
    if (cfg->global_batch < 1)
        return data_errorf(err, errlen, "%s: global batch must be at least 1, got %lld", path,
                           (long long)cfg->global_batch);
    if (cfg->cache_bytes < 0)
        return data_errorf(err, errlen, "%s: cache size must be >= 0, got %lld", path,
                           (long long)cfg->cache_bytes);
    if ((cfg->alloc_host == NULL) != (cfg->free_host == NULL))
        return data_errorf(err, errlen, "%s: alloc_host and free_host must be given together",
                           path);
    return 0;
}

int data_loader_open(const data_config *cfg, data_loader **out, char *err, size_t errlen) {
    if (out != NULL) *out = NULL;
    if (cfg == NULL || out == NULL) return data_errorf(err, errlen, "data: no loader config");
    if (check_config(cfg, err, errlen)) return -1;

    data_loader *l = calloc(1, sizeof *l);
    if (l == NULL) return data_errorf(err, errlen, "%s: out of memory", cfg->path);
    l->cfg = *cfg;
    l->path = strdup(cfg->path);
    l->cfg.path = l->path;
    l->h5.file = l->h5.images = H5I_INVALID_HID;
    l->perm_epoch = -1;
    l->held = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->slot_freed, NULL);
    pthread_cond_init(&l->slot_ready, NULL);
    if (l->path == NULL) {
        data_errorf(err, errlen, "%s: out of memory", cfg->path);
        goto fail;
    }

    data_h5_scope scope;
    data_h5_begin(&scope);
    int rc = data_schema_open(l->path, &l->info, &l->h5, &l->labels, err, errlen);
    data_h5_end(&scope);
    if (rc) goto fail;
    if (l->info.kind == DATA_TOKENS) {
        if (open_tokens(l, err, errlen)) goto fail;
        goto buffers;
    }
    if (data_augment_init(&l->augment, &l->cfg, &l->info, err, errlen)) goto fail;

    int64_t n = l->info.n, g = cfg->global_batch;
    size_t elem, sample_bytes;
    uint64_t total;
    int use_cache;
    if (cfg->mode == DATA_TRAIN && g > n) {
        data_errorf(err, errlen,
                    "%s: global batch %lld is larger than the dataset (%lld samples in /images); "
                    "training needs at least one full global batch",
                    l->path, (long long)g, (long long)n);
        goto fail;
    }
    /* A rank's slice of any global batch of g' <= min(G, N) samples has at most
     * ceil(min(G, N) / world) of them. */
    int64_t most = g < n ? g : n;
    l->cap = (most + cfg->world - 1) / cfg->world;
    elem = l->info.dtype == DATA_U8 ? 1 : 4;
    sample_bytes = (size_t)l->info.sample_elems * elem;
    l->x_bytes = (size_t)l->cap * sample_bytes;
    l->y_bytes = (size_t)l->cap * sizeof(int32_t);

    /* Whole /images + /labels within the cache budget: read once on first use. */
    total = (uint64_t)n * sample_bytes + (uint64_t)n * sizeof(int32_t);
    use_cache = cfg->cache_bytes > 0 && total <= (uint64_t)cfg->cache_bytes;
    if (data_reader_init(&l->reader, l->path, &l->h5, &l->info, l->cap, use_cache, err, errlen))
        goto fail;

buffers:
    n = l->info.n;
    l->indices = malloc((size_t)l->cap * sizeof *l->indices);
    if (l->cfg.mode == DATA_TRAIN && l->cfg.shuffle)
        l->perm = malloc((size_t)n * sizeof *l->perm);
    if (l->indices == NULL || (shuffled(l) && l->perm == NULL)) {
        data_errorf(err, errlen, "%s: out of memory for %lld sample indices", l->path,
                    (long long)n);
        goto fail;
    }
    for (int i = 0; i < NSLOTS; i++) {
        l->slots[i].x = host_alloc(&l->cfg, l->x_bytes);
        l->slots[i].y = host_alloc(&l->cfg, l->y_bytes);
        if (l->slots[i].x == NULL || l->slots[i].y == NULL) {
            data_errorf(err, errlen, "%s: cannot allocate batch buffers (%zu bytes)", l->path,
                        l->x_bytes + l->y_bytes);
            goto fail;
        }
    }
    if (start_thread(l, 0, 0, err, errlen)) goto fail;
    *out = l;
    return 0;
fail:
    data_loader_close(l);
    return -1;
}

const data_info *data_loader_info(const data_loader *l) {
    return &l->info;
}

int data_loader_next(data_loader *l, data_batch *batch, char *err, size_t errlen) {
    memset(batch, 0, sizeof *batch);
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->slots[l->held].state = SLOT_FREE;
        l->held = -1;
        pthread_cond_signal(&l->slot_freed);
    }
    data_slot *s = &l->slots[l->take];
    if (!l->thread_running && s->state != SLOT_READY) {
        pthread_mutex_unlock(&l->mu);
        return data_errorf(err, errlen, "%s: loader is not running (a failed seek?)", l->path);
    }
    if (s->state != SLOT_READY) {
        double t0 = now_seconds();
        while (s->state != SLOT_READY) pthread_cond_wait(&l->slot_ready, &l->mu);
        l->wait_seconds += now_seconds() - t0;
    }
    int rc = 0;
    switch (s->kind) {
    case ITEM_ERROR:
        /* Left in place: every call reports it until seek or close. */
        data_errorf(err, errlen, "%s", s->err);
        rc = -1;
        break;
    case ITEM_END:
        s->state = SLOT_FREE;
        pthread_cond_signal(&l->slot_freed);
        rc = 1;
        break;
    default:
        *batch = s->batch;
        l->held = l->take;
        break;
    }
    if (rc != -1) {
        l->take = (l->take + 1) % NSLOTS;
        l->pos_epoch = s->next_epoch;
        l->pos_cursor = s->next_cursor;
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void data_loader_position(const data_loader *l, int64_t *epoch, int64_t *cursor) {
    *epoch = l->pos_epoch;
    *cursor = l->pos_cursor;
}

int data_loader_seek(data_loader *l, int64_t epoch, int64_t cursor, char *err, size_t errlen) {
    if (epoch < 0 || cursor < 0 || cursor > l->info.n)
        return data_errorf(err, errlen,
                           "%s: cannot seek to epoch %lld, cursor %lld (dataset has %lld samples)",
                           l->path, (long long)epoch, (long long)cursor, (long long)l->info.n);
    stop_thread(l);
    data_plan_normalize(l->cfg.mode, l->info.n, l->cfg.global_batch, &epoch, &cursor);
    return start_thread(l, epoch, cursor, err, errlen);
}

double data_loader_wait_seconds(const data_loader *l) {
    return l->wait_seconds;
}

void data_loader_close(data_loader *l) {
    if (l == NULL) return;
    stop_thread(l);
    for (int i = 0; i < NSLOTS; i++) {
        host_free(&l->cfg, l->slots[i].x);
        host_free(&l->cfg, l->slots[i].y);
    }
    data_reader_free(&l->reader);
    data_token_reader_free(&l->tokens);
    free(l->starts);
    data_h5_scope scope;
    data_h5_begin(&scope);
    data_schema_close(&l->h5);
    data_h5_end(&scope);
    data_info_free(&l->info);
    free(l->labels);
    free(l->perm);
    free(l->indices);
    free(l->path);
    pthread_cond_destroy(&l->slot_ready);
    pthread_cond_destroy(&l->slot_freed);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
