/* harness: the command line.  main picks the command; each lives in its own file (cli.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kernels.h"
#include "plot.h"

static const char *const usage_main =
    "usage: harness COMMAND [ARGS]\n"
    "\n"
    "Data-parallel neural-network training: MPI ranks, HDF5 data, gradients averaged every step.\n"
    "\n"
    "commands:\n"
    "  train [CONFIG] [--set KEY=VALUE]... [--resume auto|none|CKPT] [--stop-after STEP]\n"
    "        [--trace STEPS]\n"
    "                                        train a model (run under mpirun for several ranks)\n"
    "  eval --checkpoint CKPT [--set KEY=VALUE]...\n"
    "                                        test loss and accuracy of a saved model\n"
    "  generate --checkpoint CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]\n"
    "           [--seed S] [--set KEY=VALUE]...\n"
    "                                        continue a text with a language model\n"
    "  inspect CKPT                          step, config, tensors (shapes, norms) of a checkpoint\n"
    "  plot RUN_DIR... [--out FILE.png]      loss, accuracy, lr, throughput of runs as one PNG\n"
    "  inspect FILE.h5                       a dataset: size, type; a token file decoded\n"
    "  devices [--count]                     the compute backends this build and machine offer\n"
    "  convert fashion-mnist [--src DIR] [--out DIR]\n"
    "                                        turn IDX files into HDF5 train.h5 / test.h5\n"
    "  convert text FILE... --out DIR [--tokenizer bytes|gpt2] [--vocab DIR]\n"
    "                                        tokenize text into DIR/train.h5 / val.h5\n"
    "  convert tokens --from llmc|nanogpt FILE... --out FILE.h5 [--vocab-size N]\n"
    "                                        import llm.c / nanoGPT token files\n"
    "  convert images ROOT --out DIR [--size HxW] [--val-fraction F] [--on-bad skip|fail]\n"
    "                                        image folders ROOT/CLASS/*.jpg|png into HDF5\n"
    "  convert weights --from hf DIR|llmc FILE --out CKPT.h5\n"
    "                                        import GPT-2 weights (HuggingFace, llm.c)\n"
    "  export --checkpoint CKPT --format hf --out DIR\n"
    "                                        a GPT as HuggingFace model.safetensors + config.json\n"
    "  help [COMMAND]                        this text, or a command's\n"
    "\n"
    "`harness COMMAND --help` describes each command.  harness " HARNESS_VERSION "\n";

/* OpenBLAS chooses its CPU kernels at load time, before main; when it chose slower ones than
 * this CPU can run, start again with OPENBLAS_CORETYPE set (the same process, before MPI or
 * anything else has started).  HARNESS_NO_BLAS_REEXEC=1 or an explicit OPENBLAS_CORETYPE
 * keeps the library's own choice. */
static void reexec_with_faster_blas(char **argv) {
    const char *hint = kern_blas_coretype_hint();
    if (!hint || getenv("OPENBLAS_CORETYPE") || getenv("HARNESS_NO_BLAS_REEXEC")) return;
    if (setenv("OPENBLAS_CORETYPE", hint, 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");   /* exec failed: carry on with the library's choice */
}

int main(int argc, char **argv) {
    reexec_with_faster_blas(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version")) { puts("harness " HARNESS_VERSION); return 0; }
    if (!strcmp(argv[1], "help")) {
        const char *t = argc > 2 ? argv[2] : "";
        if (!strcmp(t, "train") || !strcmp(t, "eval")) cmd_train_usage(stdout, !strcmp(t, "eval"));
        else if (!strcmp(t, "convert")) cmd_convert_usage(stdout);
        else if (!strcmp(t, "inspect")) cmd_inspect_usage(stdout);
        else if (!strcmp(t, "generate")) cmd_generate_usage(stdout);
        else if (!strcmp(t, "export")) cmd_export_usage(stdout);
        else fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc, argv, 0);
    if (!strcmp(argv[1], "eval")) return cmd_train(argc, argv, 1);
    if (!strcmp(argv[1], "inspect")) return cmd_inspect(argc, argv);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc, argv);
    if (!strcmp(argv[1], "plot")) return plot_main(argc, argv);
    if (!strcmp(argv[1], "devices")) {
        char why[512];
        int gpus = kern_cuda_device_status(why, sizeof why);
        /* a GPU the driver lists but CUDA cannot use is an error (exit 1), not "0 devices" */
        if (gpus < 0) fprintf(stderr, "harness: error: %s\n", why);
        if (argc > 2 && !strcmp(argv[2], "--count")) {
            printf("%d\n", gpus > 0 ? gpus : 0);
        } else {
            char cpu[160];
            kern_cpu_describe(cpu, sizeof cpu);
            printf("cpu: available (%s)\ncuda: %d device%s%s%s\n", cpu, gpus > 0 ? gpus : 0,
                   gpus == 1 ? "" : "s", gpus > 0 ? "" : ": ", gpus > 0 ? "" : why);
        }
        return gpus < 0 ? 1 : 0;
    }
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc, argv);
    if (!strcmp(argv[1], "export")) return cmd_export(argc, argv);
    fprintf(stderr, "harness: unknown command '%s'\n%s", argv[1], usage_main);
    return 1;
}
