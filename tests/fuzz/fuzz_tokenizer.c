/* fuzz_tokenizer: hostile bytes as GPT-2 vocabulary files and as text to encode.
 *
 * Byte 0 even: the rest is text for a fixed tiny vocabulary (all 256 bytes, a few merges,
 * <|endoftext|>) and for the bytes tokenizer.  Byte 0 odd: the rest, split at its first NUL,
 * is encoder.json and vocab.bpe; when they load, a fixed text and the bytes after the NUL are
 * encoded with them.  Invariants: every id is inside the vocabulary and the ids decode back to
 * the text exactly (the GPT-2 tokenizer takes any bytes, invalid UTF-8 included). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tokenizer.h"

static void check_round_trip(const data_tokenizer *t, const uint8_t *s, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    char err[512];
    if (data_tokenizer_encode(t, (const char *)s, len, &ids, &n, &cap, err, sizeof err)) {
        fuzz_note("  encode: %s\n", err);
        free(ids);
        return;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *b = data_tokenizer_token_bytes(t, ids[i], &l);
        FUZZ_CHECK(b != NULL, "id %d (token %zu) is not in the vocabulary", ids[i], i);
        FUZZ_CHECK(pos + l <= len && memcmp(b, s + pos, l) == 0,
                   "token %zu (id %d) does not decode to the text at byte %zu", i, ids[i], pos);
        pos += l;
    }
    FUZZ_CHECK(pos == len, "ids decode to %zu of %zu bytes", pos, len);
    free(ids);
}

/* GPT-2's printable code point for byte b, as UTF-8. */
static void byte_char(int b, char *out) {
    int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    int cp = b;
    if (!keep) {
        cp = 256;
        for (int c = 0; c < b; c++) cp += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174);
    }
    if (cp < 0x80) snprintf(out, 4, "%c", cp);
    else snprintf(out, 4, "%c%c", 0xc0 | cp >> 6, 0x80 | (cp & 0x3f));
}

static data_tokenizer *tiny_vocab(void) {
    static data_tokenizer *t;
    if (t) return t;
    const char *enc = fuzz_scratch_path("tok-enc"), *bpe = fuzz_scratch_path("tok-bpe");
    static const char *merges[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"Ġ", "t"},
                                      {"Ġt", "he"}, {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"}, {"Ċ", "Ċ"}};
    FILE *f = fopen(enc, "w");
    if (!f) abort();
    fputs("{", f);
    for (int b = 0; b < 256; b++) {
        char c[4];
        byte_char(b, c);
        fprintf(f, "%s\"%s%s\": %d", b ? ", " : "", c[0] == '"' || c[0] == '\\' ? "\\" : "", c, b);
    }
    for (int m = 0; m < 8; m++) fprintf(f, ", \"%s%s\": %d", merges[m][0], merges[m][1], 256 + m);
    fputs(", \"<|endoftext|>\": 264}", f);
    fclose(f);
    f = fopen(bpe, "w");
    if (!f) abort();
    fputs("#version: 0.2\n", f);
    for (int m = 0; m < 8; m++) fprintf(f, "%s %s\n", merges[m][0], merges[m][1]);
    fclose(f);
    char err[512];
    if (data_tokenizer_gpt2(enc, bpe, &t, err, sizeof err)) {
        fprintf(stderr, "fuzz_tokenizer: tiny vocabulary: %s\n", err);
        abort();
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    char err[1024];
    if (!(data[0] & 1)) {
        check_round_trip(tiny_vocab(), p, n);
        data_tokenizer *bytes;
        if (data_tokenizer_bytes(&bytes, err, sizeof err) == 0) {
            check_round_trip(bytes, p, n);
            data_tokenizer_free(bytes);
        }
        return 0;
    }
    const uint8_t *nul = memchr(p, 0, n);
    size_t ne = nul ? (size_t)(nul - p) : n;
    const char *enc = fuzz_scratch_path("tok-henc"), *bpe = fuzz_scratch_path("tok-hbpe");
    if (fuzz_write_file(enc, p, ne) || fuzz_write_file(bpe, p + ne + (nul != NULL), n - ne - (nul != NULL)))
        return 0;
    data_tokenizer *t = NULL;
    if (data_tokenizer_gpt2(enc, bpe, &t, err, sizeof err) != 0) {
        fuzz_note("  data_tokenizer_gpt2: %s\n", err);
        FUZZ_CHECK(t == NULL && err[0], "a failed load returned a tokenizer or no message");
        return 0;
    }
    FUZZ_CHECK(data_tokenizer_vocab_size(t) >= 256, "vocab_size %lld",
               (long long)data_tokenizer_vocab_size(t));
    static const char text[] = "Hello there, it's 2024!  \n\n<|endoftext|> caf\xc3\xa9 \xff\xfe";
    check_round_trip(t, (const uint8_t *)text, sizeof text - 1);
    check_round_trip(t, p + ne, n - ne);
    data_tokenizer_free(t);
    return 0;
}
