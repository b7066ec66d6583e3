/* tokenizer internals shared by the files that implement tokenizer.h and the token converters
 * (not part of the public API).
 *
 *   tokenizer.c       the struct, the bytes tokenizer, dispatch, storing into / loading from
 *                     an HDF5 file
 *   tokenizer_gpt2.c  GPT-2 byte-level BPE: encoder.json + vocab.bpe parsing, PCRE2
 *                     pre-tokenising, the merge table, the per-thread word cache
 *   convert_tokens.c  the token-file writer both converters use, llm.c / nanoGPT importers
 *   convert_text.c    text -> train.h5 / val.h5 */
#ifndef HARNESS_DATA_TOKENIZER_INTERNAL_H
#define HARNESS_DATA_TOKENIZER_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "tokenizer.h"

typedef enum { TOK_BYTES = 0, TOK_GPT2 = 1 } tok_kind;

typedef struct tok_gpt2 tok_gpt2;

struct data_tokenizer {
    tok_kind kind;
    int64_t vocab_size;
    int64_t eot;              /* -1 when none */
    /* bytes of token i: blob[off[i], off[i+1]); off[i] == off[i+1] and !present[i] for ids
     * that the vocabulary skips */
    unsigned char *blob;
    size_t *off;              /* [vocab_size + 1] */
    unsigned char *present;   /* [vocab_size] */
    tok_gpt2 *gpt2;           /* TOK_GPT2 only */
    /* the files' raw bytes, kept so that a dataset can store them (TOK_GPT2 only) */
    char *encoder_json, *vocab_bpe;
    size_t encoder_json_len, vocab_bpe_len;
};

/* ---- tokenizer_gpt2.c ---- */

/* Builds a GPT-2 tokenizer from the two files' contents (copied; the names are for
 * messages). */
int tok_gpt2_from_memory(const char *enc, size_t enc_len, const char *enc_name, const char *bpe,
                         size_t bpe_len, const char *bpe_name, data_tokenizer **out, char *err,
                         size_t errlen);
void tok_gpt2_free(tok_gpt2 *g);
int tok_gpt2_encode(const data_tokenizer *t, const char *text, size_t len, int32_t **ids,
                    size_t *n, size_t *cap, char *err, size_t errlen);

/* ---- tokenizer.c ---- */

/* data_tokenizer_store without taking the module's HDF5 lock (the caller holds it). */
int tok_store_locked(const data_tokenizer *t, hid_t file, char *err, size_t errlen);
/* Appends one id to *ids (grows it). 0 or -1. */
int tok_push(int32_t **ids, size_t *n, size_t *cap, int32_t id);
/* Makes room for `more` ids. 0 or -1. */
int tok_reserve(int32_t **ids, size_t *n, size_t *cap, size_t more);

/* ---- convert_tokens.c ---- */

/* Writes one token file: /tokens [T] (uint16 when vocab_size <= 65536, else int32) filled in
 * order by tok_writer_append, attribute vocab_size, and the tokenizer (tok, when not NULL:
 * attributes and tables; else the attribute tokenizer = name when name is not NULL, and
 * eot_token when eot >= 0).  Written to a temporary name; tok_writer_finish fsyncs and renames
 * it into place, tok_writer_abort removes it.  Takes the module's HDF5 lock per call. */
typedef struct {
    const char *path;
    char *tmp;
    hid_t file, dset;
    int64_t total, written;
    int64_t vocab_size;
    int bits;                 /* 16 or 32 */
    void *buf;                /* conversion buffer */
    size_t buf_cap;
} tok_writer;

int tok_writer_open(tok_writer *w, const char *path, int64_t total, int64_t vocab_size,
                    const data_tokenizer *tok, const char *name, int64_t eot, char *err,
                    size_t errlen);
int tok_writer_append(tok_writer *w, const int32_t *ids, size_t n, char *err, size_t errlen);
int tok_writer_finish(tok_writer *w, char *err, size_t errlen);
void tok_writer_abort(tok_writer *w);

#endif
