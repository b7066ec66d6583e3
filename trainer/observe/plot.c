/* plot: metrics.jsonl of one or more runs -> one PNG of four panels (see plot.h).
 *
 * Reading: one JSON object per line (jansson).  "start" events carry start_step: a resumed run
 * drops the points after it (the steps it replays) before appending its own.  A last line
 * without its newline is a record still being written and is skipped; any other line that is
 * not JSON is an error naming the file and line.
 * Drawing: cairo's image surface, its toy text API, axes with "nice" ticks (1, 2, 5 x 10^k). */
#define _GNU_SOURCE   /* M_PI, getline */
#include "plot.h"

#include <cairo.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One curve: points (step, value). */
typedef struct {
    int n, cap;
    double *x, *y;
} series;

/* S_CKPT: the checkpoints (step, seconds the step loop lost to the save), drawn as marks */
enum { S_TRAIN_LOSS, S_EVAL_LOSS, S_TRAIN_ACC, S_EVAL_ACC, S_LR, S_RATE, S_CKPT, S_COUNT };

typedef struct {
    char name[256];          /* the legend: the run directory as given */
    series s[S_COUNT];
    int lm;                  /* perplexity and tokens/s */
    double batch_size;       /* from the last start event; 0 unknown */
    double tokens_per_sample;
    int resumes;
} run_data;

static int series_add(series *s, double x, double y) {
    if (!isfinite(x) || !isfinite(y)) return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
        if (!nx) return -1;
        s->x = nx;
        double *ny = realloc(s->y, (size_t)cap * sizeof *ny);
        if (!ny) return -1;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

/* A resumed run replays the steps after its checkpoint: forget the old points there. */
static void series_cut(series *s, double after_step) {
    while (s->n > 0 && s->x[s->n - 1] > after_step) s->n--;
}

static double num(json_t *o, const char *key, int *ok) {
    json_t *v = json_object_get(o, key);
    *ok = json_is_number(v);
    return *ok ? json_number_value(v) : NAN;
}

static int read_run(const char *dir, run_data *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", dir);
    size_t len = strlen(r->name);
    while (len > 1 && r->name[len - 1] == '/') r->name[--len] = '\0';
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a run directory (%s)", dir,
                 stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
        return -1;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s (is %s a harness run directory?)", path, strerror(errno), dir);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, records = 0, status = 0;
    while (status == 0 && (got = getline(&line, &cap, f)) > 0) {
        lineno++;
        int complete = line[got - 1] == '\n';
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o || !json_is_object(o)) {
            if (!complete) { json_decref(o); break; }   /* being written right now */
            snprintf(err, errlen, "%s:%d: not a JSON object (%s); the file is damaged", path,
                     lineno, o ? "another JSON value" : je.text);
            json_decref(o);
            status = -1;
            break;
        }
        const char *ev = json_string_value(json_object_get(o, "event"));
        int ok, ok2;
        double step = num(o, "step", &ok);
        if (!ev) {
            /* not a harness record: ignore it */
        } else if (!strcmp(ev, "start")) {
            double s0 = num(o, "start_step", &ok2);
            if (ok2 && s0 >= 0 && records > 0) {
                for (int i = 0; i < S_COUNT; i++) series_cut(&r->s[i], s0);
                r->resumes++;
            }
            double b = num(o, "batch_size", &ok2);
            if (ok2) r->batch_size = b;
        } else if (!strcmp(ev, "train") && ok) {
            double tps = num(o, "tokens_per_s", &ok2);
            if (ok2) r->lm = 1;
            double v = num(o, "loss", &ok2);
            status |= ok2 ? series_add(&r->s[S_TRAIN_LOSS], step, v) : 0;
            v = r->lm ? num(o, "perplexity", &ok2) : num(o, "accuracy", &ok2);
            status |= ok2 ? series_add(&r->s[S_TRAIN_ACC], step, v) : 0;
            v = num(o, "lr", &ok2);
            status |= ok2 ? series_add(&r->s[S_LR], step, v) : 0;
            v = r->lm ? tps : num(o, "samples_per_s", &ok2);
            status |= ok2 || r->lm ? series_add(&r->s[S_RATE], step, v) : 0;
            double sps = num(o, "samples_per_s", &ok2);
            if (r->lm && ok2 && sps > 0) r->tokens_per_sample = tps / sps;
            records++;
        } else if (!strcmp(ev, "checkpoint") && ok) {
            /* what the loop lost: the copy and the wait for the save in flight (async), or
             * the whole write */
            double copy = num(o, "copy_s", &ok2), wait = ok2 ? num(o, "wait_s", &ok2) : 0;
            status |= series_add(&r->s[S_CKPT], step, ok2 ? copy + wait : 0);
        } else if (!strcmp(ev, "eval") && ok) {
            double v = num(o, "loss", &ok2);
            status |= ok2 ? series_add(&r->s[S_EVAL_LOSS], step, v) : 0;
            v = json_object_get(o, "perplexity") ? num(o, "perplexity", &ok2) : num(o, "accuracy", &ok2);
            if (json_object_get(o, "perplexity")) r->lm = 1;
            status |= ok2 ? series_add(&r->s[S_EVAL_ACC], step, v) : 0;
            records++;
        }
        json_decref(o);
        if (status != 0 && !err[0]) snprintf(err, errlen, "%s: out of memory", path);
    }
    free(line);
    if (status == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        status = -1;
    }
    fclose(f);
    if (status == 0 && records == 0) {
        snprintf(err, errlen, "%s: no training or evaluation records yet (%s)", path,
                 lineno == 0 ? "the file is empty" : "only start events");
        status = -1;
    }
    return status;
}

static void free_run(run_data *r) {
    for (int i = 0; i < S_COUNT; i++) {
        free(r->s[i].x);
        free(r->s[i].y);
    }
}

/* ---- drawing ---- */

static const double palette[8][3] = {
    {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
    {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.09, 0.75, 0.81}};

typedef struct {
    double px0, px1, py0, py1;   /* pixel box: x left..right, y bottom..top (py0 > py1) */
    double xmin, xmax, ymin, ymax;
} panel;

static double map_x(const panel *p, double x) {
    return p->px0 + (x - p->xmin) / (p->xmax - p->xmin) * (p->px1 - p->px0);
}
static double map_y(const panel *p, double y) {
    return p->py0 - (y - p->ymin) / (p->ymax - p->ymin) * (p->py0 - p->py1);
}

/* A tick spacing of 1, 2 or 5 x 10^k giving about `target` intervals over span. */
static double nice_step(double span, int target) {
    double raw = span / target, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void format_tick(char *buf, size_t n, double v, double step) {
    double a = fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-3)) snprintf(buf, n, "%.2g", v);
    else if (a >= 1e4 && step >= 1000) snprintf(buf, n, "%.0fk", v / 1000);
    else if (step >= 1) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.*f", (int)ceil(-log10(step) - 1e-9), v);
}

static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    cairo_move_to(cr, x - ax * te.width - te.x_bearing, y + ay * te.height);
    cairo_show_text(cr, s);
}

/* Ranges of the panel's series over every run; y from 0 for rates, losses and accuracies. */
static void panel_range(panel *p, run_data *runs, int n_runs, const int *which, int n_which,
                        int from_zero) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int r = 0; r < n_runs; r++)
        for (int w = 0; w < n_which; w++) {
            const series *s = &runs[r].s[which[w]];
            for (int i = 0; i < s->n; i++) {
                if (s->x[i] < xmin) xmin = s->x[i];
                if (s->x[i] > xmax) xmax = s->x[i];
                if (s->y[i] < ymin) ymin = s->y[i];
                if (s->y[i] > ymax) ymax = s->y[i];
            }
        }
    if (!(xmin <= xmax)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    if (from_zero && ymin > 0) ymin = 0;
    if (xmin > 0 && xmin <= 0.2 * xmax) xmin = 0;
    if (xmax == xmin) xmax = xmin + 1;
    if (ymax == ymin) { ymax += fabs(ymax) > 0 ? 0.05 * fabs(ymax) : 1; ymin -= fabs(ymin) > 0 ? 0.05 * fabs(ymin) : 0; }
    double pad = 0.05 * (ymax - ymin);
    p->xmin = xmin;
    p->xmax = xmax;
    p->ymin = ymin < 0 || !from_zero ? ymin - pad : ymin;
    p->ymax = ymax + pad;
}

static void draw_axes(cairo_t *cr, const panel *p, const char *title, const char *ylabel,
                      double samples_per_step, const char *sample_word) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, p->px0, p->py1, p->px1 - p->px0, p->py0 - p->py1);
    cairo_fill(cr);
    cairo_set_line_width(cr, 1);
    char buf[64];
    /* grid and ticks */
    double xs = nice_step(p->xmax - p->xmin, 6), ys = nice_step(p->ymax - p->ymin, 5);
    cairo_set_font_size(cr, 13);
    for (double v = ceil(p->xmin / xs) * xs; v <= p->xmax + 1e-9 * xs; v += xs) {
        double x = map_x(p, v);
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, floor(x) + 0.5, p->py0);
        cairo_line_to(cr, floor(x) + 0.5, p->py1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        format_tick(buf, sizeof buf, v, xs);
        text_at(cr, buf, x, p->py0 + 6, 0.5, 1.0);
        if (samples_per_step > 0) {
            cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
            double sv = v * samples_per_step;
            format_tick(buf, sizeof buf, sv, xs * samples_per_step);
            text_at(cr, buf, x, p->py0 + 24, 0.5, 1.0);
        }
    }
    for (double v = ceil(p->ymin / ys) * ys; v <= p->ymax + 1e-9 * ys; v += ys) {
        double y = map_y(p, v);
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, p->px0, floor(y) + 0.5);
        cairo_line_to(cr, p->px1, floor(y) + 0.5);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        format_tick(buf, sizeof buf, fabs(v) < 1e-12 * ys ? 0 : v, ys);
        text_at(cr, buf, p->px0 - 6, y, 1.0, 0.5);
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, p->px0 + 0.5, p->py1 + 0.5, p->px1 - p->px0 - 1, p->py0 - p->py1 - 1);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 16);
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    text_at(cr, title, (p->px0 + p->px1) / 2, p->py1 - 22, 0.5, 0.0);
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 13);
    /* the y label, turned */
    cairo_save(cr);
    cairo_translate(cr, p->px0 - 62, (p->py0 + p->py1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, ylabel, 0, 0, 0.5, 0.5);
    cairo_restore(cr);
    snprintf(buf, sizeof buf, samples_per_step > 0 ? "step  (grey: %s)" : "step", sample_word);
    text_at(cr, buf, (p->px0 + p->px1) / 2, p->py0 + (samples_per_step > 0 ? 44 : 26), 0.5, 1.0);
}

static void draw_series(cairo_t *cr, const panel *p, const series *s, const double *rgb,
                        int dashed) {
    if (s->n == 0) return;
    cairo_save(cr);
    cairo_rectangle(cr, p->px0, p->py1, p->px1 - p->px0, p->py0 - p->py1);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(cr, 2.5);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    if (dashed) {
        double d[2] = {8, 5};
        cairo_set_dash(cr, d, 2, 0);
    }
    for (int i = 0; i < s->n; i++) {
        double x = map_x(p, s->x[i]), y = map_y(p, s->y[i]);
        if (i == 0) cairo_move_to(cr, x, y);
        else cairo_line_to(cr, x, y);
    }
    cairo_stroke(cr);
    if (dashed || s->n == 1) {
        cairo_set_dash(cr, NULL, 0, 0);
        for (int i = 0; i < s->n; i++) {
            cairo_arc(cr, map_x(p, s->x[i]), map_y(p, s->y[i]), 4.5, 0, 2 * M_PI);
            cairo_fill(cr);
        }
    }
    cairo_restore(cr);
}

/* The key of the marks, right-aligned above the panel (beside its title). */
static void draw_checkpoint_key(cairo_t *cr, const panel *p) {
    const char *label = "checkpoint";
    cairo_set_font_size(cr, 13);
    cairo_text_extents_t te;
    cairo_text_extents(cr, label, &te);
    double x = p->px1 - te.x_advance - 20, y = p->py1 - 12;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, x, y - 6);
    cairo_line_to(cr, x - 6, y + 5);
    cairo_line_to(cr, x + 6, y + 5);
    cairo_close_path(cr);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, label, x + 12, y, 0.0, 0.5);
}

/* A checkpoint: a small triangle on the panel's bottom edge at its step. */
static void draw_checkpoints(cairo_t *cr, const panel *p, const series *s, const double *rgb) {
    cairo_save(cr);
    cairo_rectangle(cr, p->px0, p->py1, p->px1 - p->px0, p->py0 - p->py1);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    for (int i = 0; i < s->n; i++) {
        double x = map_x(p, s->x[i]);
        cairo_move_to(cr, x, p->py0 - 12);
        cairo_line_to(cr, x - 6, p->py0 - 1);
        cairo_line_to(cr, x + 6, p->py0 - 1);
        cairo_close_path(cr);
        cairo_fill(cr);
    }
    cairo_restore(cr);
}

static void draw_legend(cairo_t *cr, double x, double y, run_data *runs, int n_runs,
                        int show_eval) {
    cairo_set_font_size(cr, 13);
    for (int r = 0; r < n_runs; r++) {
        const double *c = palette[r % 8];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_rectangle(cr, x, y + 20 * r - 6, 22, 12);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        char label[300];
        snprintf(label, sizeof label, "%s%s", runs[r].name, runs[r].resumes ? "  (resumed)" : "");
        text_at(cr, label, x + 30, y + 20 * r, 0.0, 0.5);
    }
    if (!show_eval) return;
    double yy = y + 20 * n_runs + 4;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 2.5);
    cairo_move_to(cr, x, yy);
    cairo_line_to(cr, x + 22, yy);
    cairo_stroke(cr);
    text_at(cr, "training", x + 30, yy, 0.0, 0.5);
    double d[2] = {8, 5};
    cairo_set_dash(cr, d, 2, 0);
    cairo_move_to(cr, x + 110, yy);
    cairo_line_to(cr, x + 132, yy);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    text_at(cr, "evaluation", x + 140, yy, 0.0, 0.5);
}

static void write_geometry(FILE *g, const char *name, const panel *p, run_data *runs,
                           int n_runs, int with_ckpt) {
    fprintf(g, "{\"panel\":\"%s\",\"px0\":%.3f,\"px1\":%.3f,\"py0\":%.3f,\"py1\":%.3f,"
            "\"xmin\":%.9g,\"xmax\":%.9g,\"ymin\":%.9g,\"ymax\":%.9g,\"colors\":[", name, p->px0,
            p->px1, p->py0, p->py1, p->xmin, p->xmax, p->ymin, p->ymax);
    for (int r = 0; r < n_runs; r++) {
        const double *c = palette[r % 8];
        fprintf(g, "%s[%d,%d,%d]", r ? "," : "", (int)lround(255 * c[0]), (int)lround(255 * c[1]),
                (int)lround(255 * c[2]));
    }
    fputs("]", g);
    if (with_ckpt) {   /* the checkpoint marks drawn: [run, step] */
        fputs(",\"checkpoints\":[", g);
        int first = 1;
        for (int r = 0; r < n_runs; r++)
            for (int i = 0; i < runs[r].s[S_CKPT].n; i++, first = 0)
                fprintf(g, "%s[%d,%.0f]", first ? "" : ",", r, runs[r].s[S_CKPT].x[i]);
        fputs("]", g);
    }
    fputs("}\n", g);
}

int plot_runs(const char *const *run_dirs, int n_runs, const char *png, int width, int height,
              const char *geometry_path, char *err, size_t errlen) {
    if (n_runs < 1) return snprintf(err, errlen, "plot: no run directory given"), -1;
    if (width < 400 || height < 300 || width > 10000 || height > 10000)
        return snprintf(err, errlen, "plot: size %dx%d outside 400x300 .. 10000x10000", width,
                        height), -1;
    err[0] = '\0';
    run_data *runs = calloc((size_t)n_runs, sizeof *runs);
    if (!runs) return snprintf(err, errlen, "plot: out of memory"), -1;
    int st = 0, read = 0;
    for (; read < n_runs && st == 0; read++) st = read_run(run_dirs[read], &runs[read], err, errlen);
    int lm = 0;
    double bs = runs[0].batch_size;
    for (int r = 0; r < read; r++) {
        lm |= runs[r].lm;
        if (runs[r].batch_size != bs) bs = 0;
    }
    double per_step = bs > 0 ? bs * (lm ? runs[0].tokens_per_sample : 1) : 0;
    if (lm && runs[0].tokens_per_sample <= 0) per_step = 0;
    cairo_surface_t *surf = NULL;
    cairo_t *cr = NULL;
    FILE *geo = NULL;
    if (st == 0) {
        surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
        cr = cairo_create(surf);
        if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
            snprintf(err, errlen, "plot: cairo: %s", cairo_status_to_string(cairo_status(cr)));
            st = -1;
        }
    }
    if (st == 0 && geometry_path && !(geo = fopen(geometry_path, "w"))) {
        snprintf(err, errlen, "%s: %s", geometry_path, strerror(errno));
        st = -1;
    }
    if (st == 0) {
        cairo_set_source_rgb(cr, 0.96, 0.96, 0.96);
        cairo_paint(cr);
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
        /* a 2 x 2 grid of panels, room on the left for tick labels and on the right of the
         * top-left one for nothing: the legend sits inside the loss panel */
        double left = 95, right = 30, top = 60, bottom = per_step > 0 ? 80 : 62, gapx = 110,
               gapy = per_step > 0 ? 135 : 115;
        double pw = (width - left - right - gapx) / 2, ph = (height - top - bottom - gapy) / 2;
        static const char *titles[4][2] = {{"loss", "loss"}, {"accuracy", "perplexity"},
                                           {"learning rate", "learning rate"},
                                           {"throughput", "throughput"}};
        static const char *ylabels[4][2] = {{"cross-entropy", "cross-entropy"},
                                            {"accuracy", "perplexity"}, {"lr", "lr"},
                                            {"samples/s", "tokens/s"}};
        static const char *keys[4] = {"loss", "accuracy", "lr", "throughput"};
        int which[4][2] = {{S_TRAIN_LOSS, S_EVAL_LOSS}, {S_TRAIN_ACC, S_EVAL_ACC}, {S_LR, -1},
                           {S_RATE, -1}};
        int any_eval = 0, any_ckpt = 0;
        for (int r = 0; r < read; r++) {
            any_eval |= runs[r].s[S_EVAL_LOSS].n > 0;
            any_ckpt |= runs[r].s[S_CKPT].n > 0;
        }
        for (int k = 0; k < 4; k++) {
            panel p;
            p.px0 = left + (k % 2) * (pw + gapx);
            p.px1 = p.px0 + pw;
            p.py1 = top + (k / 2) * (ph + gapy);
            p.py0 = p.py1 + ph;
            int nw = which[k][1] >= 0 ? 2 : 1;
            panel_range(&p, runs, read, which[k], nw, k != 2 && !(k == 1 && lm));
            draw_axes(cr, &p, titles[k][lm], ylabels[k][lm], per_step, lm ? "tokens" : "samples");
            for (int r = 0; r < read; r++) {
                draw_series(cr, &p, &runs[r].s[which[k][0]], palette[r % 8], 0);
                if (nw == 2) draw_series(cr, &p, &runs[r].s[which[k][1]], palette[r % 8], 1);
                if (k == 3) draw_checkpoints(cr, &p, &runs[r].s[S_CKPT], palette[r % 8]);
            }
            if (k == 3 && any_ckpt) draw_checkpoint_key(cr, &p);
            if (geo) write_geometry(geo, lm && k == 1 ? "perplexity" : keys[k], &p, runs, read, k == 3);
        }
        /* the legend above the panels, right-aligned */
        cairo_set_font_size(cr, 13);
        draw_legend(cr, left, 14, runs, read > 1 ? read : 1, any_eval);
        if (read == 1 && !any_eval) { /* nothing more */ }
        cairo_surface_flush(surf);
        cairo_status_t cs = cairo_surface_write_to_png(surf, png);
        if (cs != CAIRO_STATUS_SUCCESS) {
            snprintf(err, errlen, "%s: cannot write the PNG (%s)", png, cairo_status_to_string(cs));
            st = -1;
        }
    }
    if (geo && fclose(geo) != 0 && st == 0) {
        snprintf(err, errlen, "%s: %s", geometry_path, strerror(errno));
        st = -1;
    }
    if (cr) cairo_destroy(cr);
    if (surf) cairo_surface_destroy(surf);
    for (int r = 0; r < n_runs; r++) free_run(&runs[r]);
    free(runs);
    return st;
}

static const char *usage_plot =
    "usage: harness plot RUN_DIR... [--out FILE.png] [--size WxH] [--geometry FILE]\n"
    "\n"
    "Draws the training curves of one or more runs (their metrics.jsonl) into one PNG: loss\n"
    "(training solid, evaluation dashed), accuracy or perplexity, learning rate and throughput\n"
    "against the step (and samples or tokens), one colour per run; a triangle on the throughput\n"
    "panel's axis marks each checkpoint.  Works on a run still going and on resumed runs.\n"
    "  --out FILE.png   where to write it (default: RUN_DIR/metrics.png of the first run)\n"
    "  --size WxH       pixels (default 1600x1000)\n"
    "  --geometry FILE  also write each panel's pixel box and data ranges (JSON lines; tests)\n";

int plot_main(int argc, char **argv) {
    const char *dirs[64], *out = NULL, *geometry = NULL;
    int n = 0, w = PLOT_DEFAULT_WIDTH, h = PLOT_DEFAULT_HEIGHT;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage_plot, stdout); return 0; }
        if (!strcmp(a, "--out") || !strcmp(a, "--size") || !strcmp(a, "--geometry")) {
            if (!v) {
                fprintf(stderr, "harness plot: %s needs a value\n%s", a, usage_plot);
                return 1;
            }
            if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--geometry")) geometry = v;
            else if (sscanf(v, "%dx%d", &w, &h) != 2) {
                fprintf(stderr, "harness plot: --size needs WxH (e.g. 1600x1000), got '%s'\n", v);
                return 1;
            }
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "harness plot: unknown option '%s'\n%s", a, usage_plot);
            return 1;
        } else if (n < 64) {
            dirs[n++] = a;
        } else {
            fprintf(stderr, "harness plot: at most 64 runs\n");
            return 1;
        }
    }
    if (n == 0) {
        fputs(usage_plot, stderr);
        return 1;
    }
    char def[1200], err[1400];
    if (!out) {
        snprintf(def, sizeof def, "%s/metrics.png", dirs[0]);
        out = def;
    }
    if (plot_runs(dirs, n, out, w, h, geometry, err, sizeof err) != 0) {
        fprintf(stderr, "harness plot: %s\n", err);
        return 1;
    }
    printf("%s\n", out);
    return 0;
}
