/* metrics: progress line, JSONL records, notices. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double metrics_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int metrics_open(metrics *m, const char *run_dir, int progress, int append, char *err,
                 size_t errlen) {
    memset(m, 0, sizeof *m);
    m->in_place = progress < 0 ? isatty(STDERR_FILENO) : progress;
    m->t_start = metrics_now();
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    m->jsonl = fopen(path, append ? "a" : "w");
    if (!m->jsonl) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void close_line(metrics *m) {
    if (m->line_open) {
        fputc('\n', stderr);
        m->line_open = 0;
    }
}

void metrics_close(metrics *m) {
    close_line(m);
    if (m->jsonl) fclose(m->jsonl);
    m->jsonl = NULL;
    tb_close(m->tb);
    m->tb = NULL;
}

static void format_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void metrics_log_train(metrics *m, const metrics_train *t) {
    char eta[32], el[32];
    format_duration(eta, sizeof eta, t->eta_s);
    format_duration(el, sizeof el, t->elapsed_s);
    int width = snprintf(NULL, 0, "%lld", (long long)t->total_steps);
    if (m->in_place) fputs("\r\033[K", stderr);
    char mfu[96] = "";
    int at = 0;
    if (t->mfu >= 0) at = snprintf(mfu, sizeof mfu, " | MFU %.1f%%", 100.0 * t->mfu);
    if (t->ckpt_step > 0)   /* saves are not in the throughput: say what they cost the loop */
        snprintf(mfu + at, sizeof mfu - (size_t)at, t->ckpt_s < 1 ? " | ckpt %lld +%.0f ms"
                 : " | ckpt %lld +%.1f s", (long long)t->ckpt_step,
                 t->ckpt_s < 1 ? 1e3 * t->ckpt_s : t->ckpt_s);
    if (t->lm)
        fprintf(stderr,
                "step %*lld/%lld | epoch %lld | loss %.4f | ppl %.2f | lr %.2e | %.0f tokens/s"
                " | %.2f GFLOP/s%s | %s elapsed, ETA %s",
                width, (long long)t->step, (long long)t->total_steps, (long long)t->epoch,
                t->loss, exp(t->loss), t->lr, t->tokens_per_s, t->flops_per_s * 1e-9, mfu, el,
                eta);
    else
        fprintf(stderr,
                "step %*lld/%lld | epoch %lld | loss %.4f | acc %.3f | lr %.2e | %.0f samples/s"
                " | %.2f GFLOP/s%s | %s elapsed, ETA %s",
                width, (long long)t->step, (long long)t->total_steps, (long long)t->epoch,
                t->loss, t->accuracy, t->lr, t->samples_per_s, t->flops_per_s * 1e-9, mfu, el,
                eta);
    if (t->bus_gbps >= 0) fprintf(stderr, " | bus %.3g GB/s", t->bus_gbps);
    if (m->in_place) m->line_open = 1;
    else fputc('\n', stderr);
    fflush(stderr);
    if (m->jsonl) {
        fprintf(m->jsonl,
                "{\"event\":\"train\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g,"
                "\"accuracy\":%.6f,\"lr\":%.9g,\"grad_norm\":%.9g,\"samples_per_s\":%.1f,"
                "\"flops_per_s\":%.6g,\"elapsed_s\":%.3f,\"step_compute_s\":%.6g,"
                "\"step_comm_wait_s\":%.6g,\"step_data_wait_s\":%.6g",
                (long long)t->step, (long long)t->epoch, t->loss, t->accuracy, t->lr,
                t->grad_norm, t->samples_per_s, t->flops_per_s, t->elapsed_s, t->compute_s,
                t->comm_wait_s, t->data_wait_s);
        if (t->lm)
            fprintf(m->jsonl, ",\"perplexity\":%.6g,\"tokens_per_s\":%.1f", exp(t->loss),
                    t->tokens_per_s);
        if (t->mfu >= 0) fprintf(m->jsonl, ",\"mfu\":%.4f", t->mfu);
        if (t->bus_gbps >= 0) fprintf(m->jsonl, ",\"bus_gb_per_s\":%.6g", t->bus_gbps);
        if (t->spread)
            fprintf(m->jsonl, ",\"rank_step_min_s\":%.6g,\"rank_step_median_s\":%.6g,"
                    "\"rank_step_max_s\":%.6g,\"slowest_rank\":%d", t->step_min_s,
                    t->step_median_s, t->step_max_s, t->slowest_rank);
        fputs("}\n", m->jsonl);
        fflush(m->jsonl);
    }
    if (m->tb) {
        tb_scalar(m->tb, t->step, "train/loss", t->loss);
        tb_scalar(m->tb, t->step, "train/lr", t->lr);
        tb_scalar(m->tb, t->step, "train/grad_norm", t->grad_norm);
        if (t->lm) tb_scalar(m->tb, t->step, "train/tokens_per_s", t->tokens_per_s);
        else tb_scalar(m->tb, t->step, "train/accuracy", t->accuracy);
        tb_scalar(m->tb, t->step, "train/samples_per_s", t->samples_per_s);
        tb_scalar(m->tb, t->step, "train/flops_per_s", t->flops_per_s);
        if (t->mfu >= 0) tb_scalar(m->tb, t->step, "train/mfu", t->mfu);
        tb_flush(m->tb);
    }
}

void metrics_log_eval(metrics *m, int lm, int64_t step, int64_t epoch, double loss,
                      double accuracy, int64_t samples) {
    close_line(m);
    if (lm)
        fprintf(stderr, "eval  step %lld | epoch %lld | val loss %.4f | val perplexity %.3f | "
                "next-token accuracy %.4f (%lld tokens)\n", (long long)step, (long long)epoch,
                loss, exp(loss), accuracy, (long long)samples);
    else
        fprintf(stderr, "eval  step %lld | epoch %lld | test loss %.4f | test accuracy %.4f (%lld samples)\n",
                (long long)step, (long long)epoch, loss, accuracy, (long long)samples);
    fflush(stderr);
    if (m->jsonl) {
        fprintf(m->jsonl,
                "{\"event\":\"eval\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g,"
                "\"accuracy\":%.6f,\"%s\":%lld",
                (long long)step, (long long)epoch, loss, accuracy, lm ? "tokens" : "samples",
                (long long)samples);
        if (lm) fprintf(m->jsonl, ",\"perplexity\":%.6g", exp(loss));
        fputs("}\n", m->jsonl);
        fflush(m->jsonl);
    }
    if (m->tb) {
        tb_scalar(m->tb, step, "eval/loss", loss);
        tb_scalar(m->tb, step, lm ? "eval/next_token_accuracy" : "eval/accuracy", accuracy);
        if (lm) tb_scalar(m->tb, step, "eval/perplexity", exp(loss));
        tb_flush(m->tb);
    }
}

void metrics_log_event(metrics *m, const char *name, const char *json_fields) {
    if (!m->jsonl) return;
    fprintf(m->jsonl, "{\"event\":\"%s\"%s%s}\n", name, json_fields[0] ? "," : "", json_fields);
    fflush(m->jsonl);
}

void metrics_notice(metrics *m, const char *fmt, ...) {
    close_line(m);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}
