/* cli: the `harness` executable - main.c dispatches to one file per command:
 *   cmd_train.c    train, eval (MPI ranks; the config resolved on every rank)
 *   generate.c     generate (text from a language-model checkpoint)
 *   cmd_convert.c  convert fashion-mnist | text | tokens
 *   cmd_images.c   convert images (class folders of JPEG/PNG files)
 *   cmd_interop.c  convert weights (GPT-2 from HuggingFace or llm.c), export (to HuggingFace)
 *   cmd_inspect.c  inspect a checkpoint or a dataset
 *   cli.c          what the commands share: --help detection, config resolution
 * (plot is observe/plot.c's plot_main; devices is a line in main.c.)  Each command returns the
 * process's exit status. */
#ifndef HARNESS_CLI_H
#define HARNESS_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

#define HARNESS_VERSION "0.1.0"

/* 1 when --help or -h follows the command (argv[2] onwards). */
int cli_wants_help(int argc, char **argv);

/* The config a command runs with: the defaults, then config_file (when not NULL), then the
 * config stored in checkpoint (when not NULL: the model is the checkpoint's), then each
 * "KEY=VALUE" of sets in order, then config_validate.  0, or -1 with err naming the file or
 * key. */
int cli_resolve_config(config *cfg, const char *config_file, const char *checkpoint,
                       const char *const *sets, int n_sets, char *err, size_t errlen);

/* train (is_eval 0) and eval (1). */
int cmd_train(int argc, char **argv, int is_eval);
void cmd_train_usage(FILE *out, int is_eval);

int cmd_generate(int argc, char **argv);
void cmd_generate_usage(FILE *out);

int cmd_convert(int argc, char **argv);
void cmd_convert_usage(FILE *out);

/* argv[2] = "images" / "weights" (called by cmd_convert) */
int cmd_convert_images(int argc, char **argv);
int cmd_convert_weights(int argc, char **argv);

int cmd_export(int argc, char **argv);
void cmd_export_usage(FILE *out);

int cmd_inspect(int argc, char **argv);
void cmd_inspect_usage(FILE *out);

#endif
