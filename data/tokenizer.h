/* tokenizer: text <-> token ids for language-model datasets (part of the data library).
 *
 * Two kinds:
 *   bytes  the UTF-8 bytes themselves, vocabulary 256, no file needed; any byte string
 *          (invalid UTF-8 included) round-trips.
 *   gpt2   GPT-2's byte-level BPE: the pre-tokenising regular expression (PCRE2, Unicode
 *          classes), bytes mapped to printable code points, merges ranked by vocab.bpe, ids
 *          from encoder.json; "<|endoftext|>" is a special token (its id is eot).  Any
 *          vocabulary in that file format loads (not only the original 50257).
 *
 * A token dataset stores its tokenizer (attributes tokenizer and eot_token, the gpt2 files'
 * bytes under /tokenizer/encoder.json and /tokenizer/vocab.bpe as uint8 datasets), so a file
 * decodes without any other file: data_tokenizer_from_dataset.
 *
 * Errors are returned with a message naming the file; nothing here prints or exits.  A
 * tokenizer is immutable after loading and may be used from several threads. */
#ifndef HARNESS_DATA_TOKENIZER_H
#define HARNESS_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct data_tokenizer data_tokenizer;

int data_tokenizer_bytes(data_tokenizer **out, char *err, size_t errlen);
/* GPT-2 format from the two files (vocab_dir/encoder.json and vocab_dir/vocab.bpe). */
int data_tokenizer_gpt2(const char *encoder_json, const char *vocab_bpe, data_tokenizer **out,
                        char *err, size_t errlen);
/* The tokenizer a token dataset (or a checkpoint that carries one) names and stores. */
int data_tokenizer_from_dataset(const char *h5_path, data_tokenizer **out, char *err,
                                size_t errlen);
void data_tokenizer_free(data_tokenizer *t);

const char *data_tokenizer_name(const data_tokenizer *t);   /* "bytes" or "gpt2" */
int64_t data_tokenizer_vocab_size(const data_tokenizer *t);
int64_t data_tokenizer_eot(const data_tokenizer *t);         /* -1 when it has none */

/* Appends the ids of text[0, len) to *ids (realloc'd; *n ids, *cap allocated).  Text that
 * contains the special token "<|endoftext|>" literally gets the eot id there (gpt2).
 * 0 or -1 (out of memory). */
int data_tokenizer_encode(const data_tokenizer *t, const char *text, size_t len, int32_t **ids,
                          size_t *n, size_t *cap, char *err, size_t errlen);
/* The bytes of one token (not NUL-terminated; *len set), or NULL for an id outside the
 * vocabulary.  Decoding a sequence is the concatenation of its tokens' bytes. */
const char *data_tokenizer_token_bytes(const data_tokenizer *t, int32_t id, size_t *len);

/* Writes the tokenizer into an open HDF5 file (hid_t passed as int64_t so that this header
 * needs no HDF5): attributes tokenizer, eot_token and the /tokenizer group. */
int data_tokenizer_store(const data_tokenizer *t, int64_t h5_file, char *err, size_t errlen);

#endif
