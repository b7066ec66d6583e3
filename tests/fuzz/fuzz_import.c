/* fuzz_import: hostile bytes as other trainers' token files into data_convert_tokens.
 *
 * Input layout: byte 0 picks the format (bit 0: llm.c .bin, else nanoGPT raw uint16), bytes
 * 1-2 the vocabulary size (little-endian; 0 = the format's default, which nanoGPT lacks), byte 3
 * where to split the rest into two input files (0: one file); the rest is the file contents.
 * Invariants: a conversion that succeeds holds exactly the inputs' tokens, in order, each below
 * vocab_size; one that fails says why and leaves no output file behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "fuzz_util.h"

/* The tokens a file should contribute, told from its bytes independently of the importer:
 * -1 when the file is not a valid input. */
static long long expected_tokens(int llmc, const uint8_t *p, size_t n) {
    if (!llmc) return n % 2 || n == 0 ? -1 : (long long)(n / 2);
    if (n < 1024) return -1;
    int32_t h[3];
    memcpy(h, p, sizeof h);   /* little-endian hosts only, like the files */
    if (h[0] != 20240520 || h[1] != 1 || h[2] <= 0) return -1;
    return (size_t)h[2] * 2 == n - 1024 ? h[2] : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    int llmc = data[0] & 1;
    int64_t vocab = data[1] | data[2] << 8;
    size_t body = size - 4, split = data[3] ? body * data[3] / 256 : body;
    const uint8_t *p = data + 4;
    const char *a = fuzz_scratch_path("import-a"), *b = fuzz_scratch_path("import-b");
    const char *out = fuzz_scratch_path("import-out");
    if (fuzz_write_file(a, p, split) || fuzz_write_file(b, p + split, body - split)) return 0;
    const char *in[2] = {a, b};
    int n_in = data[3] ? 2 : 1;
    unlink(out);
    char err[1024] = "";
    data_convert_stats st;
    int rc = data_convert_tokens(llmc ? DATA_FROM_LLMC : DATA_FROM_NANOGPT, in, n_in, vocab, NULL,
                                 out, &st, err, sizeof err);
    fuzz_note("  data_convert_tokens(%s, vocab %lld, %d file%s): %s\n", llmc ? "llmc" : "nanogpt",
              (long long)vocab, n_in, n_in > 1 ? "s" : "", rc ? err : "ok");
    long long ea = expected_tokens(llmc, p, split);
    long long eb = n_in > 1 ? expected_tokens(llmc, p + split, body - split) : 0;
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0', "a failed conversion says nothing");
        FUZZ_CHECK(access(out, F_OK) != 0, "a failed conversion left %s", out);
        return 0;
    }
    FUZZ_CHECK(ea >= 0 && eb >= 0, "accepted an invalid input (%lld, %lld tokens expected)", ea, eb);
    FUZZ_CHECK(st.tokens == ea + eb, "%lld tokens, expected %lld", (long long)st.tokens, ea + eb);
    int64_t limit = vocab ? vocab : 50257;
    int32_t *got = malloc((size_t)st.tokens * sizeof *got);
    if (got == NULL) return 0;
    FUZZ_CHECK(data_read_tokens(out, 0, st.tokens, got, err, sizeof err) == 0, "read back: %s", err);
    for (int64_t i = 0; i < st.tokens; i++) {
        const uint8_t *src = i < ea ? p + (llmc ? 1024 : 0) + 2 * i
                                    : p + split + (llmc ? 1024 : 0) + 2 * (i - ea);
        int32_t want = src[0] | src[1] << 8;
        FUZZ_CHECK(got[i] == want, "token %lld is %d, the input has %d", (long long)i, got[i], want);
        FUZZ_CHECK(got[i] < limit, "token %lld = %d not below vocab_size %lld", (long long)i,
                   got[i], (long long)limit);
    }
    free(got);
    return 0;
}
