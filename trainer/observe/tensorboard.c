/* tensorboard: TFRecord framing and the few protobuf fields of Event and Summary (see
 * tensorboard.h).  Protobuf wire format: each field is a key varint (field << 3 | wire type;
 * 0 varint, 1 eight bytes, 2 length-delimited, 5 four bytes) then its value, little-endian. */
#include "tensorboard.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tb_writer {
    FILE *f;
    char path[1200];
    int errors;
};

uint32_t tb_crc32c(const void *data, size_t n) {
    static uint32_t table[256];
    static int ready;
    if (!ready) {   /* reflected polynomial 0x1EDC6F41 */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

uint32_t tb_masked_crc(const void *data, size_t n) {
    uint32_t c = tb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* A growing protobuf message in a fixed buffer (events here are well under 512 bytes). */
typedef struct {
    unsigned char b[512];
    size_t n;
} pb;

static void pb_byte(pb *m, unsigned v) { if (m->n < sizeof m->b) m->b[m->n++] = (unsigned char)v; }

static void pb_varint(pb *m, uint64_t v) {
    while (v >= 0x80) { pb_byte(m, (unsigned)(v & 0x7f) | 0x80); v >>= 7; }
    pb_byte(m, (unsigned)v);
}

static void pb_fixed(pb *m, int field, int wire, const void *v, int bytes) {
    pb_varint(m, (uint64_t)(field << 3 | wire));
    for (int i = 0; i < bytes; i++) pb_byte(m, ((const unsigned char *)v)[i]);
}

static void pb_bytes(pb *m, int field, const void *v, size_t len) {
    pb_varint(m, (uint64_t)(field << 3 | 2));
    pb_varint(m, len);
    for (size_t i = 0; i < len; i++) pb_byte(m, ((const unsigned char *)v)[i]);
}

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void write_record(tb_writer *w, const pb *event) {
    unsigned char len8[8];
    uint64_t len = event->n;
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(len >> (8 * i));
    uint32_t c1 = tb_masked_crc(len8, 8), c2 = tb_masked_crc(event->b, event->n);
    if (fwrite(len8, 1, 8, w->f) != 8 || fwrite(&c1, 4, 1, w->f) != 1 ||
        fwrite(event->b, 1, event->n, w->f) != event->n || fwrite(&c2, 4, 1, w->f) != 1)
        w->errors++;
}

/* The newest events.out.tfevents.* of dir (by name: they start with the creation time), or
 * "" ; with remove set, every one is deleted instead. */
static void find_event_files(const char *dir, char *newest, size_t n, int remove) {
    newest[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char best[512] = "";
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) != 0) continue;
        if (remove) {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        } else if (strcmp(e->d_name, best) > 0) {
            snprintf(best, sizeof best, "%s", e->d_name);
        }
    }
    closedir(d);
    if (best[0]) snprintf(newest, n, "%s/%s", dir, best);
}

int tb_open(tb_writer **out, const char *run_dir, int append, char *err, size_t errlen) {
    tb_writer *w = calloc(1, sizeof *w);
    if (!w) return snprintf(err, errlen, "out of memory"), -1;
    find_event_files(run_dir, w->path, sizeof w->path, !append);
    int fresh = w->path[0] == '\0';
    if (fresh) {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%s.%ld", run_dir,
                 (long long)time(NULL), host, (long)getpid());
    }
    w->f = fopen(w->path, fresh ? "wb" : "ab");
    if (!w->f) {
        snprintf(err, errlen, "log.tensorboard: %s: %s", w->path, strerror(errno));
        free(w);
        return -1;
    }
    if (fresh) {
        pb ev = {{0}, 0};
        double t = wall_time();
        pb_fixed(&ev, 1, 1, &t, 8);
        pb_bytes(&ev, 3, "brain.Event:2", 13);
        write_record(w, &ev);
        fflush(w->f);
    }
    *out = w;
    return 0;
}

void tb_scalar(tb_writer *w, int64_t step, const char *tag, double value) {
    if (!w) return;
    pb val = {{0}, 0}, sum = {{0}, 0}, ev = {{0}, 0};
    float f = (float)value;
    pb_bytes(&val, 1, tag, strlen(tag));
    pb_fixed(&val, 2, 5, &f, 4);
    pb_bytes(&sum, 1, val.b, val.n);
    double t = wall_time();
    pb_fixed(&ev, 1, 1, &t, 8);
    pb_varint(&ev, 2 << 3 | 0);
    pb_varint(&ev, (uint64_t)step);
    pb_bytes(&ev, 5, sum.b, sum.n);
    write_record(w, &ev);
}

void tb_flush(tb_writer *w) {
    if (w && fflush(w->f) != 0) w->errors++;
}

void tb_close(tb_writer *w) {
    if (!w) return;
    if (fclose(w->f) != 0) w->errors++;
    if (w->errors)
        fprintf(stderr, "harness: warning: log.tensorboard: %d writes to %s failed\n", w->errors,
                w->path);
    free(w);
}
