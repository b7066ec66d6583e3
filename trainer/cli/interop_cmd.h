/* interop_cmd: `harness convert weights` and `harness export` (GPT-2 weights in and out). */
#ifndef HARNESS_INTEROP_CMD_H
#define HARNESS_INTEROP_CMD_H

extern const char *const usage_convert_weights;
extern const char *const usage_export;

/* argv[1] = "convert", argv[2] = "weights" */
int cmd_convert_weights(int argc, char **argv);
/* argv[1] = "export" */
int cmd_export(int argc, char **argv);

#endif
