/* generate: `harness generate` - sample text from a language-model checkpoint. */
#ifndef HARNESS_GENERATE_H
#define HARNESS_GENERATE_H

#include <stdint.h>

#include "config.h"

typedef struct {
    const char *checkpoint;   /* the checkpoint file */
    const char *prompt;       /* text to continue (NULL or "": a new document) */
    int64_t tokens;           /* tokens to generate */
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = the whole vocabulary */
    uint64_t seed;
} generate_options;

/* cfg: the config stored in the checkpoint (with any --set applied).  Prints the prompt and
 * its continuation on stdout; errors on stderr.  Returns the exit code. */
int generate_run(const config *cfg, const generate_options *g);

#endif
