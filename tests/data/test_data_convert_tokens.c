/* Importers of other trainers' token files, on files written here: llm.c .bin shards (256 x
 * int32 header: magic 20240520, version 1, count; uint16 tokens) and nanoGPT's raw uint16
 * .bin; several inputs concatenated in order; the attributes written; and every bad input
 * (wrong magic, wrong version, truncated, trailing bytes, token >= vocab_size, odd byte
 * count, missing vocab_size, missing file) refused with a message naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "data_test_util.h"
#include "tokenizer.h"

static const char *dir;

static void put_le32(FILE *f, int32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    fwrite(b, 1, 4, f);
}

static void put_tokens(FILE *f, const uint16_t *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char b[2] = {(unsigned char)t[i], (unsigned char)(t[i] >> 8)};
        fwrite(b, 1, 2, f);
    }
}

/* An llm.c shard: header (magic, version, count as given) then n tokens. */
static void write_llmc(const char *path, int32_t magic, int32_t version, int32_t count,
                       const uint16_t *t, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    put_le32(f, magic);
    put_le32(f, version);
    put_le32(f, count);
    for (int i = 3; i < 256; i++) put_le32(f, 0);
    put_tokens(f, t, n);
    fclose(f);
}

static void write_raw(const char *path, const uint16_t *t, size_t n, int extra_byte) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    put_tokens(f, t, n);
    if (extra_byte) fputc(7, f);
    fclose(f);
}

static const char *in_dir(const char *name) {
    static char bufs[8][4200];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 4200, "%s/%s", dir, name);
    return b;
}

static int64_t attr_i64(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    int64_t v = -999;
    if (H5Aexists(f, name) > 0) {
        hid_t a = H5Aopen(f, name, H5P_DEFAULT);
        H5Aread(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
    }
    H5Fclose(f);
    return v;
}

static int n_tokens_and_type(const char *path, int64_t *n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    hsize_t dims = 0;
    H5Sget_simple_extent_dims(sp, &dims, NULL);
    int bits = (int)H5Tget_size(t) * 8;
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    *n = (int64_t)dims;
    return bits;
}

static void test_llmc(void **state) {
    uint16_t a[1000], b[37];
    for (int i = 0; i < 1000; i++) a[i] = (uint16_t)(i * 131 % 50257);
    for (int i = 0; i < 37; i++) b[i] = (uint16_t)(50256 - i);
    const char *pa = in_dir("shard_000.bin"), *pb = in_dir("shard_001.bin");
    write_llmc(pa, 20240520, 1, 1000, a, 1000);
    write_llmc(pb, 20240520, 1, 37, b, 37);
    const char *in[2] = {pa, pb}, *out = in_dir("llmc.h5");
    char err[1024];
    data_convert_stats st;
    if (data_convert_tokens(DATA_FROM_LLMC, in, 2, 0, NULL, out, &st, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(st.tokens, 1037);
    int64_t n;
    assert_int_equal(n_tokens_and_type(out, &n), 16);
    assert_int_equal(n, 1037);
    int32_t got[1037];
    if (data_read_tokens(out, 0, 1037, got, err, sizeof err)) fail_msg("%s", err);
    for (int i = 0; i < 1037; i++) assert_int_equal(got[i], i < 1000 ? a[i] : b[i - 1000]);
    assert_int_equal(attr_i64(out, "vocab_size"), 50257);
    assert_int_equal(attr_i64(out, "eot_token"), 50256);
    /* named gpt2, but without tables: decoding needs --vocab */
    data_tokenizer *t = NULL;
    assert_int_not_equal(data_tokenizer_from_dataset(out, &t, err, sizeof err), 0);
    assert_non_null(strstr(err, "tokenizer gpt2 but no"));
}

static void test_nanogpt(void **state) {
    uint16_t a[500], b[3] = {0, 999, 5};
    for (int i = 0; i < 500; i++) a[i] = (uint16_t)(i * 7 % 1000);
    const char *pa = in_dir("train.bin"), *pb = in_dir("val.bin");
    write_raw(pa, a, 500, 0);
    write_raw(pb, b, 3, 0);
    const char *in[2] = {pb, pa}, *out = in_dir("nanogpt.h5");
    char err[1024];
    data_convert_stats st;
    /* a tokenizer stored with the tokens (the bytes one fits a vocabulary of 1000) */
    data_tokenizer *bytes;
    assert_int_equal(data_tokenizer_bytes(&bytes, err, sizeof err), 0);
    if (data_convert_tokens(DATA_FROM_NANOGPT, in, 2, 1000, bytes, out, &st, err, sizeof err))
        fail_msg("%s", err);
    data_tokenizer_free(bytes);
    int32_t got[503];
    if (data_read_tokens(out, 0, 503, got, err, sizeof err)) fail_msg("%s", err);
    for (int i = 0; i < 503; i++) assert_int_equal(got[i], i < 3 ? b[i] : a[i - 3]);
    assert_int_equal(attr_i64(out, "vocab_size"), 1000);
    data_tokenizer *t = NULL;
    if (data_tokenizer_from_dataset(out, &t, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(data_tokenizer_name(t), "bytes");
    data_tokenizer_free(t);
    /* without a tokenizer, no attribute tokenizer */
    const char *out2 = in_dir("nanogpt_plain.h5");
    if (data_convert_tokens(DATA_FROM_NANOGPT, in, 1, 1000, NULL, out2, &st, err, sizeof err))
        fail_msg("%s", err);
    assert_int_not_equal(data_tokenizer_from_dataset(out2, &t, err, sizeof err), 0);
    assert_non_null(strstr(err, "no attribute tokenizer"));
}

static void expect_error(data_token_format from, const char *path, int64_t vocab,
                         const char *needle) {
    const char *in[2] = {in_dir("good.bin"), path}, *out = in_dir("bad_out.h5");
    char err[1024] = "";
    data_convert_stats st;
    unlink(out);
    assert_int_not_equal(data_convert_tokens(from, in, 2, vocab, NULL, out, &st, err, sizeof err),
                         0);
    if (path && !strstr(err, path)) fail_msg("error '%s' does not name %s", err, path);
    if (!strstr(err, needle)) fail_msg("error '%s' lacks '%s'", err, needle);
    assert_int_equal(access(out, F_OK), -1);   /* nothing left behind */
}

static void test_bad_input(void **state) {
    uint16_t t[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    write_llmc(in_dir("good.bin"), 20240520, 1, 10, t, 10);
    const char *p = in_dir("magic.bin");
    write_llmc(p, 20240521, 1, 10, t, 10);
    expect_error(DATA_FROM_LLMC, p, 0, "magic 20240521, expected 20240520");
    p = in_dir("version.bin");
    write_llmc(p, 20240520, 2, 10, t, 10);
    expect_error(DATA_FROM_LLMC, p, 0, "version 2, expected 1");
    p = in_dir("truncated.bin");
    write_llmc(p, 20240520, 1, 11, t, 10);
    expect_error(DATA_FROM_LLMC, p, 0, "truncated");
    p = in_dir("trailing.bin");
    write_llmc(p, 20240520, 1, 9, t, 10);
    expect_error(DATA_FROM_LLMC, p, 0, "bytes follow it");
    p = in_dir("header.bin");
    FILE *f = fopen(p, "wb");
    put_le32(f, 20240520);
    fclose(f);
    expect_error(DATA_FROM_LLMC, p, 0, "header needs 1024 bytes");
    uint16_t big[10] = {1, 2, 3, 4, 5, 50257, 7, 8, 9, 10};
    p = in_dir("bigtoken.bin");
    write_llmc(p, 20240520, 1, 10, big, 10);
    expect_error(DATA_FROM_LLMC, p, 0, "token 5 (byte offset 1034) is 50257, outside [0, "
                                       "vocab_size = 50257)");
    p = in_dir("nope.bin");
    unlink(p);
    expect_error(DATA_FROM_LLMC, p, 0, "cannot open");

    uint16_t ones[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    write_raw(in_dir("good.bin"), ones, 10, 0);
    p = in_dir("odd.bin");
    write_raw(p, t, 10, 1);
    expect_error(DATA_FROM_NANOGPT, p, 100, "odd number");
    p = in_dir("vocab.bin");
    write_raw(p, t, 10, 0);
    expect_error(DATA_FROM_NANOGPT, p, 8, "token 7 (byte offset 14) is 8, outside [0, vocab_size "
                                          "= 8)");
    expect_error(DATA_FROM_NANOGPT, NULL, 0, "vocabulary size is required");
}

int main(int argc, char **argv) {
    dir = tu_workdir(argc, argv, "convert_tokens");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llmc),
        cmocka_unit_test(test_nanogpt),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
