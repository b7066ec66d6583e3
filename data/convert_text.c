/* Text files -> token datasets train.h5 and val.h5.
 *
 * Streaming: each input is read in blocks of BLOCK bytes; a block is encoded up to its last
 * safe cut and the rest carried into the next block.  A safe cut is the start of a line whose
 * first byte and the byte before its newline are printable ASCII other than space: GPT-2's
 * pattern then ends a piece ("\n" alone) right before the cut whether or not the text goes on,
 * and nothing after the cut looks back, so encoding the blocks one by one gives the ids of
 * the whole text.  A block with no safe cut grows up to MAX_BLOCK; past that it is cut at its
 * last newline (or character boundary), the one place where the ids may differ from encoding
 * the text in one piece.  The ids go to a temporary file in out_dir (uint16 or int32), then the
 * first T - V tokens to train.h5 and the last V = floor(val_fraction * T) to val.h5, so memory
 * stays at a few blocks whatever the input size. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data_internal.h"
#include "tokenizer_internal.h"

#define BLOCK ((size_t)4 << 20)
#define MAX_BLOCK ((size_t)64 << 20)
#define COPY_TOKENS ((size_t)1 << 20)

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static int plain_byte(unsigned char c) { return c > 0x20 && c < 0x7f; }

/* The end of the part of buf[0, len) to encode now (the rest waits for more text). */
static size_t block_cut(const unsigned char *buf, size_t len, int force) {
    for (size_t p = len - 1; p >= 2; p--)
        if (buf[p - 1] == '\n' && plain_byte(buf[p]) && plain_byte(buf[p - 2])) return p;
    if (!force) return 0;
    for (size_t p = len; p > 0; p--)
        if (buf[p - 1] == '\n') return p;
    size_t p = len;   /* no newline at all: at least do not split a UTF-8 character */
    for (int k = 0; k < 3 && p > 1 && (buf[p - 1] & 0xc0) == 0x80; k++) p--;
    if (p > 1 && buf[p - 1] >= 0xc0) p--;
    return p > 0 ? p : len;
}

typedef struct {
    const data_tokenizer *tok;
    FILE *tmp;
    const char *tmp_path;
    int bits;
    int32_t *ids;
    size_t n, cap;
    void *pack;
    size_t pack_cap;
    int64_t tokens;
} text_sink;

/* Appends sink->ids to the temporary token file and empties it. */
static int sink_flush(text_sink *s, char *err, size_t errlen) {
    if (s->n == 0) return 0;
    size_t elem = s->bits == 16 ? 2 : 4;
    const void *src = s->ids;
    if (s->bits == 16) {
        if (s->n * 2 > s->pack_cap) {
            void *p = realloc(s->pack, s->n * 2);
            if (p == NULL) return data_errorf(err, errlen, "out of memory");
            s->pack = p;
            s->pack_cap = s->n * 2;
        }
        uint16_t *o = s->pack;
        for (size_t i = 0; i < s->n; i++) o[i] = (uint16_t)s->ids[i];
        src = o;
    }
    if (fwrite(src, elem, s->n, s->tmp) != s->n)
        return data_errorf(err, errlen, "%s: write error: %s", s->tmp_path, strerror(errno));
    s->tokens += (int64_t)s->n;
    s->n = 0;
    return 0;
}

static int encode_into(text_sink *s, const unsigned char *text, size_t len, char *err,
                       size_t errlen) {
    if (data_tokenizer_encode(s->tok, (const char *)text, len, &s->ids, &s->n, &s->cap, err,
                              errlen))
        return -1;
    return sink_flush(s, err, errlen);
}

/* Copies tokens [begin, end) of the temporary file into a new token dataset at path. */
static int write_split(FILE *tmp, int bits, int64_t begin, int64_t end, const char *path,
                       const data_tokenizer *tok, char *err, size_t errlen) {
    tok_writer w;
    int64_t vocab = data_tokenizer_vocab_size(tok);
    if (tok_writer_open(&w, path, end - begin, vocab, tok, NULL, -1, err, errlen)) return -1;
    size_t elem = bits == 16 ? 2 : 4;
    void *raw = malloc(COPY_TOKENS * elem);
    int32_t *ids = malloc(COPY_TOKENS * sizeof *ids);
    int rc = -1;
    if (raw == NULL || ids == NULL) {
        data_errorf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    if (fseeko(tmp, (off_t)begin * (off_t)elem, SEEK_SET) != 0) {
        data_errorf(err, errlen, "%s: cannot seek in the temporary token file: %s", path,
                    strerror(errno));
        goto done;
    }
    for (int64_t pos = begin; pos < end;) {
        size_t want = (size_t)(end - pos) < COPY_TOKENS ? (size_t)(end - pos) : COPY_TOKENS;
        if (fread(raw, elem, want, tmp) != want) {
            data_errorf(err, errlen, "%s: reading the temporary token file failed", path);
            goto done;
        }
        if (bits == 16)
            for (size_t i = 0; i < want; i++) ids[i] = ((uint16_t *)raw)[i];
        else
            memcpy(ids, raw, want * sizeof *ids);
        if (tok_writer_append(&w, ids, want, err, errlen)) goto done;
        pos += (int64_t)want;
    }
    rc = tok_writer_finish(&w, err, errlen);
    free(raw);
    free(ids);
    return rc;
done:
    tok_writer_abort(&w);
    free(raw);
    free(ids);
    return rc;
}

int data_convert_text(const char *const *inputs, int n_inputs, const data_tokenizer *tok,
                      double val_fraction, const char *out_dir,
                      void (*progress)(const data_convert_progress *p, void *user), void *user,
                      data_convert_stats *stats, char *err, size_t errlen) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (stats) memset(stats, 0, sizeof *stats);
    if (n_inputs < 1 || inputs == NULL || tok == NULL || out_dir == NULL)
        return data_errorf(err, errlen, "convert text: needs input files, a tokenizer and an "
                           "output directory");
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return data_errorf(err, errlen, "convert text: the validation fraction must be in [0, "
                           "1), got %g", val_fraction);
    /* every input readable before any work */
    int64_t total_bytes = 0;
    for (int i = 0; i < n_inputs; i++) {
        FILE *f = fopen(inputs[i], "rb");
        if (f == NULL)
            return data_errorf(err, errlen, "%s: cannot read: %s", inputs[i], strerror(errno));
        struct stat st;
        if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
            fclose(f);
            return data_errorf(err, errlen, "%s: cannot read: %s", inputs[i],
                               S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
        }
        if (total_bytes >= 0) total_bytes = S_ISREG(st.st_mode) ? total_bytes + st.st_size : -1;
        fclose(f);
    }

    size_t plen = strlen(out_dir) + 64;
    char *tmp_path = malloc(plen), *train_path = malloc(plen), *val_path = malloc(plen);
    unsigned char *buf = NULL;
    FILE *f = NULL;
    text_sink s = {0};
    int rc = -1;
    if (tmp_path == NULL || train_path == NULL || val_path == NULL) {
        data_errorf(err, errlen, "%s: out of memory", out_dir);
        goto done;
    }
    snprintf(tmp_path, plen, "%s/.tokens.tmp.%ld", out_dir, (long)getpid());
    snprintf(train_path, plen, "%s/train.h5", out_dir);
    snprintf(val_path, plen, "%s/val.h5", out_dir);
    s.tok = tok;
    s.tmp_path = tmp_path;
    s.bits = data_tokenizer_vocab_size(tok) <= 65536 ? 16 : 32;
    s.tmp = fopen(tmp_path, "w+b");
    if (s.tmp == NULL) {
        data_errorf(err, errlen, "%s: cannot create: %s", tmp_path, strerror(errno));
        goto done;
    }
    size_t buf_cap = BLOCK;
    buf = malloc(buf_cap);
    if (buf == NULL) {
        data_errorf(err, errlen, "%s: out of memory", out_dir);
        goto done;
    }
    data_convert_progress pr = {0, total_bytes, 0, 0.0, 0};
    int64_t next_report = (int64_t)BLOCK;
    int64_t eot = data_tokenizer_eot(tok);
    for (int i = 0; i < n_inputs; i++) {
        pr.file_index = i;
        if (i > 0 && eot >= 0 && (tok_push(&s.ids, &s.n, &s.cap, (int32_t)eot) ||
                                  sink_flush(&s, err, errlen)))
            goto done;
        f = fopen(inputs[i], "rb");
        if (f == NULL) {
            data_errorf(err, errlen, "%s: cannot read: %s", inputs[i], strerror(errno));
            goto done;
        }
        size_t have = 0;
        for (;;) {
            if (have == buf_cap) {   /* no safe cut in the whole block: grow it */
                unsigned char *p = realloc(buf, buf_cap * 2);
                if (p == NULL) {
                    data_errorf(err, errlen, "%s: out of memory", inputs[i]);
                    goto done;
                }
                buf = p;
                buf_cap *= 2;
            }
            size_t want = buf_cap - have < BLOCK ? buf_cap - have : BLOCK;
            size_t got = fread(buf + have, 1, want, f);
            if (got < want && ferror(f)) {
                data_errorf(err, errlen, "%s: read error: %s", inputs[i], strerror(errno));
                goto done;
            }
            have += got;
            pr.bytes_done += (int64_t)got;
            int eof = got < want;
            size_t cut = eof ? have : have > 2 ? block_cut(buf, have, have >= MAX_BLOCK) : 0;
            if (cut > 0) {
                if (encode_into(&s, buf, cut, err, errlen)) {
                    char msg[1024];
                    snprintf(msg, sizeof msg, "%s", err ? err : "");
                    data_errorf(err, errlen, "%s: %s", inputs[i], msg);
                    goto done;
                }
                memmove(buf, buf + cut, have - cut);
                have -= cut;
            }
            if (progress && pr.bytes_done >= next_report) {
                pr.tokens = s.tokens;
                pr.seconds = seconds_since(&t0);
                progress(&pr, user);
                next_report = pr.bytes_done + (int64_t)BLOCK;
            }
            if (eof) break;
        }
        fclose(f);
        f = NULL;
    }
    if (fflush(s.tmp) != 0) {
        data_errorf(err, errlen, "%s: write error: %s", tmp_path, strerror(errno));
        goto done;
    }
    int64_t T = s.tokens;
    int64_t V = (int64_t)(val_fraction * (double)T);
    if (val_fraction > 0.0 && V == 0) V = 1;
    if (T == 0) {
        data_errorf(err, errlen, "%s%s: no text (0 tokens)", inputs[0], n_inputs > 1 ? " ..." : "");
        goto done;
    }
    if (T - V < 1) {
        data_errorf(err, errlen, "%s%s: %lld token%s: too few to split into train and validation",
                    inputs[0], n_inputs > 1 ? " ..." : "", (long long)T, T == 1 ? "" : "s");
        goto done;
    }
    if (write_split(s.tmp, s.bits, 0, T - V, train_path, tok, err, errlen)) goto done;
    if (V > 0 && write_split(s.tmp, s.bits, T - V, T, val_path, tok, err, errlen)) goto done;
    if (V == 0) remove(val_path);   /* no validation split: not an old one beside the new train */
    if (progress) {
        pr.tokens = T;
        pr.seconds = seconds_since(&t0);
        progress(&pr, user);
    }
    if (stats) {
        stats->bytes_in = pr.bytes_done;
        stats->tokens = T;
        stats->train_tokens = T - V;
        stats->val_tokens = V;
        stats->seconds = seconds_since(&t0);
    }
    rc = 0;
done:
    if (f) fclose(f);
    if (s.tmp) {
        fclose(s.tmp);
        remove(tmp_path);
    }
    free(s.ids);
    free(s.pack);
    free(buf);
    free(tmp_path);
    free(train_path);
    free(val_path);
    return rc;
}
