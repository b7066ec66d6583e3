/* gpu_versions.c: what a GPU program of this build loads, and from where - the first lines of
 * a device check (issue 22): the driver (and the CUDA version it supports), the CUDA runtime,
 * cuBLAS and cuBLASLt, cuDNN and NCCL, each with its version and the file the dynamic loader
 * picked (dladdr on one of its functions, as found by dlsym: the library's own address, not a
 * PLT stub).  Linked like harness (harness_kernels, and NCCL when the build has it), so it
 * loads what harness loads; cuDNN, which harness loads at its first convolution, is loaded
 * here by the same soname.  Runs without a GPU too (driver: none); exit 1 only when a
 * library it was linked with reports a version of another CUDA major than the runtime's, the
 * combination that fails later with obscure errors. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#ifdef HARNESS_HAVE_NCCL
#include <nccl.h>
#endif

/* the file that holds `symbol` in this process ("not loaded" when none does) */
static const char *file_of(const char *symbol, char *buf, size_t len) {
    void *p = dlsym(RTLD_DEFAULT, symbol);
    Dl_info di;
    if (!p || !dladdr(p, &di) || !di.dli_fname) return "not loaded";
    char real[PATH_MAX];
    if (realpath(di.dli_fname, real)) snprintf(buf, len, "%s -> %s", di.dli_fname, real);
    else snprintf(buf, len, "%s", di.dli_fname);
    return buf;
}

int main(void) {
    char where[2 * PATH_MAX + 8], line[256] = "";
    int drv = 0, rt = 0, bad = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    (void)cudaGetLastError();
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = '\0';
        fclose(f);
        line[strcspn(line, "\n")] = '\0';
    }
    if (drv)
        printf("driver: supports CUDA %d.%d; %s; libcuda %s\n", drv / 1000, drv % 1000 / 10,
               line[0] ? line : "no /proc/driver/nvidia/version", file_of("cuInit", where, sizeof where));
    else
        printf("driver: none (no NVIDIA driver loaded, or no GPU)\n");
    printf("CUDA runtime: %d.%d  %s\n", rt / 1000, rt % 1000 / 10,
           file_of("cudaRuntimeGetVersion", where, sizeof where));
    int maj = 0, min = 0, pat = 0;
    cublasGetProperty(MAJOR_VERSION, &maj);
    cublasGetProperty(MINOR_VERSION, &min);
    cublasGetProperty(PATCH_LEVEL, &pat);
    printf("cuBLAS: %d.%d.%d  %s\n", maj, min, pat, file_of("cublasGetProperty", where, sizeof where));
    size_t lt = cublasLtGetVersion(), lt_rt = cublasLtGetCudartVersion();
    printf("cuBLASLt: %zu (built for CUDA runtime %zu)  %s\n", lt, lt_rt,
           file_of("cublasLtGetVersion", where, sizeof where));
    /* cuDNN is not linked (kernels/cuda/cuda_cudnn.cu loads it at the first convolution):
     * loaded here the same way, by the soname of the headers' major version */
    char so[32];
    snprintf(so, sizeof so, "libcudnn.so.%d", CUDNN_MAJOR);
    void *dnn_lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    size_t dnn = 0, dnn_rt = (size_t)rt;
    if (dnn_lib) {
        size_t (*get_version)(void) = (size_t (*)(void))dlsym(dnn_lib, "cudnnGetVersion");
        size_t (*get_rt)(void) = (size_t (*)(void))dlsym(dnn_lib, "cudnnGetCudartVersion");
        Dl_info di;
        if (get_version && get_rt) {
            dnn = get_version();
            dnn_rt = get_rt();
        }
        printf("cuDNN: %zu.%zu.%zu (built for CUDA runtime %zu)  %s\n", dnn / 10000,
               dnn % 10000 / 100, dnn % 100, dnn_rt,
               get_version && dladdr((void *)get_version, &di) ? di.dli_fname : "?");
    } else {
        const char *why = dlerror();
        printf("cuDNN: not found (%s: %s) - only convolutions need it\n", so, why ? why : "?");
    }
#ifdef HARNESS_HAVE_NCCL
    int nv = 0;
    ncclGetVersion(&nv);
    printf("NCCL: %d.%d.%d  %s\n", nv / 10000, nv % 10000 / 100, nv % 100,
           file_of("ncclGetVersion", where, sizeof where));
#else
    printf("NCCL: not in this build\n");
#endif
    /* a library built for another CUDA major than the runtime loaded */
    if ((int)(lt_rt / 1000) != rt / 1000) {
        printf("FAIL: cuBLASLt was built for CUDA %zu, the runtime is %d\n", lt_rt, rt);
        bad = 1;
    }
    if ((int)(dnn_rt / 1000) != rt / 1000) {
        printf("FAIL: cuDNN was built for CUDA %zu, the runtime is %d\n", dnn_rt, rt);
        bad = 1;
    }
    if (drv && rt > drv)
        printf("note: the runtime (CUDA %d.%d) is newer than the driver supports (%d.%d): "
               "only minor-version compatibility can run it\n", rt / 1000, rt % 1000 / 10,
               drv / 1000, drv % 1000 / 10);
    return bad;
}
