/* cuda_cudnn.cu: cuDNN, loaded by the first convolution that needs it (dlopen of
 * libcudnn.so.<major of the cudnn.h built against>), not linked: a program of this build that
 * never convolves - an MLP, a GPT, most GPU tests - starts on a machine without cuDNN, and only
 * a convolution fails there, with a message naming the library (issue 22).
 *
 * kcuda_dnn holds one pointer per cuDNN function the backend calls, typed from cudnn.h's own
 * declarations (decltype); the .cu files call kcuda_dnn.ConvolutionForward(...) where they
 * would call cudnnConvolutionForward(...).  Loaded once per process (pthread_once); each
 * context then creates its handle on its first convolution (kcuda_cudnn_open). */
#include "cuda_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

kcuda_cudnn_api kcuda_dnn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int loaded;
static char load_error[400];

/* the soname of the cuDNN major version the headers are from: libcudnn.so.9 for cuDNN 9 */
static void soname(char *buf, size_t len) { snprintf(buf, len, "libcudnn.so.%d", CUDNN_MAJOR); }

/* *slot = the library's `name`; 0, or -1 with load_error set */
static int bind(void *lib, const char *name, void **slot) {
    *slot = dlsym(lib, name);
    if (*slot) return 0;
    char so[32];
    soname(so, sizeof so);
    snprintf(load_error, sizeof load_error, "%s has no %s (a cuDNN older than the %d.%d this "
             "build's headers are from?)", so, name, CUDNN_MAJOR, CUDNN_MINOR);
    return -1;
}

static void load(void) {
    char so[32];
    soname(so, sizeof so);
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error, "cuDNN could not be loaded (%s): %s; the "
                 "convolutions need it (install cuDNN %d, or the nvidia-cudnn wheel, and put "
                 "its lib directory on LD_LIBRARY_PATH)", so, why ? why : "not found",
                 CUDNN_MAJOR);
        return;
    }
    kcuda_cudnn_api *d = &kcuda_dnn;
    int bad = bind(lib, "cudnnGetErrorString", (void **)&d->GetErrorString) ||
              bind(lib, "cudnnGetLastErrorString", (void **)&d->GetLastErrorString) ||
              bind(lib, "cudnnGetVersion", (void **)&d->GetVersion) ||
              bind(lib, "cudnnCreate", (void **)&d->Create) ||
              bind(lib, "cudnnDestroy", (void **)&d->Destroy) ||
              bind(lib, "cudnnSetStream", (void **)&d->SetStream) ||
              bind(lib, "cudnnCreateTensorDescriptor", (void **)&d->CreateTensorDescriptor) ||
              bind(lib, "cudnnDestroyTensorDescriptor", (void **)&d->DestroyTensorDescriptor) ||
              bind(lib, "cudnnSetTensor4dDescriptor", (void **)&d->SetTensor4dDescriptor) ||
              bind(lib, "cudnnCreateFilterDescriptor", (void **)&d->CreateFilterDescriptor) ||
              bind(lib, "cudnnDestroyFilterDescriptor", (void **)&d->DestroyFilterDescriptor) ||
              bind(lib, "cudnnSetFilter4dDescriptor", (void **)&d->SetFilter4dDescriptor) ||
              bind(lib, "cudnnCreateConvolutionDescriptor",
                   (void **)&d->CreateConvolutionDescriptor) ||
              bind(lib, "cudnnDestroyConvolutionDescriptor",
                   (void **)&d->DestroyConvolutionDescriptor) ||
              bind(lib, "cudnnSetConvolution2dDescriptor",
                   (void **)&d->SetConvolution2dDescriptor) ||
              bind(lib, "cudnnSetConvolutionGroupCount", (void **)&d->SetConvolutionGroupCount) ||
              bind(lib, "cudnnSetConvolutionMathType", (void **)&d->SetConvolutionMathType) ||
              bind(lib, "cudnnGetConvolution2dForwardOutputDim",
                   (void **)&d->GetConvolution2dForwardOutputDim) ||
              bind(lib, "cudnnGetConvolutionForwardAlgorithm_v7",
                   (void **)&d->GetConvolutionForwardAlgorithm_v7) ||
              bind(lib, "cudnnGetConvolutionBackwardDataAlgorithm_v7",
                   (void **)&d->GetConvolutionBackwardDataAlgorithm_v7) ||
              bind(lib, "cudnnGetConvolutionBackwardFilterAlgorithm_v7",
                   (void **)&d->GetConvolutionBackwardFilterAlgorithm_v7) ||
              bind(lib, "cudnnGetConvolutionForwardWorkspaceSize",
                   (void **)&d->GetConvolutionForwardWorkspaceSize) ||
              bind(lib, "cudnnGetConvolutionBackwardDataWorkspaceSize",
                   (void **)&d->GetConvolutionBackwardDataWorkspaceSize) ||
              bind(lib, "cudnnGetConvolutionBackwardFilterWorkspaceSize",
                   (void **)&d->GetConvolutionBackwardFilterWorkspaceSize) ||
              bind(lib, "cudnnConvolutionForward", (void **)&d->ConvolutionForward) ||
              bind(lib, "cudnnConvolutionBackwardData", (void **)&d->ConvolutionBackwardData) ||
              bind(lib, "cudnnConvolutionBackwardFilter", (void **)&d->ConvolutionBackwardFilter);
    /* the library stays loaded for the life of the process (its handles may outlive a
     * context's teardown order) */
    loaded = !bad;
}

int kcuda_cudnn_open(kcuda_ctx *c) {
    if (c->cudnn) return 0;
    pthread_once(&load_once, load);
    if (!loaded) {
        kcuda_fail(c, "loading cuDNN", __FILE__, __LINE__, load_error);
        return -1;
    }
    if (!KCUDNN_CALL(c, kcuda_dnn.Create(&c->cudnn))) {
        c->cudnn = NULL;
        return -1;
    }
    if (!KCUDNN_CALL(c, kcuda_dnn.SetStream(c->cudnn, c->stream))) return -1;
    return 0;
}
