/* cmd_interop: `harness convert weights` and `harness export` - the command lines of GPT-2
 * import and export (trainer/interop does the work). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interop.h"

static const char *const usage_convert_weights =
    "usage: harness convert weights --from hf DIR --out CKPT.h5\n"
    "       harness convert weights --from llmc FILE --out CKPT.h5\n"
    "\n"
    "Imports GPT-2 weights into a harness checkpoint of parameters only (no optimizer state,\n"
    "step 0) whose config is the matching model.gpt.  Start a run from it with\n"
    "--set model.init_from=CKPT.h5 (and the same model.gpt keys, which the import prints).\n"
    "  --from hf DIR     a HuggingFace GPT-2 directory: DIR/config.json and DIR/model.safetensors\n"
    "                    (GPT2LMHeadModel or GPT2Model names; F32, F16 or BF16)\n"
    "  --from llmc FILE  llm.c's model file (gpt2_124M.bin: magic 20240326, version 3 fp32 or\n"
    "                    5 bf16)\n";

static const char *const usage_export =
    "usage: harness export --checkpoint CKPT --format hf --out DIR [--vocab-size N]\n"
    "\n"
    "Writes DIR/model.safetensors and DIR/config.json from a GPT checkpoint (model.gpt), which\n"
    "transformers' GPT2LMHeadModel.from_pretrained(DIR) loads as they are: Conv1D weights\n"
    "[in, out], the vocabulary's padding rows dropped, a tied head as tie_word_embeddings.\n"
    "  --vocab-size N    the vocabulary before padding, for checkpoints that do not record it\n"
    "                    (default: the checkpoint's, else its data.train's)\n";

void cmd_export_usage(FILE *out) { fputs(usage_export, out); }

int cmd_convert_weights(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { fputs(usage_convert_weights, stdout); return 0; }
    const char *from = NULL, *src = NULL, *out = NULL;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--from") && v && i + 2 < argc) { from = v; src = argv[i + 2]; i += 2; }
        else if (!strcmp(a, "--out") && v) { out = v; i++; }
        else {
            fprintf(stderr, "harness convert weights: unexpected argument '%s'\n%s", a,
                    usage_convert_weights);
            return 1;
        }
    }
    const char *problem = !from ? "--from hf DIR or --from llmc FILE is required"
                          : strcmp(from, "hf") && strcmp(from, "llmc") ? "--from must be hf or llmc"
                          : !out ? "--out CKPT.h5 is required" : NULL;
    if (problem) {
        fprintf(stderr, "harness convert weights: %s\n%s", problem, usage_convert_weights);
        return 1;
    }
    char err[2048], info[512];
    int rc = !strcmp(from, "hf") ? interop_import_hf(src, out, info, sizeof info, err, sizeof err)
                                 : interop_import_llmc(src, out, info, sizeof info, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "harness convert weights: %s\n", err);
        return 1;
    }
    printf("%s: %s\n", out, info);
    return 0;
}

int cmd_export(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { fputs(usage_export, stdout); return 0; }
    const char *ckpt = NULL, *format = NULL, *out = NULL;
    long long vocab = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!v) a = NULL;
        else if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--format")) format = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--vocab-size") && (vocab = strtoll(v, &end, 10)) > 0 && !*end) {}
        else a = NULL;
        if (!a) {
            fprintf(stderr, "harness export: unexpected argument or bad value '%s'\n%s", argv[i],
                    usage_export);
            return 1;
        }
        i++;
    }
    const char *problem = !ckpt ? "--checkpoint CKPT is required"
                          : !format || strcmp(format, "hf") ? "--format hf is required (the "
                                                              "only format)"
                          : !out ? "--out DIR is required" : NULL;
    if (problem) {
        fprintf(stderr, "harness export: %s\n%s", problem, usage_export);
        return 1;
    }
    char err[2048], info[512];
    if (interop_export_hf(ckpt, out, vocab, info, sizeof info, err, sizeof err) != 0) {
        fprintf(stderr, "harness export: %s\n", err);
        return 1;
    }
    printf("%s: %s\n", out, info);
    return 0;
}
