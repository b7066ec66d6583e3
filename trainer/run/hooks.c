/* hooks.c: the test and fault-injection hooks of a run (run_hooks in train_run.h), read from
 * the environment once, when the run starts.  The step, checkpoint.c and the kernels get
 * their values from here and read no environment themselves.  Unset: every hook is off. */
#include "train_run.h"

static long env_long(const char *name) {
    const char *v = getenv(name);
    return v ? strtol(v, NULL, 10) : 0;
}

void run_hooks_read(run_hooks *h, int rank) {
    memset(h, 0, sizeof *h);
    h->step_sleep_ms = env_long("HARNESS_FAULT_STEP_SLEEP_MS");
    /* HARNESS_FAULT_SLOW_RANK=R:MS, a pause in rank R's steps only (a straggler) */
    const char *slow = getenv("HARNESS_FAULT_SLOW_RANK");
    if (slow && strtol(slow, NULL, 10) == rank && strchr(slow, ':'))
        h->step_sleep_ms += strtol(strchr(slow, ':') + 1, NULL, 10);
    h->poison_grads = getenv("HARNESS_FAULT_POISON_GRADS") != NULL;
    h->poison_gather = getenv("HARNESS_FAULT_POISON_GATHER") != NULL;
    h->graph_body = getenv("HARNESS_TEST_GRAPH_BODY") != NULL;
    h->ckpt_sleep_ms = env_long("HARNESS_FAULT_CKPT_SLEEP_MS");
    h->upload_delay_ms = (int)env_long("HARNESS_FAULT_UPLOAD_DELAY_MS");
    h->download_delay_ms = (int)env_long("HARNESS_FAULT_DOWNLOAD_DELAY_MS");
    h->params_out = getenv("HARNESS_TEST_PARAMS_OUT");
}

void run_hooks_write_params(run *r) {
    if (!r->hooks.params_out) return;
    size_t bytes = (size_t)r->m.n_params * sizeof(float);
    float *host = malloc(bytes ? bytes : 1);
    char path[CFG_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s.rank%d", r->hooks.params_out, r->rank);
    FILE *f = host ? fopen(path, "wb") : NULL;
    if (f) kern_to_host(r->k, host, r->m.params, bytes);
    int ok = f && fwrite(host, 1, bytes, f) == bytes;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok)
        fprintf(stderr, "harness: warning: HARNESS_TEST_PARAMS_OUT: cannot write %s\n", path);
    free(host);
}
