/* ==== Core: errors, arenas, tensors, views, autograd, RNG ==================================== */

#include <stdio.h>
#include <stdarg.h>
#include <math.h>

#if defined(__cplusplus) && __cplusplus >= 201103L
#define DL__TLS thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define DL__TLS _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define DL__TLS __thread
#elif defined(_MSC_VER)
#define DL__TLS __declspec(thread)
#else
#define DL__TLS /* no thread-local storage: use dl from one thread only */
#endif

#ifndef DL_ASSERT
#include <assert.h>
#define DL_ASSERT(c) assert(c)
#endif

#define DL__OWNS_DATA 1u    /* data came from DL_MALLOC together with the struct */
#define DL__PERSISTENT 2u   /* struct is DL_MALLOCed (not arena); grad is DL_MALLOCed */

/* ---- Errors ---- */

static DL__TLS char dl__error_msg[512];

DLDEF const char *dl_error(void) { return dl__error_msg; }
DLDEF void dl_clear_error(void) { dl__error_msg[0] = 0; }

DLDEF void dl_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dl__error_msg, sizeof dl__error_msg, fmt, ap);
    va_end(ap);
}

/* dl__fail: set the message and return NULL, for `return dl__fail(...)` in ops. */
static void *dl__fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dl__error_msg, sizeof dl__error_msg, fmt, ap);
    va_end(ap);
    return NULL;
}

DLDEF char *dl_shape_str(const dl_tensor *t, char *buf, size_t size) {
    size_t used = 0;
    int i;
    if (size == 0) return buf;
    buf[0] = 0;
    if (!t) { snprintf(buf, size, "(null)"); return buf; }
    used += (size_t)snprintf(buf + used, size - used, "[");
    for (i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %d" : "%d", t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

/* ---- Arenas ----
   A chain of blocks. Allocation bumps within the current block and moves on to the next block
   (allocating one only when the chain is exhausted). reset() rewinds to the first block and
   keeps every block, so the same sequence of allocations never calls malloc again. */

typedef struct dl__block {
    struct dl__block *next;
    size_t size, used;
    unsigned char *mem;
} dl__block;

struct dl_arena {
    dl__block *first, *cur;
    size_t used_total;     /* bytes handed out since reset */
    dl_node *tape;         /* last recorded node */
};

#define DL__ALIGN 64

static dl__block *dl__block_new(size_t size) {
    dl__block *b = (dl__block *)DL_MALLOC(sizeof(dl__block) + size + DL__ALIGN);
    uintptr_t p;
    if (!b) return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    p = (uintptr_t)(b + 1);
    p = (p + DL__ALIGN - 1) & ~(uintptr_t)(DL__ALIGN - 1);
    b->mem = (unsigned char *)p;
    return b;
}

DLDEF dl_arena *dl_arena_new(size_t initial_bytes) {
    dl_arena *a = (dl_arena *)DL_MALLOC(sizeof(dl_arena));
    if (!a) return (dl_arena *)dl__fail("dl_arena_new: out of memory");
    if (initial_bytes < 4096) initial_bytes = 4096;
    a->first = a->cur = dl__block_new(initial_bytes);
    if (!a->first) { DL_FREE(a); return (dl_arena *)dl__fail("dl_arena_new: out of memory"); }
    a->used_total = 0;
    a->tape = NULL;
    return a;
}

DLDEF void dl_arena_free(dl_arena *a) {
    dl__block *b, *next;
    if (!a) return;
    for (b = a->first; b; b = next) { next = b->next; DL_FREE(b); }
    DL_FREE(a);
}

DLDEF void dl_arena_reset(dl_arena *a) {
    dl__block *b;
    if (!a) return;
    for (b = a->first; b; b = b->next) b->used = 0;
    a->cur = a->first;
    a->used_total = 0;
    a->tape = NULL;
}

DLDEF void *dl_arena_alloc(dl_arena *a, size_t bytes) {
    dl__block *b;
    if (!a) return dl__fail("dl_arena_alloc: no arena");
    bytes = (bytes + DL__ALIGN - 1) & ~(size_t)(DL__ALIGN - 1);
    if (bytes == 0) bytes = DL__ALIGN;
    for (b = a->cur; b; b = b->next) {
        if (b->size - b->used >= bytes) break;
        if (b->next) b->next->used = 0;
    }
    if (!b) { /* chain exhausted: append a block at least twice the last one */
        dl__block *last = a->cur;
        size_t size;
        while (last->next) last = last->next;
        size = last->size * 2 > bytes ? last->size * 2 : bytes;
        b = dl__block_new(size);
        if (!b) return dl__fail("dl_arena_alloc: out of memory (%zu bytes)", bytes);
        last->next = b;
    }
    a->cur = b;
    b->used += bytes;
    a->used_total += bytes;
    return b->mem + b->used - bytes;
}

DLDEF size_t dl_arena_used(const dl_arena *a) { return a ? a->used_total : 0; }

DLDEF size_t dl_arena_capacity(const dl_arena *a) {
    size_t total = 0;
    const dl__block *b;
    for (b = a ? a->first : NULL; b; b = b->next) total += b->size;
    return total;
}

static DL__TLS dl_arena *dl__current_arena;
static DL__TLS dl_arena *dl__default_arena;

DLDEF dl_arena *dl_arena_use(dl_arena *a) {
    dl_arena *prev = dl__current_arena;
    dl__current_arena = a;
    return prev;
}

DLDEF dl_arena *dl_arena_current(void) {
    if (dl__current_arena) return dl__current_arena;
    if (!dl__default_arena) dl__default_arena = dl_arena_new((size_t)1 << 20);
    return dl__default_arena;
}

DLDEF void dl_arena_free_default(void) {
    if (dl__current_arena == dl__default_arena) dl__current_arena = NULL;
    dl_arena_free(dl__default_arena);
    dl__default_arena = NULL;
}

static void *dl__tmp_alloc(size_t bytes) { return dl_arena_alloc(dl_arena_current(), bytes); }

/* ---- Tensors ---- */

DLDEF size_t dl_dtype_size(dl_dtype dtype) {
    switch (dtype) {
    case DL_F32: return 4;
    case DL_I32: return 4;
    case DL_U8: return 1;
    }
    return 0;
}

DLDEF const char *dl_dtype_name(dl_dtype dtype) {
    switch (dtype) {
    case DL_F32: return "f32";
    case DL_I32: return "i32";
    case DL_U8: return "u8";
    }
    return "?";
}

/* Validates a shape and fills t's shape, contiguous strides and numel. Returns 0 on error. */
static int dl__init_shape(dl_tensor *t, const char *op, dl_dtype dtype, int ndim, const int *shape) {
    int i;
    size_t n = 1;
    if (dl_dtype_size(dtype) == 0) { dl__fail("%s: unknown dtype %d", op, (int)dtype); return 0; }
    if (ndim < 0 || ndim > DL_MAX_DIMS) { dl__fail("%s: ndim %d out of range 0..%d", op, ndim, DL_MAX_DIMS); return 0; }
    if (ndim > 0 && !shape) { dl__fail("%s: shape is NULL", op); return 0; }
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0) { dl__fail("%s: negative dimension %d at axis %d", op, shape[i], i); return 0; }
        if (shape[i] && n > ((size_t)1 << 40) / (size_t)shape[i]) { dl__fail("%s: shape too large", op); return 0; }
        n *= (size_t)shape[i];
    }
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->device = DL_CPU;
    t->ndim = ndim;
    for (i = ndim - 1; i >= 0; i--) t->shape[i] = shape[i];
    {
        ptrdiff_t s = 1;
        for (i = ndim - 1; i >= 0; i--) { t->strides[i] = s; s *= shape[i] ? shape[i] : 1; }
    }
    t->numel = n;
    return 1;
}

DLDEF dl_tensor *dl_tensor_new(dl_dtype dtype, int ndim, const int *shape) {
    dl_tensor tmp, *t;
    size_t bytes;
    if (!dl__init_shape(&tmp, "dl_tensor_new", dtype, ndim, shape)) return NULL;
    bytes = tmp.numel * dl_dtype_size(dtype);
    t = (dl_tensor *)DL_MALLOC(sizeof(dl_tensor) + DL__ALIGN + bytes);
    if (!t) return (dl_tensor *)dl__fail("dl_tensor_new: out of memory (%zu bytes)", bytes);
    *t = tmp;
    {
        uintptr_t p = ((uintptr_t)(t + 1) + DL__ALIGN - 1) & ~(uintptr_t)(DL__ALIGN - 1);
        t->data = (void *)p;
    }
    memset(t->data, 0, bytes);
    t->flags = DL__PERSISTENT | DL__OWNS_DATA;
    return t;
}

DLDEF dl_tensor *dl_tensor_from(dl_dtype dtype, int ndim, const int *shape, const void *data) {
    dl_tensor *t = dl_tensor_new(dtype, ndim, shape);
    if (t && data) memcpy(t->data, data, t->numel * dl_dtype_size(dtype));
    return t;
}

DLDEF void dl_tensor_free(dl_tensor *t) {
    if (!t) return;
    if (!(t->flags & DL__PERSISTENT)) return; /* arena tensors are freed by their arena */
    DL_FREE(t->grad);
    DL_FREE(t);
}

DLDEF dl_tensor *dl_tmp_uninit(dl_dtype dtype, int ndim, const int *shape) {
    dl_tensor tmp, *t;
    size_t bytes;
    if (!dl__init_shape(&tmp, "dl_tmp", dtype, ndim, shape)) return NULL;
    bytes = tmp.numel * dl_dtype_size(dtype);
    t = (dl_tensor *)dl__tmp_alloc(sizeof(dl_tensor));
    if (!t) return NULL;
    *t = tmp;
    t->data = dl__tmp_alloc(bytes);
    return t->data ? t : NULL;
}

DLDEF dl_tensor *dl_tmp(dl_dtype dtype, int ndim, const int *shape) {
    dl_tensor *t = dl_tmp_uninit(dtype, ndim, shape);
    if (t) memset(t->data, 0, t->numel * dl_dtype_size(dtype));
    return t;
}

DLDEF dl_tensor *dl_tmp_from(dl_dtype dtype, int ndim, const int *shape, const void *data) {
    dl_tensor *t = dl_tmp_uninit(dtype, ndim, shape);
    if (t) {
        if (data) memcpy(t->data, data, t->numel * dl_dtype_size(dtype));
        else memset(t->data, 0, t->numel * dl_dtype_size(dtype));
    }
    return t;
}

DLDEF dl_tensor *dl_full(int ndim, const int *shape, float value) {
    dl_tensor *t = dl_tmp_uninit(DL_F32, ndim, shape);
    size_t i;
    if (t) for (i = 0; i < t->numel; i++) ((float *)t->data)[i] = value;
    return t;
}

DLDEF dl_tensor *dl_scalar(float value) { return dl_full(0, NULL, value); }

DLDEF int dl_is_contiguous(const dl_tensor *t) {
    ptrdiff_t s = 1;
    int i;
    if (!t) return 0;
    for (i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

DLDEF int dl_same_shape(const dl_tensor *a, const dl_tensor *b) {
    int i;
    if (!a || !b || a->ndim != b->ndim) return 0;
    for (i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

DLDEF float *dl_f32(const dl_tensor *t) { return t && t->dtype == DL_F32 ? (float *)t->data : NULL; }
DLDEF int32_t *dl_i32(const dl_tensor *t) { return t && t->dtype == DL_I32 ? (int32_t *)t->data : NULL; }
DLDEF uint8_t *dl_u8(const dl_tensor *t) { return t && t->dtype == DL_U8 ? (uint8_t *)t->data : NULL; }

/* Offset in elements of a logical row-major flat index, through t's strides. */
static ptrdiff_t dl__offset_of(const dl_tensor *t, size_t flat) {
    ptrdiff_t off = 0;
    int i;
    for (i = t->ndim - 1; i >= 0; i--) {
        size_t d = (size_t)t->shape[i];
        off += (ptrdiff_t)(flat % d) * t->strides[i];
        flat /= d;
    }
    return off;
}

static float dl__load(const dl_tensor *t, ptrdiff_t off) {
    switch (t->dtype) {
    case DL_F32: return ((const float *)t->data)[off];
    case DL_I32: return (float)((const int32_t *)t->data)[off];
    case DL_U8: return (float)((const uint8_t *)t->data)[off];
    }
    return 0.0f;
}

static void dl__store(dl_tensor *t, ptrdiff_t off, float v) {
    switch (t->dtype) {
    case DL_F32: ((float *)t->data)[off] = v; break;
    /* Converting an out-of-range float to an integer is undefined in C: saturate first. */
    case DL_I32: ((int32_t *)t->data)[off] = v != v ? 0 : v >= 2147483520.0f ? INT32_MAX : v <= -2147483648.0f ? INT32_MIN : (int32_t)v; break;
    case DL_U8: ((uint8_t *)t->data)[off] = v != v ? 0 : v >= 255.0f ? 255 : v <= 0.0f ? 0 : (uint8_t)v; break;
    }
}

DLDEF float dl_item(const dl_tensor *t) {
    if (!t || t->numel != 1) { dl__fail("dl_item: tensor must have exactly one element"); return NAN; }
    return dl__load(t, 0);
}

DLDEF float dl_get(const dl_tensor *t, const int *index) {
    ptrdiff_t off = 0;
    int i;
    if (!t) return NAN;
    for (i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) { dl__fail("dl_get: index %d out of range at axis %d", index[i], i); return NAN; }
        off += index[i] * t->strides[i];
    }
    return dl__load(t, off);
}

DLDEF void dl_set(dl_tensor *t, const int *index, float v) {
    ptrdiff_t off = 0;
    int i;
    if (!t) return;
    for (i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) { dl__fail("dl_set: index %d out of range at axis %d", index[i], i); return; }
        off += index[i] * t->strides[i];
    }
    dl__store(t, off, v);
}

DLDEF void dl_fill(dl_tensor *t, float value) {
    size_t i;
    if (!t) return;
    if (dl_is_contiguous(t) && t->dtype == DL_F32) {
        float *p = (float *)t->data;
        for (i = 0; i < t->numel; i++) p[i] = value;
    } else {
        for (i = 0; i < t->numel; i++) dl__store(t, dl__offset_of(t, i), value);
    }
}

/* dst[i] (+)= src[i] for every logical index, both strided, f32. */
static void dl__strided_copy_f32(float *dst, const ptrdiff_t *dst_strides, const float *src,
                                 const ptrdiff_t *src_strides, int ndim, const int *shape, int accumulate) {
    int idx[DL_MAX_DIMS] = {0};
    ptrdiff_t od = 0, os = 0;
    size_t n = 1, k;
    int i, inner;
    for (i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (n == 0) return;
    if (ndim == 0) { if (accumulate) dst[0] += src[0]; else dst[0] = src[0]; return; }
    inner = ndim - 1;
    for (k = 0; k < n; k += (size_t)shape[inner]) {
        ptrdiff_t ds = dst_strides[inner], ss = src_strides[inner];
        int j, len = shape[inner];
        if (accumulate) for (j = 0; j < len; j++) dst[od + j * ds] += src[os + j * ss];
        else for (j = 0; j < len; j++) dst[od + j * ds] = src[os + j * ss];
        for (i = inner - 1; i >= 0; i--) { /* odometer over the outer dimensions */
            idx[i]++;
            od += dst_strides[i];
            os += src_strides[i];
            if (idx[i] < shape[i]) break;
            od -= dst_strides[i] * shape[i];
            os -= src_strides[i] * shape[i];
            idx[i] = 0;
        }
    }
}

static void dl__contig_strides(int ndim, const int *shape, ptrdiff_t *strides) {
    ptrdiff_t s = 1;
    int i;
    for (i = ndim - 1; i >= 0; i--) { strides[i] = s; s *= shape[i] ? shape[i] : 1; }
}

DLDEF int dl_copy(dl_tensor *dst, const dl_tensor *src) {
    size_t i;
    if (!dst || !src) { dl__fail("dl_copy: NULL tensor"); return -1; }
    if (!dl_same_shape(dst, src)) {
        char a[64], b[64];
        dl__fail("dl_copy: shapes %s and %s differ", dl_shape_str(dst, a, sizeof a), dl_shape_str(src, b, sizeof b));
        return -1;
    }
    if (dst->dtype == DL_F32 && src->dtype == DL_F32) {
        dl__strided_copy_f32((float *)dst->data, dst->strides, (const float *)src->data, src->strides, dst->ndim, dst->shape, 0);
    } else if (dst->dtype == src->dtype && dl_is_contiguous(dst) && dl_is_contiguous(src)) {
        memcpy(dst->data, src->data, dst->numel * dl_dtype_size(dst->dtype));
    } else if (dst->dtype == src->dtype) { /* exact element copy, no detour through float */
        size_t esz = dl_dtype_size(dst->dtype);
        for (i = 0; i < dst->numel; i++)
            memcpy((char *)dst->data + dl__offset_of(dst, i) * (ptrdiff_t)esz,
                   (const char *)src->data + dl__offset_of(src, i) * (ptrdiff_t)esz, esz);
    } else {
        for (i = 0; i < dst->numel; i++) dl__store(dst, dl__offset_of(dst, i), dl__load(src, dl__offset_of(src, i)));
    }
    return 0;
}

DLDEF dl_tensor *dl_tensor_clone(const dl_tensor *t) {
    dl_tensor *c;
    if (!t) return NULL;
    c = dl_tensor_new(t->dtype, t->ndim, t->shape);
    if (c && dl_copy(c, t) != 0) { dl_tensor_free(c); return NULL; }
    return c;
}

DLDEF const float *dl_contig_f32(const dl_tensor *t) {
    float *p;
    ptrdiff_t strides[DL_MAX_DIMS];
    if (!t || t->dtype != DL_F32) return (const float *)dl__fail("dl_contig_f32: need an f32 tensor");
    if (dl_is_contiguous(t)) return (const float *)t->data;
    p = (float *)dl__tmp_alloc(t->numel * sizeof(float));
    if (!p) return NULL;
    dl__contig_strides(t->ndim, t->shape, strides);
    dl__strided_copy_f32(p, strides, (const float *)t->data, t->strides, t->ndim, t->shape, 0);
    return p;
}

/* ---- Autograd ---- */

static DL__TLS int dl__no_grad_mode;

DLDEF int dl_no_grad(int on) {
    int prev = dl__no_grad_mode;
    dl__no_grad_mode = on;
    return prev;
}

DLDEF int dl_grad_enabled(void) { return !dl__no_grad_mode; }

DLDEF void dl_set_requires_grad(dl_tensor *t, int on) {
    if (!t) return;
    if (on && t->dtype != DL_F32) { dl__fail("dl_set_requires_grad: only f32 tensors can require a gradient"); return; }
    t->requires_grad = on;
}

DLDEF dl_node *dl_record(const char *op, dl_tensor *out, int n_in, dl_tensor *const *in,
                         dl_backward_fn backward, size_t ctx_bytes) {
    dl_arena *a;
    dl_node *n;
    int i, needed = 0;
    if (!out || dl__no_grad_mode) return NULL;
    for (i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) needed = 1;
    if (!needed) return NULL;
    a = dl_arena_current();
    n = (dl_node *)dl_arena_alloc(a, sizeof(dl_node));
    if (!n) return NULL;
    n->in = (dl_tensor **)dl_arena_alloc(a, sizeof(dl_tensor *) * (size_t)(n_in > 0 ? n_in : 1));
    n->ctx = ctx_bytes ? dl_arena_alloc(a, ctx_bytes) : NULL;
    if (!n->in || (ctx_bytes && !n->ctx)) return NULL;
    if (ctx_bytes) memset(n->ctx, 0, ctx_bytes);
    for (i = 0; i < n_in; i++) n->in[i] = in[i];
    n->op = op;
    n->backward = backward;
    n->out = out;
    n->n_in = n_in;
    n->prev = a->tape;
    a->tape = n;
    out->node = n;
    out->requires_grad = 1;
    return n;
}

DLDEF float *dl_grad_buf(dl_tensor *t) {
    size_t bytes;
    if (!t || !t->requires_grad) return NULL;
    if (t->grad) return t->grad;
    bytes = t->numel * sizeof(float);
    if (t->flags & DL__PERSISTENT) t->grad = (float *)DL_MALLOC(bytes ? bytes : 1);
    else t->grad = (float *)dl__tmp_alloc(bytes);
    if (t->grad) memset(t->grad, 0, bytes);
    else dl__fail("dl_grad_buf: out of memory");
    return t->grad;
}

DLDEF void dl_zero_grad(dl_tensor *t) {
    if (t && t->grad) memset(t->grad, 0, t->numel * sizeof(float));
}

DLDEF int dl_backward_grad(dl_tensor *out, const float *grad_out) {
    dl_node *n;
    float *g;
    size_t i;
    if (!out || !grad_out) { dl__fail("dl_backward: NULL argument"); return -1; }
    if (!out->requires_grad) { dl__fail("dl_backward: tensor does not require a gradient"); return -1; }
    /* Intermediate gradients start from zero on every pass (leaves keep accumulating). */
    for (n = out->node; n; n = n->prev) n->out->grad = NULL;
    g = dl_grad_buf(out);
    if (!g) return -1;
    for (i = 0; i < out->numel; i++) g[i] += grad_out[i];
    /* The tape is in creation order, which is a topological order: walking it backwards
       visits every node after all the nodes that consume its output. */
    for (n = out->node; n; n = n->prev)
        if (n->out->grad) n->backward(n);
    return 0;
}

DLDEF int dl_backward(dl_tensor *loss) {
    float one = 1.0f;
    if (!loss) { dl__fail("dl_backward: loss is NULL (%s)", dl__error_msg[0] ? "an earlier op failed" : "no error set"); return -1; }
    if (loss->numel != 1) {
        char s[64];
        dl__fail("dl_backward: loss must have one element, got shape %s; use dl_backward_grad", dl_shape_str(loss, s, sizeof s));
        return -1;
    }
    return dl_backward_grad(loss, &one);
}

/* ---- Views ---- */

static dl_tensor *dl__view_of(dl_tensor *x) {
    dl_tensor *v = (dl_tensor *)dl__tmp_alloc(sizeof(dl_tensor));
    if (!v) return NULL;
    *v = *x;
    v->grad = NULL;
    v->node = NULL;
    v->flags = 0;
    v->requires_grad = 0;
    return v;
}

/* Views record which axes of x each axis of out walks, so backward can add out's gradient into
   the matching elements of x's contiguous gradient. Reshape only views contiguous tensors, so
   its backward is a flat add (dl__copy_backward). */
typedef struct dl__view_ctx {
    int axis_of[DL_MAX_DIMS];   /* permute: out axis i is x axis axis_of[i] */
    int dim, start, step;       /* slice */
} dl__view_ctx;

static void dl__permute_backward(dl_node *n) {
    const dl__view_ctx *c = (const dl__view_ctx *)n->ctx;
    dl_tensor *x = n->in[0], *out = n->out;
    ptrdiff_t gx_strides[DL_MAX_DIMS], dst[DL_MAX_DIMS], src[DL_MAX_DIMS];
    float *gx = dl_grad_buf(x);
    int i;
    if (!gx) return;
    dl__contig_strides(x->ndim, x->shape, gx_strides);
    for (i = 0; i < out->ndim; i++) dst[i] = gx_strides[c->axis_of[i]];
    dl__contig_strides(out->ndim, out->shape, src);
    dl__strided_copy_f32(gx, dst, out->grad, src, out->ndim, out->shape, 1);
}

static void dl__slice_backward(dl_node *n) {
    const dl__view_ctx *c = (const dl__view_ctx *)n->ctx;
    dl_tensor *x = n->in[0], *out = n->out;
    ptrdiff_t dst[DL_MAX_DIMS], src[DL_MAX_DIMS];
    float *gx = dl_grad_buf(x);
    if (!gx) return;
    dl__contig_strides(x->ndim, x->shape, dst);
    gx += (ptrdiff_t)c->start * dst[c->dim];
    dst[c->dim] *= c->step;
    dl__contig_strides(out->ndim, out->shape, src);
    dl__strided_copy_f32(gx, dst, out->grad, src, out->ndim, out->shape, 1);
}

static void dl__copy_backward(dl_node *n) {
    float *gx = dl_grad_buf(n->in[0]);
    size_t i;
    if (gx) for (i = 0; i < n->out->numel; i++) gx[i] += n->out->grad[i];
}

DLDEF dl_tensor *dl_contiguous(dl_tensor *x) {
    dl_tensor *out;
    if (!x) return NULL;
    if (dl_is_contiguous(x)) return x;
    out = dl_tmp_uninit(x->dtype, x->ndim, x->shape);
    if (!out || dl_copy(out, x) != 0) return NULL;
    dl_record("contiguous", out, 1, &x, dl__copy_backward, 0);
    return out;
}

DLDEF dl_tensor *dl_reshape(dl_tensor *x, int ndim, const int *shape) {
    int i, infer = -1, sh[DL_MAX_DIMS];
    size_t n = 1;
    dl_tensor *v;
    if (!x) return NULL;
    if (ndim < 0 || ndim > DL_MAX_DIMS || (ndim && !shape)) return (dl_tensor *)dl__fail("dl_reshape: bad ndim %d", ndim);
    for (i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return (dl_tensor *)dl__fail("dl_reshape: more than one -1");
            infer = i;
        } else if (shape[i] < 0) {
            return (dl_tensor *)dl__fail("dl_reshape: negative dimension %d", shape[i]);
        } else {
            n *= (size_t)shape[i];
        }
    }
    if (infer >= 0) {
        if (n == 0 || x->numel % n) return (dl_tensor *)dl__fail("dl_reshape: cannot infer -1 for %zu elements", x->numel);
        sh[infer] = (int)(x->numel / n);
        n *= (size_t)sh[infer];
    }
    if (n != x->numel) {
        char s[64];
        return (dl_tensor *)dl__fail("dl_reshape: cannot reshape %s (%zu elements) into %zu elements", dl_shape_str(x, s, sizeof s), x->numel, n);
    }
    x = dl_contiguous(x);
    if (!x) return NULL;
    v = dl__view_of(x);
    if (!v) return NULL;
    v->ndim = ndim;
    for (i = 0; i < ndim; i++) v->shape[i] = sh[i];
    dl__contig_strides(ndim, sh, v->strides);
    dl_record("reshape", v, 1, &x, dl__copy_backward, 0);
    return v;
}

DLDEF dl_tensor *dl_flatten(dl_tensor *x, int start_dim, int end_dim) {
    int sh[DL_MAX_DIMS], i, k = 0, prod = 1;
    if (!x) return NULL;
    if (x->ndim == 0) { int one = 1; return dl_reshape(x, 1, &one); }
    if (start_dim < 0) start_dim += x->ndim;
    if (end_dim < 0) end_dim += x->ndim;
    if (start_dim < 0 || end_dim >= x->ndim || start_dim > end_dim)
        return (dl_tensor *)dl__fail("dl_flatten: bad dims for a %d-d tensor", x->ndim);
    for (i = 0; i < start_dim; i++) sh[k++] = x->shape[i];
    for (i = start_dim; i <= end_dim; i++) prod *= x->shape[i];
    sh[k++] = prod;
    for (i = end_dim + 1; i < x->ndim; i++) sh[k++] = x->shape[i];
    return dl_reshape(x, k, sh);
}

DLDEF dl_tensor *dl_permute(dl_tensor *x, const int *perm) {
    int i, seen[DL_MAX_DIMS] = {0};
    dl_tensor *v;
    dl_node *n;
    if (!x) return NULL;
    if (!perm && x->ndim) return (dl_tensor *)dl__fail("dl_permute: perm is NULL");
    for (i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]]) return (dl_tensor *)dl__fail("dl_permute: perm is not a permutation of 0..%d", x->ndim - 1);
        seen[perm[i]] = 1;
    }
    v = dl__view_of(x);
    if (!v) return NULL;
    for (i = 0; i < x->ndim; i++) { v->shape[i] = x->shape[perm[i]]; v->strides[i] = x->strides[perm[i]]; }
    n = dl_record("permute", v, 1, &x, dl__permute_backward, sizeof(dl__view_ctx));
    if (n) for (i = 0; i < x->ndim; i++) ((dl__view_ctx *)n->ctx)->axis_of[i] = perm[i];
    return v;
}

DLDEF dl_tensor *dl_transpose(dl_tensor *x, int d0, int d1) {
    int perm[DL_MAX_DIMS], i, t;
    if (!x) return NULL;
    if (d0 < 0) d0 += x->ndim;
    if (d1 < 0) d1 += x->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim) return (dl_tensor *)dl__fail("dl_transpose: dims out of range for a %d-d tensor", x->ndim);
    for (i = 0; i < x->ndim; i++) perm[i] = i;
    t = perm[d0]; perm[d0] = perm[d1]; perm[d1] = t;
    return dl_permute(x, perm);
}

DLDEF dl_tensor *dl_slice(dl_tensor *x, int dim, int start, int stop, int step) {
    dl_tensor *v;
    dl_node *node;
    int len, n;
    if (!x) return NULL;
    if (dim < 0) dim += x->ndim;
    if (dim < 0 || dim >= x->ndim) return (dl_tensor *)dl__fail("dl_slice: dim out of range for a %d-d tensor", x->ndim);
    if (step <= 0) return (dl_tensor *)dl__fail("dl_slice: step must be positive, got %d", step);
    n = x->shape[dim];
    /* Python slice semantics: negative from the end, then clamped to [0, n]. */
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    if (start < 0) start = 0;
    if (start > n) start = n;
    if (stop < 0) stop = 0;
    if (stop > n) stop = n;
    len = stop > start ? (stop - start + step - 1) / step : 0;
    v = dl__view_of(x);
    if (!v) return NULL;
    v->data = (char *)x->data + (ptrdiff_t)start * x->strides[dim] * (ptrdiff_t)dl_dtype_size(x->dtype);
    v->shape[dim] = len;
    v->strides[dim] = x->strides[dim] * step;
    v->numel = len ? x->numel / (size_t)n * (size_t)len : 0;
    node = dl_record("slice", v, 1, &x, dl__slice_backward, sizeof(dl__view_ctx));
    if (node) {
        dl__view_ctx *c = (dl__view_ctx *)node->ctx;
        c->dim = dim;
        c->start = start;
        c->step = step;
    }
    return v;
}

DLDEF dl_tensor *dl_squeeze(dl_tensor *x, int dim) {
    int sh[DL_MAX_DIMS], i, k = 0;
    if (!x) return NULL;
    if (dim < 0) dim += x->ndim;
    if (dim < 0 || dim >= x->ndim || x->shape[dim] != 1) return (dl_tensor *)dl__fail("dl_squeeze: dim %d is not of size 1", dim);
    for (i = 0; i < x->ndim; i++) if (i != dim) sh[k++] = x->shape[i];
    return dl_reshape(x, k, sh);
}

DLDEF dl_tensor *dl_unsqueeze(dl_tensor *x, int dim) {
    int sh[DL_MAX_DIMS], i, k = 0;
    if (!x) return NULL;
    if (dim < 0) dim += x->ndim + 1;
    if (dim < 0 || dim > x->ndim || x->ndim >= DL_MAX_DIMS) return (dl_tensor *)dl__fail("dl_unsqueeze: dim %d out of range", dim);
    for (i = 0; i <= x->ndim; i++) {
        if (i == dim) sh[k++] = 1;
        if (i < x->ndim) sh[k++] = x->shape[i];
    }
    return dl_reshape(x, k, sh);
}

DLDEF dl_tensor *dl_detach(dl_tensor *x) {
    if (!x) return NULL;
    return dl__view_of(x);
}

/* ---- Gradient check ---- */

static double dl__weighted_sum(const dl_tensor *y, const float *w) {
    double s = 0;
    size_t i;
    for (i = 0; i < y->numel; i++) s += (double)w[i] * (double)dl__load(y, dl__offset_of(y, i));
    return s;
}

DLDEF int dl_gradcheck(dl_gradcheck_fn f, void *user, int n_in, dl_tensor **inputs, float eps, float tol) {
    dl_arena *arena, *prev_arena;
    dl_tensor *y;
    float *w;
    float **analytic;
    dl_rng rng;
    int i, ok = 1, prev_nograd;
    size_t j;
    double worst = -1;
    char worst_msg[256] = "";
    if (!f || n_in <= 0 || !inputs) { dl__fail("dl_gradcheck: bad arguments"); return 0; }
    for (i = 0; i < n_in; i++) if (!inputs[i]) { dl__fail("dl_gradcheck: input %d is NULL", i); return 0; }
    if (eps <= 0) eps = 1e-3f;
    if (tol <= 0) tol = 1e-2f;
    arena = dl_arena_new((size_t)1 << 20);
    if (!arena) return 0;
    prev_arena = dl_arena_use(arena);
    prev_nograd = dl_no_grad(0);
    dl_clear_error();
    for (i = 0; i < n_in; i++) {
        dl_zero_grad(inputs[i]);
        if (!(inputs[i]->flags & DL__PERSISTENT)) inputs[i]->grad = NULL;
    }
    y = f(inputs, user);
    if (!y) {
        char why[sizeof dl__error_msg];
        memcpy(why, dl__error_msg, sizeof why);
        ok = 0;
        dl__fail("dl_gradcheck: f failed: %s", why);
        goto done;
    }
    if (y->dtype != DL_F32 || !y->requires_grad) { ok = 0; dl__fail("dl_gradcheck: output is not an f32 tensor that requires a gradient"); goto done; }
    w = (float *)dl_arena_alloc(arena, y->numel * sizeof(float) + 4);
    analytic = (float **)dl_arena_alloc(arena, sizeof(float *) * (size_t)n_in);
    dl_rng_seed(&rng, 1234);
    for (j = 0; j < y->numel; j++) w[j] = dl_rng_uniform(&rng) * 2.0f - 1.0f;
    if (dl_backward_grad(y, w) != 0) { ok = 0; goto done; }
    /* Keep analytic gradients: later evaluations reuse the arena but not these copies. */
    for (i = 0; i < n_in; i++) {
        analytic[i] = NULL;
        if (inputs[i]->dtype != DL_F32 || !inputs[i]->requires_grad) continue;
        analytic[i] = (float *)dl_arena_alloc(arena, inputs[i]->numel * sizeof(float) + 4);
        if (inputs[i]->grad) memcpy(analytic[i], inputs[i]->grad, inputs[i]->numel * sizeof(float));
        else memset(analytic[i], 0, inputs[i]->numel * sizeof(float));
    }
    dl_no_grad(1);
    for (i = 0; i < n_in && ok; i++) {
        dl_tensor *x = inputs[i];
        if (!analytic[i]) continue;
        for (j = 0; j < x->numel; j++) {
            float *p = (float *)x->data + dl__offset_of(x, j);
            float orig = *p;
            double lp, lm, num, ana, err;
            *p = orig + eps; y = f(inputs, user); lp = y ? dl__weighted_sum(y, w) : NAN;
            *p = orig - eps; y = f(inputs, user); lm = y ? dl__weighted_sum(y, w) : NAN;
            *p = orig;
            num = (lp - lm) / (2.0 * (double)eps);
            ana = analytic[i][j];
            err = fabs(ana - num) / (1.0 + fabs(num));
            if (!(err <= worst)) {
                worst = err;
                snprintf(worst_msg, sizeof worst_msg, "input %d element %zu: analytic %.6g, numeric %.6g", i, j, ana, num);
            }
            if (!(err <= tol)) ok = 0;
        }
    }
    if (!ok && worst_msg[0]) dl__fail("dl_gradcheck: mismatch at %s", worst_msg);
done:
    dl_no_grad(prev_nograd);
    dl_arena_use(prev_arena);
    /* Gradients of arena inputs pointed into our arena: drop them before it goes. */
    for (i = 0; i < n_in; i++)
        if (!(inputs[i]->flags & DL__PERSISTENT)) inputs[i]->grad = NULL;
    dl_arena_free(arena);
    return ok;
}

/* ---- Random numbers ---- */

static uint64_t dl__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

DLDEF void dl_rng_seed(dl_rng *r, uint64_t seed) {
    int i;
    for (i = 0; i < 4; i++) r->s[i] = dl__splitmix64(&seed);
}

static uint64_t dl__rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

DLDEF uint64_t dl_rng_u64(dl_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = dl__rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = dl__rotl(s[3], 45);
    return result;
}

DLDEF float dl_rng_uniform(dl_rng *r) { return (float)(dl_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

DLDEF float dl_rng_normal(dl_rng *r) {
    /* Box-Muller on doubles; u1 in (0, 1] so the log is finite. */
    double u1 = ((double)(dl_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(dl_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

DLDEF int dl_rng_int(dl_rng *r, int n) {
    uint64_t limit, x;
    if (n <= 1) return 0;
    limit = UINT64_MAX - UINT64_MAX % (uint64_t)n; /* reject the biased tail */
    do x = dl_rng_u64(r); while (x >= limit);
    return (int)(x % (uint64_t)n);
}

DLDEF void dl_rng_permutation(dl_rng *r, int *out, int n) {
    int i;
    for (i = 0; i < n; i++) out[i] = i;
    for (i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = dl_rng_int(r, i + 1), t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

static void dl__fill_each(dl_tensor *t, dl_rng *r, int kind, float a, float b) {
    size_t i;
    if (!t || !r) return;
    if (t->dtype != DL_F32) { dl__fail("dl_fill: random fills need an f32 tensor"); return; }
    for (i = 0; i < t->numel; i++) {
        float v;
        if (kind == 0) v = a + (b - a) * dl_rng_uniform(r);
        else if (kind == 1) v = a + b * dl_rng_normal(r);
        else if (kind == 2) { float z; do z = dl_rng_normal(r); while (z < -2.0f || z > 2.0f); v = a + b * z; }
        else v = dl_rng_uniform(r) < a ? 1.0f : 0.0f;
        ((float *)t->data)[dl__offset_of(t, i)] = v;
    }
}

DLDEF void dl_fill_uniform(dl_tensor *t, dl_rng *r, float lo, float hi) { dl__fill_each(t, r, 0, lo, hi); }
DLDEF void dl_fill_normal(dl_tensor *t, dl_rng *r, float mean, float std) { dl__fill_each(t, r, 1, mean, std); }
DLDEF void dl_fill_truncated_normal(dl_tensor *t, dl_rng *r, float mean, float std) { dl__fill_each(t, r, 2, mean, std); }
DLDEF void dl_fill_bernoulli(dl_tensor *t, dl_rng *r, float p) { dl__fill_each(t, r, 3, p, 0); }

/* Keras' variance-scaling initializers divide the truncated normal's std by 0.8796..., the std
   of a unit normal truncated to [-2, 2], so the result has exactly the target variance. */
#define DL__TRUNC_STD 0.87962566103423978f

DLDEF void dl_init_glorot_uniform(dl_tensor *t, dl_rng *r, int fan_in, int fan_out) {
    float limit = sqrtf(6.0f / (float)(fan_in + fan_out));
    dl_fill_uniform(t, r, -limit, limit);
}
DLDEF void dl_init_glorot_normal(dl_tensor *t, dl_rng *r, int fan_in, int fan_out) {
    dl_fill_truncated_normal(t, r, 0.0f, sqrtf(2.0f / (float)(fan_in + fan_out)) / DL__TRUNC_STD);
}
DLDEF void dl_init_he_uniform(dl_tensor *t, dl_rng *r, int fan_in) {
    float limit = sqrtf(6.0f / (float)fan_in);
    dl_fill_uniform(t, r, -limit, limit);
}
DLDEF void dl_init_he_normal(dl_tensor *t, dl_rng *r, int fan_in) {
    dl_fill_truncated_normal(t, r, 0.0f, sqrtf(2.0f / (float)fan_in) / DL__TRUNC_STD);
}
