/* plot: `harness plot RUN_DIR... [--out FILE.png]` - training curves of one or more runs as
 * one PNG, drawn with cairo.
 *
 * Four panels against the optimizer step: loss (training solid, evaluation dashed with dots),
 * accuracy (language models: perplexity), learning rate, and throughput (samples/s or
 * tokens/s); the step axis also reads in samples (tokens) when the runs share a batch size.
 * Each run has its own colour, named in the legend by its directory.  metrics.jsonl is read
 * as it is: a run still going (its last line may be half written) and a resumed run (every run
 * of a job appends; records past the step a run resumed from are replaced by the resumed
 * run's) both plot. */
#ifndef HARNESS_PLOT_H
#define HARNESS_PLOT_H

#include <stddef.h>

#define PLOT_DEFAULT_WIDTH 1600
#define PLOT_DEFAULT_HEIGHT 1000

/* Draws the runs into png.  geometry_path (NULL: none) receives one JSON line per panel: its
 * pixel box, its data ranges and each run's colour, so that tests can find the curves.
 * 0, or -1 with err naming the file and what is wrong with it. */
int plot_runs(const char *const *run_dirs, int n_runs, const char *png, int width, int height,
              const char *geometry_path, char *err, size_t errlen);

/* The `plot` subcommand (argv[1] == "plot"); returns the exit code. */
int plot_main(int argc, char **argv);

#endif
