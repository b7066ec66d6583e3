/* train_state.c: checkpoints and resume of a run (see train_run.h). */
#include "train_run.h"

/* zero_stage 1, checkpoints: ckpt_write on rank 0 asks for one tensor of one optimizer state
 * at a time; every other rank serves the same sequence (serve_optim_shards), so each
 * request is one comm_shard_gather.  If rank 0's write stops early (a full disk), rank 0
 * finishes the sequence with drain_optim_shards so that no rank is left waiting. */
typedef struct {
    run *r;
    int64_t served;           /* (tensor, state) requests answered so far */
    float *host[2];           /* GPU backends: host copies of this rank's m and v shards */
} shard_fetch;

int run_n_optim_states(const optim *o) {
    return o->type == OPT_ADAMW ? 2 : o->m ? 1 : 0;
}

/* GPU backends: comm's gather and scatter work on host memory, so a checkpoint copies this
 * rank's state shards to the host first (one shard per state: n_params / world floats each). */
static int stage_optim_shards(run *r, shard_fetch *f) {
    if (kern_get_backend(r->k) == KERN_CPU) return 0;
    int ns = run_n_optim_states(&r->opt);
    size_t bytes = (size_t)r->opt.n * sizeof(float);
    float *dev[2] = {r->opt.m, r->opt.v};
    for (int s = 0; s < ns; s++) {
        if (!(f->host[s] = malloc(bytes + sizeof(float)))) return -1;
        if (bytes) kern_to_host(r->k, f->host[s], dev[s], bytes);
    }
    return 0;
}

static void free_staged_shards(shard_fetch *f) {
    free(f->host[0]);
    free(f->host[1]);
    f->host[0] = f->host[1] = NULL;
}

static int fetch_optim_shard(void *user, int state, int64_t offset, int64_t count, float *out) {
    shard_fetch *f = user;
    char err[ERRLEN];
    float *shard = f->host[state] ? f->host[state] : state == 0 ? f->r->opt.m : f->r->opt.v;
    f->served++;
    if (comm_shard_gather(f->r->c, shard, offset, count, out, err, sizeof err) != 0)
        comm_abort(f->r->c, 1, err);
    return 0;
}

/* Every rank but 0 (and rank 0 to drain): requests `from` onwards, in ckpt_write's order. */
static void serve_optim_shards(run *r, const shard_fetch *staged, int64_t from, float *scratch) {
    int ns = run_n_optim_states(&r->opt);
    int64_t k = 0;
    shard_fetch f = {r, 0, {staged->host[0], staged->host[1]}};
    for (int i = 0; i < r->m.n_tensors; i++) {
        const model_tensor *t = &r->m.tensors[i];
        if (t->is_buffer) continue;
        for (int s = 0; s < ns; s++, k++)
            if (k >= from) fetch_optim_shard(&f, s, t->offset, t->count, scratch);
    }
}

/* Rank 0 picks and verifies the checkpoint, then every rank receives its contents.
 * Returns 0 (resumed, or nothing to resume with "auto") or -1 (reported). */
int run_resume(run *r, const char *what, char *err) {
    int st = 0, found = 0;
    double t0 = metrics_now();
    ckpt_state s = {0};
    char path[1200] = "";
    /* zero_stage 1: rank 0 reads the full state into host buffers, then scatters the shards */
    optim full = r->opt, *into = &r->opt;
    int ns = run_n_optim_states(&r->opt);
    if (r->zero && r->rank == 0) {
        size_t bytes = (size_t)r->m.n_params * sizeof(float) + sizeof(float);
        full.m = ns >= 1 ? malloc(bytes) : NULL;
        full.v = ns >= 2 ? malloc(bytes) : NULL;
        full.state_on_host = 1;
        if ((ns >= 1 && !full.m) || (ns >= 2 && !full.v)) {
            snprintf(err, ERRLEN, "out of memory reading the optimizer state to shard it");
            st = -1;
        }
        into = &full;
    }
    if (r->rank == 0 && st == 0) {
        if (strcmp(what, "auto") == 0) {
            static char paths[256][1200];
            int n = ckpt_list(r->ckpt_dir, paths, 256);
            for (int i = 0; i < n && !found && st == 0; i++) {
                int rc = ckpt_read(paths[i], &r->m, into, &s, err, ERRLEN);
                if (rc == CKPT_OK) {
                    found = 1;
                    snprintf(path, sizeof path, "%s", paths[i]);
                } else if (rc == CKPT_MISMATCH) {
                    st = -1;
                } else {
                    fprintf(stderr, "harness: skipping checkpoint that does not verify: %s\n", err);
                }
            }
            if (st == 0 && !found && n > 0) {
                snprintf(err, ERRLEN, "--resume auto: none of the %d checkpoints in %s verifies; "
                         "refusing to start over (use --resume none to do that)", n, r->ckpt_dir);
                st = -1;
            } else if (st == 0 && !found) {
                fprintf(stderr, "harness: no checkpoint in %s, starting from scratch\n", r->ckpt_dir);
            }
        } else {
            int rc = ckpt_read(what, &r->m, into, &s, err, ERRLEN);
            if (rc == CKPT_OK) {
                found = 1;
                snprintf(path, sizeof path, "%s", what);
            } else {
                st = -1;
            }
        }
    }
    if (run_agree(r, st, err)) {
        if (into != &r->opt) free(full.m), free(full.v);
        return -1;
    }
    /* hand the checkpoint to every rank */
    int64_t hdr[6] = {found, s.step, s.epoch, s.cursor, s.optimizer_steps, s.world_size};
    st = comm_broadcast(r->c, hdr, sizeof hdr, 0, err, ERRLEN);
    if (st == 0 && hdr[0] && r->zero) {
        st = run_broadcast_floats(r, r->m.params, r->m.n_params, err);
        /* GPU backends: each shard lands in host memory first, then goes to the device */
        int on_cpu = kern_get_backend(r->k) == KERN_CPU;
        size_t bytes = (size_t)r->opt.n * sizeof(float);
        float *host = on_cpu ? NULL : malloc(bytes + sizeof(float));
        if (!on_cpu && !host) {
            snprintf(err, ERRLEN, "out of memory staging the optimizer state shards");
            st = -1;
        }
        float *dev[2] = {r->opt.m, r->opt.v}, *src[2] = {full.m, full.v};
        for (int k = 0; k < ns && k < 2 && st == 0; k++) {
            st = comm_shard_scatter(r->c, src[k], on_cpu ? dev[k] : host, err, ERRLEN);
            if (st == 0 && !on_cpu && bytes) kern_to_device(r->k, dev[k], host, bytes);
        }
        free(host);
    } else if (st == 0 && hdr[0]) {
        float *bufs[3] = {r->m.params, r->opt.m, r->opt.v};
        for (int i = 0; i < 3 && st == 0; i++) st = run_broadcast_floats(r, bufs[i], r->m.n_params, err);
    }
    if (into != &r->opt) free(full.m), free(full.v);
    if (st == 0 && hdr[0]) st = run_broadcast_floats(r, r->m.buffers, r->m.n_buffers, err);
    if (run_agree(r, st, err)) return -1;
    if (!hdr[0]) return 0;
    r->opt.t = hdr[4];
    r->start_step = hdr[1];
    if (r->start_step > r->total_steps) {
        snprintf(err, ERRLEN, "%s: checkpoint of step %lld is past this run's %lld steps "
                 "(train.steps / train.epochs)", path, (long long)hdr[1], (long long)r->total_steps);
        st = -1;
    }
    if (st == 0) st = data_loader_seek(r->train, hdr[2], hdr[3], err, ERRLEN);
    if (run_agree(r, st, err)) return -1;
    if (r->rank == 0)
        fprintf(stderr, "harness: resumed from %s: step %lld, epoch %lld, cursor %lld "
                "(written by %lld rank%s, now %d) in %.2f s\n", path, (long long)hdr[1],
                (long long)hdr[2], (long long)hdr[3], (long long)hdr[5], hdr[5] == 1 ? "" : "s",
                r->world, metrics_now() - t0);
    return 0;
}

/* checkpoint.writers 0: every rank writes its part from backend memory (with zero_stage 1 the
 * shard it holds), then rank 0 publishes the file that maps them.  0, or -1 (reported). */
static int checkpoint_parts(run *r, int64_t step, char *path, size_t path_len) {
    char err[ERRLEN] = "";
    int st = run_checkpoint_drain(r, step, err);   /* collective: the save in flight first */
    if (run_agree(r, st, err)) return -1;
    ckpt_state s;
    run_checkpoint_state(r, step, &s);
    int64_t lo, hi;
    ckpt_part_bounds(r->m.n_params, r->rank, r->world, &lo, &hi);
    float *state[2] = {r->opt.m, r->opt.v};
    ckpt_part_src src = {r->m.params + lo, {NULL, NULL}, r->k};
    for (int k = 0; k < run_n_optim_states(&r->opt); k++)
        src.state[k] = r->zero ? state[k] : state[k] + lo;
    st = ckpt_part_write(r->ckpt_dir, &r->m, &r->opt, &s, r->rank, &src, err, ERRLEN);
    if (run_agree(r, st, err)) return -1;
    if (r->rank == 0)
        st = ckpt_parts_publish(r->ckpt_dir, &r->m, &r->opt, &s, r->config_yaml, r->cfg->ckpt_keep,
                                NULL, path, path_len, err, ERRLEN);
    return run_agree(r, st, err);
}

/* Every rank calls this at the same step; rank 0 writes (or every rank its part).  0, or -1
 * (reported). */
int run_checkpoint(run *r, int64_t step, char *path, size_t path_len) {
    char err[ERRLEN];
    int st = 0;
    run_settle_params(r);
    run_sync_buffers(r);
    optim_verdict v;
    optim_read(&r->opt, &v);   /* brings opt.t up to date (skipped steps excluded) */
    if (r->ck.every_rank) return checkpoint_parts(r, step, path, path_len);
    shard_fetch fetch = {r, 0, {NULL, NULL}};
    if (r->zero && stage_optim_shards(r, &fetch) != 0)   /* GPU: the shards to the host */
        comm_abort(r->c, 1, "out of memory copying the optimizer state shards to the host");
    /* checkpoint.async: the save in flight first (its failure fails this checkpoint; rank 0
     * then drains the shard requests below, as after any failed write) */
    st = run_checkpoint_drain(r, step, err);
    if (r->rank == 0 && st == 0) {
        ckpt_state s;
        run_checkpoint_state(r, step, &s);
        st = ckpt_write(r->ckpt_dir, &r->m, &r->opt, &s, r->config_yaml, r->cfg->ckpt_keep,
                        r->zero ? fetch_optim_shard : NULL, &fetch, path, path_len, err, ERRLEN);
    }
    if (comm_zero_active(r->c)) {
        /* the shards travel one tensor at a time: rank 0 holds at most one extra tensor */
        /* rank 0 drains (after ckpt_write has freed its own buffer) only when the write
         * stopped early; its scratch is then the one extra tensor */
        int64_t largest = 1, requests = 0;
        for (int i = 0; i < r->m.n_tensors; i++) {
            if (r->m.tensors[i].is_buffer) continue;
            if (r->m.tensors[i].count > largest) largest = r->m.tensors[i].count;
            requests += run_n_optim_states(&r->opt);
        }
        if (r->rank != 0 || fetch.served < requests) {
            float *scratch = r->rank == 0 ? malloc((size_t)largest * sizeof(float)) : NULL;
            if (r->rank == 0 && !scratch) comm_abort(r->c, 1, "out of memory draining a checkpoint");
            serve_optim_shards(r, &fetch, r->rank == 0 ? fetch.served : 0, scratch);
            free(scratch);
        }
    }
    free_staged_shards(&fetch);
    return run_agree(r, st, err);
}
