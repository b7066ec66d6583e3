/* Tokenizers and the text converter: the bytes tokenizer round-trips any bytes; GPT-2's BPE on
 * a tiny vocabulary written here in GPT-2's file format (ids worked out by hand: merge order,
 * long words through the heap path, <|endoftext|>, invalid UTF-8), its errors, storing a
 * tokenizer in an HDF5 file and loading it back, several threads at once, and
 * data_convert_text (split, end-of-text between files, blocks cut without changing ids,
 * errors).  The ids of the real GPT-2 vocabulary against a reference implementation are
 * checked by tokenizer_oracle.py. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "data_test_util.h"
#include "tokenizer.h"

static const char *dir;
static char vocab_dir[4096], enc_path[4200], bpe_path[4200];

/* Tiny vocabulary: ids 0..255 are the bytes, then these merges in rank order. */
static const char *const merges[][2] = {{"h", "e"},  {"l", "l"},  {"he", "ll"},
                                        {"hell", "o"}, {"Ġ", "w"}, {"o", "r"},
                                        {"Ġw", "or"}, {"a", "a"},  {"aa", "aa"}};
enum { HE = 256, LL, HELL, HELLO, SP_W, OR, SP_WOR, AA, AAAA, EOT };

/* GPT-2's code point for byte b, as UTF-8 into out (NUL-terminated). */
static void byte_char(int b, char *out) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    int cp = b;
    if (!printable) {
        int extra = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)))
                extra++;
        cp = 256 + extra;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_tiny_vocab(const char *d) {
    tu_mkdir(d);
    char p[4200];
    snprintf(p, sizeof p, "%s/encoder.json", d);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs("{", f);
    for (int b = 0; b < 256; b++) {
        char c[4];
        byte_char(b, c);
        fprintf(f, "%s\"%s%s\": %d", b ? ", " : "", (c[0] == '"' || c[0] == '\\') ? "\\" : "",
                c, b);
    }
    for (size_t m = 0; m < sizeof merges / sizeof merges[0]; m++)
        fprintf(f, ", \"%s%s\": %zu", merges[m][0], merges[m][1], 256 + m);
    fprintf(f, ", \"<|endoftext|>\": %d}\n", EOT);
    fclose(f);
    snprintf(p, sizeof p, "%s/vocab.bpe", d);
    f = fopen(p, "wb");
    assert_non_null(f);
    fputs("#version: 0.2\n", f);
    for (size_t m = 0; m < sizeof merges / sizeof merges[0]; m++)
        fprintf(f, "%s %s\n", merges[m][0], merges[m][1]);
    fclose(f);
}

static data_tokenizer *tiny(void) {
    data_tokenizer *t = NULL;
    char err[1024];
    if (data_tokenizer_gpt2(enc_path, bpe_path, &t, err, sizeof err)) fail_msg("%s", err);
    return t;
}

static size_t encode(const data_tokenizer *t, const char *s, size_t len, int32_t **ids) {
    size_t n = 0, cap = 0;
    char err[1024];
    *ids = NULL;
    if (data_tokenizer_encode(t, s, len, ids, &n, &cap, err, sizeof err)) fail_msg("%s", err);
    return n;
}

/* decode(ids) == s */
static void assert_decodes_to(const data_tokenizer *t, const int32_t *ids, size_t n,
                              const char *s, size_t len) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *b = data_tokenizer_token_bytes(t, ids[i], &l);
        assert_non_null(b);
        assert_true(pos + l <= len);
        assert_memory_equal(b, s + pos, l);
        pos += l;
    }
    assert_int_equal(pos, len);
}

static void assert_ids(const data_tokenizer *t, const char *s, const int32_t *want, size_t nwant) {
    int32_t *ids;
    size_t n = encode(t, s, strlen(s), &ids);
    if (n != nwant) fail_msg("'%s': %zu ids, expected %zu", s, n, nwant);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != want[i]) fail_msg("'%s': id %zu is %d, expected %d", s, i, ids[i], want[i]);
    assert_decodes_to(t, ids, n, s, strlen(s));
    free(ids);
}

static uint64_t rng = 88172645463325252ULL;
static uint32_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void test_bytes_round_trip(void **state) {
    data_tokenizer *t;
    char err[256];
    assert_int_equal(data_tokenizer_bytes(&t, err, sizeof err), 0);
    assert_string_equal(data_tokenizer_name(t), "bytes");
    assert_int_equal(data_tokenizer_vocab_size(t), 256);
    assert_int_equal(data_tokenizer_eot(t), -1);
    size_t len = 70000;
    char *s = malloc(len);
    for (size_t i = 0; i < len; i++) s[i] = (char)(i < 256 ? i : next_rand());
    int32_t *ids;
    size_t n = encode(t, s, len, &ids);
    assert_int_equal(n, len);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], (unsigned char)s[i]);
    assert_decodes_to(t, ids, n, s, len);
    size_t l;
    assert_null(data_tokenizer_token_bytes(t, 256, &l));
    assert_null(data_tokenizer_token_bytes(t, -1, &l));
    /* encode appends */
    size_t cap = 0, m = 0;
    int32_t *acc = NULL;
    assert_int_equal(data_tokenizer_encode(t, "ab", 2, &acc, &m, &cap, err, sizeof err), 0);
    assert_int_equal(data_tokenizer_encode(t, "c", 1, &acc, &m, &cap, err, sizeof err), 0);
    assert_int_equal(m, 3);
    assert_int_equal(acc[2], 'c');
    free(acc);
    free(ids);
    free(s);
    data_tokenizer_free(t);
}

static void test_gpt2_merges(void **state) {
    data_tokenizer *t = tiny();
    assert_string_equal(data_tokenizer_name(t), "gpt2");
    assert_int_equal(data_tokenizer_vocab_size(t), EOT + 1);
    assert_int_equal(data_tokenizer_eot(t), EOT);
    /* " world": (Ġ,w) rank 4 before (o,r) rank 5, then (Ġw,or) rank 6; l and d stay */
    assert_ids(t, "hello world", (int32_t[]){HELLO, SP_WOR, 'l', 'd'}, 4);
    /* leftmost first among equal ranks: aaaaa -> aa aa a -> aaaa a */
    assert_ids(t, "aaaaa", (int32_t[]){AAAA, 'a'}, 2);
    assert_ids(t, "x<|endoftext|>y", (int32_t[]){'x', EOT, 'y'}, 3);
    assert_ids(t, "<|endoftext|><|endoftext|>", (int32_t[]){EOT, EOT}, 2);
    /* pieces "he", "'s", " ", " 12", "!": of a run of spaces the last goes with the word */
    assert_ids(t, "he's  12!", (int32_t[]){HE, '\'', 's', ' ', ' ', '1', '2', '!'}, 8);
    /* long words take the heap path: same rules */
    char word[4096] = "";
    int32_t want[1024];
    for (int i = 0; i < 40; i++) {
        strcat(word, "hello");
        want[i] = HELLO;
    }
    assert_ids(t, word, want, 40);
    memset(word, 'a', 401);
    word[401] = 0;
    for (int i = 0; i < 100; i++) want[i] = AAAA;
    want[100] = 'a';
    assert_ids(t, word, want, 101);
    data_tokenizer_free(t);
}

static void test_gpt2_invalid_utf8(void **state) {
    data_tokenizer *t = tiny();
    /* each byte that is not part of a valid UTF-8 character is a piece of its own */
    assert_ids(t, "he\xffllo", (int32_t[]){HE, 0xff, LL, 'o'}, 4);
    assert_ids(t, "\xc3", (int32_t[]){0xc3}, 1);
    assert_ids(t, "\xe2\x82 x", (int32_t[]){0xe2, 0x82, ' ', 'x'}, 4);
    /* random bytes: decode(encode(x)) == x */
    for (int round = 0; round < 20; round++) {
        size_t len = 1 + next_rand() % 5000;
        char *s = malloc(len);
        for (size_t i = 0; i < len; i++) {
            uint32_t r = next_rand();
            s[i] = r % 4 == 0 ? "hello world\n\t <|>"[r / 4 % 17] : (char)(r >> 8);
        }
        int32_t *ids;
        size_t n = encode(t, s, len, &ids);
        assert_decodes_to(t, ids, n, s, len);
        free(ids);
        free(s);
    }
    data_tokenizer_free(t);
}

static void expect_load_error(const char *enc, const char *bpe, const char *needle1,
                              const char *needle2) {
    data_tokenizer *t = NULL;
    char err[1024] = "";
    assert_int_not_equal(data_tokenizer_gpt2(enc, bpe, &t, err, sizeof err), 0);
    assert_null(t);
    if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        fail_msg("error '%s' lacks '%s' / '%s'", err, needle1, needle2 ? needle2 : "");
}

static void test_gpt2_errors(void **state) {
    char p[4200], q[4200];
    snprintf(p, sizeof p, "%s/no-such-encoder.json", dir);
    expect_load_error(p, bpe_path, "no-such-encoder.json", "cannot open");
    snprintf(p, sizeof p, "%s/bad.json", dir);
    write_text(p, "{\"a\": 1,,}");
    expect_load_error(p, bpe_path, "bad.json", "JSON");
    snprintf(p, sizeof p, "%s/nobytes.json", dir);
    write_text(p, "{\"a\": 0, \"b\": 1}");
    expect_load_error(p, bpe_path, "nobytes.json", "no token for byte");
    snprintf(q, sizeof q, "%s/bad1.bpe", dir);
    write_text(q, "#version: 0.2\nh e\nq z\n");
    expect_load_error(enc_path, q, "bad1.bpe: line 3", "not in the vocabulary");
    write_text(q, "#version: 0.2\nh e\nhe ll o\n");
    expect_load_error(enc_path, q, "bad1.bpe: line 3", "expected a merge");
}

static void test_store_and_load(void **state) {
    data_tokenizer *t = tiny(), *b = NULL, *back = NULL;
    char path[4200], err[1024];
    snprintf(path, sizeof path, "%s/stored.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    if (data_tokenizer_store(t, f, err, sizeof err)) fail_msg("%s", err);
    H5Fclose(f);
    if (data_tokenizer_from_dataset(path, &back, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(data_tokenizer_name(back), "gpt2");
    assert_int_equal(data_tokenizer_eot(back), EOT);
    assert_ids(back, "hello world<|endoftext|>", (int32_t[]){HELLO, SP_WOR, 'l', 'd', EOT}, 5);
    data_tokenizer_free(back);

    /* bytes, stored the way h5py writes a str attribute (variable-length) */
    snprintf(path, sizeof path, "%s/bytes_vlen.h5", dir);
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "tokenizer", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *name = "bytes";
    assert_true(H5Awrite(a, st, &name) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    H5Fclose(f);
    if (data_tokenizer_from_dataset(path, &b, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(data_tokenizer_name(b), "bytes");
    data_tokenizer_free(b);

    /* no tokenizer named; gpt2 named without tables */
    snprintf(path, sizeof path, "%s/none.h5", dir);
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    assert_int_not_equal(data_tokenizer_from_dataset(path, &b, err, sizeof err), 0);
    assert_non_null(strstr(err, "none.h5"));
    assert_non_null(strstr(err, "no attribute tokenizer"));
    data_tokenizer_free(t);
}

typedef struct {
    const data_tokenizer *t;
    const char *s;
    size_t len;
    int32_t *ids;
    size_t n;
} job;

static void *encode_job(void *p) {
    job *j = p;
    size_t cap = 0;
    char err[256];
    j->n = 0;
    j->ids = NULL;
    /* in pieces, as a converter would, to use the word cache */
    for (size_t off = 0; off < j->len; off += 1000) {
        size_t l = j->len - off < 1000 ? j->len - off : 1000;
        if (data_tokenizer_encode(j->t, j->s + off, l, &j->ids, &j->n, &cap, err, sizeof err))
            return NULL;
    }
    return p;
}

static void test_threads(void **state) {
    data_tokenizer *t = tiny();
    size_t len = 300000;
    char *s = malloc(len);
    static const char *words[] = {"hello", " world", " aaaa", "\n", " he", "'s", " 42", "!"};
    for (size_t i = 0; i < len; i++) s[i] = ' ';
    for (size_t i = 0; i + 8 < len;) {
        const char *w = words[next_rand() % 8];
        memcpy(s + i, w, strlen(w));
        i += strlen(w);
    }
    job ref = {t, s, len, NULL, 0};
    assert_non_null(encode_job(&ref));
    job j[3] = {{t, s, len, NULL, 0}, {t, s, len, NULL, 0}, {t, s, len, NULL, 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&th[i], NULL, encode_job, &j[i]), 0);
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_non_null(r);
        assert_int_equal(j[i].n, ref.n);
        assert_memory_equal(j[i].ids, ref.ids, ref.n * sizeof *ref.ids);
        free(j[i].ids);
    }
    free(ref.ids);
    free(s);
    data_tokenizer_free(t);
}

static int64_t read_all(const char *path, int32_t **out) {
    data_info info;
    char err[1024];
    (void)info;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fail_msg("%s does not open", path);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    *out = malloc((n ? n : 1) * sizeof **out);
    if (data_read_tokens(path, 0, (int64_t)n, *out, err, sizeof err)) fail_msg("%s", err);
    return (int64_t)n;
}

static int64_t attr_i64(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    int64_t v = -999;
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Fclose(f);
    return v;
}

static void test_convert_text_bytes(void **state) {
    char a[4200], b[4200], out[4200], train[4300], val[4300], err[1024];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    snprintf(out, sizeof out, "%s/text_bytes", dir);
    tu_mkdir(out);
    write_text(a, "The quick brown fox\n\xff\xfe invalid bytes\n");
    write_text(b, "jumps over the lazy dog.\n");
    const char *in[2] = {a, b};
    data_tokenizer *t;
    assert_int_equal(data_tokenizer_bytes(&t, err, sizeof err), 0);
    data_convert_stats st;
    if (data_convert_text(in, 2, t, 0.25, out, NULL, NULL, &st, err, sizeof err))
        fail_msg("%s", err);
    const char *all = "The quick brown fox\n\xff\xfe invalid bytes\njumps over the lazy dog.\n";
    int64_t T = (int64_t)strlen(all), V = T / 4;
    assert_int_equal(st.tokens, T);
    assert_int_equal(st.bytes_in, T);
    assert_int_equal(st.val_tokens, V);
    snprintf(train, sizeof train, "%s/train.h5", out);
    snprintf(val, sizeof val, "%s/val.h5", out);
    int32_t *x, *y;
    assert_int_equal(read_all(train, &x), T - V);
    assert_int_equal(read_all(val, &y), V);
    for (int64_t i = 0; i < T; i++)
        assert_int_equal(i < T - V ? x[i] : y[i - (T - V)], (unsigned char)all[i]);
    assert_int_equal(attr_i64(train, "vocab_size"), 256);
    free(x);
    free(y);

    /* errors: unreadable input named; fraction out of range */
    const char *missing[2] = {a, "/nonexistent/dir/novel.txt"};
    assert_int_not_equal(data_convert_text(missing, 2, t, 0.1, out, NULL, NULL, &st, err,
                                           sizeof err), 0);
    assert_non_null(strstr(err, "/nonexistent/dir/novel.txt"));
    assert_int_not_equal(data_convert_text(in, 2, t, 1.0, out, NULL, NULL, &st, err, sizeof err), 0);
    assert_non_null(strstr(err, "fraction"));
    char empty[4200];
    snprintf(empty, sizeof empty, "%s/empty.txt", dir);
    write_text(empty, "");
    const char *e1[1] = {empty};
    assert_int_not_equal(data_convert_text(e1, 1, t, 0.1, out, NULL, NULL, &st, err, sizeof err), 0);
    assert_non_null(strstr(err, "empty.txt"));
    data_tokenizer_free(t);
}

static int progress_calls;
static void count_progress(const data_convert_progress *p, void *user) {
    (void)p;
    (void)user;
    progress_calls++;
}

static void test_convert_text_gpt2(void **state) {
    char a[4200], b[4200], out[4200], train[4300], val[4300], err[1024];
    snprintf(a, sizeof a, "%s/g1.txt", dir);
    snprintf(b, sizeof b, "%s/g2.txt", dir);
    snprintf(out, sizeof out, "%s/text_gpt2", dir);
    tu_mkdir(out);
    write_text(a, "hello world\n");
    write_text(b, "hello");
    const char *in[2] = {a, b};
    data_tokenizer *t = tiny();
    data_convert_stats st;
    if (data_convert_text(in, 2, t, 0.0, out, NULL, NULL, &st, err, sizeof err))
        fail_msg("%s", err);
    snprintf(train, sizeof train, "%s/train.h5", out);
    snprintf(val, sizeof val, "%s/val.h5", out);
    int32_t *x;
    int32_t want[] = {HELLO, SP_WOR, 'l', 'd', '\n', EOT, HELLO};
    assert_int_equal(read_all(train, &x), 7);
    assert_memory_equal(x, want, sizeof want);
    free(x);
    assert_int_equal(access(val, F_OK), -1);   /* fraction 0: no val.h5 */
    assert_int_equal(attr_i64(train, "eot_token"), EOT);
    assert_int_equal(attr_i64(train, "vocab_size"), EOT + 1);
    data_tokenizer *back;
    if (data_tokenizer_from_dataset(train, &back, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(data_tokenizer_vocab_size(back), EOT + 1);
    data_tokenizer_free(back);

    /* 9 MiB of varied lines: read in blocks, the ids equal encoding the text in one piece */
    size_t len = 9u << 20;
    char *s = malloc(len);
    static const char *pieces[] = {"hello", " world", "  aaaa", "\n", "\n\n", " he", "'s",
                                   " 42", "!", "\t", "  \n", "\xff", "<|endoftext|>", "Q"};
    size_t pos = 0;
    while (pos < len - 16) {
        const char *w = pieces[next_rand() % 14];
        memcpy(s + pos, w, strlen(w));
        pos += strlen(w);
    }
    len = pos;
    FILE *f = fopen(a, "wb");
    fwrite(s, 1, len, f);
    fclose(f);
    const char *one[1] = {a};
    progress_calls = 0;
    if (data_convert_text(one, 1, t, 0.1, out, count_progress, NULL, &st, err, sizeof err))
        fail_msg("%s", err);
    assert_true(progress_calls >= 2);
    int32_t *ids;
    size_t n = encode(t, s, len, &ids);
    int32_t *tr, *va;
    int64_t nt = read_all(train, &tr), nv = read_all(val, &va);
    assert_int_equal((int64_t)n, nt + nv);
    assert_int_equal(nv, (int64_t)(0.1 * (double)n));
    assert_memory_equal(tr, ids, (size_t)nt * sizeof *ids);
    assert_memory_equal(va, ids + nt, (size_t)nv * sizeof *ids);
    free(tr);
    free(va);
    free(ids);
    free(s);
    data_tokenizer_free(t);
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "tokenizer");
    snprintf(vocab_dir, sizeof vocab_dir, "%s/tiny_vocab", dir);
    write_tiny_vocab(vocab_dir);
    snprintf(enc_path, sizeof enc_path, "%s/encoder.json", vocab_dir);
    snprintf(bpe_path, sizeof bpe_path, "%s/vocab.bpe", vocab_dir);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_round_trip),   cmocka_unit_test(test_gpt2_merges),
        cmocka_unit_test(test_gpt2_invalid_utf8),  cmocka_unit_test(test_gpt2_errors),
        cmocka_unit_test(test_store_and_load),     cmocka_unit_test(test_threads),
        cmocka_unit_test(test_convert_text_bytes), cmocka_unit_test(test_convert_text_gpt2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
