/* tokenize_tool VOCAB_DIR TEXT_FILE IDS_FILE: encodes TEXT_FILE with the GPT-2-format
 * vocabulary in VOCAB_DIR (encoder.json, vocab.bpe), checks that the ids decode to the file's
 * bytes, and writes the ids to IDS_FILE, one per line (for tokenizer_oracle.py, which compares
 * them with a reference implementation).  Exit 0, or 1 with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tokenize_tool VOCAB_DIR TEXT_FILE IDS_FILE\n");
        return 2;
    }
    char enc[4200], bpe[4200], err[1024];
    snprintf(enc, sizeof enc, "%s/encoder.json", argv[1]);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", argv[1]);
    data_tokenizer *t;
    if (data_tokenizer_gpt2(enc, bpe, &t, err, sizeof err)) {
        fprintf(stderr, "tokenize_tool: %s\n", err);
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }
    size_t cap = 1 << 20, len = 0, got;
    char *s = malloc(cap);
    while ((got = fread(s + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) s = realloc(s, cap *= 2);
    }
    fclose(f);
    int32_t *ids = NULL;
    size_t n = 0, icap = 0;
    if (data_tokenizer_encode(t, s, len, &ids, &n, &icap, err, sizeof err)) {
        fprintf(stderr, "tokenize_tool: %s\n", err);
        return 1;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *b = data_tokenizer_token_bytes(t, ids[i], &l);
        if (b == NULL || pos + l > len || memcmp(b, s + pos, l)) {
            fprintf(stderr, "tokenize_tool: %s: id %zu (%d) does not decode to the text at byte "
                    "%zu\n", argv[2], i, ids[i], pos);
            return 1;
        }
        pos += l;
    }
    if (pos != len) {
        fprintf(stderr, "tokenize_tool: %s: the ids decode to %zu of %zu bytes\n", argv[2], pos,
                len);
        return 1;
    }
    FILE *o = fopen(argv[3], "w");
    if (o == NULL) {
        perror(argv[3]);
        return 1;
    }
    for (size_t i = 0; i < n; i++) fprintf(o, "%d\n", ids[i]);
    fclose(o);
    free(ids);
    free(s);
    data_tokenizer_free(t);
    return 0;
}
