/* cpu_conv_dnnl.c: 2-D convolution through oneDNN's own convolution primitives, for the
 * shapes where they beat im2col + GEMM (cpu_conv.c); every other shape stays with im2col.
 *
 * oneDNN's fast convolutions work on blocked layouts (nChw16c activations, OIhw16i16o
 * weights: 16 channels per AVX-512 register), chosen by the primitive (format "any").  The
 * caller's tensors stay NCHW / KCRS (G x Kg x Cg x R x S with groups); each call reorders
 * them into the primitive's layout and back, in the caller's workspace:
 *   forward    in -> src',  w -> w',  conv(src', w', b) -> out', out' -> out
 *   backward   dout -> dout',  in -> src',  conv_bwd_weights -> dw', db'  (overwritten by
 *              oneDNN, then ADDED to dw, db: the accumulate contract);
 *              w -> w'',  conv_bwd_data(dout', w'') -> din', din' -> din (overwritten)
 * (a reorder is skipped where the primitive's layout is the caller's).  oneDNN's own
 * scratchpad is in the workspace too (scratchpad mode "user"), so no call allocates.
 *
 * A batch runs in chunks of at most CHUNK images: the workspace then does not grow with the
 * batch, and the blocked tensors of one chunk stay in cache between reorder and convolution.
 * The primitives and reorders of a shape (geometry and chunk size) are created once, when
 * kcpu_conv2d_workspace asks for the shape (at start-up) or at its first call, and kept in the
 * context: creating them costs 0.1-2 ms.  kcpu_conv2d_workspace also records the bytes it
 * promised for the geometry; a chunk whose kept set would need more than was promised (a
 * batch size nobody asked about) runs with im2col, whose workspace every answer covers.
 *
 * The rule (`wanted` below) comes from tests/perf/bench_conv.sh; a shape also needs a JIT
 * (CPU-feature dispatched) kernel for all three passes, else oneDNN's own im2col/reference
 * fallback would run it (dilated convolutions, for one, have none in oneDNN 2.6 and stay with
 * im2col).  All three passes of a shape take the same path.  Results repeat bit for bit for
 * a given shape and thread count (test_kernels_cnn; the trainer's resume on launch/cnn.yaml). */
#include "cpu_internal.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    CHUNK = 8,           /* images per oneDNN call (8, 16, 32, 64: 8 was as fast or faster) */
    MAX_SETS = 128,      /* kept shapes (geometry x chunk size): a few per conv layer */
    MAX_PROMISES = 64,   /* geometries the workspace was asked about */
};

/* A reorder between two layouts of one tensor; prim NULL: same layout, nothing to do. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t from, to;
} conv_reorder;

/* One tensor as a primitive sees it: its layout, a memory object whose data handle is
 * pointed at each call's buffer, and where it lives in the workspace when it is not the
 * caller's own buffer (offset, bytes). */
typedef struct {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;
    size_t off, bytes;
    int own;   /* 1: a workspace copy (layout differs from the caller's); 0: caller's buffer */
} conv_tensor;

/* Everything kept for one shape: `key` is the geometry with B = the chunk's images. */
typedef struct {
    kern_conv_shape key;
    int ok;   /* 0: oneDNN has no JIT kernel for a pass (or creation failed): use im2col */
    dnnl_primitive_t fwd, bwd_data, bwd_weights;
    dnnl_memory_t bias;   /* b[K] (or zero_bias) as the forward pass reads it */
    /* forward */
    conv_tensor f_src, f_wei, f_dst, f_scratch;
    conv_reorder f_src_in, f_wei_in, f_dst_out;
    /* backward weights */
    conv_tensor w_src, w_ddst, w_dwei, w_dwei_plain, w_dbias, w_scratch;
    conv_reorder w_src_in, w_ddst_in, w_dwei_out;
    /* backward data */
    conv_tensor d_ddst, d_wei, d_dsrc, d_scratch;
    conv_reorder d_ddst_in, d_wei_in, d_dsrc_out;
    int d_ddst_shared;   /* backward data reads backward weights' dout' (same layout) */
    float *zero_bias;    /* [K] zeros: forward without a bias */
    size_t workspace;    /* bytes: forward's and backward's layouts, the larger */
} conv_set;

typedef struct {
    kern_conv_shape geometry;   /* B = 0 */
    size_t promised;
} conv_promise;

struct kcpu_conv_lib {
    kern_cpu_conv mode;
    int bf16;   /* the context's GEMMs take bf16 (AMX): convolutions stay with them */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    conv_set sets[MAX_SETS];
    int n_sets;
    conv_promise promises[MAX_PROMISES];
    int n_promises;
};

int kcpu_conv_lib_create(kcpu_conv_lib **out, kern_cpu_conv mode, int bf16, char *err,
                         size_t errlen) {
    *out = NULL;
    kcpu_conv_lib *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "kernels: out of memory creating the oneDNN convolution state");
        return -1;
    }
    l->mode = mode;
    l->bf16 = bf16;
    if (dnnl_engine_create(&l->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&l->stream, l->engine, dnnl_stream_default_flags) != dnnl_success) {
        snprintf(err, errlen, "kernels: oneDNN could not create its CPU engine (convolutions)");
        kcpu_conv_lib_destroy(l);
        return -1;
    }
    *out = l;
    return 0;
}

static void reorder_destroy(conv_reorder *r) {
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->from) dnnl_memory_destroy(r->from);
    if (r->to) dnnl_memory_destroy(r->to);
}

static void tensor_destroy(conv_tensor *t) {
    if (t->mem) dnnl_memory_destroy(t->mem);
}

static void set_destroy(conv_set *e) {
    dnnl_primitive_t prims[] = {e->fwd, e->bwd_data, e->bwd_weights};
    for (int i = 0; i < 3; i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    if (e->bias) dnnl_memory_destroy(e->bias);
    conv_tensor *ts[] = {&e->f_src,  &e->f_wei,        &e->f_dst,   &e->f_scratch,
                         &e->w_src,  &e->w_ddst,       &e->w_dwei,  &e->w_dwei_plain,
                         &e->w_dbias, &e->w_scratch,   &e->d_ddst,  &e->d_wei,
                         &e->d_dsrc, &e->d_scratch};
    for (int i = 0; i < 14; i++) tensor_destroy(ts[i]);
    conv_reorder *rs[] = {&e->f_src_in,  &e->f_wei_in,  &e->f_dst_out,
                          &e->w_src_in,  &e->w_ddst_in, &e->w_dwei_out,
                          &e->d_ddst_in, &e->d_wei_in,  &e->d_dsrc_out};
    for (int i = 0; i < 9; i++) reorder_destroy(rs[i]);
    free(e->zero_bias);
}

void kcpu_conv_lib_destroy(kcpu_conv_lib *l) {
    if (!l) return;
    for (int i = 0; i < l->n_sets; i++) set_destroy(&l->sets[i]);
    if (l->stream) dnnl_stream_destroy(l->stream);
    if (l->engine) dnnl_engine_destroy(l->engine);
    free(l);
}

/* ---- creating a shape's set ---- */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int memory_new(dnnl_memory_t *m, const dnnl_memory_desc_t *md, dnnl_engine_t engine) {
    return dnnl_memory_create(m, md, engine, DNNL_MEMORY_NONE) == dnnl_success ? 0 : -1;
}

/* The tensor (`what`, `index`) of a primitive: its layout; a workspace slot at *cursor when the layout
 * differs from the caller's (`user`, NULL for tensors the caller never holds: scratchpad). */
static int tensor_init(conv_tensor *t, const_dnnl_primitive_desc_t pd, dnnl_query_t what,
                       int index, const dnnl_memory_desc_t *user, int force_own,
                       dnnl_engine_t engine, size_t *cursor) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, index);
    if (!md) return -1;
    t->md = *md;
    t->bytes = dnnl_memory_desc_get_size(md);
    t->own = force_own || !user || !dnnl_memory_desc_equal(md, user);
    if (t->own && t->bytes) {
        t->off = *cursor;
        *cursor += align64(t->bytes);
    }
    return memory_new(&t->mem, md, engine);
}

/* A reorder from `from` to `to` where their layouts differ (user scratchpad: none is
 * expected for these plain copies; one that wants any is refused). */
static int reorder_init(conv_reorder *r, kcpu_conv_lib *l, const dnnl_memory_desc_t *from,
                        const dnnl_memory_desc_t *to) {
    if (dnnl_memory_desc_equal(from, to)) return 0;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ==
                 dnnl_success &&
             dnnl_reorder_primitive_desc_create(&pd, from, l->engine, to, l->engine, attr) ==
                 dnnl_success;
    if (ok) {
        const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        ok = (!sp || dnnl_memory_desc_get_size(sp) == 0) &&
             dnnl_primitive_create(&r->prim, pd) == dnnl_success &&
             memory_new(&r->from, from, l->engine) == 0 && memory_new(&r->to, to, l->engine) == 0;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok ? 0 : -1;
}

/* 1 when oneDNN picked a JIT kernel (dispatched on the CPU's features) for this pass */
static int is_jit(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
        !impl)
        return 0;
    return strncmp(impl, "jit", 3) == 0;
}

/* A convolution pass's primitive from its operation descriptor; *pd kept for the caller to
 * query layouts (destroyed by the caller). */
static int conv_pd_create(dnnl_primitive_desc_t *pd, const void *desc, kcpu_conv_lib *l,
                          const_dnnl_primitive_desc_t hint) {
    dnnl_primitive_attr_t attr = NULL;
    int ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ==
                 dnnl_success &&
             dnnl_primitive_desc_create(pd, desc, attr, l->engine, hint) == dnnl_success;
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok && is_jit(*pd) ? 0 : -1;
}

/* Build the set for shape s (s->B = the chunk's images); e->ok says whether it is usable. */
static void set_create(conv_set *e, kcpu_conv_lib *l, const kern_conv_shape *s) {
    memset(e, 0, sizeof(*e));
    e->key = *s;
    const int G = s->groups, P = kern_conv_out_h(s), Q = kern_conv_out_w(s);
    const dnnl_engine_t eng = l->engine;
    dnnl_memory_desc_t src_u, dst_u, wei_u, bias_u, src_a, dst_a, wei_a, bias_a;
    dnnl_dims_t src_d = {s->B, s->C, s->H, s->W}, dst_d = {s->B, s->K, P, Q};
    /* w[K, C/G, R, S] is G x [K/G, C/G, R, S] (goihw); one group: oihw */
    dnnl_dims_t wei_g = {G, s->K / G, s->C / G, s->R, s->S}, wei_1 = {s->K, s->C, s->R, s->S};
    dnnl_dims_t bias_d = {s->K};
    dnnl_dims_t strides = {s->stride_h, s->stride_w};
    dnnl_dims_t dilates = {s->dil_h - 1, s->dil_w - 1};   /* oneDNN: 0 = no dilation */
    /* PyTorch pads both sides alike; oneDNN's consistency check divides with floor too */
    dnnl_dims_t pad = {s->pad_h, s->pad_w};
    const int64_t *wd = G > 1 ? wei_g : wei_1;
    int wn = G > 1 ? 5 : 4;
    dnnl_format_tag_t wtag = G > 1 ? dnnl_goihw : dnnl_oihw;
    if (dnnl_memory_desc_init_by_tag(&src_u, 4, src_d, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&dst_u, 4, dst_d, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&wei_u, wn, wd, dnnl_f32, wtag) ||
        dnnl_memory_desc_init_by_tag(&bias_u, 1, bias_d, dnnl_f32, dnnl_x) ||
        dnnl_memory_desc_init_by_tag(&src_a, 4, src_d, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dst_a, 4, dst_d, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wei_a, wn, wd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&bias_a, 1, bias_d, dnnl_f32, dnnl_format_tag_any))
        return;

    dnnl_convolution_desc_t fd, dd, wdsc;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    int ok =
        dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                   dnnl_convolution_direct, &src_a, &wei_a,
                                                   &bias_a, &dst_a, strides, dilates, pad,
                                                   pad) == dnnl_success &&
        conv_pd_create(&fpd, &fd, l, NULL) == 0 &&
        dnnl_dilated_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &src_a,
                                                         &wei_a, &dst_a, strides, dilates, pad,
                                                         pad) == dnnl_success &&
        conv_pd_create(&dpd, &dd, l, fpd) == 0 &&
        dnnl_dilated_convolution_backward_weights_desc_init(&wdsc, dnnl_convolution_direct,
                                                            &src_a, &wei_a, &bias_a, &dst_a,
                                                            strides, dilates, pad,
                                                            pad) == dnnl_success &&
        conv_pd_create(&wpd, &wdsc, l, fpd) == 0;

    /* forward: [src' | w' | out' | scratchpad] */
    size_t fcur = 0;
    ok = ok && dnnl_primitive_create(&e->fwd, fpd) == dnnl_success &&
         tensor_init(&e->f_src, fpd, dnnl_query_src_md, 0, &src_u, 0, eng, &fcur) == 0 &&
         tensor_init(&e->f_wei, fpd, dnnl_query_weights_md, 0, &wei_u, 0, eng, &fcur) == 0 &&
         tensor_init(&e->f_dst, fpd, dnnl_query_dst_md, 0, &dst_u, 0, eng, &fcur) == 0 &&
         tensor_init(&e->f_scratch, fpd, dnnl_query_scratchpad_md, 0, NULL, 0, eng, &fcur) == 0;
    /* the bias as oneDNN wants it: a plain vector of K (checked, else no set) */
    ok = ok && dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 1),
                                      &bias_u);
    /* backward: [dout' | union of (weights: src' | dw' | dw plain | db | scratchpad) and
     * (data: dout'' | w'' | din' | scratchpad)] - the weights pass runs first and is done
     * with its part before the data pass starts, except dout' that both may read */
    size_t bcur = 0;
    ok = ok && dnnl_primitive_create(&e->bwd_weights, wpd) == dnnl_success &&
         tensor_init(&e->w_ddst, wpd, dnnl_query_diff_dst_md, 0, &dst_u, 0, eng, &bcur) == 0;
    size_t wcur = bcur, dcur = bcur;
    ok = ok && tensor_init(&e->w_src, wpd, dnnl_query_src_md, 0, &src_u, 0, eng, &wcur) == 0 &&
         tensor_init(&e->w_dwei, wpd, dnnl_query_diff_weights_md, 0, &wei_u, 1, eng, &wcur) == 0 &&
         tensor_init(&e->w_dbias, wpd, dnnl_query_diff_weights_md, 1, &bias_u, 1, eng, &wcur) == 0 &&
         tensor_init(&e->w_scratch, wpd, dnnl_query_scratchpad_md, 0, NULL, 0, eng, &wcur) == 0;
    if (ok) {
        /* dw' in oneDNN's layout, reordered to a plain copy before it is added to dw */
        e->w_dwei_plain.md = wei_u;
        e->w_dwei_plain.bytes = dnnl_memory_desc_get_size(&wei_u);
        e->w_dwei_plain.own = !dnnl_memory_desc_equal(&e->w_dwei.md, &wei_u);
        if (e->w_dwei_plain.own) {
            e->w_dwei_plain.off = wcur;
            wcur += align64(e->w_dwei_plain.bytes);
        }
        ok = dnnl_memory_desc_equal(&e->w_dbias.md, &bias_u);
    }
    ok = ok && dnnl_primitive_create(&e->bwd_data, dpd) == dnnl_success;
    if (ok) {
        const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_dst_md, 0);
        e->d_ddst_shared = dmd && dnnl_memory_desc_equal(dmd, &e->w_ddst.md);
        ok = tensor_init(&e->d_ddst, dpd, dnnl_query_diff_dst_md, 0, &dst_u, 0, eng, &dcur) == 0;
        if (ok && e->d_ddst_shared && e->d_ddst.own) {   /* no second copy: read w_ddst's */
            dcur -= align64(e->d_ddst.bytes);
            e->d_ddst.off = e->w_ddst.off;
        }
    }
    ok = ok && tensor_init(&e->d_wei, dpd, dnnl_query_weights_md, 0, &wei_u, 0, eng, &dcur) == 0 &&
         tensor_init(&e->d_dsrc, dpd, dnnl_query_diff_src_md, 0, &src_u, 0, eng, &dcur) == 0 &&
         tensor_init(&e->d_scratch, dpd, dnnl_query_scratchpad_md, 0, NULL, 0, eng, &dcur) == 0;

    /* the caller's tensors and the reorders between them and the primitives' layouts */
    ok = ok && memory_new(&e->bias, &bias_u, eng) == 0 &&
         reorder_init(&e->f_src_in, l, &src_u, &e->f_src.md) == 0 &&
         reorder_init(&e->f_wei_in, l, &wei_u, &e->f_wei.md) == 0 &&
         reorder_init(&e->f_dst_out, l, &e->f_dst.md, &dst_u) == 0 &&
         reorder_init(&e->w_src_in, l, &src_u, &e->w_src.md) == 0 &&
         reorder_init(&e->w_ddst_in, l, &dst_u, &e->w_ddst.md) == 0 &&
         reorder_init(&e->w_dwei_out, l, &e->w_dwei.md, &wei_u) == 0 &&
         reorder_init(&e->d_ddst_in, l, &dst_u, &e->d_ddst.md) == 0 &&
         reorder_init(&e->d_wei_in, l, &wei_u, &e->d_wei.md) == 0 &&
         reorder_init(&e->d_dsrc_out, l, &e->d_dsrc.md, &src_u) == 0 &&
         (e->zero_bias = calloc((size_t)s->K, sizeof(float))) != NULL;
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    size_t bwd = wcur > dcur ? wcur : dcur;
    e->workspace = fcur > bwd ? fcur : bwd;
    e->ok = ok;
}

/* The kept set for shape s with n images, created on first use; NULL when the cache is full
 * (the caller then uses im2col). */
static conv_set *find_set(kcpu_conv_lib *l, const kern_conv_shape *s, int n) {
    kern_conv_shape key = *s;
    key.B = n;
    for (int i = 0; i < l->n_sets; i++)
        if (memcmp(&l->sets[i].key, &key, sizeof key) == 0) return &l->sets[i];
    if (l->n_sets == MAX_SETS) return NULL;
    conv_set *e = &l->sets[l->n_sets++];
    set_create(e, l, &key);
    return e;
}

/* ---- the rule ---- */

/* Whether oneDNN should run this shape (before asking it whether it has a JIT kernel).
 * Measured with tests/perf/bench_conv.sh (1 thread, AVX-512): see the commit message. */
static int wanted(const kcpu_conv_lib *l, const kern_conv_shape *s) {
    if (l->mode == KERN_CONV_IM2COL || l->bf16) return 0;
    if (s->B <= 0 || s->K <= 0 || kern_conv_out_h(s) <= 0 || kern_conv_out_w(s) <= 0) return 0;
    if (l->mode == KERN_CONV_DNNL) return 1;
    const int Cg = s->C / s->groups, Kg = s->K / s->groups;
    /* 1x1 kernels are one plain GEMM in cpu_conv.c already (oneDNN: 0.6-0.85x); blocked
     * layouts hold 16 channels per block, and padding a group's channels up to 16 loses
     * (4-12 input channels: 0.55-0.9x, the 1-3 channel first layer: 0.5-0.7x); depthwise
     * (one channel per group) has its own kernel (2.9-3x) */
    if (s->R * s->S == 1) return 0;
    if (s->groups > 1 && Cg == 1 && Kg == 1) return 1;
    return Cg % 16 == 0 && Kg % 16 == 0;
}

static conv_promise *find_promise(kcpu_conv_lib *l, const kern_conv_shape *s, int add) {
    kern_conv_shape g = *s;
    g.B = 0;
    for (int i = 0; i < l->n_promises; i++)
        if (memcmp(&l->promises[i].geometry, &g, sizeof g) == 0) return &l->promises[i];
    if (!add || l->n_promises == MAX_PROMISES) return NULL;
    conv_promise *p = &l->promises[l->n_promises++];
    p->geometry = g;
    p->promised = 0;
    return p;
}

size_t kcpu_conv_dnnl_workspace(kcpu_conv_lib *l, const kern_conv_shape *s, size_t im2col) {
    if (!l || !wanted(l, s)) return im2col;
    int n = s->B < CHUNK ? s->B : CHUNK, rest = s->B % n;
    conv_set *full = find_set(l, s, n), *part = rest ? find_set(l, s, rest) : NULL;
    size_t need = im2col;
    if (full && full->ok && full->workspace > need) need = full->workspace;
    if (part && part->ok && part->workspace > need) need = part->workspace;
    conv_promise *p = find_promise(l, s, 1);
    if (!p) return im2col;
    if (need > p->promised) p->promised = need;
    return need;
}

/* The sets for the chunks of s->B images (full: CHUNK or all, part: the rest or NULL), or -1
 * when any chunk cannot run through oneDNN within the workspace promised for the shape. */
static int route(kcpu_conv_lib *l, const kern_conv_shape *s, conv_set **full, conv_set **part) {
    if (!l || !wanted(l, s)) return -1;
    conv_promise *p = find_promise(l, s, 0);
    if (!p) return -1;
    int n = s->B < CHUNK ? s->B : CHUNK, rest = s->B % n;
    *full = find_set(l, s, n);
    *part = rest ? find_set(l, s, rest) : NULL;
    if (!*full || !(*full)->ok || (*full)->workspace > p->promised) return -1;
    if (rest && (!*part || !(*part)->ok || (*part)->workspace > p->promised)) return -1;
    return 0;
}

int kcpu_conv_dnnl_routes(kcpu_conv_lib *l, const kern_conv_shape *s) {
    conv_set *full, *part;
    return route(l, s, &full, &part) == 0;
}

/* ---- running ---- */

static void *at(void *ws, const conv_tensor *t) { return (char *)ws + t->off; }

/* The buffer a tensor lives in: the workspace copy, or the caller's own pointer. */
static void *buffer(void *ws, const conv_tensor *t, const void *user) {
    return t->own ? at(ws, t) : (void *)user;
}

static void reorder_run(kcpu_conv_lib *l, const conv_reorder *r, const void *from, void *to) {
    dnnl_memory_set_data_handle(r->from, (void *)from);
    dnnl_memory_set_data_handle(r->to, to);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}};
    dnnl_primitive_execute(r->prim, l->stream, 2, args);
}

/* t (in oneDNN's layout) from the caller's `user`; nothing when t is the caller's buffer */
static void *load(kcpu_conv_lib *l, void *ws, const conv_tensor *t, const conv_reorder *r,
                  const void *user) {
    if (!t->own) return (void *)user;
    reorder_run(l, r, user, at(ws, t));
    return at(ws, t);
}

static dnnl_memory_t bind(dnnl_memory_t m, void *p) {
    dnnl_memory_set_data_handle(m, p);
    return m;
}

static void run(kcpu_conv_lib *l, dnnl_primitive_t prim, int n, dnnl_exec_arg_t *args) {
    dnnl_primitive_execute(prim, l->stream, n, args);
    dnnl_stream_wait(l->stream);
}

/* out[n,K,P,Q] = conv(in[n,C,H,W], w) + b for one chunk; w' is reordered by the caller */
static void forward_chunk(kcpu_conv_lib *l, conv_set *e, float *out, const float *in,
                          void *wei, const float *b, void *ws) {
    void *src = load(l, ws, &e->f_src, &e->f_src_in, in);
    void *dst = buffer(ws, &e->f_dst, out);
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, bind(e->f_src.mem, src)},
        {DNNL_ARG_WEIGHTS, bind(e->f_wei.mem, wei)},
        {DNNL_ARG_BIAS, bind(e->bias, b ? (void *)b : e->zero_bias)},
        {DNNL_ARG_DST, bind(e->f_dst.mem, dst)},
        {DNNL_ARG_SCRATCHPAD, bind(e->f_scratch.mem, at(ws, &e->f_scratch))}};
    run(l, e->fwd, 5, args);
    if (e->f_dst.own) reorder_run(l, &e->f_dst_out, dst, out);
    dnnl_stream_wait(l->stream);
}

int kcpu_conv_dnnl_forward(kcpu_conv_lib *l, float *out, const float *in, const float *w,
                           const float *b, const kern_conv_shape *s, void *ws) {
    conv_set *full, *part;
    if (route(l, s, &full, &part) != 0) return -1;
    const size_t in_img = (size_t)s->C * s->H * s->W;
    const size_t out_img = (size_t)s->K * kern_conv_out_h(s) * kern_conv_out_w(s);
    conv_set *loaded = NULL;   /* the set whose w' is in the workspace */
    void *wei = NULL;
    for (int n0 = 0; n0 < s->B;) {
        conv_set *e = n0 + full->key.B <= s->B ? full : part;
        if (e != loaded) {
            wei = load(l, ws, &e->f_wei, &e->f_wei_in, w);
            loaded = e;
        }
        forward_chunk(l, e, out + (size_t)n0 * out_img, in + (size_t)n0 * in_img, wei, b, ws);
        n0 += e->key.B;
    }
    dnnl_stream_wait(l->stream);
    return 0;
}

/* dst[i] += src[i]: the gradient contract (oneDNN overwrites its outputs) */
static void add_into(float *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* dw += dw(chunk), db += db(chunk): backward weights of one chunk */
static void weights_chunk(kcpu_conv_lib *l, conv_set *e, float *dw, float *db, void *ddst,
                          const float *in, void *ws) {
    void *src = load(l, ws, &e->w_src, &e->w_src_in, in);
    void *dwei = at(ws, &e->w_dwei), *dbias = at(ws, &e->w_dbias);
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, bind(e->w_src.mem, src)},
        {DNNL_ARG_DIFF_DST, bind(e->w_ddst.mem, ddst)},
        {DNNL_ARG_DIFF_WEIGHTS, bind(e->w_dwei.mem, dwei)},
        {DNNL_ARG_DIFF_BIAS, bind(e->w_dbias.mem, dbias)},
        {DNNL_ARG_SCRATCHPAD, bind(e->w_scratch.mem, at(ws, &e->w_scratch))}};
    run(l, e->bwd_weights, 5, args);
    const float *plain = dwei;
    if (e->w_dwei_plain.own) {
        reorder_run(l, &e->w_dwei_out, dwei, at(ws, &e->w_dwei_plain));
        dnnl_stream_wait(l->stream);
        plain = at(ws, &e->w_dwei_plain);
    }
    if (dw) add_into(dw, plain, e->w_dwei_plain.bytes / sizeof(float));
    if (db) add_into(db, dbias, (size_t)e->key.K);
}

/* din[n,C,H,W] = backward data of one chunk (overwritten); w'' reordered by the caller */
static void data_chunk(kcpu_conv_lib *l, conv_set *e, float *din, const float *dout,
                       void *ddst_w, void *wei, void *ws) {
    void *ddst = e->d_ddst_shared && ddst_w ? ddst_w
                                            : load(l, ws, &e->d_ddst, &e->d_ddst_in, dout);
    void *dsrc = buffer(ws, &e->d_dsrc, din);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_DIFF_DST, bind(e->d_ddst.mem, ddst)},
        {DNNL_ARG_WEIGHTS, bind(e->d_wei.mem, wei)},
        {DNNL_ARG_DIFF_SRC, bind(e->d_dsrc.mem, dsrc)},
        {DNNL_ARG_SCRATCHPAD, bind(e->d_scratch.mem, at(ws, &e->d_scratch))}};
    run(l, e->bwd_data, 4, args);
    if (e->d_dsrc.own) reorder_run(l, &e->d_dsrc_out, dsrc, din);
    dnnl_stream_wait(l->stream);
}

int kcpu_conv_dnnl_backward(kcpu_conv_lib *l, float *din, float *dw, float *db,
                            const float *dout, const float *in, const float *w,
                            const kern_conv_shape *s, void *ws) {
    conv_set *full, *part;
    if (route(l, s, &full, &part) != 0) return -1;
    const size_t in_img = (size_t)s->C * s->H * s->W;
    const size_t out_img = (size_t)s->K * kern_conv_out_h(s) * kern_conv_out_w(s);
    const int weights = dw || db;
    for (int n0 = 0; n0 < s->B;) {
        conv_set *e = n0 + full->key.B <= s->B ? full : part;
        const float *dy = dout + (size_t)n0 * out_img;
        void *ddst_w = NULL;
        if (weights) {
            ddst_w = load(l, ws, &e->w_ddst, &e->w_ddst_in, dy);
            dnnl_stream_wait(l->stream);
            weights_chunk(l, e, dw, db, ddst_w, in + (size_t)n0 * in_img, ws);
        }
        if (din) {
            /* w'' goes where backward weights' part of the workspace was: reloaded per chunk
             * (weights are small next to a chunk's activations) */
            void *wei = load(l, ws, &e->d_wei, &e->d_wei_in, w);
            dnnl_stream_wait(l->stream);
            data_chunk(l, e, din + (size_t)n0 * in_img, dy, ddst_w, wei, ws);
        }
        n0 += e->key.B;
    }
    return 0;
}
