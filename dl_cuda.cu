/* dl_cuda.cu - v0.2.0 - the dl headers' ops on an NVIDIA GPU, through CUDA kernels and cuBLAS.
   Part of dl (dl_tensor.h and its family). An optional translation unit: a CPU-only program
   never needs it, nor CUDA's headers.

   BUILD (README, "GPU"):
       nvcc -O2 -c dl_cuda.cu -o dl_cuda.o            # needs dl_tensor.h next to it
       cc -DDL_CUDA -O2 -I. prog.c dl_cuda.o -lcudart -lcublas -lm -lpthread -lstdc++
   where prog.c (or the one file that defines DL_IMPLEMENTATION) is compiled with DL_CUDA
   defined, so that every op dispatches on its inputs' device. Then:
       if (dl_cuda_init() != 0) puts(dl_error());             // no driver, no GPU: the reason
       dl_tensor *w = dl_tensor_new(...); dl_tensor_move(w, DL_DEVICE_CUDA);   // a parameter
       dl_tensor *x = dl_to_device(batch, DL_DEVICE_CUDA);    // an op: arena copy, grads flow back
       dl_tensor *loss = dl_mse(dl_linear(x, w, b), y);       // runs on the GPU
       dl_backward(loss);                                     // so does the backward pass

   EMULATION: compiled with DL_CUDA_EMULATE defined, as C99 (cc -x c -DDL_CUDA_EMULATE -c
   dl_cuda.cu) or C++, the same source runs on the CPU: "device memory" is malloc'd host memory,
   a kernel launch is one call that runs the kernel's grid-stride loop serially, and cuBLAS is
   dl_sgemm. The GPU test programs (tests/test_cuda*.c) include it that way in make test, also
   under ASan + UBSan, so indexing, broadcasting, backward accumulation and dispatch are tested
   without a GPU; tools/gpu_check.sh links the same programs against the nvcc build. Only real
   concurrency, device memory and speed need the GPU (make gpu-check).

   HOW A KERNEL IS WRITTEN: one thread per output element, in a grid-stride loop
       DL__KERNEL k_name(size_t n, ...) { DL__LOOP(i, n) { out[i] = ...; } }
       DL__LAUNCH(k_name, n, (n, ...));
   Reductions give each output element to one thread, which loops over its inputs in a fixed
   order (long ones in fixed chunks of DL__CHUNK, then the chunks in order): no atomics, so the
   same inputs give the same bits on every run and every GPU. Sums accumulate in double, as on
   the CPU.

   STREAMS AND SYNCHRONIZATION: work is queued on CUDA's per-thread default stream
   (cudaStreamPerThread), each thread has its own cuBLAS handle. Copies to the host wait for
   the stream; a kernel's failure shows at the next copy or dl_device_synchronize().

   PRECISION: FP32 everywhere. cuBLAS's TF32 tensor-core mode is off unless the environment
   sets DL_CUDA_TF32=1 (faster GEMMs, about 1e-3 relative error).

   OPS ON THE GPU, one section each below, in this order: copies and fills; broadcasting
   add/sub/mul/div/minimum/maximum; the scalar and unary ops and the activations; sum/mean/var/
   max over axes and argmax; matmul (batched, transposed views read in place) and linear;
   softmax/log_softmax; mse/l1/huber/bce_with_logits and cross_entropy; dl_nn.h's fused LSTM and
   GRU cells; conv2d and conv_transpose2d (im2col + cuBLAS, col2im as a gather), max/avg/global
   pooling, nearest upsampling, zero and reflection padding; batch/layer/instance norm, gram,
   dropout (a counter-based mask: not the CPU's), embedding, index_select, gather, concat,
   one_hot, cast, broadcast_to; the optimizers' updates (dl_optim.h: one kernel per parameter,
   the CPU's bits) and gradient clipping. The views (reshape, permute, slice, ...) are shared
   with the CPU. An op without a GPU kernel fails with "... is not on the CPU".

   LICENSE: MIT, as dl_tensor.h. */
#ifndef DL_CUDA
#define DL_CUDA
#endif
#include "dl_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DL_CUDA_EMULATE
/* ---- The CPU emulation of the few CUDA pieces used below ---- */
#define DL__KERNEL static void
#define DL__DEV static inline
#define DL__LOOP(i, n) for (size_t i = 0; i < (size_t)(n); i++)
#define DL__LAUNCH(kernel, n, args) ((n) > 0 ? (void)(kernel args) : (void)0)
#define DL__CHECK_LAUNCH(op) ((void)(op), 0)
#else
#include <cuda_runtime.h>
#include <cublas_v2.h>
#define DL__KERNEL __global__ static void
#define DL__DEV __device__ static inline
#define DL__LOOP(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n); i += (size_t)blockDim.x * gridDim.x)
#define DL__THREADS 256
static unsigned dl__cu_blocks(size_t n) {
    size_t b = (n + DL__THREADS - 1) / DL__THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}
#define DL__LAUNCH(kernel, n, args) \
    ((n) > 0 ? (void)(kernel<<<dl__cu_blocks(n), DL__THREADS, 0, cudaStreamPerThread>>> args) : (void)0)
#define DL__CHECK_LAUNCH(op) dl__cu_check(cudaGetLastError(), op)
#endif

#define DL__CHUNK 4096 /* elements one thread sums before its partial sum is combined */
#define DL__IGNORE_INDEX (-100)

/* ---- Errors, set-up, memory ---- */

#ifndef DL_CUDA_EMULATE
/* 0, or -1 with the error "op: CUDA's message" set. */
static int dl__cu_check(cudaError_t e, const char *op) {
    if (e == cudaSuccess) return 0;
    dl_set_error("%s: CUDA error %d: %s", op, (int)e, cudaGetErrorString(e));
    return -1;
}
static const char *dl__cu_cublas_msg(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS could not allocate";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "cuBLAS error";
    }
}
static int dl__cu_ready = 0;  /* 1 ready, -1 failed (the message is kept) */
static char dl__cu_setup_msg[256];
static thread_local cublasHandle_t dl__cu_blas = NULL;
#else
static int dl__cu_ready = 0;
#endif

DLDEF int dl__cuda_setup(void) {
#ifdef DL_CUDA_EMULATE
    dl__cu_ready = 1;
    return 0;
#else
    if (dl__cu_ready == 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
            snprintf(dl__cu_setup_msg, sizeof dl__cu_setup_msg, "dl_cuda_init: no usable CUDA driver or GPU (CUDA error %d: %s)",
                     (int)e, cudaGetErrorString(e));
            cudaGetLastError(); /* clear it */
            dl__cu_ready = -1;
        } else if (n == 0) {
            snprintf(dl__cu_setup_msg, sizeof dl__cu_setup_msg, "dl_cuda_init: the CUDA driver sees no GPU");
            dl__cu_ready = -1;
        } else {
            dl__cu_ready = 1;
        }
    }
    if (dl__cu_ready < 0) {
        dl_set_error("%s", dl__cu_setup_msg);
        return -1;
    }
    if (!dl__cu_blas) {
        cublasStatus_t s = cublasCreate(&dl__cu_blas);
        const char *tf32 = getenv("DL_CUDA_TF32");
        if (s != CUBLAS_STATUS_SUCCESS) {
            dl__cu_blas = NULL;
            dl_set_error("dl_cuda_init: cublasCreate: %s", dl__cu_cublas_msg(s));
            return -1;
        }
        cublasSetStream(dl__cu_blas, cudaStreamPerThread);
        cublasSetMathMode(dl__cu_blas, tf32 && tf32[0] == '1' ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    }
    return 0;
#endif
}

DLDEF void *dl__cuda_malloc(size_t bytes) {
    void *p = NULL;
    if (dl__cuda_setup() != 0) return NULL;
#ifdef DL_CUDA_EMULATE
    p = malloc(bytes ? bytes : 1);
    if (!p) dl_set_error("dl_cuda: out of device memory (%zu bytes)", bytes);
#else
    if (dl__cu_check(cudaMalloc(&p, bytes ? bytes : 1), "dl_cuda: cudaMalloc") != 0) return NULL;
#endif
    return p;
}

DLDEF void dl__cuda_free(void *p) {
    if (!p) return;
#ifdef DL_CUDA_EMULATE
    free(p);
#else
    cudaFree(p);
#endif
}

DLDEF int dl__cuda_memcpy(void *dst, const void *src, size_t bytes, int kind) {
    if (bytes == 0) return 0;
#ifdef DL_CUDA_EMULATE
    (void)kind;
    memmove(dst, src, bytes);
    return 0;
#else
    cudaMemcpyKind k = kind == DL__H2D ? cudaMemcpyHostToDevice : kind == DL__D2H ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
    if (dl__cu_check(cudaMemcpyAsync(dst, src, bytes, k, cudaStreamPerThread), "dl_cuda: cudaMemcpy") != 0) return -1;
    if (kind == DL__D2D) return 0;
    return dl__cu_check(cudaStreamSynchronize(cudaStreamPerThread), "dl_cuda: cudaMemcpy");
#endif
}

DLDEF int dl__cuda_memset0(void *p, size_t bytes) {
    if (bytes == 0) return 0;
#ifdef DL_CUDA_EMULATE
    memset(p, 0, bytes);
    return 0;
#else
    return dl__cu_check(cudaMemsetAsync(p, 0, bytes, cudaStreamPerThread), "dl_cuda: cudaMemset");
#endif
}

DLDEF int dl__cuda_sync(void) {
    if (dl__cuda_setup() != 0) return -1;
#ifdef DL_CUDA_EMULATE
    return 0;
#else
    return dl__cu_check(cudaStreamSynchronize(cudaStreamPerThread), "dl_device_synchronize");
#endif
}

/* ---- Index geometry: up to DL_MAX_DIMS axes and three operands, passed to kernels by value ---- */

typedef struct dl__cu_geom {
    int nd;
    long long shape[DL_MAX_DIMS];
    long long st[3][DL_MAX_DIMS]; /* each operand's stride (elements) along each axis; 0 broadcasts */
} dl__cu_geom;

/* The offsets of the three operands at row-major flat index i of g's shape. */
DL__DEV void dl__cu_geom_at(const dl__cu_geom *g, size_t i, long long off[3]) {
    int d;
    off[0] = off[1] = off[2] = 0;
    for (d = g->nd - 1; d >= 0; d--) {
        long long c = (long long)(i % (size_t)g->shape[d]);
        i /= (size_t)g->shape[d];
        off[0] += c * g->st[0][d];
        off[1] += c * g->st[1][d];
        off[2] += c * g->st[2][d];
    }
}

static void dl__cu_contig(int nd, const int *shape, ptrdiff_t *st) {
    ptrdiff_t s = 1;
    int i;
    for (i = nd - 1; i >= 0; i--) { st[i] = s; s *= shape[i] ? shape[i] : 1; }
}

/* ---- Copies and fills ---- */

DL__KERNEL k_strided_copy(size_t n, dl__cu_geom g, char *dst, const char *src, int esize, int accumulate) {
    DL__LOOP(i, n) {
        long long off[3];
        dl__cu_geom_at(&g, i, off);
        if (accumulate) ((float *)dst)[off[0]] += ((const float *)src)[off[1]];
        else if (esize == 4) ((int *)dst)[off[0]] = ((const int *)src)[off[1]];
        else if (esize == 1) dst[off[0]] = src[off[1]];
        else memcpy(dst + off[0] * esize, src + off[1] * esize, (size_t)esize);
    }
}

DLDEF int dl__cuda_strided_copy(void *dst, const ptrdiff_t *dst_strides, const void *src, const ptrdiff_t *src_strides,
                                int ndim, const int *shape, int esize, int accumulate) {
    dl__cu_geom g;
    size_t n = 1;
    int i;
    memset(&g, 0, sizeof g);
    g.nd = ndim;
    for (i = 0; i < ndim; i++) {
        g.shape[i] = shape[i];
        g.st[0][i] = dst_strides[i];
        g.st[1][i] = src_strides[i];
        n *= (size_t)shape[i];
    }
    DL__LAUNCH(k_strided_copy, n, (n, g, (char *)dst, (const char *)src, esize, accumulate));
    return DL__CHECK_LAUNCH("dl_copy");
}

/* dtype codes as dl_dtype: 0 f32, 1 i32, 2 u8; conversions as dl_set (saturating, NaN -> 0). */
DL__DEV float dl__cu_ld(const void *p, int dt, long long off) {
    return dt == 0 ? ((const float *)p)[off] : dt == 1 ? (float)((const int *)p)[off] : (float)((const unsigned char *)p)[off];
}
DL__DEV void dl__cu_st(void *p, int dt, long long off, float v) {
    if (dt == 0) ((float *)p)[off] = v;
    else if (dt == 1) ((int *)p)[off] = v != v ? 0 : v >= 2147483520.0f ? 2147483647 : v <= -2147483648.0f ? (-2147483647 - 1) : (int)v;
    else ((unsigned char *)p)[off] = v != v ? 0 : v >= 255.0f ? 255 : v <= 0.0f ? 0 : (unsigned char)v;
}

DL__KERNEL k_convert(size_t n, dl__cu_geom g, void *dst, int ddt, const void *src, int sdt) {
    DL__LOOP(i, n) {
        long long off[3];
        dl__cu_geom_at(&g, i, off);
        dl__cu_st(dst, ddt, off[0], dl__cu_ld(src, sdt, off[1]));
    }
}

static void dl__cu_geom2(dl__cu_geom *g, int nd, const int *shape, const ptrdiff_t *s0, const ptrdiff_t *s1) {
    int i;
    memset(g, 0, sizeof *g);
    g->nd = nd;
    for (i = 0; i < nd; i++) {
        g->shape[i] = shape[i];
        g->st[0][i] = s0[i];
        g->st[1][i] = s1 ? s1[i] : 0;
    }
}

DLDEF int dl__cuda_copy_convert(dl_tensor *dst, const dl_tensor *src) {
    dl__cu_geom g;
    dl__cu_geom2(&g, dst->ndim, dst->shape, dst->strides, src->strides);
    DL__LAUNCH(k_convert, dst->numel, (dst->numel, g, dst->data, (int)dst->dtype, src->data, (int)src->dtype));
    return DL__CHECK_LAUNCH("dl_copy");
}

DL__KERNEL k_fill(size_t n, dl__cu_geom g, void *dst, int dt, float v) {
    DL__LOOP(i, n) {
        long long off[3];
        dl__cu_geom_at(&g, i, off);
        dl__cu_st(dst, dt, off[0], v);
    }
}

DLDEF int dl__cuda_fill(dl_tensor *t, float value) {
    dl__cu_geom g;
    dl__cu_geom2(&g, t->ndim, t->shape, t->strides, NULL);
    DL__LAUNCH(k_fill, t->numel, (t->numel, g, t->data, (int)t->dtype, value));
    return DL__CHECK_LAUNCH("dl_fill");
}

/* ---- Argument checks ---- */

/* 1 when every given tensor is an f32 tensor on the GPU, else 0 with the error set. */
static int dl__cu_on_gpu(const char *op, int n, dl_tensor *const *ts, const char *const *names) {
    int i;
    for (i = 0; i < n; i++) {
        if (!ts[i]) continue;
        if (ts[i]->device != DL_DEVICE_CUDA) {
            int j;
            for (j = 0; j < n; j++)
                if (ts[j] && ts[j]->device == DL_DEVICE_CUDA) break;
            dl_set_error("%s: %s is on the %s and %s on the %s: move one (dl_to_device); ops never copy across devices", op,
                         names[i], dl_device_name(ts[i]->device), j < n ? names[j] : "another", j < n ? "GPU" : "GPU");
            return 0;
        }
        if (ts[i]->dtype != DL_DTYPE_F32) {
            dl_set_error("%s: %s must be f32, got %s", op, names[i], dl_dtype_name(ts[i]->dtype));
            return 0;
        }
    }
    return 1;
}
static const char *const dl__cu_ab[3] = {"a", "b", "c"};

/* What an op returns: out, or NULL when dl_record failed it (dl_check_numerics), as on the CPU. */
static dl_tensor *dl__cu_checked(dl_tensor *out) { return out && (out->flags & DL__NONFINITE) ? NULL : out; }

static dl_tensor *dl__cu_out(int ndim, const int *shape) { return dl__tmp_on(DL_DEVICE_CUDA, DL_DTYPE_F32, ndim, shape); }
static float *dl__cu_scratch(size_t n) { return (float *)dl__device_tmp_alloc(n * sizeof(float)); }
/* A contiguous f32 version of x on the GPU (x's data itself when contiguous). */
static const float *dl__cu_contig_data(dl_tensor *x) { return dl_contig_f32(x); }

/* ---- Broadcasting binary ops ---- */

DL__DEV float dl__cu_binop(int op, float A, float B) {
    switch (op) {
    case DL__ADD: return A + B;
    case DL__SUB: return A - B;
    case DL__MUL: return A * B;
    case DL__DIV: return A / B;
    case DL__MIN: return (A != A || A < B) ? A : B;
    default: return (A != A || A > B) ? A : B;
    }
}

/* d(a op b)/d(side) times G, as dl_tensor.h's rules (ties of min/max split g in halves). */
DL__DEV float dl__cu_bingrad(int op, int side, float G, float A, float B) {
    switch (op * 2 + side) {
    case DL__ADD * 2: case DL__ADD * 2 + 1: case DL__SUB * 2: return G;
    case DL__SUB * 2 + 1: return -G;
    case DL__MUL * 2: return G * B;
    case DL__MUL * 2 + 1: return G * A;
    case DL__DIV * 2: return G / B;
    case DL__DIV * 2 + 1: return -G * A / (B * B);
    case DL__MIN * 2: return A > B ? 0.0f : A == B ? 0.5f * G : G;
    case DL__MIN * 2 + 1: return B > A ? 0.0f : A == B ? 0.5f * G : G;
    case DL__MAX * 2: return A < B ? 0.0f : A == B ? 0.5f * G : G;
    default: return B < A ? 0.0f : A == B ? 0.5f * G : G;
    }
}

DL__KERNEL k_binary(size_t n, dl__cu_geom g, int op, float *out, const float *a, const float *b) {
    DL__LOOP(i, n) {
        long long off[3];
        dl__cu_geom_at(&g, i, off);
        out[i] = dl__cu_binop(op, a[off[1]], b[off[2]]);
    }
}

/* One thread per element of x's gradient: it sums over the axes along which x was broadcast.
   outer: the geometry over x's axes (st: g, a, b); inner: over the broadcast axes. */
DL__KERNEL k_binary_grad(size_t n, dl__cu_geom outer, dl__cu_geom inner, size_t n_inner, int op, int side, float *gx,
                         const float *g, const float *a, const float *b) {
    DL__LOOP(i, n) {
        long long o[3], r[3];
        double s = 0;
        size_t j;
        dl__cu_geom_at(&outer, i, o);
        for (j = 0; j < n_inner; j++) {
            dl__cu_geom_at(&inner, j, r);
            s += dl__cu_bingrad(op, side, g[o[0] + r[0]], a[o[1] + r[1]], b[o[2] + r[2]]);
        }
        gx[i] += (float)s;
    }
}

/* x's strides aligned right against an nd-axis shape, 0 where x is missing or broadcast. */
static void dl__cu_bcast(const dl_tensor *x, int nd, const int *shape, long long *st) {
    int i, off = nd - x->ndim;
    for (i = 0; i < nd; i++) {
        int xi = i - off;
        st[i] = xi < 0 || (x->shape[xi] == 1 && shape[i] != 1) ? 0 : x->strides[xi];
    }
}

typedef struct dl__cu_binary_ctx { int op; } dl__cu_binary_ctx;

static void dl__cu_binary_backward(dl_node *n) {
    int op = ((const dl__cu_binary_ctx *)n->ctx)->op, side, i;
    dl_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
    long long sa[DL_MAX_DIMS], sb[DL_MAX_DIMS];
    ptrdiff_t so[DL_MAX_DIMS];
    dl__cu_contig(out->ndim, out->shape, so);
    dl__cu_bcast(a, out->ndim, out->shape, sa);
    dl__cu_bcast(b, out->ndim, out->shape, sb);
    for (side = 0; side < 2; side++) {
        dl_tensor *x = n->in[side];
        float *gx = dl_grad_buf(x);
        dl__cu_geom outer, inner;
        size_t n_inner = 1;
        int off = out->ndim - x->ndim;
        if (!gx) continue;
        memset(&outer, 0, sizeof outer);
        memset(&inner, 0, sizeof inner);
        for (i = 0; i < out->ndim; i++) {
            int xi = i - off;
            int kept = xi >= 0 && x->shape[xi] == out->shape[i];
            dl__cu_geom *t = kept ? &outer : &inner;
            int k = t->nd++;
            t->shape[k] = out->shape[i];
            t->st[0][k] = so[i];
            t->st[1][k] = sa[i];
            t->st[2][k] = sb[i];
            if (!kept) n_inner *= (size_t)out->shape[i];
        }
        /* x's axes of size 1 that out also has as 1 are kept; missing ones count as 1 */
        DL__LAUNCH(k_binary_grad, x->numel, (x->numel, outer, inner, n_inner, op, side, gx, out->grad, (const float *)a->data,
                                             (const float *)b->data));
    }
}

DLDEF dl_tensor *dl__cuda_binary(int op, const char *name, dl_tensor *a, dl_tensor *b) {
    dl_tensor *in[2] = {a, b}, *out;
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim, shape[DL_MAX_DIMS] = {0}, i;
    dl__cu_geom g;
    dl_node *node;
    if (!dl__cu_on_gpu(name, 2, in, dl__cu_ab)) return NULL;
    for (i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char s1[64], s2[64];
            dl_set_error("%s: shapes %s and %s do not broadcast", name, dl_shape_str(a, s1, sizeof s1), dl_shape_str(b, s2, sizeof s2));
            return NULL;
        }
        shape[i] = da == 1 ? db : da;
    }
    if (!(out = dl__cu_out(nd, shape))) return NULL;
    memset(&g, 0, sizeof g);
    g.nd = nd;
    for (i = 0; i < nd; i++) g.shape[i] = shape[i];
    dl__cu_bcast(a, nd, shape, g.st[1]);
    dl__cu_bcast(b, nd, shape, g.st[2]);
    DL__LAUNCH(k_binary, out->numel, (out->numel, g, op, (float *)out->data, (const float *)a->data, (const float *)b->data));
    if (DL__CHECK_LAUNCH(name) != 0) return NULL;
    node = dl_record(name + 3, out, 2, in, dl__cu_binary_backward, sizeof(dl__cu_binary_ctx));
    if (node) ((dl__cu_binary_ctx *)node->ctx)->op = op;
    return dl__cu_checked(out);
}

/* ---- Unary ops and activations (x is read contiguous; y = f(x)) ---- */

#define DL__SQRT1_2 0.70710678118654752f
#define DL__INV_SQRT_2PI 0.39894228040143268f
#define DL__SQRT_2_PI 0.79788456080286536f

/* code: 0..DL__CLAMP the unary ops; 100 + an activation kind. */
DL__DEV float dl__cu_fwd(int code, float x, float p, float q) {
    switch (code) {
    case DL__AFFINE: return q == 0.0f ? p * x : p == 1.0f ? x + q : p * x + q;
    case DL__POW: return p == 2.0f ? x * x : powf(x, p);
    case DL__EXP: return expf(x);
    case DL__LOG: return logf(x);
    case DL__SQRT: return sqrtf(x);
    case DL__ABS: return fabsf(x);
    case DL__CLAMP: { float v = x < p ? p : x; return v > q ? q : v; }
    case 100 + DL__RELU: return x < 0 ? 0.0f : x; /* NaN stays NaN, -0 stays -0 (the CPU's) */
    case 100 + DL__LEAKY_RELU: return x > 0 ? x : p * x;
    case 100 + DL__ELU: return x > 0 ? x : p * expm1f(x);
    case 100 + DL__GELU: return 0.5f * x * (1.0f + erff(x * DL__SQRT1_2));
    case 100 + DL__GELU_TANH: return 0.5f * x * (1.0f + tanhf(DL__SQRT_2_PI * (x + 0.044715f * x * x * x)));
    case 100 + DL__SIGMOID: return 1.0f / (1.0f + expf(-x));
    case 100 + DL__TANH: return tanhf(x);
    default: return x > 20.0f ? x : log1pf(expf(x)); /* softplus */
    }
}

/* dy/dx times g, from x and y = f(x). */
DL__DEV float dl__cu_bwd(int code, float g, float x, float y, float p, float q) {
    switch (code) {
    case DL__AFFINE: return p * g;
    case DL__POW: return p == 0.0f ? 0.0f : p == 2.0f ? 2.0f * x * g : g * p * powf(x, p - 1.0f);
    case DL__EXP: return g * y;
    case DL__LOG: return g / x;
    case DL__SQRT: return g / (2.0f * y);
    case DL__ABS: return x > 0 ? g : x < 0 ? -g : 0.0f;
    case DL__CLAMP: return (x >= p && x <= q) ? g : 0.0f;
    case 100 + DL__RELU: return x <= 0 ? 0.0f : g;
    case 100 + DL__LEAKY_RELU: return x > 0 ? g : p * g;
    case 100 + DL__ELU: return x > 0 ? g : g * p * expf(x);
    case 100 + DL__GELU: {
        float cdf = 0.5f * (1.0f + erff(x * DL__SQRT1_2)), pdf = DL__INV_SQRT_2PI * expf(-0.5f * x * x);
        return g * (cdf + x * pdf);
    }
    case 100 + DL__GELU_TANH: {
        float x2 = x * x, t = tanhf(DL__SQRT_2_PI * x * (1.0f + 0.044715f * x2));
        return g * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * DL__SQRT_2_PI * (1.0f + 3.0f * 0.044715f * x2));
    }
    case 100 + DL__SIGMOID: return g * y * (1.0f - y);
    case 100 + DL__TANH: return g * (1.0f - y * y);
    default: return x > 20.0f ? g : g / (1.0f + expf(-x));
    }
}

DL__KERNEL k_map(size_t n, int code, float p, float q, float *y, const float *x) {
    DL__LOOP(i, n) { y[i] = dl__cu_fwd(code, x[i], p, q); }
}
DL__KERNEL k_map_grad(size_t n, int code, float p, float q, float *gx, const float *g, const float *x, const float *y) {
    DL__LOOP(i, n) { gx[i] += dl__cu_bwd(code, g[i], x[i], y[i], p, q); }
}

typedef struct dl__cu_map_ctx {
    int code;
    float p, q;
    const float *x; /* contiguous */
} dl__cu_map_ctx;

static void dl__cu_map_backward(dl_node *n) {
    const dl__cu_map_ctx *c = (const dl__cu_map_ctx *)n->ctx;
    float *gx = dl_grad_buf(n->in[0]);
    if (gx)
        DL__LAUNCH(k_map_grad, n->out->numel, (n->out->numel, c->code, c->p, c->q, gx, n->out->grad, c->x, (const float *)n->out->data));
}

static dl_tensor *dl__cu_map(const char *name, int code, dl_tensor *x, float p, float q) {
    dl__cu_map_ctx c;
    dl_tensor *out;
    dl_node *node;
    if (!dl__cu_on_gpu(name, 1, &x, dl__cu_ab + 0)) return NULL;
    c.code = code;
    c.p = p;
    c.q = q;
    c.x = dl__cu_contig_data(x);
    out = dl__cu_out(x->ndim, x->shape);
    if (!c.x || !out) return NULL;
    DL__LAUNCH(k_map, out->numel, (out->numel, code, p, q, (float *)out->data, c.x));
    if (DL__CHECK_LAUNCH(name) != 0) return NULL;
    node = dl_record(name + 3, out, 1, &x, dl__cu_map_backward, sizeof c);
    if (node) memcpy(node->ctx, &c, sizeof c);
    return dl__cu_checked(out);
}

DLDEF dl_tensor *dl__cuda_unary(const char *name, int op, dl_tensor *x, float p, float q) { return dl__cu_map(name, op, x, p, q); }
DLDEF dl_tensor *dl__cuda_activation(const char *name, int op, dl_tensor *x, float alpha) {
    return dl__cu_map(name, 100 + op, x, alpha, 0.0f);
}

/* ---- Reductions over axes ----
   The result's element i reduces x over the "inner" geometry (the reduced axes) starting at
   the offset the "outer" geometry (the kept axes) gives. */

typedef struct dl__cu_red_ctx {
    int kind, correction;
    dl__cu_geom outer, inner;  /* st[0]: x's strides (x contiguous) */
    size_t n_inner;
    const float *x;         /* contiguous */
    float *aux;             /* var: the means; max: the number of maxima */
} dl__cu_red_ctx;

DL__KERNEL k_reduce(size_t n, dl__cu_red_ctx c, float *out) {
    DL__LOOP(i, n) {
        long long o[3], r[3];
        size_t j;
        double s = 0;
        dl__cu_geom_at(&c.outer, i, o);
        if (c.kind == DL__REDUCE_MAX) {
            float m = -INFINITY, cnt = 0;
            for (j = 0; j < c.n_inner; j++) {
                float v;
                dl__cu_geom_at(&c.inner, j, r);
                v = c.x[o[0] + r[0]];
                if (v != v) { m = v; break; }
                if (v > m) m = v;
            }
            for (j = 0; j < c.n_inner; j++) {
                float v;
                dl__cu_geom_at(&c.inner, j, r);
                v = c.x[o[0] + r[0]];
                if (v == m || (m != m && v != v)) cnt += 1;
            }
            out[i] = m;
            c.aux[i] = cnt;
            continue;
        }
        for (j = 0; j < c.n_inner; j++) {
            dl__cu_geom_at(&c.inner, j, r);
            s += c.x[o[0] + r[0]];
        }
        if (c.kind == DL__REDUCE_SUM) { out[i] = (float)s; continue; }
        if (c.kind == DL__REDUCE_MEAN) { out[i] = (float)(s / (double)c.n_inner); continue; }
        {   /* var: two passes, as the CPU */
            double mean = s / (double)c.n_inner, q = 0;
            for (j = 0; j < c.n_inner; j++) {
                double d;
                dl__cu_geom_at(&c.inner, j, r);
                d = c.x[o[0] + r[0]] - mean;
                q += d * d;
            }
            c.aux[i] = (float)mean;
            out[i] = (float)(q / (double)((long long)c.n_inner - c.correction));
        }
    }
}

/* Sums and means over many elements: part[i] is result i / chunks's sum over its chunk i % chunks
   of the reduced elements (in their row-major order), finished in chunk order. */
DL__KERNEL k_reduce_part(size_t n, size_t chunks, dl__cu_red_ctx c, double *part) {
    DL__LOOP(i, n) {
        long long o[3], r[3];
        size_t j, k = i % chunks, end = (k + 1) * DL__CHUNK < c.n_inner ? (k + 1) * DL__CHUNK : c.n_inner;
        double s = 0;
        dl__cu_geom_at(&c.outer, i / chunks, o);
        for (j = k * DL__CHUNK; j < end; j++) {
            dl__cu_geom_at(&c.inner, j, r);
            s += c.x[o[0] + r[0]];
        }
        part[i] = s;
    }
}
DL__KERNEL k_reduce_finish(size_t n, size_t chunks, double div, const double *part, float *out) {
    DL__LOOP(i, n) {
        double s = 0;
        size_t k;
        for (k = 0; k < chunks; k++) s += part[i * chunks + k];
        out[i] = (float)(s / div);
    }
}

/* dx at every element of x (contiguous): g of its result element, scaled per kind. outer maps
   x's flat index to (x offset, result offset) through st[0] and st[1]. */
DL__KERNEL k_reduce_grad(size_t n, dl__cu_geom xg, int kind, size_t count, int correction, float *gx, const float *g,
                         const float *x, const float *y, const float *aux) {
    DL__LOOP(i, n) {
        long long off[3];
        float gi;
        dl__cu_geom_at(&xg, i, off);
        gi = g[off[1]];
        switch (kind) {
        case DL__REDUCE_SUM: gx[i] += gi; break;
        case DL__REDUCE_MEAN: gx[i] += gi / (float)count; break;
        case DL__REDUCE_VAR: gx[i] += gi * 2.0f * (x[i] - aux[off[1]]) / (float)((long long)count - correction); break;
        default: {
            float m = y[off[1]];
            if (x[i] == m || (m != m && x[i] != x[i])) gx[i] += gi / aux[off[1]];
        }
        }
    }
}

typedef struct dl__cu_red_bctx {
    dl__cu_red_ctx c;
    dl__cu_geom xg;
} dl__cu_red_bctx;

static void dl__cu_reduce_backward(dl_node *n) {
    const dl__cu_red_bctx *b = (const dl__cu_red_bctx *)n->ctx;
    float *gx = dl_grad_buf(n->in[0]);
    if (gx)
        DL__LAUNCH(k_reduce_grad, n->in[0]->numel, (n->in[0]->numel, b->xg, b->c.kind, b->c.n_inner, b->c.correction, gx,
                                                     n->out->grad, b->c.x, (const float *)n->out->data, b->c.aux));
}

DLDEF dl_tensor *dl__cuda_reduce(const char *name, int kind, dl_tensor *x, int naxes, const int *axes, int keepdim, int correction) {
    int red[DL_MAX_DIMS] = {0}, i, nd = 0, shape[DL_MAX_DIMS];
    ptrdiff_t xs[DL_MAX_DIMS], rs[DL_MAX_DIMS];
    dl__cu_red_bctx b;
    dl_tensor *out;
    dl_node *node;
    if (!dl__cu_on_gpu(name, 1, &x, dl__cu_ab)) return NULL;
    if (naxes < 0 || naxes > x->ndim || (naxes > 0 && !axes)) { dl_set_error("%s: bad axes", name); return NULL; }
    for (i = 0; i < naxes; i++) {
        int a = axes[i] < 0 ? axes[i] + x->ndim : axes[i];
        if (a < 0 || a >= x->ndim) { dl_set_error("%s: axis %d out of range for a %d-d tensor", name, axes[i], x->ndim); return NULL; }
        if (red[a]) { dl_set_error("%s: axis %d repeated", name, axes[i]); return NULL; }
        red[a] = 1;
    }
    if (naxes == 0)
        for (i = 0; i < x->ndim; i++) red[i] = 1;
    memset(&b, 0, sizeof b);
    b.c.kind = kind;
    b.c.correction = correction;
    b.c.n_inner = 1;
    for (i = 0; i < x->ndim; i++) {
        if (red[i]) b.c.n_inner *= (size_t)x->shape[i];
        if (!red[i] || keepdim) shape[nd++] = red[i] ? 1 : x->shape[i];
    }
    if (kind == DL__REDUCE_MAX && b.c.n_inner == 0) { dl_set_error("%s: cannot reduce over an empty axis", name); return NULL; }
    if (!(out = dl__cu_out(nd, shape))) return NULL;
    b.c.x = dl__cu_contig_data(x);
    b.c.aux = dl__cu_scratch(out->numel);
    if (!b.c.x || !b.c.aux) return NULL;
    dl__cu_contig(x->ndim, x->shape, xs);
    {   /* the result's strides at x's axes (0 along reduced ones) */
        int k = nd - 1;
        ptrdiff_t s = 1;
        for (i = x->ndim - 1; i >= 0; i--) {
            if (red[i] && !keepdim) { rs[i] = 0; continue; }
            rs[i] = red[i] ? 0 : s;
            s *= shape[k--];
        }
    }
    for (i = 0; i < x->ndim; i++) {
        dl__cu_geom *t = red[i] ? &b.c.inner : &b.c.outer;
        int k = t->nd++;
        t->shape[k] = x->shape[i];
        t->st[0][k] = xs[i];
    }
    dl__cu_geom2(&b.xg, x->ndim, x->shape, xs, rs);
    if ((kind == DL__REDUCE_SUM || kind == DL__REDUCE_MEAN) && b.c.n_inner > DL__CHUNK) {
        /* long sums: one thread per (result, chunk), then the chunks in order per result */
        size_t chunks = (b.c.n_inner + DL__CHUNK - 1) / DL__CHUNK, np = out->numel * chunks;
        double *part = (double *)dl__device_tmp_alloc(np * sizeof(double));
        if (!part) return NULL;
        DL__LAUNCH(k_reduce_part, np, (np, chunks, b.c, part));
        DL__LAUNCH(k_reduce_finish, out->numel, (out->numel, chunks, kind == DL__REDUCE_MEAN ? (double)b.c.n_inner : 1.0, part,
                                                   (float *)out->data));
    } else {
        DL__LAUNCH(k_reduce, out->numel, (out->numel, b.c, (float *)out->data));
    }
    if (DL__CHECK_LAUNCH(name) != 0) return NULL;
    node = dl_record(name + 3, out, 1, &x, dl__cu_reduce_backward, sizeof b);
    if (node) memcpy(node->ctx, &b, sizeof b);
    return dl__cu_checked(out);
}

DL__KERNEL k_argmax(size_t n, size_t len, size_t inner, const float *x, int *out) {
    DL__LOOP(i, n) {
        size_t o = i / inner, j = i % inner, k, best = 0;
        const float *p = x + o * len * inner + j;
        for (k = 1; k < len; k++) {
            float v = p[k * inner], m = p[best * inner];
            if (m != m) break;
            if (v > m || v != v) best = k;
        }
        out[i] = (int)best;
    }
}

DLDEF dl_tensor *dl__cuda_argmax(dl_tensor *x, int axis, int keepdim) {
    int shape[DL_MAX_DIMS], nd = 0, i;
    size_t inner = 1, len;
    const float *xs;
    dl_tensor *out;
    if (!dl__cu_on_gpu("dl_argmax", 1, &x, dl__cu_ab)) return NULL;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) { dl_set_error("dl_argmax: axis out of range for a %d-d tensor", x->ndim); return NULL; }
    if (x->shape[axis] == 0) { dl_set_error("dl_argmax: cannot reduce over an empty axis"); return NULL; }
    for (i = 0; i < x->ndim; i++) {
        if (i > axis) inner *= (size_t)x->shape[i];
        if (i != axis || keepdim) shape[nd++] = i == axis ? 1 : x->shape[i];
    }
    len = (size_t)x->shape[axis];
    xs = dl__cu_contig_data(x);
    out = dl__tmp_on(DL_DEVICE_CUDA, DL_DTYPE_I32, nd, shape);
    if (!xs || !out) return NULL;
    DL__LAUNCH(k_argmax, out->numel, (out->numel, len, inner, xs, (int *)out->data));
    return DL__CHECK_LAUNCH("dl_argmax") != 0 ? NULL : out;
}

/* ---- Matrix products (cuBLAS; dl_sgemm in emulation) ---- */

/* Row-major C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for b < batch, with batch strides in
   elements (0: the same matrix for every b). cuBLAS is column-major: C^T = op(B)^T op(A)^T. */
static int dl__cu_gemm(const char *op, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, long long sa,
                    const float *b, int ldb, long long sb, float beta, float *c, int ldc, long long sc, int batch) {
    if (m == 0 || n == 0 || batch == 0) return 0;
#ifdef DL_CUDA_EMULATE
    (void)op;
    {
        int i;
        for (i = 0; i < batch; i++) {
            if (k == 0) { /* dl_sgemm needs k >= 1 in some builds: C = beta C */
                int r, q;
                for (r = 0; r < m; r++)
                    for (q = 0; q < n; q++) c[i * sc + (long long)r * ldc + q] *= beta;
                continue;
            }
            dl_sgemm(ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc, ldc);
        }
    }
    return 0;
#else
    cublasStatus_t s;
    if (batch == 1)
        s = cublasSgemm(dl__cu_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                        &beta, c, ldc);
    else
        s = cublasSgemmStridedBatched(dl__cu_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b,
                                      ldb, sb, a, lda, sa, &beta, c, ldc, sc, batch);
    if (s != CUBLAS_STATUS_SUCCESS) {
        dl_set_error("%s: cuBLAS sgemm [%d x %d x %d, batch %d]: %s", op, m, n, k, batch, dl__cu_cublas_msg(s));
        return -1;
    }
    return 0;
#endif
}

/* A matrix operand read in place: its last two axes are either row-major (t = 0) or a
   transposed view of row-major (t = 1), with leading dimension ld. Otherwise a copy. */
typedef struct dl__cu_mat {
    const float *p;
    int t, ld;
} dl__cu_mat;

/* x's last two axes as a matrix, and x materialized (contiguous or broadcast-copied) so that
   its batch axes (nb of them, broadcast to bshape) step by one matrix: bstride is that step, or
   0 when x has no batch axes of size > 1. */
static int dl__cu_mat_operand(dl_tensor *x, int nb, const int *bshape, dl__cu_mat *mt, long long *bstride, int *materialized) {
    int r = x->ndim - 2, i, xb = 1, full = 1;
    *materialized = 0;
    ptrdiff_t s0 = x->strides[r], s1 = x->strides[r + 1];
    for (i = 0; i < x->ndim - 2; i++) xb *= x->shape[i];
    for (i = 0; i < nb; i++) {
        int xi = i - (nb - (x->ndim - 2));
        if ((xi < 0 ? 1 : x->shape[xi]) != bshape[i]) full = 0;
    }
    if (xb <= 1 || full) {
        int rows = x->shape[r], cols = x->shape[r + 1];
        /* in place when the matrix is row-major or transposed and the batch steps are dense */
        int rowmaj = (s1 == 1 || cols <= 1) && s0 >= (cols > 1 ? cols : 1);
        int colmaj = (s0 == 1 || rows <= 1) && s1 >= (rows > 1 ? rows : 1);
        int dense = 1;
        long long step = (long long)rows * cols;
        ptrdiff_t expect = (ptrdiff_t)step;
        for (i = x->ndim - 3; i >= 0; i--) {
            if (x->shape[i] > 1 && x->strides[i] != expect) dense = 0;
            expect *= x->shape[i];
        }
        if (dense && rowmaj && (xb <= 1 || s0 == cols)) {
            mt->p = (const float *)x->data; mt->t = 0; mt->ld = cols > 1 ? (int)s0 : (int)(s0 > 0 ? s0 : 1);
            if (mt->ld < cols) mt->ld = cols;
            *bstride = xb <= 1 ? 0 : step;
            return 1;
        }
        if (dense && colmaj && (xb <= 1 || s1 == rows)) {
            mt->p = (const float *)x->data; mt->t = 1; mt->ld = rows > 1 ? (int)s1 : (int)(s1 > 0 ? s1 : 1);
            if (mt->ld < rows) mt->ld = rows;
            *bstride = xb <= 1 ? 0 : step;
            return 1;
        }
        if (xb <= 1 || full) { /* a contiguous copy */
            const float *c = dl_contig_f32(x);
            if (!c) return 0;
            mt->p = c; mt->t = 0; mt->ld = cols > 0 ? cols : 1;
            *bstride = xb <= 1 ? 0 : step;
            return 1;
        }
    }
    {   /* batch axes that broadcast partly: materialize the full batch */
        int shape[DL_MAX_DIMS], k;
        ptrdiff_t dst[DL_MAX_DIMS], src[DL_MAX_DIMS];
        dl_tensor *full_t;
        long long bs[DL_MAX_DIMS];
        for (k = 0; k < nb; k++) shape[k] = bshape[k];
        shape[nb] = x->shape[r];
        shape[nb + 1] = x->shape[r + 1];
        if (!(full_t = dl__cu_out(nb + 2, shape))) return 0;
        dl__cu_contig(nb + 2, shape, dst);
        dl__cu_bcast(x, nb + 2, shape, bs);
        for (k = 0; k < nb + 2; k++) src[k] = (ptrdiff_t)bs[k];
        if (dl__cuda_strided_copy(full_t->data, dst, x->data, src, nb + 2, shape, 4, 0) != 0) return 0;
        mt->p = (const float *)full_t->data;
        mt->t = 0;
        mt->ld = shape[nb + 1] > 0 ? shape[nb + 1] : 1;
        *bstride = (long long)shape[nb] * shape[nb + 1];
        *materialized = 1;
        return 1;
    }
}

typedef struct dl__cu_mm_ctx {
    dl__cu_mat a, b;
    long long sa, sb;
    int ta, tb, m, n, k, batch;
    int a_full, b_full;          /* the operand was copied out to the whole batch (partial broadcast) */
    int nb, bshape[DL_MAX_DIMS]; /* the result's batch axes */
} dl__cu_mm_ctx;

/* gx (x's shape, contiguous) += full (shape [bshape..., rows, cols]) summed over the batch axes
   that x broadcasts along. */
static void dl__cu_sum_batches_into(float *gx, const dl_tensor *x, int nb, const int *bshape, const float *full) {
    int shape[DL_MAX_DIMS], i;
    dl__cu_geom outer, inner;
    size_t n_inner = 1;
    ptrdiff_t sf[DL_MAX_DIMS];
    for (i = 0; i < nb; i++) shape[i] = bshape[i];
    shape[nb] = x->shape[x->ndim - 2];
    shape[nb + 1] = x->shape[x->ndim - 1];
    dl__cu_contig(nb + 2, shape, sf);
    memset(&outer, 0, sizeof outer);
    memset(&inner, 0, sizeof inner);
    for (i = 0; i < nb + 2; i++) {
        int xi = i - (nb + 2 - x->ndim);
        int kept = xi >= 0 && x->shape[xi] == shape[i];
        dl__cu_geom *t = kept ? &outer : &inner;
        int k = t->nd++;
        t->shape[k] = shape[i];
        t->st[0][k] = t->st[1][k] = t->st[2][k] = sf[i];
        if (!kept) n_inner *= (size_t)shape[i];
    }
    DL__LAUNCH(k_binary_grad, x->numel, (x->numel, outer, inner, n_inner, (int)DL__ADD, 0, gx, full, full, full));
}

/* C = op(A) op(B), per batch: dA = dC op(B)^T (for a stored transposed: (dC op(B)^T)^T =
   op(B) dC^T), dB = op(A)^T dC (or dC^T op(A)). An operand with batch stride 0 gets the sum over
   the batch (one GEMM per batch element, accumulating in batch order); a materialized one gets
   its whole-batch gradient in scratch, then summed down to its shape. */
static void dl__cu_mm_backward(dl_node *nd) {
    const dl__cu_mm_ctx *c = (const dl__cu_mm_ctx *)nd->ctx;
    dl_tensor *a = nd->in[0], *b = nd->in[1];
    float *ga = dl_grad_buf(a), *gb = dl_grad_buf(b);
    const float *g = nd->out->grad;
    int ea = c->ta ^ c->a.t, eb = c->tb ^ c->b.t, i;
    long long sg = (long long)c->m * c->n, mk = (long long)c->m * c->k, kn = (long long)c->k * c->n;
    if (ga) {
        float *dst = ga;
        int lda = c->ta ? c->m : c->k;
        if (c->a_full && !(dst = (float *)dl__device_tmp_alloc((size_t)(c->batch * mk) * sizeof(float)))) return;
        if (c->a_full) dl__cuda_memset0(dst, (size_t)(c->batch * mk) * sizeof(float));
        for (i = 0; i < (c->sa ? 1 : c->batch); i++) {
            int per = c->sa ? c->batch : 1;
            long long sd = c->sa ? mk : 0;
            if (!c->ta)
                dl__cu_gemm("dl_matmul", 0, !eb, c->m, c->k, c->n, 1.0f, g + i * sg, c->n, sg, c->b.p + i * c->sb, c->b.ld, c->sb, 1.0f,
                         dst, lda, sd, per);
            else
                dl__cu_gemm("dl_matmul", eb, 1, c->k, c->m, c->n, 1.0f, c->b.p + i * c->sb, c->b.ld, c->sb, g + i * sg, c->n, sg, 1.0f,
                         dst, lda, sd, per);
        }
        if (c->a_full) dl__cu_sum_batches_into(ga, a, c->nb, c->bshape, dst);
    }
    if (gb) {
        float *dst = gb;
        int ldb = c->tb ? c->k : c->n;
        if (c->b_full && !(dst = (float *)dl__device_tmp_alloc((size_t)(c->batch * kn) * sizeof(float)))) return;
        if (c->b_full) dl__cuda_memset0(dst, (size_t)(c->batch * kn) * sizeof(float));
        for (i = 0; i < (c->sb ? 1 : c->batch); i++) {
            int per = c->sb ? c->batch : 1;
            long long sd = c->sb ? kn : 0;
            if (!c->tb)
                dl__cu_gemm("dl_matmul", !ea, 0, c->k, c->n, c->m, 1.0f, c->a.p + i * c->sa, c->a.ld, c->sa, g + i * sg, c->n, sg, 1.0f,
                         dst, ldb, sd, per);
            else
                dl__cu_gemm("dl_matmul", 1, ea, c->n, c->k, c->m, 1.0f, g + i * sg, c->n, sg, c->a.p + i * c->sa, c->a.ld, c->sa, 1.0f,
                         dst, ldb, sd, per);
        }
        if (c->b_full) dl__cu_sum_batches_into(gb, b, c->nb, c->bshape, dst);
    }
}

DLDEF dl_tensor *dl__cuda_matmul_t(dl_tensor *a, dl_tensor *b, int ta, int tb) {
    dl_tensor *in[2] = {a, b}, *out;
    dl__cu_mm_ctx c;
    int nb, shape[DL_MAX_DIMS], i, kb;
    char s1[64], s2[64];
    dl_node *nd;
    if (!dl__cu_on_gpu("dl_matmul", 2, in, dl__cu_ab)) return NULL;
    if (a->ndim < 2 || b->ndim < 2) {
        dl_set_error("dl_matmul: operands need at least 2 axes, got %s and %s", dl_shape_str(a, s1, sizeof s1), dl_shape_str(b, s2, sizeof s2));
        return NULL;
    }
    memset(&c, 0, sizeof c);
    c.ta = ta = ta != 0;
    c.tb = tb = tb != 0;
    c.m = a->shape[a->ndim - 2 + ta];
    c.k = a->shape[a->ndim - 1 - ta];
    kb = b->shape[b->ndim - 2 + tb];
    c.n = b->shape[b->ndim - 1 - tb];
    if (c.k != kb) {
        dl_set_error("dl_matmul: inner dimensions differ: %s%s @ %s%s", dl_shape_str(a, s1, sizeof s1), ta ? "^T" : "",
                     dl_shape_str(b, s2, sizeof s2), tb ? "^T" : "");
        return NULL;
    }
    nb = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    c.batch = 1;
    for (i = 0; i < nb; i++) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            dl_set_error("dl_matmul: batch axes of %s and %s do not broadcast", dl_shape_str(a, s1, sizeof s1), dl_shape_str(b, s2, sizeof s2));
            return NULL;
        }
        shape[i] = da == 1 ? db : da;
        c.batch *= shape[i];
    }
    shape[nb] = c.m;
    shape[nb + 1] = c.n;
    out = dl__cu_out(nb + 2, shape);
    c.nb = nb;
    for (i = 0; i < nb; i++) c.bshape[i] = shape[i];
    if (!out || !dl__cu_mat_operand(a, nb, shape, &c.a, &c.sa, &c.a_full) || !dl__cu_mat_operand(b, nb, shape, &c.b, &c.sb, &c.b_full))
        return NULL;
    if (c.k == 0) {
        if (dl__cuda_memset0(out->data, out->numel * sizeof(float)) != 0) return NULL;
    } else if (dl__cu_gemm("dl_matmul", ta ^ c.a.t, tb ^ c.b.t, c.m, c.n, c.k, 1.0f, c.a.p, c.a.ld, c.sa, c.b.p, c.b.ld, c.sb, 0.0f,
                        (float *)out->data, c.n, (long long)c.m * c.n, c.batch) != 0) {
        return NULL;
    }
    nd = dl_record("matmul", out, 2, in, dl__cu_mm_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(out);
}

/* ---- Dense layer: y = x w + b ---- */

DL__KERNEL k_bias_rows(size_t n, int cols, float *y, const float *b) {
    DL__LOOP(i, n) { y[i] = b[i % (size_t)cols]; }
}
/* gb[j] += sum over rows of g[r][j]: one thread per column, rows in order. */
DL__KERNEL k_col_sum(size_t n, int rows, const float *g, float *gb) {
    DL__LOOP(j, n) {
        double s = 0;
        int r;
        for (r = 0; r < rows; r++) s += g[(size_t)r * n + j];
        gb[j] += (float)s;
    }
}

typedef struct dl__cu_lin_ctx {
    dl__cu_mat x, w;
    int rows, in, out;
} dl__cu_lin_ctx;

static void dl__cu_linear_backward(dl_node *nd) {
    const dl__cu_lin_ctx *c = (const dl__cu_lin_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]), *gw = dl_grad_buf(nd->in[1]);
    float *gb = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    const float *gy = nd->out->grad;
    if (gx) dl__cu_gemm("dl_linear", 0, !c->w.t, c->rows, c->in, c->out, 1.0f, gy, c->out, 0, c->w.p, c->w.ld, 0, 1.0f, gx, c->in, 0, 1);
    if (gw) dl__cu_gemm("dl_linear", !c->x.t, 0, c->in, c->out, c->rows, 1.0f, c->x.p, c->x.ld, 0, gy, c->out, 0, 1.0f, gw, c->out, 0, 1);
    if (gb) DL__LAUNCH(k_col_sum, (size_t)c->out, ((size_t)c->out, c->rows, gy, gb));
}

DLDEF dl_tensor *dl__cuda_linear(dl_tensor *x, dl_tensor *w, dl_tensor *b) {
    static const char *const names[3] = {"x", "w", "b"};
    dl_tensor *in[3] = {x, w, b}, *y, *x2, x_rows;
    dl__cu_lin_ctx c;
    int shape[DL_MAX_DIMS], i;
    size_t rows = 1;
    long long dummy;
    int full;
    char sx[64], sw[64];
    dl_node *nd;
    if (!dl__cu_on_gpu("dl_linear", b ? 3 : 2, in, names)) return NULL;
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[0]) {
        dl_set_error("dl_linear: x %s does not match w %s (want x [..., in], w [in, out])", dl_shape_str(x, sx, sizeof sx),
                     dl_shape_str(w, sw, sizeof sw));
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[1])) {
        dl_set_error("dl_linear: bias %s does not match w %s (want [%d])", dl_shape_str(b, sx, sizeof sx), dl_shape_str(w, sw, sizeof sw),
                     w->shape[1]);
        return NULL;
    }
    for (i = 0; i < x->ndim - 1; i++) rows *= (size_t)x->shape[i];
    if (rows > 0x7fffffff) { dl_set_error("dl_linear: x %s has too many rows", dl_shape_str(x, sx, sizeof sx)); return NULL; }
    memset(&c, 0, sizeof c);
    c.rows = (int)rows;
    c.in = w->shape[0];
    c.out = w->shape[1];
    for (i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = c.out;
    y = dl__cu_out(x->ndim, shape);
    /* x as a [rows, in] matrix: a 2-D view of x when its leading axes are contiguous */
    x2 = x;
    if (x->ndim != 2) {
        int s2[2] = {c.rows, c.in};
        const float *xc = dl_contig_f32(x);
        if (!xc) return NULL;
        memset(&x_rows, 0, sizeof x_rows); /* a header only: the tape never sees it */
        x_rows.device = DL_DEVICE_CUDA;
        x_rows.ndim = 2;
        x_rows.shape[0] = s2[0];
        x_rows.shape[1] = s2[1];
        x_rows.strides[0] = c.in;
        x_rows.strides[1] = 1;
        x_rows.numel = (size_t)c.rows * (size_t)c.in;
        x_rows.data = (void *)xc;
        x2 = &x_rows;
    }
    if (!y || !dl__cu_mat_operand(x2, 0, NULL, &c.x, &dummy, &full) || !dl__cu_mat_operand(w, 0, NULL, &c.w, &dummy, &full)) return NULL;
    if (b) {
        const float *bc = dl_contig_f32(b);
        if (!bc) return NULL;
        DL__LAUNCH(k_bias_rows, y->numel, (y->numel, c.out, (float *)y->data, bc));
    }
    if (c.in == 0) {
        if (!b && dl__cuda_memset0(y->data, y->numel * sizeof(float)) != 0) return NULL;
    } else if (dl__cu_gemm("dl_linear", c.x.t, c.w.t, c.rows, c.out, c.in, 1.0f, c.x.p, c.x.ld, 0, c.w.p, c.w.ld, 0, b ? 1.0f : 0.0f,
                        (float *)y->data, c.out, 0, 1) != 0) {
        return NULL;
    }
    nd = dl_record("linear", y, b ? 3 : 2, in, dl__cu_linear_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(y);
}

/* ---- Softmax and log-softmax along an axis: lines of len elements, inner apart ---- */

typedef struct dl__cu_sm_ctx {
    size_t outer, inner;
    int len, log_space;
} dl__cu_sm_ctx;

DL__KERNEL k_softmax(size_t n, dl__cu_sm_ctx c, const float *x, float *y) {
    DL__LOOP(i, n) {
        size_t o = i / c.inner, j = i % c.inner, base = o * (size_t)c.len * c.inner + j;
        float mx = x[base], s = 0;
        int k;
        for (k = 1; k < c.len; k++) {
            float v = x[base + (size_t)k * c.inner];
            mx = v > mx || v != v ? v : mx;
        }
        for (k = 0; k < c.len; k++) s += expf(x[base + (size_t)k * c.inner] - mx);
        if (c.log_space) {
            float ls = logf(s);
            for (k = 0; k < c.len; k++) y[base + (size_t)k * c.inner] = x[base + (size_t)k * c.inner] - mx - ls;
        } else {
            for (k = 0; k < c.len; k++) y[base + (size_t)k * c.inner] = expf(x[base + (size_t)k * c.inner] - mx) / s;
        }
    }
}

/* softmax: gx = y (g - sum g y); log_softmax: gx = g - e^y sum g. */
DL__KERNEL k_softmax_grad(size_t n, dl__cu_sm_ctx c, const float *y, const float *g, float *gx) {
    DL__LOOP(i, n) {
        size_t o = i / c.inner, j = i % c.inner, base = o * (size_t)c.len * c.inner + j;
        float s = 0;
        int k;
        for (k = 0; k < c.len; k++) {
            size_t at = base + (size_t)k * c.inner;
            s += c.log_space ? g[at] : g[at] * y[at];
        }
        for (k = 0; k < c.len; k++) {
            size_t at = base + (size_t)k * c.inner;
            gx[at] += c.log_space ? g[at] - expf(y[at]) * s : y[at] * (g[at] - s);
        }
    }
}

static void dl__cu_softmax_backward(dl_node *nd) {
    const dl__cu_sm_ctx *c = (const dl__cu_sm_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) DL__LAUNCH(k_softmax_grad, c->outer * c->inner, (c->outer * c->inner, *c, (const float *)nd->out->data, nd->out->grad, gx));
}

DLDEF dl_tensor *dl__cuda_softmax(dl_tensor *x, int axis, int log_space) {
    const char *name = log_space ? "dl_log_softmax" : "dl_softmax";
    dl__cu_sm_ctx c;
    const float *xs;
    dl_tensor *y;
    dl_node *nd;
    int i;
    if (!dl__cu_on_gpu(name, 1, &x, dl__cu_ab)) return NULL;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) { dl_set_error("%s: axis out of range for a %d-d tensor", name, x->ndim); return NULL; }
    c.outer = c.inner = 1;
    for (i = 0; i < axis; i++) c.outer *= (size_t)x->shape[i];
    for (i = axis + 1; i < x->ndim; i++) c.inner *= (size_t)x->shape[i];
    c.len = x->shape[axis];
    c.log_space = log_space;
    xs = dl__cu_contig_data(x);
    y = dl__cu_out(x->ndim, x->shape);
    if (!xs || !y) return NULL;
    if (c.len > 0) DL__LAUNCH(k_softmax, c.outer * c.inner, (c.outer * c.inner, c, xs, (float *)y->data));
    if (DL__CHECK_LAUNCH(name) != 0) return NULL;
    nd = dl_record(name + 3, y, 1, &x, dl__cu_softmax_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(y);
}

/* ---- Sums of many values: fixed chunks, then the chunks in order (deterministic) ---- */

DL__KERNEL k_chunk_sum(size_t n_chunks, size_t n, const float *v, double *part) {
    DL__LOOP(i, n_chunks) {
        size_t j, end = (i + 1) * DL__CHUNK < n ? (i + 1) * DL__CHUNK : n;
        double s = 0;
        for (j = i * DL__CHUNK; j < end; j++) s += v[j];
        part[i] = s;
    }
}
/* out[0] = (sum of part) / (*count_f or count); NaN when the count is 0 (torch's mean of nothing) */
DL__KERNEL k_finish_mean(size_t one, size_t n_chunks, const double *part, double count, const float *count_f, float *out) {
    DL__LOOP(i, one) {
        double s = 0, cnt = count_f ? (double)count_f[0] : count;
        size_t j;
        for (j = 0; j < n_chunks; j++) s += part[j];
        out[i] = cnt > 0 ? (float)(s / cnt) : NAN;
    }
}

/* out[0] = sum(v[0..n)) / count (count_f: read on the device instead). */
static int dl__cu_mean_of(const float *v, size_t n, double count, const float *count_f, float *out, const char *op) {
    size_t chunks = (n + DL__CHUNK - 1) / DL__CHUNK;
    double *part = (double *)dl__device_tmp_alloc((chunks ? chunks : 1) * sizeof(double));
    if (!part) return -1;
    DL__LAUNCH(k_chunk_sum, chunks, (chunks, n, v, part));
    DL__LAUNCH(k_finish_mean, (size_t)1, ((size_t)1, chunks, part, count, count_f, out));
    return DL__CHECK_LAUNCH(op);
}

/* ---- Elementwise losses, mean-reduced (the CPU's formulas) ---- */

DL__KERNEL k_loss_terms(size_t n, int kind, float delta, const float *p, const float *t, float *v) {
    DL__LOOP(i, n) {
        float e = p[i] - t[i], a = fabsf(e), x = p[i];
        switch (kind) {
        case DL__MSE: v[i] = e * e; break;
        case DL__L1: v[i] = a; break;
        case DL__HUBER: v[i] = a < delta ? 0.5f * e * e : delta * (a - 0.5f * delta); break;
        default: v[i] = (x > 0 ? x : 0.0f) - x * t[i] + log1pf(expf(-fabsf(x))); break;
        }
    }
}

DL__KERNEL k_loss_grad(size_t n, int kind, float delta, const float *gout, const float *p, const float *t, float *gp, float *gt) {
    DL__LOOP(i, n) {
        float g = gout[0] / (float)n, d;
        switch (kind) {
        case DL__MSE: d = 2.0f * g * (p[i] - t[i]); break;
        case DL__L1: d = p[i] > t[i] ? g : (p[i] < t[i] ? -g : 0.0f); break;
        case DL__HUBER: { float e = p[i] - t[i]; d = g * (e < -delta ? -delta : (e > delta ? delta : e)); break; }
        default: d = g * (1.0f / (1.0f + expf(-p[i])) - t[i]); break;
        }
        if (gp) gp[i] += d;
        if (gt) gt[i] -= kind == DL__BCE_LOGITS ? g * p[i] : d;
    }
}

typedef struct dl__cu_loss_ctx {
    int kind;
    float delta;
    const float *p, *t;
} dl__cu_loss_ctx;

static void dl__cu_loss_backward(dl_node *nd) {
    const dl__cu_loss_ctx *c = (const dl__cu_loss_ctx *)nd->ctx;
    float *gp = dl_grad_buf(nd->in[0]), *gt = dl_grad_buf(nd->in[1]);
    size_t n = nd->in[0]->numel;
    if (n && (gp || gt)) DL__LAUNCH(k_loss_grad, n, (n, c->kind, c->delta, nd->out->grad, c->p, c->t, gp, gt));
}

DLDEF dl_tensor *dl__cuda_loss(const char *name, int kind, dl_tensor *pred, dl_tensor *target, float delta) {
    static const char *const names[2] = {"input", "target"};
    dl_tensor *in[2] = {pred, target}, *loss;
    dl__cu_loss_ctx c;
    float *v;
    size_t n;
    dl_node *nd;
    char sp[64], st[64];
    if (!dl__cu_on_gpu(name, 2, in, names)) return NULL;
    if (!dl_same_shape(pred, target)) {
        dl_set_error("%s: input %s and target %s have different shapes", name, dl_shape_str(pred, sp, sizeof sp),
                     dl_shape_str(target, st, sizeof st));
        return NULL;
    }
    if (kind == DL__HUBER && !(delta > 0)) { dl_set_error("%s: delta must be positive, got %g", name, (double)delta); return NULL; }
    c.kind = kind;
    c.delta = delta;
    c.p = dl__cu_contig_data(pred);
    c.t = dl__cu_contig_data(target);
    n = pred->numel;
    v = dl__cu_scratch(n ? n : 1);
    loss = dl__cu_out(0, NULL);
    if (!c.p || !c.t || !v || !loss) return NULL;
    DL__LAUNCH(k_loss_terms, n, (n, kind, delta, c.p, c.t, v));
    if (dl__cu_mean_of(v, n, (double)n, NULL, (float *)loss->data, name) != 0) return NULL;
    nd = dl_record(name + 3, loss, 2, in, dl__cu_loss_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(loss);
}

/* ---- Cross-entropy from logits [outer, C, inner] and i32 labels [outer, inner] ---- */

typedef struct dl__cu_ce_ctx {
    const float *z;
    const int *label;
    float *ls;        /* per position: max + log(sum(e^(z - max))), the log-sum-exp */
    float *count;     /* device: positions not ignored */
    size_t outer, inner;
    int classes;
} dl__cu_ce_ctx;

/* Per position: the loss term (0 when ignored) and validity; bad[0] = first bad position + 1. */
DL__KERNEL k_ce_terms(size_t n, dl__cu_ce_ctx c, float *v, float *valid, int *bad) {
    DL__LOOP(i, n) {
        size_t o = i / c.inner, j = i % c.inner, base = o * (size_t)c.classes * c.inner + j;
        int label = c.label[i], k;
        float mx, s = 0;
        v[i] = 0;
        valid[i] = 0;
        c.ls[i] = 0;
        if (label == DL__IGNORE_INDEX) continue;
        if (label < 0 || label >= c.classes) { bad[0] = 1; continue; }
        mx = c.z[base];
        for (k = 1; k < c.classes; k++) { float t = c.z[base + (size_t)k * c.inner]; mx = t > mx ? t : mx; }
        for (k = 0; k < c.classes; k++) s += expf(c.z[base + (size_t)k * c.inner] - mx);
        c.ls[i] = mx + logf(s);
        v[i] = (mx - c.z[base + (size_t)label * c.inner]) + logf(s);
        valid[i] = 1;
    }
}

DL__KERNEL k_ce_grad(size_t n, dl__cu_ce_ctx c, const float *gout, float *gz) {
    DL__LOOP(i, n) {
        size_t o = i / c.inner, j = i % c.inner, base = o * (size_t)c.classes * c.inner + j;
        int label = c.label[i], k;
        float g;
        if (label == DL__IGNORE_INDEX) continue;
        g = gout[0] / c.count[0];
        for (k = 0; k < c.classes; k++) {
            size_t at = base + (size_t)k * c.inner;
            gz[at] += g * expf(c.z[at] - c.ls[i]);
        }
        gz[base + (size_t)label * c.inner] -= g;
    }
}

static void dl__cu_ce_backward(dl_node *nd) {
    const dl__cu_ce_ctx *c = (const dl__cu_ce_ctx *)nd->ctx;
    float *gz = dl_grad_buf(nd->in[0]);
    size_t n = c->outer * c->inner;
    if (gz) DL__LAUNCH(k_ce_grad, n, (n, *c, nd->out->grad, gz));
}

DLDEF dl_tensor *dl__cuda_cross_entropy(dl_tensor *logits, dl_tensor *labels) {
    dl__cu_ce_ctx c;
    dl_tensor *loss, *lab;
    float *v, *valid;
    int *bad, bad_h = 0, i, ok;
    size_t n;
    char sz[64], sl[64];
    dl_node *nd;
    if (!dl__cu_on_gpu("dl_cross_entropy", 1, &logits, dl__cu_ab)) return NULL;
    if (labels->device != DL_DEVICE_CUDA) {
        dl_set_error("dl_cross_entropy: logits are on the GPU and labels on the %s: move them (dl_to_device); ops never copy "
                     "across devices", dl_device_name(labels->device));
        return NULL;
    }
    if (labels->dtype != DL_DTYPE_I32) { dl_set_error("dl_cross_entropy: labels must be i32, got %s", dl_dtype_name(labels->dtype)); return NULL; }
    ok = logits->ndim >= 2 && labels->ndim == logits->ndim - 1 && labels->shape[0] == logits->shape[0];
    for (i = 1; ok && i < labels->ndim; i++) ok = labels->shape[i] == logits->shape[i + 1];
    if (!ok) {
        dl_set_error("dl_cross_entropy: logits %s and labels %s do not match (want [N, C, ...] and [N, ...])",
                     dl_shape_str(logits, sz, sizeof sz), dl_shape_str(labels, sl, sizeof sl));
        return NULL;
    }
    memset(&c, 0, sizeof c);
    c.classes = logits->shape[1];
    c.outer = (size_t)logits->shape[0];
    n = labels->numel;
    c.inner = n / (c.outer ? c.outer : 1);
    c.z = dl__cu_contig_data(logits);
    lab = labels;
    if (!dl_is_contiguous(labels)) {
        if (!(lab = dl__tmp_on(DL_DEVICE_CUDA, DL_DTYPE_I32, labels->ndim, labels->shape)) || dl_copy(lab, labels) != 0) return NULL;
    }
    c.label = (const int *)lab->data;
    c.ls = dl__cu_scratch(n ? n : 1);
    c.count = dl__cu_scratch(1);
    v = dl__cu_scratch(n ? n : 1);
    valid = dl__cu_scratch(n ? n : 1);
    bad = (int *)dl__device_tmp_alloc(sizeof(int));
    loss = dl__cu_out(0, NULL);
    if (!c.z || !c.ls || !c.count || !v || !valid || !bad || !loss) return NULL;
    if (dl__cuda_memset0(bad, sizeof(int)) != 0) return NULL;
    DL__LAUNCH(k_ce_terms, n, (n, c, v, valid, bad));
    /* a label outside [0, C) is an error, as on the CPU: one 4-byte read (a sync) per call */
    if (dl__cuda_memcpy(&bad_h, bad, sizeof(int), DL__D2H) != 0) return NULL;
    if (bad_h) { dl_set_error("dl_cross_entropy: a label is outside [0, %d) (and is not the ignore index -100)", c.classes); return NULL; }
    {
        size_t chunks = (n + DL__CHUNK - 1) / DL__CHUNK;
        double *part = (double *)dl__device_tmp_alloc((chunks ? chunks : 1) * sizeof(double));
        if (!part) return NULL;
        DL__LAUNCH(k_chunk_sum, chunks, (chunks, n, valid, part));
        DL__LAUNCH(k_finish_mean, (size_t)1, ((size_t)1, chunks, part, 1.0, (const float *)NULL, c.count)); /* the count */
        if (dl__cu_mean_of(v, n, 0.0, c.count, (float *)loss->data, "dl_cross_entropy") != 0) return NULL;
    }
    nd = dl_record("cross_entropy", loss, 1, &logits, dl__cu_ce_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(loss);
}

/* ==== Recurrent cells: dl_nn.h's fused LSTM and GRU steps ======================================
   The same gate arithmetic as dl_nn.h's dl__lstm_task / dl__gru_task (their comments give the
   formulas and the backward pass), one thread per (row, unit): each thread reads its unit's
   gates and writes only its own outputs and gradient entries, so no two threads touch the same
   element. x: the step's rows of the input projection [B, G*U]; m: h R ([B, G*U], NULL at the
   first LSTM step); prev: c (LSTM) or h (GRU) [B, U], NULL at the first step. */

DL__DEV float dl__cu_sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

typedef struct dl__cu_cell {
    const float *x, *m, *prev, *gy;
    float *y, *act, *gx, *gm, *gprev;
    int B, U;
} dl__cu_cell;

DL__KERNEL k_lstm(size_t n, dl__cu_cell c, int backward) {
    DL__LOOP(i, n) {
        size_t b = i / (size_t)c.U, U = (size_t)c.U, u = i % U, BU = (size_t)c.B * U;
        const float *x = c.x + b * 4 * U, *m = c.m ? c.m + b * 4 * U : NULL;
        float cp = c.prev ? c.prev[b * U + u] : 0.0f, *a = c.act + b * 5 * U;
        if (!backward) {
            float zi = x[u] + (m ? m[u] : 0.0f), zf = x[U + u] + (m ? m[U + u] : 0.0f);
            float zc = x[2 * U + u] + (m ? m[2 * U + u] : 0.0f), zo = x[3 * U + u] + (m ? m[3 * U + u] : 0.0f);
            float ig = dl__cu_sigm(zi), fg = dl__cu_sigm(zf), gg = tanhf(zc), og = dl__cu_sigm(zo);
            float cv = ig * gg + (c.prev ? fg * cp : 0.0f), tc = tanhf(cv);
            a[u] = ig; a[U + u] = fg; a[2 * U + u] = gg; a[3 * U + u] = og; a[4 * U + u] = tc;
            c.y[b * U + u] = og * tc;
            c.y[BU + b * U + u] = cv;
        } else {
            float dh = c.gy[b * U + u], dc = c.gy[BU + b * U + u];
            float ig = a[u], fg = a[U + u], gg = a[2 * U + u], og = a[3 * U + u], tc = a[4 * U + u];
            float d = dc + dh * og * (1.0f - tc * tc);
            float zi = d * gg * ig * (1.0f - ig), zf = d * cp * fg * (1.0f - fg);
            float zc = d * ig * (1.0f - gg * gg), zo = dh * tc * og * (1.0f - og);
            if (c.gx) { float *g = c.gx + b * 4 * U; g[u] += zi; g[U + u] += zf; g[2 * U + u] += zc; g[3 * U + u] += zo; }
            if (c.gm) { float *g = c.gm + b * 4 * U; g[u] += zi; g[U + u] += zf; g[2 * U + u] += zc; g[3 * U + u] += zo; }
            if (c.gprev) c.gprev[b * U + u] += d * fg;
        }
    }
}

DL__KERNEL k_gru(size_t n, dl__cu_cell c, int backward) {
    DL__LOOP(i, n) {
        size_t b = i / (size_t)c.U, U = (size_t)c.U, u = i % U;
        const float *x = c.x + b * 3 * U, *m = c.m + b * 3 * U;
        float hp = c.prev ? c.prev[b * U + u] : 0.0f, *a = c.act + b * 4 * U;
        if (!backward) {
            float z = dl__cu_sigm(x[u] + m[u]), r = dl__cu_sigm(x[U + u] + m[U + u]);
            float nn = tanhf(x[2 * U + u] + r * m[2 * U + u]);
            a[u] = z; a[U + u] = r; a[2 * U + u] = nn; a[3 * U + u] = m[2 * U + u];
            c.y[b * U + u] = z * hp + (1.0f - z) * nn;
        } else {
            float dh = c.gy[b * U + u], z = a[u], r = a[U + u], nn = a[2 * U + u], ah = a[3 * U + u];
            float dp = dh * (1.0f - z) * (1.0f - nn * nn);
            float dz = dh * (hp - nn) * z * (1.0f - z), dr = dp * ah * r * (1.0f - r);
            if (c.gx) { float *g = c.gx + b * 3 * U; g[u] += dz; g[U + u] += dr; g[2 * U + u] += dp; }
            if (c.gm) { float *g = c.gm + b * 3 * U; g[u] += dz; g[U + u] += dr; g[2 * U + u] += dp * r; }
            if (c.gprev) c.gprev[b * U + u] += dh * z;
        }
    }
}

typedef struct dl__cu_cell_ctx {
    const float *act;
    int lstm, B, U;
    size_t x_off;
} dl__cu_cell_ctx;

static void dl__cu_cell_backward(dl_node *nd) {
    const dl__cu_cell_ctx *k = (const dl__cu_cell_ctx *)nd->ctx;
    dl__cu_cell c;
    size_t n = (size_t)k->B * (size_t)k->U;
    memset(&c, 0, sizeof c);
    c.B = k->B;
    c.U = k->U;
    c.act = (float *)k->act;
    c.gy = nd->out->grad;
    c.prev = nd->in[2] ? dl_contig_f32(nd->in[2]) : NULL;
    c.m = nd->in[1] ? dl_contig_f32(nd->in[1]) : NULL;
    c.gx = dl_grad_buf(nd->in[0]);
    if (c.gx) c.gx += k->x_off;
    c.gm = dl_grad_buf(nd->in[1]);
    c.gprev = dl_grad_buf(nd->in[2]);
    if ((nd->in[2] && !c.prev) || (nd->in[1] && !c.m)) return;
    if (k->lstm) DL__LAUNCH(k_lstm, n, (n, c, 1));
    else DL__LAUNCH(k_gru, n, (n, c, 1));
}

DLDEF dl_tensor *dl__cuda_rnn_cell(int lstm, int B, int U, dl_tensor *xw, int t, dl_tensor *m, dl_tensor *prev) {
    static const char *const names[3] = {"the input projection", "the recurrent term", "the previous state"};
    dl_tensor *in[3] = {xw, m, prev}, *y;
    dl__cu_cell c;
    dl_node *nd;
    int width = (lstm ? 4 : 3) * U, shape[3] = {2, B, U};
    size_t x_off = (size_t)t * (size_t)B * (size_t)width, n = (size_t)B * (size_t)U;
    if (!dl__cu_on_gpu(lstm ? "LSTM" : "GRU", 3, in, names)) return NULL;
    memset(&c, 0, sizeof c);
    c.B = B;
    c.U = U;
    c.x = dl_contig_f32(xw);
    c.m = m ? dl_contig_f32(m) : NULL;
    c.prev = prev ? dl_contig_f32(prev) : NULL;
    y = dl__cu_out(lstm ? 3 : 2, lstm ? shape : shape + 1);
    c.act = dl__cu_scratch((size_t)B * (size_t)(width + U));
    if (!c.x || (m && !c.m) || (prev && !c.prev) || !y || !c.act) return NULL;
    c.x += x_off;
    c.y = (float *)y->data;
    if (lstm) DL__LAUNCH(k_lstm, n, (n, c, 0));
    else DL__LAUNCH(k_gru, n, (n, c, 0));
    if (DL__CHECK_LAUNCH(lstm ? "LSTM" : "GRU") != 0) return NULL;
    nd = dl_record(lstm ? "lstm_cell" : "gru_cell", y, 3, in, dl__cu_cell_backward, sizeof(dl__cu_cell_ctx));
    if (nd) {
        dl__cu_cell_ctx *k = (dl__cu_cell_ctx *)nd->ctx;
        k->act = c.act;
        k->lstm = lstm;
        k->B = B;
        k->U = U;
        k->x_off = x_off;
    }
    return dl__cu_checked(y);
}

/* ==== Convolutions, pooling, padding, upsampling (NCHW) ========================================
   (tests: tests/test_cuda_conv.c)

   dl_conv2d, dl_conv_transpose2d, dl_max_pool2d, dl_avg_pool2d, dl_global_avg_pool2d,
   dl_upsample_nearest2d and dl_pad2d (zeros, reflect), forward and backward, with the CPU's
   checks, messages, shapes and gradient rules (dl_tensor.h's geometry is repeated here, since
   this file never sees dl_tensor.h's statics).

   Convolutions use the CPU's three per-image products with a weight matrix M [rows, K],
   K = c*kh*kw ("img" is the conv input side [c, h, w], "small" the conv output side
   [rows, oh, ow]):
       apply:    small  = M @ col(img)          conv2d forward,  conv_transpose2d dX
       adjoint:  img   += col2im(M^T @ small)   conv2d dX,       conv_transpose2d forward
       weights:  dM    += small @ col(img)^T    dW of both
   The batch runs in groups of images whose columns fit DL__CU_COL_FLOATS (the group depends on
   the shape only). col(img) is an im2col kernel writing the group side by side ([K, nb*oh*ow],
   image b at column b*oh*ow); apply is one strided-batched GEMM per group writing NCHW directly;
   weights gathers dY of the group to [rows, nb*oh*ow] and adds one GEMM per group, groups in
   order (deterministic); adjoint is a batched GEMM to per-image columns, then col2im as a
   gather (one thread per image element sums, in double, the taps that read it). A 1x1 stride-1
   unpadded conv skips im2col/col2im. Bias gradients are per-channel sums in fixed chunks.
   Pools: one thread per output (max also stores its argmax: the first maximum in row-major
   order, the last NaN when the max is NaN); their backward and the backward of padding and
   upsampling are gathers, one thread per input element adding, in float and in the CPU's
   order, the output gradients that read it, so those match the CPU's bits. Scratch lives in
   the device arena. */

/* a * b rounded on its own (nvcc would fuse "v += a * b" into one FMA, unlike the CPU's build) */
#ifdef DL_CUDA_EMULATE
#define DL__CU_MUL_RN(a, b) ((a) * (b))
#else
#define DL__CU_MUL_RN(a, b) __fmul_rn(a, b)
#endif

#ifndef DL__CU_COL_FLOATS /* (tests set it small, to run several groups) */
#define DL__CU_COL_FLOATS ((size_t)1 << 24) /* im2col scratch of one group of images (64 MB) */
#endif

typedef struct dl__cu_cgeom {
    int c, h, w;  /* image side */
    int oh, ow;   /* output side */
    int kh, kw, sh, sw, ph, pw, dh, dw;
} dl__cu_cgeom;

/* ---- Argument checks, as dl_tensor.h's dl__conv_* ---- */

static int dl__cu_conv_ndim(const dl_tensor *t, const char *op, const char *what, int ndim) {
    char s[64];
    if ((ndim >= 0 && t->ndim != ndim) || (ndim < 0 && t->ndim < -ndim)) {
        dl_set_error("%s: %s must have %s%d axes%s, got %s", op, what, ndim < 0 ? "at least " : "", ndim < 0 ? -ndim : ndim,
                     ndim == 4 ? " [N, C, H, W]" : "", dl_shape_str(t, s, sizeof s));
        return 0;
    }
    return 1;
}

static int dl__cu_conv_window(dl__cu_cgeom *g, const dl_conv_opts *opts, int kh, int kw, int pool, int *out_pad, const char *op) {
    dl_conv_opts o;
    int i;
    if (opts) o = *opts;
    else memset(&o, 0, sizeof o);
    for (i = 0; i < 2; i++)
        if (o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0 || o.output_padding[i] < 0) {
            dl_set_error("%s: stride, padding, dilation and output_padding must be >= 0 (0 = default)", op);
            return 0;
        }
    if (kh < 1 || kw < 1) { dl_set_error("%s: kernel size must be >= 1, got %dx%d", op, kh, kw); return 0; }
    if (!out_pad && (o.output_padding[0] || o.output_padding[1])) {
        dl_set_error("%s: output_padding is only for dl_conv_transpose2d", op);
        return 0;
    }
    g->kh = kh;
    g->kw = kw;
    g->sh = o.stride[0] ? o.stride[0] : pool ? kh : 1;
    g->sw = o.stride[1] ? o.stride[1] : pool ? kw : 1;
    g->ph = o.padding[0];
    g->pw = o.padding[1];
    g->dh = o.dilation[0] ? o.dilation[0] : 1;
    g->dw = o.dilation[1] ? o.dilation[1] : 1;
    if (out_pad) { out_pad[0] = o.output_padding[0]; out_pad[1] = o.output_padding[1]; }
    return 1;
}

static int dl__cu_conv_out_size(int in, int k, int s, int p, int d) {
    long long e = (long long)in + 2LL * p - (long long)d * (k - 1) - 1;
    return e < 0 || e / s + 1 > 0x7fffffffLL ? 0 : (int)(e / s + 1);
}

static int dl__cu_conv_sizes_ok(const dl__cu_cgeom *g, int k_cols, const char *op) {
    long long pad_h = (long long)g->h + 2LL * g->ph, pad_w = (long long)g->w + 2LL * g->pw;
    long long ker_h = (long long)g->dh * (g->kh - 1) + 1, ker_w = (long long)g->dw * (g->kw - 1) + 1;
    if (pad_h > 0x7fffffffLL || pad_w > 0x7fffffffLL) {
        dl_set_error("%s: padded input %lldx%lld is over INT_MAX (input %dx%d, padding %dx%d)", op, pad_h, pad_w, g->h, g->w, g->ph, g->pw);
        return 0;
    }
    if (ker_h > 0x7fffffffLL || ker_w > 0x7fffffffLL) {
        dl_set_error("%s: dilated kernel %lldx%lld is over INT_MAX (kernel %dx%d, dilation %dx%d)", op, ker_h, ker_w, g->kh, g->kw, g->dh,
                     g->dw);
        return 0;
    }
    if ((long long)g->h * g->w > 0x7fffffffLL || (long long)g->oh * g->ow > 0x7fffffffLL) {
        dl_set_error("%s: planes %dx%d -> %dx%d have over INT_MAX pixels", op, g->h, g->w, g->oh, g->ow);
        return 0;
    }
    if (k_cols && (long long)g->c * g->kh * g->kw > 0x7fffffffLL) {
        dl_set_error("%s: %d channels x kernel %dx%d is over INT_MAX", op, g->c, g->kh, g->kw);
        return 0;
    }
    return 1;
}

/* x, w (and b) on the GPU, f32, with matching shapes; w_in_axis: the axis of w that matches x's
   channels (1 for conv2d, 0 for conv_transpose2d). */
static int dl__cu_conv_args(dl_tensor *x, dl_tensor *w, dl_tensor *b, int w_in_axis, const char *op) {
    static const char *const names[3] = {"x", "w", "b"};
    dl_tensor *in[3];
    char sx[64], sw[64], sb[64];
    int out_axis = 1 - w_in_axis;
    in[0] = x;
    in[1] = w;
    in[2] = b;
    if (!dl__cu_on_gpu(op, 3, in, names)) return 0;
    if (!dl__cu_conv_ndim(x, op, "x", 4) || !dl__cu_conv_ndim(w, op, "w", 4) || (b && !dl__cu_conv_ndim(b, op, "b", 1))) return 0;
    if (w->shape[w_in_axis] != x->shape[1]) {
        dl_set_error("%s: x %s has %d channels but w %s expects %d (w is %s)", op, dl_shape_str(x, sx, sizeof sx), x->shape[1],
                     dl_shape_str(w, sw, sizeof sw), w->shape[w_in_axis], w_in_axis ? "[Cout, Cin, kh, kw]" : "[Cin, Cout, kh, kw]");
        return 0;
    }
    if (b && b->shape[0] != w->shape[out_axis]) {
        dl_set_error("%s: bias %s must have %d elements, one per output channel of w %s", op, dl_shape_str(b, sb, sizeof sb),
                     w->shape[out_axis], dl_shape_str(w, sw, sizeof sw));
        return 0;
    }
    return 1;
}

static int dl__cu_conv_is_identity(const dl__cu_cgeom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->oh == g->h && g->ow == g->w;
}

/* ---- Kernels of the convolutions ---- */

/* col[row][b*hw + pix] = img[b][c][i*sh - ph + p*dh][j*sw - pw + q*dw] (0 outside), for the nb
   images of a group; row = (c*kh + p)*kw + q, pix = i*ow + j. One thread per col element. */
DL__KERNEL k_im2col(size_t n, dl__cu_cgeom g, int nb, const float *img, float *col) {
    DL__LOOP(i, n) {
        size_t hw = (size_t)g.oh * g.ow, pix = i % hw, t = i / hw, row = t / (size_t)nb;
        int b = (int)(t % (size_t)nb), q = (int)(row % (size_t)g.kw), p = (int)(row / (size_t)g.kw % (size_t)g.kh);
        int c = (int)(row / ((size_t)g.kw * g.kh)), oi = (int)(pix / (size_t)g.ow), oj = (int)(pix % (size_t)g.ow);
        int y = oi * g.sh - g.ph + p * g.dh, x = oj * g.sw - g.pw + q * g.dw;
        col[i] = y >= 0 && y < g.h && x >= 0 && x < g.w ? img[(((size_t)b * g.c + c) * g.h + y) * g.w + x] : 0.0f;
    }
}

/* The adjoint of im2col as a gather, from per-image columns col[b] = [K, hw]: each image element
   sums the taps that read it; img = (accumulate ? img : 0) + sum (+ bias[c]). */
DL__KERNEL k_col2im(size_t n, dl__cu_cgeom g, const float *col, float *img, int accumulate, const float *bias) {
    DL__LOOP(i, n) {
        size_t hw = (size_t)g.oh * g.ow, k = (size_t)g.c * g.kh * g.kw, bc = i / ((size_t)g.h * g.w);
        int x = (int)(i % (size_t)g.w), y = (int)(i / (size_t)g.w % (size_t)g.h), c = (int)(bc % (size_t)g.c), p, q;
        const float *cb = col + bc / (size_t)g.c * k * hw + (size_t)c * g.kh * g.kw * hw;
        double s = 0;
        float v;
        for (p = 0; p < g.kh; p++) {
            int ty = y + g.ph - p * g.dh, oi;
            if (ty < 0 || ty % g.sh) continue;
            if ((oi = ty / g.sh) >= g.oh) continue;
            for (q = 0; q < g.kw; q++) {
                int tx = x + g.pw - q * g.dw, oj;
                if (tx < 0 || tx % g.sw) continue;
                if ((oj = tx / g.sw) >= g.ow) continue;
                s += cb[((size_t)p * g.kw + q) * hw + (size_t)oi * g.ow + oj];
            }
        }
        v = (accumulate ? img[i] : 0.0f) + (float)s;
        img[i] = bias ? v + bias[c] : v;
    }
}

/* wide[r][b*hw + pix] = small[b][r][pix]: a group's output gradients as one [rows, nb*hw] matrix. */
DL__KERNEL k_to_wide(size_t n, int rows, size_t hw, int nb, const float *small, float *wide) {
    DL__LOOP(i, n) {
        size_t pix = i % hw, t = i / hw, b = t % (size_t)nb, r = t / (size_t)nb;
        wide[i] = small[(b * (size_t)rows + r) * hw + pix];
    }
}

/* y[n][c][pix] += b[c] */
DL__KERNEL k_bias_planes(size_t n, size_t hw, int c, float *y, const float *b) {
    DL__LOOP(i, n) { y[i] += b[i / hw % (size_t)c]; }
}

/* The per-channel sums of src [N, C, hw]: chunk k of channel c (DL__CHUNK values of its N*hw,
   image-major) into part[c*chunks + k]; then each channel's chunks in order. */
DL__KERNEL k_plane_sum_chunks(size_t n, size_t chunks, int imgs, int c, size_t hw, const float *src, double *part) {
    DL__LOOP(i, n) {
        size_t ch = i / chunks, k = i % chunks, len = (size_t)imgs * hw, t, end = (k + 1) * DL__CHUNK < len ? (k + 1) * DL__CHUNK : len;
        double s = 0;
        for (t = k * DL__CHUNK; t < end; t++) s += src[(t / hw * (size_t)c + ch) * hw + t % hw];
        part[i] = s;
    }
}
DL__KERNEL k_plane_sum_finish(size_t n, size_t chunks, const double *part, float *out) {
    DL__LOOP(i, n) {
        double s = 0;
        size_t k;
        for (k = 0; k < chunks; k++) s += part[i * chunks + k];
        out[i] += (float)s;
    }
}

/* out[c] += sum over images and pixels of src[:, c, :]. */
static int dl__cu_plane_sums(const char *op, const float *src, int imgs, int c, size_t hw, float *out) {
    size_t chunks = ((size_t)imgs * hw + DL__CHUNK - 1) / DL__CHUNK, n;
    double *part;
    if (chunks == 0) chunks = 1;
    n = chunks * (size_t)c;
    if (!(part = (double *)dl__device_tmp_alloc((n ? n : 1) * sizeof(double)))) return -1;
    DL__LAUNCH(k_plane_sum_chunks, n, (n, chunks, imgs, c, hw, src, part));
    DL__LAUNCH(k_plane_sum_finish, (size_t)c, ((size_t)c, chunks, part, out));
    return DL__CHECK_LAUNCH(op);
}

/* ---- The three products (shared by conv2d and conv_transpose2d) ---- */

typedef struct dl__cu_conv {
    dl__cu_cgeom g;
    int n, rows;
    const float *m; /* [rows, K], contiguous */
} dl__cu_conv;

/* Images per group: its columns fit DL__CU_COL_FLOATS (at least one image). */
static int dl__cu_conv_group(const dl__cu_conv *cv) {
    size_t k = (size_t)cv->g.c * cv->g.kh * cv->g.kw, hw = (size_t)cv->g.oh * cv->g.ow;
    size_t per = (k > (size_t)cv->rows ? k : (size_t)cv->rows) * hw, nb = per ? DL__CU_COL_FLOATS / per : (size_t)cv->n;
    if (nb > (size_t)cv->n) nb = (size_t)cv->n;
    return nb < 1 ? 1 : (int)nb;
}

/* For each group: col = im2col(img); small_out = M @ col + beta small_out (when given);
   dm += small_in @ col^T (when given). */
static int dl__cu_conv_cols(const char *op, const dl__cu_conv *cv, const float *img, float *small_out, float beta, const float *small_in,
                            float *dm) {
    const dl__cu_cgeom *g = &cv->g;
    int k = g->c * g->kh * g->kw, hw = g->oh * g->ow, group = dl__cu_conv_group(cv), n0, identity = dl__cu_conv_is_identity(g);
    size_t img_size = (size_t)g->c * g->h * g->w, small_size = (size_t)cv->rows * hw;
    float *col = NULL, *wide = NULL;
    if (cv->n == 0 || hw == 0 || cv->rows == 0) return 0;
    if (k == 0) { /* no taps: apply gives beta * small_out, weights nothing */
        if (small_out && beta == 0.0f) return dl__cuda_memset0(small_out, (size_t)cv->n * small_size * sizeof(float));
        return 0;
    }
    if ((dm || !identity) && !(col = dl__cu_scratch((size_t)k * hw * group))) return -1;
    if (dm && group > 1 && !(wide = dl__cu_scratch(small_size * group))) return -1;
    for (n0 = 0; n0 < cv->n; n0 += group) {
        int nb = cv->n - n0 < group ? cv->n - n0 : group, ld = nb * hw;
        const float *cols = col;
        if (col) {
            size_t total = (size_t)k * ld;
            DL__LAUNCH(k_im2col, total, (total, *g, nb, img + n0 * img_size, col));
            if (DL__CHECK_LAUNCH(op) != 0) return -1;
        }
        if (small_out) {
            long long stride = hw;
            if (identity) { cols = img + n0 * img_size; ld = hw; stride = (long long)img_size; }
            if (dl__cu_gemm(op, 0, 0, cv->rows, hw, k, 1.0f, cv->m, k, 0, cols, ld, stride, beta, small_out + n0 * small_size, hw,
                            (long long)small_size, nb) != 0)
                return -1;
            ld = nb * hw;
        }
        if (dm) {
            const float *s = small_in + n0 * small_size;
            if (nb > 1) {
                size_t total = small_size * nb;
                DL__LAUNCH(k_to_wide, total, (total, cv->rows, (size_t)hw, nb, s, wide));
                if (DL__CHECK_LAUNCH(op) != 0) return -1;
                s = wide;
            }
            if (dl__cu_gemm(op, 0, 1, cv->rows, k, ld, 1.0f, s, ld, 0, col, ld, 0, 1.0f, dm, k, 0, 1) != 0) return -1;
        }
    }
    return 0;
}

/* img = (accumulate ? img : 0) + col2im(M^T @ small) (+ bias[c]), image by image in groups. */
static int dl__cu_conv_adjoint(const char *op, const dl__cu_conv *cv, const float *small, float *img, int accumulate, const float *bias) {
    const dl__cu_cgeom *g = &cv->g;
    int k = g->c * g->kh * g->kw, hw = g->oh * g->ow, group = dl__cu_conv_group(cv), n0, identity = dl__cu_conv_is_identity(g);
    size_t img_size = (size_t)g->c * g->h * g->w, small_size = (size_t)cv->rows * hw;
    float *col = NULL;
    if (cv->n == 0 || img_size == 0) return 0;
    if (!identity && !(col = dl__cu_scratch((size_t)k * hw * group))) return -1;
    for (n0 = 0; n0 < cv->n; n0 += group) {
        int nb = cv->n - n0 < group ? cv->n - n0 : group;
        float *out = img + n0 * img_size;
        if (identity) { /* img is [c, hw] per image: the GEMM writes it */
            if (cv->rows == 0 || hw == 0) {
                if (!accumulate && dl__cuda_memset0(out, (size_t)nb * img_size * sizeof(float)) != 0) return -1;
            } else if (dl__cu_gemm(op, 1, 0, k, hw, cv->rows, 1.0f, cv->m, k, 0, small + n0 * small_size, hw, (long long)small_size,
                                   accumulate ? 1.0f : 0.0f, out, hw, (long long)img_size, nb) != 0) {
                return -1;
            }
            if (bias) DL__LAUNCH(k_bias_planes, nb * img_size, (nb * img_size, (size_t)hw, g->c, out, bias));
        } else {
            size_t total = (size_t)nb * img_size;
            if (hw > 0 && k > 0) {
                if (cv->rows == 0) {
                    if (dl__cuda_memset0(col, (size_t)k * hw * nb * sizeof(float)) != 0) return -1;
                } else if (dl__cu_gemm(op, 1, 0, k, hw, cv->rows, 1.0f, cv->m, k, 0, small + n0 * small_size, hw, (long long)small_size,
                                       0.0f, col, hw, (long long)k * hw, nb) != 0) {
                    return -1;
                }
            }
            DL__LAUNCH(k_col2im, total, (total, *g, (const float *)col, out, accumulate, bias));
        }
        if (DL__CHECK_LAUNCH(op) != 0) return -1;
    }
    return 0;
}

/* What a convolution's backward needs: the products' set-up and the contiguous x it read. */
typedef struct dl__cu_conv_ctx {
    dl__cu_conv cv;
    const float *x;
} dl__cu_conv_ctx;

static dl_tensor *dl__cu_conv_record(const char *name, dl_tensor *y, dl_tensor *x, dl_tensor *w, dl_tensor *b, dl_backward_fn backward,
                                     const dl__cu_conv *cv, const float *xc) {
    dl_tensor *in[3];
    dl_node *nd;
    in[0] = x;
    in[1] = w;
    in[2] = b;
    nd = dl_record(name, y, b ? 3 : 2, in, backward, sizeof(dl__cu_conv_ctx));
    if (nd) {
        dl__cu_conv_ctx *c = (dl__cu_conv_ctx *)nd->ctx;
        c->cv = *cv;
        c->x = xc;
    }
    return dl__cu_checked(y);
}

/* conv2d: y = M @ col(x) + b;  dW += dy @ col(x)^T, dx += col2im(M^T @ dy), db += sums of dy. */
static void dl__cu_conv2d_backward(dl_node *nd) {
    const dl__cu_conv_ctx *c = (const dl__cu_conv_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]), *gw = dl_grad_buf(nd->in[1]), *gb = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    const float *gy = nd->out->grad;
    if (gw && dl__cu_conv_cols("dl_conv2d", &c->cv, c->x, NULL, 0.0f, gy, gw) != 0) return;
    if (gx && dl__cu_conv_adjoint("dl_conv2d", &c->cv, gy, gx, 1, NULL) != 0) return;
    if (gb) dl__cu_plane_sums("dl_conv2d", gy, c->cv.n, c->cv.rows, (size_t)c->cv.g.oh * c->cv.g.ow, gb);
}

DLDEF dl_tensor *dl__cuda_conv2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts) {
    const char *op = "dl_conv2d";
    dl__cu_conv cv;
    dl__cu_cgeom *g = &cv.g;
    const float *xc, *bc = NULL;
    dl_tensor *y;
    int shape[4];
    if (!dl__cu_conv_args(x, w, b, 1, op) || !dl__cu_conv_window(g, opts, w->shape[2], w->shape[3], 0, NULL, op)) return NULL;
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->oh = dl__cu_conv_out_size(g->h, g->kh, g->sh, g->ph, g->dh);
    g->ow = dl__cu_conv_out_size(g->w, g->kw, g->sw, g->pw, g->dw);
    if (!dl__cu_conv_sizes_ok(g, 1, op)) return NULL;
    if (g->oh < 1 || g->ow < 1) {
        dl_set_error("%s: kernel %dx%d (dilation %dx%d) is larger than the padded input %dx%d (padding %dx%d)", op, g->kh, g->kw, g->dh,
                     g->dw, g->h + 2 * g->ph, g->w + 2 * g->pw, g->ph, g->pw);
        return NULL;
    }
    shape[0] = x->shape[0];
    shape[1] = w->shape[0];
    shape[2] = g->oh;
    shape[3] = g->ow;
    cv.n = x->shape[0];
    cv.rows = w->shape[0];
    cv.m = dl_contig_f32(w);
    xc = dl_contig_f32(x);
    if (b && !(bc = dl_contig_f32(b))) return NULL;
    if (!cv.m || !xc || !(y = dl__cu_out(4, shape))) return NULL;
    if (dl__cu_conv_cols(op, &cv, xc, (float *)y->data, 0.0f, NULL, NULL) != 0) return NULL;
    if (bc) DL__LAUNCH(k_bias_planes, y->numel, (y->numel, (size_t)g->oh * g->ow, cv.rows, (float *)y->data, bc));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    return dl__cu_conv_record("conv2d", y, x, w, b, dl__cu_conv2d_backward, &cv, xc);
}

/* conv_transpose2d: the adjoint. y = col2im(M^T @ x) + b with M = w as [Cin, Cout*kh*kw];
   dx += M @ col(dy), dW += x @ col(dy)^T (one im2col for both), db += sums of dy. */
static void dl__cu_conv_transpose2d_backward(dl_node *nd) {
    const dl__cu_conv_ctx *c = (const dl__cu_conv_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]), *gw = dl_grad_buf(nd->in[1]), *gb = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    const float *gy = nd->out->grad;
    if ((gx || gw) && dl__cu_conv_cols("dl_conv_transpose2d", &c->cv, gy, gx, 1.0f, c->x, gw) != 0) return;
    if (gb) dl__cu_plane_sums("dl_conv_transpose2d", gy, c->cv.n, c->cv.g.c, (size_t)c->cv.g.h * c->cv.g.w, gb);
}

DLDEF dl_tensor *dl__cuda_conv_transpose2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts) {
    const char *op = "dl_conv_transpose2d";
    dl__cu_conv cv;
    dl__cu_cgeom *g = &cv.g;
    const float *xc, *bc = NULL;
    dl_tensor *y;
    int shape[4], opad[2], i;
    long long size[2];
    if (!dl__cu_conv_args(x, w, b, 0, op) || !dl__cu_conv_window(g, opts, w->shape[2], w->shape[3], 0, opad, op)) return NULL;
    for (i = 0; i < 2; i++) {
        int s = i ? g->sw : g->sh, d = i ? g->dw : g->dh, p = i ? g->pw : g->ph, k = i ? g->kw : g->kh;
        if (opad[i] >= s && opad[i] >= d) {
            dl_set_error("%s: output_padding %d must be smaller than the stride %d or the dilation %d", op, opad[i], s, d);
            return NULL;
        }
        size[i] = (long long)(x->shape[2 + i] - 1) * s - 2LL * p + (long long)d * (k - 1) + opad[i] + 1;
    }
    if (size[0] < 1 || size[1] < 1 || size[0] > 1 << 30 || size[1] > 1 << 30) {
        dl_set_error("%s: output size %lldx%lld is not positive (input %dx%d, padding %dx%d)", op, size[0], size[1], x->shape[2],
                     x->shape[3], g->ph, g->pw);
        return NULL;
    }
    g->c = w->shape[1];
    g->h = (int)size[0];
    g->w = (int)size[1];
    g->oh = x->shape[2];
    g->ow = x->shape[3];
    if (!dl__cu_conv_sizes_ok(g, 1, op)) return NULL;
    shape[0] = x->shape[0];
    shape[1] = g->c;
    shape[2] = g->h;
    shape[3] = g->w;
    cv.n = x->shape[0];
    cv.rows = x->shape[1];
    cv.m = dl_contig_f32(w);
    xc = dl_contig_f32(x);
    if (b && !(bc = dl_contig_f32(b))) return NULL;
    if (!cv.m || !xc || !(y = dl__cu_out(4, shape))) return NULL;
    if (dl__cu_conv_adjoint(op, &cv, xc, (float *)y->data, 0, bc) != 0) return NULL;
    return dl__cu_conv_record("conv_transpose2d", y, x, w, b, dl__cu_conv_transpose2d_backward, &cv, xc);
}

/* ---- Pools ---- */

typedef struct dl__cu_pool_ctx {
    dl__cu_cgeom g;
    int is_max;
    const int *arg; /* max: per output, the plane index of the tap that gets the gradient (-1: none) */
} dl__cu_pool_ctx;

/* One thread per output: the max over the taps inside the image (NaN if any is NaN) and its
   argmax, or the sum of those taps / (kh*kw); the CPU's order of operations. */
DL__KERNEL k_pool(size_t n, dl__cu_cgeom g, int is_max, const float *x, float *y, int *arg) {
    DL__LOOP(i, n) {
        size_t ohw = (size_t)g.oh * g.ow, pl = i / ohw;
        int oi = (int)(i % ohw / (size_t)g.ow), oj = (int)(i % (size_t)g.ow), y0 = oi * g.sh - g.ph, x0 = oj * g.sw - g.pw, p, q, nan = 0, at = -1;
        const float *xp = x + pl * (size_t)g.h * g.w;
        float best = -INFINITY, sum = 0.0f, inv = 1.0f / (float)(g.kh * g.kw), m;
        for (p = 0; p < g.kh; p++) {
            int yy = y0 + p * g.dh;
            if (yy < 0 || yy >= g.h) continue;
            for (q = 0; q < g.kw; q++) {
                int xx = x0 + q * g.dw;
                float v;
                if (xx < 0 || xx >= g.w) continue;
                v = xp[yy * g.w + xx];
                if (is_max) {
                    best = v > best ? v : best;
                    nan |= v != v;
                } else {
                    sum += v;
                }
            }
        }
        if (!is_max) { y[i] = sum * inv; continue; }
        m = nan ? NAN : best;
        y[i] = m;
        for (p = 0; p < g.kh; p++) { /* the first tap equal to m, or the last NaN */
            int yy = y0 + p * g.dh;
            if (yy < 0 || yy >= g.h) continue;
            for (q = 0; q < g.kw; q++) {
                int xx = x0 + q * g.dw;
                float v;
                if (xx < 0 || xx >= g.w) continue;
                v = xp[yy * g.w + xx];
                if (nan ? v != v : (v == m && at < 0)) at = yy * g.w + xx;
            }
        }
        arg[i] = at;
    }
}

/* One thread per input element: gx += the output gradients that read it, in the CPU's order
   (outputs row-major: the taps backwards), in float as the CPU adds them. */
DL__KERNEL k_pool_grad(size_t n, dl__cu_cgeom g, int is_max, const int *arg, const float *gy, float *gx) {
    DL__LOOP(i, n) {
        size_t hw = (size_t)g.h * g.w, pl = i / hw, ohw = (size_t)g.oh * g.ow;
        int self = (int)(i % hw), yy = self / g.w, xx = self % g.w, p, q;
        float v = gx[i], inv = 1.0f / (float)(g.kh * g.kw);
        const float *gp = gy + pl * ohw;
        const int *ap = is_max ? arg + pl * ohw : NULL;
        for (p = g.kh - 1; p >= 0; p--) {
            int ty = yy + g.ph - p * g.dh, oi;
            if (ty < 0 || ty % g.sh) continue;
            if ((oi = ty / g.sh) >= g.oh) continue;
            for (q = g.kw - 1; q >= 0; q--) {
                int tx = xx + g.pw - q * g.dw, oj;
                size_t o;
                if (tx < 0 || tx % g.sw) continue;
                if ((oj = tx / g.sw) >= g.ow) continue;
                o = (size_t)oi * g.ow + oj;
                if (!is_max) v += DL__CU_MUL_RN(gp[o], inv);
                else if (ap[o] == self) v += gp[o];
            }
        }
        gx[i] = v;
    }
}

static void dl__cu_pool_backward(dl_node *nd) {
    const dl__cu_pool_ctx *c = (const dl__cu_pool_ctx *)nd->ctx;
    dl_tensor *x = nd->in[0];
    float *gx = dl_grad_buf(x);
    if (gx) DL__LAUNCH(k_pool_grad, x->numel, (x->numel, c->g, c->is_max, c->arg, nd->out->grad, gx));
}

DLDEF dl_tensor *dl__cuda_pool2d(dl_tensor *x, int kh, int kw, const dl_conv_opts *opts, int is_max) {
    const char *op = is_max ? "dl_max_pool2d" : "dl_avg_pool2d";
    dl__cu_pool_ctx c;
    dl__cu_cgeom *g = &c.g;
    const float *xc;
    dl_tensor *y;
    dl_node *nd;
    int shape[4], i, *arg = NULL;
    static const char *const names[1] = {"x"};
    if (!dl__cu_on_gpu(op, 1, &x, names) || !dl__cu_conv_ndim(x, op, "x", 4) || !dl__cu_conv_window(g, opts, kh, kw, 1, NULL, op))
        return NULL;
    if (!is_max && (g->dh != 1 || g->dw != 1)) { dl_set_error("%s: dilation is not supported (torch has none)", op); return NULL; }
    for (i = 0; i < 2; i++) {
        int k = i ? g->kw : g->kh, d = i ? g->dw : g->dh, p = i ? g->pw : g->ph;
        if (p > ((long long)(k - 1) * d + 1) / 2) {
            dl_set_error("%s: padding %d must be at most half the kernel %d (dilation %d), as in torch", op, p, k, d);
            return NULL;
        }
    }
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->oh = dl__cu_conv_out_size(g->h, g->kh, g->sh, g->ph, g->dh);
    g->ow = dl__cu_conv_out_size(g->w, g->kw, g->sw, g->pw, g->dw);
    if (!dl__cu_conv_sizes_ok(g, 0, op)) return NULL;
    if (g->oh < 1 || g->ow < 1) {
        dl_set_error("%s: kernel %dx%d (dilation %dx%d) is larger than the padded input %dx%d", op, g->kh, g->kw, g->dh, g->dw,
                     g->h + 2 * g->ph, g->w + 2 * g->pw);
        return NULL;
    }
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = g->oh;
    shape[3] = g->ow;
    xc = dl__cu_contig_data(x);
    if (!xc || !(y = dl__cu_out(4, shape))) return NULL;
    if (is_max && !(arg = (int *)dl__device_tmp_alloc((y->numel ? y->numel : 1) * sizeof(int)))) return NULL;
    c.is_max = is_max;
    c.arg = arg;
    DL__LAUNCH(k_pool, y->numel, (y->numel, *g, is_max, xc, (float *)y->data, arg));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    nd = dl_record(is_max ? "max_pool2d" : "avg_pool2d", y, 1, &x, dl__cu_pool_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(y);
}

DLDEF dl_tensor *dl__cuda_global_avg_pool2d(dl_tensor *x) {
    static const char *const names[1] = {"x"};
    int shape[2];
    if (!dl__cu_on_gpu("dl_global_avg_pool2d", 1, &x, names) || !dl__cu_conv_ndim(x, "dl_global_avg_pool2d", "x", 4)) return NULL;
    if (x->shape[2] < 1 || x->shape[3] < 1) { dl_set_error("dl_global_avg_pool2d: empty planes"); return NULL; }
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    return dl_reshape(dl__cuda_pool2d(x, x->shape[2], x->shape[3], NULL, 0), 2, shape);
}

/* ---- Remaps of the last two axes: padding, upsampling ----
   Along each axis, output o reads input src(o) (-1: a zero). The backward gathers: input a
   sums the outputs among its few candidates (upsampling: a*scale + k; padding: the reflection
   before, itself, the reflection after) whose src is a, in increasing order. */

typedef struct dl__cu_remap_axis {
    int kind; /* 0 upsample by a, 1 zero padding a before, 2 reflect padding a before */
    int a, n, out; /* scale or pad before; input and output size */
} dl__cu_remap_axis;

DL__DEV int dl__cu_axis_src(dl__cu_remap_axis ax, int o) {
    int s;
    if (ax.kind == 0) return o / ax.a;
    s = o - ax.a;
    if (s >= 0 && s < ax.n) return s;
    if (ax.kind == 1) return -1;
    return s < 0 ? -s : 2 * (ax.n - 1) - s;
}
DL__DEV int dl__cu_axis_cands(dl__cu_remap_axis ax) { return ax.kind == 0 ? ax.a : 3; }
DL__DEV int dl__cu_axis_cand(dl__cu_remap_axis ax, int in, int k) {
    if (ax.kind == 0) return in * ax.a + k;
    return k == 0 ? ax.a - in : k == 1 ? ax.a + in : ax.a + 2 * (ax.n - 1) - in;
}

DL__KERNEL k_remap(size_t n, dl__cu_remap_axis ry, dl__cu_remap_axis rx, const float *x, float *y) {
    DL__LOOP(i, n) {
        size_t ohw = (size_t)ry.out * rx.out, pl = i / ohw;
        int r = dl__cu_axis_src(ry, (int)(i % ohw / (size_t)rx.out)), c = dl__cu_axis_src(rx, (int)(i % (size_t)rx.out));
        y[i] = r >= 0 && c >= 0 ? x[(pl * ry.n + (size_t)r) * rx.n + c] : 0.0f;
    }
}

DL__KERNEL k_remap_grad(size_t n, dl__cu_remap_axis ry, dl__cu_remap_axis rx, const float *gy, float *gx) {
    DL__LOOP(i, n) {
        size_t hw = (size_t)ry.n * rx.n, pl = i / hw;
        int a = (int)(i % hw / (size_t)rx.n), b = (int)(i % (size_t)rx.n), kr, kc, last_r = -1;
        float v = gx[i];
        const float *gp = gy + pl * (size_t)ry.out * rx.out;
        for (kr = 0; kr < dl__cu_axis_cands(ry); kr++) {
            int r = dl__cu_axis_cand(ry, a, kr), last_c = -1;
            if (r <= last_r || r >= ry.out || dl__cu_axis_src(ry, r) != a) continue;
            last_r = r;
            for (kc = 0; kc < dl__cu_axis_cands(rx); kc++) {
                int c = dl__cu_axis_cand(rx, b, kc);
                if (c <= last_c || c >= rx.out || dl__cu_axis_src(rx, c) != b) continue;
                last_c = c;
                v += gp[(size_t)r * rx.out + c];
            }
        }
        gx[i] = v;
    }
}

typedef struct dl__cu_remap_ctx { dl__cu_remap_axis ry, rx; } dl__cu_remap_ctx;

static void dl__cu_remap_backward(dl_node *nd) {
    const dl__cu_remap_ctx *c = (const dl__cu_remap_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) DL__LAUNCH(k_remap_grad, nd->in[0]->numel, (nd->in[0]->numel, c->ry, c->rx, nd->out->grad, gx));
}

static dl_tensor *dl__cu_remap(dl_tensor *x, const dl__cu_remap_ctx *c, const char *name, const char *op) {
    int shape[DL_MAX_DIMS], k = x->ndim, i;
    const float *xc;
    dl_tensor *y;
    dl_node *nd;
    for (i = 0; i < k - 2; i++) shape[i] = x->shape[i];
    shape[k - 2] = c->ry.out;
    shape[k - 1] = c->rx.out;
    xc = dl__cu_contig_data(x);
    if (!xc || !(y = dl__cu_out(k, shape))) return NULL;
    DL__LAUNCH(k_remap, y->numel, (y->numel, c->ry, c->rx, xc, (float *)y->data));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    nd = dl_record(name, y, 1, &x, dl__cu_remap_backward, sizeof *c);
    if (nd) memcpy(nd->ctx, c, sizeof *c);
    return dl__cu_checked(y);
}

DLDEF dl_tensor *dl__cuda_upsample_nearest2d(dl_tensor *x, int scale_h, int scale_w) {
    const char *op = "dl_upsample_nearest2d";
    static const char *const names[1] = {"x"};
    dl__cu_remap_ctx c;
    if (!dl__cu_on_gpu(op, 1, &x, names) || !dl__cu_conv_ndim(x, op, "x", 4)) return NULL;
    if (scale_h < 1 || scale_w < 1) { dl_set_error("%s: scale factors must be >= 1, got %dx%d", op, scale_h, scale_w); return NULL; }
    if ((long long)x->shape[2] * scale_h > 1 << 30 || (long long)x->shape[3] * scale_w > 1 << 30) {
        dl_set_error("%s: output too large", op);
        return NULL;
    }
    c.ry.kind = c.rx.kind = 0;
    c.ry.a = scale_h;
    c.rx.a = scale_w;
    c.ry.n = x->shape[2];
    c.rx.n = x->shape[3];
    c.ry.out = x->shape[2] * scale_h;
    c.rx.out = x->shape[3] * scale_w;
    return dl__cu_remap(x, &c, "upsample_nearest2d", op);
}

DLDEF dl_tensor *dl__cuda_pad2d(dl_tensor *x, int pad_left, int pad_right, int pad_top, int pad_bottom, dl_pad_mode mode) {
    const char *op = "dl_pad2d";
    static const char *const names[1] = {"x"};
    dl__cu_remap_ctx c;
    int h, w;
    if (!dl__cu_on_gpu(op, 1, &x, names) || !dl__cu_conv_ndim(x, op, "x", -2)) return NULL;
    if (mode != DL_PAD_ZERO && mode != DL_PAD_REFLECT) { dl_set_error("%s: unknown mode %d", op, (int)mode); return NULL; }
    if (pad_left < 0 || pad_right < 0 || pad_top < 0 || pad_bottom < 0) {
        dl_set_error("%s: pads must be >= 0, got (%d, %d, %d, %d); crop with dl_slice", op, pad_left, pad_right, pad_top, pad_bottom);
        return NULL;
    }
    h = x->shape[x->ndim - 2];
    w = x->shape[x->ndim - 1];
    if (mode == DL_PAD_REFLECT && (pad_top >= h || pad_bottom >= h || pad_left >= w || pad_right >= w)) {
        dl_set_error("%s: reflect padding (%d, %d, %d, %d) must be smaller than the input %dx%d", op, pad_left, pad_right, pad_top,
                     pad_bottom, h, w);
        return NULL;
    }
    if ((long long)h + pad_top + pad_bottom > 1 << 30 || (long long)w + pad_left + pad_right > 1 << 30) {
        dl_set_error("%s: output too large", op);
        return NULL;
    }
    c.ry.kind = c.rx.kind = mode == DL_PAD_ZERO ? 1 : 2;
    c.ry.a = pad_top;
    c.rx.a = pad_left;
    c.ry.n = h;
    c.rx.n = w;
    c.ry.out = h + pad_top + pad_bottom;
    c.rx.out = w + pad_left + pad_right;
    return dl__cu_remap(x, &c, mode == DL_PAD_ZERO ? "pad2d_zero" : "pad2d_reflect", op);
}


/* ==== Normalization, dropout, embedding, indexing, concat ======================================
   (tests: tests/test_cuda_norm.c)
   NORMALIZATION: batch, instance and layer norm share one engine, as on the CPU: x viewed as
   contiguous [A, G, B], group g holding the m = A*B elements (a, g, b). Each group's sums are
   taken in fixed chunks of DL__CHUNK elements, one thread per (group, chunk), then the chunks
   in order by one thread per group (k_norm_part / k_norm_combine): a BatchNorm2d channel of
   N*H*W = 10^5 values is 25 threads, not 1, and the bits do not depend on the GPU. Mean and
   biased variance in two passes, sums in double; batch norm's running statistics are updated in
   place on the GPU (running_var with the unbiased variance). Layer norm's d(gamma), d(beta) sum
   over rows in chunks of rows the same way. dl_gram is two strided-batched GEMMs.
   DROPOUT: the mask is not the CPU's. The CPU draws one dl_rng_uniform per element in order;
   the GPU draws one dl_rng_u64 per call (the seed s) and keeps element i when u >= p, where u
   is the top 24 bits of splitmix64's (i+1)-th output from state s (a counter-based generator: a
   pure function of (s, i), so any thread computes any element, and backward recomputes the
   mask instead of storing it). The same rng state gives the same mask on every run and GPU;
   p == 0 or !training return x, p == 1 gives zeros (x * 0: NaN for inf, as the CPU).
   INDEXING: embedding, index_select, gather, one_hot check indices on the device and report an
   out-of-range one after a single 4-byte read (the first bad one, in row-major order, as the
   CPU names it). Their backward passes never use atomics: one thread per element of the
   gradient (per weight row for the embedding) loops over the indices in order, adding in the
   CPU's order, so repeated indices accumulate deterministically, with the CPU's bits.
   dl_concat and dl_cast take any dtype (dl_cast with the CPU's conversions: to u8 wraps modulo
   256); dl_broadcast_to's backward sums the broadcast axes per element of x; dl_split is views
   and needs nothing here. */

/* 1 when every given tensor (NULLs skipped) is on the GPU, any dtype; else 0 with the error. */
static int dl__cu_all_gpu(const char *op, int n, dl_tensor *const *ts, const char *const *names) {
    int i, j;
    for (i = 0; i < n; i++) {
        if (!ts[i] || ts[i]->device == DL_DEVICE_CUDA) continue;
        for (j = 0; j < n; j++)
            if (ts[j] && ts[j]->device == DL_DEVICE_CUDA) break;
        dl_set_error("%s: %s is on the %s and %s on the GPU: move one (dl_to_device); ops never copy across devices", op, names[i],
                     dl_device_name(ts[i]->device), j < n ? names[j] : "another");
        return 0;
    }
    return 1;
}

/* The CPU's shape check: t NULL (optional), or an f32 tensor of exactly ndim axes `shape`. */
static int dl__cu_shaped(const char *op, const char *name, const dl_tensor *t, int ndim, const int *shape) {
    char s[64], want[64];
    int i, ok;
    size_t u = 0;
    if (!t) return 1;
    ok = t->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 1;
    want[0] = 0;
    for (i = 0; i < ndim && u < sizeof want; i++) u += (size_t)snprintf(want + u, sizeof want - u, i ? ", %d" : "%d", shape[i]);
    dl_set_error("%s: %s has shape %s, expected [%s]", op, name, dl_shape_str(t, s, sizeof s), want);
    return 0;
}

/* x's data contiguous on the GPU, any dtype (x's own when contiguous, else an arena copy). */
static const void *dl__cu_contig_any(dl_tensor *x) {
    dl_tensor *c;
    if (dl_is_contiguous(x)) return x->data;
    c = dl__tmp_on(DL_DEVICE_CUDA, x->dtype, x->ndim, x->shape);
    return c && dl_copy(c, x) == 0 ? c->data : NULL;
}

/* i32 indices contiguous on the GPU (u8 ones converted, for dl_one_hot). */
static const int *dl__cu_contig_i32(dl_tensor *t) {
    dl_tensor *c;
    if (t->dtype == DL_DTYPE_I32 && dl_is_contiguous(t)) return (const int *)t->data;
    c = dl__tmp_on(DL_DEVICE_CUDA, DL_DTYPE_I32, t->ndim, t->shape);
    return c && dl_copy(c, t) == 0 ? (const int *)c->data : NULL;
}

/* ---- Index checks on the device: the first index outside [lo, hi), in order ---- */

/* part[c] = 1 + the first bad position of chunk c, or 0; for one_hot's inference (hi < lo) also
   the chunk's maximum in mx[c] (bad: negative). */
DL__KERNEL k_idx_chunk(size_t n_chunks, size_t n, const int *v, long long lo, long long hi, long long *part, int *mx) {
    DL__LOOP(c, n_chunks) {
        size_t j, end = (c + 1) * DL__CHUNK < n ? (c + 1) * DL__CHUNK : n;
        long long first = 0;
        int m = 0;
        for (j = c * DL__CHUNK; j < end; j++) {
            int x = v[j];
            if (!first && (x < lo || (hi >= lo && x >= hi))) first = (long long)j + 1;
            if (x > m) m = x;
        }
        part[c] = first;
        if (mx) mx[c] = m;
    }
}
/* res[0] = 1 when some index is bad (res[1] = its max when mx), pos[0] = the first one's position. */
DL__KERNEL k_idx_combine(size_t one, size_t n_chunks, const long long *part, const int *mx, int *res, long long *pos) {
    DL__LOOP(i, one) {
        size_t c;
        int m = 0;
        res[0] = 0;
        pos[0] = 0;
        for (c = 0; c < n_chunks; c++) {
            if (mx && mx[c] > m) m = mx[c];
            if (part[c] && !res[0]) { res[0] = 1; pos[0] = part[c] - 1; }
        }
        if (mx) res[1] = m;
        (void)i;
    }
}

/* 0 when every v[0..n) is in [lo, hi); 1 with *bad_value the first that is not; -1 on a CUDA
   error. hi < lo: only v < lo is bad, and *max (non-NULL then) gets the maximum. One read of 4
   bytes (8 with max) when all are good. */
static int dl__cu_check_indices(const char *op, const int *v, size_t n, long long lo, long long hi, int *bad_value, int *max) {
    size_t chunks = (n + DL__CHUNK - 1) / DL__CHUNK;
    long long *part = (long long *)dl__device_tmp_alloc((chunks ? chunks : 1) * sizeof(long long) + sizeof(long long));
    int *res = (int *)dl__device_tmp_alloc((chunks ? chunks : 1) * sizeof(int) + 2 * sizeof(int)), *mx = max ? res + 2 : NULL;
    int h[2] = {0, 0};
    long long at = 0;
    if (!part || !res) return -1;
    DL__LAUNCH(k_idx_chunk, chunks, (chunks, n, v, lo, hi, part, mx));
    DL__LAUNCH(k_idx_combine, (size_t)1, ((size_t)1, chunks, (const long long *)part, (const int *)mx, res, part + chunks));
    if (DL__CHECK_LAUNCH(op) != 0) return -1;
    if (dl__cuda_memcpy(h, res, (max ? 2 : 1) * sizeof(int), DL__D2H) != 0) return -1;
    if (max) *max = h[1];
    if (!h[0]) return 0;
    if (dl__cuda_memcpy(&at, part + chunks, sizeof at, DL__D2H) != 0 || dl__cuda_memcpy(bad_value, v + at, sizeof(int), DL__D2H) != 0)
        return -1;
    return 1;
}

/* ---- The normalization engine: contiguous [A, G, B], statistics per group g ---- */

typedef struct dl__cu_norm {
    int A, G, B, period, per_position, batch_stats;
    size_t m, nch;                  /* values per group; chunks per group */
    float eps;
    const float *x, *gamma, *beta;  /* contiguous; gamma/beta may be NULL */
    float *mean, *var, *invstd;     /* [G] */
} dl__cu_norm;

/* The element at position k < m of group g. */
DL__DEV size_t dl__cu_norm_off(const dl__cu_norm *c, int g, size_t k) {
    return ((k / (size_t)c->B) * (size_t)c->G + (size_t)g) * (size_t)c->B + k % (size_t)c->B;
}

/* One thread per (group, chunk). what 0: sum x; 1: sum (x - mean)^2; 2: sum dy*gw and
   sum dy*gw*xhat (gw: layer norm's gamma at b, else 1), into part[g*nch + chunk] and, for the
   second sum, part[G*nch + g*nch + chunk]. */
DL__KERNEL k_norm_part(size_t n, dl__cu_norm c, int what, const float *dy, double *part) {
    DL__LOOP(i, n) {
        int g = (int)(i / c.nch);
        size_t ch = i % c.nch, k = ch * DL__CHUNK, end = k + DL__CHUNK < c.m ? k + DL__CHUNK : c.m;
        size_t b = c.B ? k % (size_t)c.B : 0, off = c.B ? dl__cu_norm_off(&c, g, k) : 0, jump = (size_t)(c.G - 1) * (size_t)c.B;
        double s1 = 0, s2 = 0;
        float mu = what ? c.mean[g] : 0.0f, is = what == 2 ? c.invstd[g] : 0.0f;
        for (; k < end; k++) {
            float v = c.x[off];
            if (what == 0) s1 += v;
            else if (what == 1) { float d = v - mu; s1 += (double)d * d; }
            else {
                float gw = c.per_position && c.gamma ? c.gamma[b] : 1.0f, d = dy[off] * gw;
                s1 += d;
                s2 += (double)d * ((v - mu) * is);
            }
            off++;
            if (++b == (size_t)c.B) { b = 0; off += jump; }
        }
        part[i] = s1;
        if (what == 2) part[(size_t)c.G * c.nch + i] = s2;
    }
}

/* One thread per group: the chunks in order. what 0: mean; 1: var and invstd; 2: s[g], s[G + g]. */
DL__KERNEL k_norm_combine(size_t n, dl__cu_norm c, int what, const double *part, double *s) {
    DL__LOOP(g, n) {
        double s1 = 0, s2 = 0, m = (double)c.m;
        size_t j;
        for (j = 0; j < c.nch; j++) {
            s1 += part[g * c.nch + j];
            if (what == 2) s2 += part[(size_t)c.G * c.nch + g * c.nch + j];
        }
        if (what == 0) c.mean[g] = (float)(m > 0 ? s1 / m : 0.0);
        else if (what == 1) {
            double v = m > 0 ? s1 / m : 0.0;
            c.var[g] = (float)v;
            c.invstd[g] = (float)(1.0 / sqrt(v + (double)c.eps));
        } else {
            s[g] = s1;
            s[(size_t)c.G + g] = s2;
        }
    }
}

/* y = (x - mean) * (invstd * gamma_g) * gw[b] + bw[b] + beta_g (per group or per position b). */
DL__KERNEL k_norm_apply(size_t n, dl__cu_norm c, float *y) {
    DL__LOOP(i, n) {
        size_t b = i % (size_t)c.B;
        int g = (int)((i / (size_t)c.B) % (size_t)c.G);
        float gw = 1.0f, bw = 0.0f, k0 = c.invstd[g], k1 = 0.0f;
        if (c.per_position) {
            if (c.gamma) gw = c.gamma[b];
            if (c.beta) bw = c.beta[b];
        } else {
            if (c.gamma) k0 = c.invstd[g] * c.gamma[g % c.period];
            if (c.beta) k1 = c.beta[g % c.period];
        }
        y[i] = (c.x[i] - c.mean[g]) * k0 * gw + bw + k1;
    }
}

/* The per-group coefficients of dx = dy*gw*k0 + (x - mean)*k1 + k2 (the CPU's formulas). */
DL__KERNEL k_norm_coef(size_t n, dl__cu_norm c, const double *s, float *k) {
    DL__LOOP(g, n) {
        double gk = !c.per_position && c.gamma ? c.gamma[g % (size_t)c.period] : 1.0f, is = c.invstd[g], m = (double)c.m;
        int batch = c.batch_stats && m > 0;
        k[g] = (float)(is * gk);
        k[n + g] = batch ? (float)(-is * is * gk * s[(size_t)c.G + g] / m) : 0.0f;
        k[2 * n + g] = batch ? (float)(-is * gk * s[g] / m) : 0.0f;
    }
}

DL__KERNEL k_norm_dx(size_t n, dl__cu_norm c, const float *k, const float *dy, float *dx) {
    DL__LOOP(i, n) {
        size_t b = i % (size_t)c.B, g = (i / (size_t)c.B) % (size_t)c.G;
        float gw = c.per_position && c.gamma ? c.gamma[b] : 1.0f;
        dx[i] += dy[i] * gw * k[g] + (c.x[i] - c.mean[g]) * k[(size_t)c.G + g] + k[2 * (size_t)c.G + g];
    }
}

/* d(gamma[ch]) += s2 and d(beta[ch]) += s1 of ch's groups, in group order, one thread per channel. */
DL__KERNEL k_norm_group_params(size_t n, dl__cu_norm c, const double *s, float *dgamma, float *dbeta) {
    DL__LOOP(ch, n) {
        float ag = dgamma ? dgamma[ch] : 0.0f, ab = dbeta ? dbeta[ch] : 0.0f;
        size_t g;
        for (g = ch; g < (size_t)c.G; g += n) {
            ag += (float)s[(size_t)c.G + g];
            ab += (float)s[g];
        }
        if (dgamma) dgamma[ch] = ag;
        if (dbeta) dbeta[ch] = ab;
    }
}

/* Layer norm (A = 1): per position b and chunk of rows, sum dy*xhat and dy over the rows. */
DL__KERNEL k_norm_pos_part(size_t n, dl__cu_norm c, size_t rch, const float *dy, double *part) {
    DL__LOOP(i, n) {
        size_t b = i / rch, r = (i % rch) * DL__CHUNK, end = r + DL__CHUNK < (size_t)c.G ? r + DL__CHUNK : (size_t)c.G;
        double dg = 0, db = 0;
        for (; r < end; r++) {
            size_t at = r * (size_t)c.B + b;
            dg += (double)dy[at] * ((c.x[at] - c.mean[r]) * c.invstd[r]);
            db += dy[at];
        }
        part[i] = dg;
        part[n + i] = db;
    }
}
DL__KERNEL k_norm_pos_combine(size_t n, size_t rch, const double *part, float *dgamma, float *dbeta) {
    DL__LOOP(b, n) {
        double dg = 0, db = 0;
        size_t j;
        for (j = 0; j < rch; j++) {
            dg += part[b * rch + j];
            db += part[n * rch + b * rch + j];
        }
        if (dgamma) dgamma[b] += (float)dg;
        if (dbeta) dbeta[b] += (float)db;
    }
}

/* Statistics (what 0 then 1) or gradient sums (2) of every group; s: [2G] for what 2. */
static int dl__cu_norm_sums(const dl__cu_norm *c, int what, const float *dy, double *s) {
    size_t n = (size_t)c->G * c->nch;
    double *part = (double *)dl__device_tmp_alloc((n ? 2 * n : 1) * sizeof(double));
    if (!part) return -1;
    DL__LAUNCH(k_norm_part, n, (n, *c, what, dy, part));
    DL__LAUNCH(k_norm_combine, (size_t)c->G, ((size_t)c->G, *c, what, (const double *)part, s));
    return 0;
}

static void dl__cu_norm_backward(dl_node *nd) {
    const dl__cu_norm *c = (const dl__cu_norm *)nd->ctx;
    float *dx = dl_grad_buf(nd->in[0]), *dgamma = dl_grad_buf(nd->in[1]), *dbeta = dl_grad_buf(nd->in[2]);
    const float *dy = nd->out->grad;
    size_t G = (size_t)c->G;
    double *s = NULL;
    if ((dx && c->batch_stats) || (!c->per_position && (dgamma || dbeta))) {
        if (!(s = (double *)dl__device_tmp_alloc((G ? 2 * G : 1) * sizeof(double))) || dl__cu_norm_sums(c, 2, dy, s) != 0) return;
    }
    if (dx) {
        float *k = dl__cu_scratch(G ? 3 * G : 1);
        if (!k) return;
        if (!s && !(s = (double *)dl__device_tmp_alloc((G ? 2 * G : 1) * sizeof(double)))) return; /* unread: fixed statistics */
        DL__LAUNCH(k_norm_coef, G, (G, *c, (const double *)s, k));
        DL__LAUNCH(k_norm_dx, nd->out->numel, (nd->out->numel, *c, (const float *)k, dy, dx));
    }
    if (!dgamma && !dbeta) return;
    if (!c->per_position) {
        DL__LAUNCH(k_norm_group_params, (size_t)c->period, ((size_t)c->period, *c, (const double *)s, dgamma, dbeta));
    } else {
        size_t rch = (G + DL__CHUNK - 1) / DL__CHUNK, n;
        double *part;
        if (rch == 0) rch = 1;
        n = (size_t)c->B * rch;
        if (!(part = (double *)dl__device_tmp_alloc((n ? 2 * n : 1) * sizeof(double)))) return;
        DL__LAUNCH(k_norm_pos_part, n, (n, *c, rch, dy, part));
        DL__LAUNCH(k_norm_pos_combine, (size_t)c->B, ((size_t)c->B, rch, (const double *)part, dgamma, dbeta));
    }
}

/* Sets up c for x (on the GPU) as [A, G, B]: x's contiguous data and the [G] arrays. */
static int dl__cu_norm_init(dl__cu_norm *c, dl_tensor *x, int A, int G, int B, float eps) {
    memset(c, 0, sizeof *c);
    c->A = A; c->G = G; c->B = B; c->period = G ? G : 1; c->eps = eps;
    c->m = (size_t)A * (size_t)B;
    c->nch = (c->m + DL__CHUNK - 1) / DL__CHUNK;
    if (c->nch == 0) c->nch = 1;
    c->x = dl__cu_contig_data(x);
    c->mean = dl__cu_scratch(G ? 3 * (size_t)G : 1);
    if (!c->x || !c->mean) return 0;
    c->var = c->mean + G;
    c->invstd = c->mean + 2 * (size_t)G;
    return 1;
}

/* The shared forward: statistics (unless given), y, and the node {x, gamma, beta}. */
static dl_tensor *dl__cu_norm_forward(const char *op, dl__cu_norm *c, dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, int compute_stats) {
    dl_tensor *in[3], *y = dl__cu_out(x->ndim, x->shape);
    dl_node *nd;
    if (!y) return NULL;
    c->gamma = gamma ? dl__cu_contig_data(gamma) : NULL;
    c->beta = beta ? dl__cu_contig_data(beta) : NULL;
    if ((gamma && !c->gamma) || (beta && !c->beta)) return NULL;
    c->batch_stats = compute_stats;
    if (compute_stats && (dl__cu_norm_sums(c, 0, NULL, NULL) != 0 || dl__cu_norm_sums(c, 1, NULL, NULL) != 0)) return NULL;
    DL__LAUNCH(k_norm_apply, y->numel, (y->numel, *c, (float *)y->data));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    in[0] = x; in[1] = gamma; in[2] = beta;
    nd = dl_record(op, y, 3, in, dl__cu_norm_backward, sizeof *c);
    if (nd) memcpy(nd->ctx, c, sizeof *c);
    return dl__cu_checked(y);
}

static int dl__cu_norm_input(const char *op, dl_tensor *x, int min_ndim) {
    char s[64];
    if (x->ndim >= min_ndim) return 1;
    dl_set_error("%s: input %s needs at least %d dimensions", op, dl_shape_str(x, s, sizeof s), min_ndim);
    return 0;
}

static int dl__cu_dims_prod(const dl_tensor *x, int from, int to) {
    int i, p = 1;
    for (i = from; i < to; i++) p *= x->shape[i];
    return p;
}

DL__KERNEL k_bn_eval_stats(size_t n, const float *rm, long long sm, const float *rv, long long sv, float eps, float *mean, float *var,
                           float *invstd) {
    DL__LOOP(g, n) {
        mean[g] = rm[(long long)g * sm];
        var[g] = rv[(long long)g * sv];
        invstd[g] = (float)(1.0 / sqrt((double)var[g] + (double)eps));
    }
}

DL__KERNEL k_bn_running(size_t n, float *rm, long long sm, float *rv, long long sv, const float *mean, const float *var, float momentum,
                        float unbias) {
    DL__LOOP(g, n) {
        if (rm) { float *r = rm + (long long)g * sm; *r = (1.0f - momentum) * *r + momentum * mean[g]; }
        if (rv) { float *r = rv + (long long)g * sv; *r = (1.0f - momentum) * *r + momentum * var[g] * unbias; }
    }
}

DLDEF dl_tensor *dl__cuda_batch_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, dl_tensor *running_mean, dl_tensor *running_var,
                                     int training, float momentum, float eps) {
    static const char *const names[5] = {"input", "gamma", "beta", "running_mean", "running_var"};
    const char *op = "dl_batch_norm";
    dl_tensor *in[5] = {x, gamma, beta, running_mean, running_var}, *y;
    dl__cu_norm c;
    int C, N, S;
    size_t m;
    if (!dl__cu_on_gpu(op, 5, in, names) || !dl__cu_norm_input(op, x, 2)) return NULL;
    N = x->shape[0];
    C = x->shape[1];
    S = dl__cu_dims_prod(x, 2, x->ndim);
    m = (size_t)N * (size_t)S;
    if (!dl__cu_shaped(op, "gamma", gamma, 1, &C) || !dl__cu_shaped(op, "beta", beta, 1, &C) ||
        !dl__cu_shaped(op, "running_mean", running_mean, 1, &C) || !dl__cu_shaped(op, "running_var", running_var, 1, &C))
        return NULL;
    if (!(eps >= 0)) { dl_set_error("%s: eps must be >= 0, got %g", op, (double)eps); return NULL; }
    if (training && m <= 1) {
        char s[64];
        dl_set_error("%s: expected more than 1 value per channel when training, got input %s", op, dl_shape_str(x, s, sizeof s));
        return NULL;
    }
    if (!training && (!running_mean || !running_var)) {
        dl_set_error("%s: running_mean and running_var are required when not training", op);
        return NULL;
    }
    if (!dl__cu_norm_init(&c, x, N, C, S, eps)) return NULL;
    if (!training)
        DL__LAUNCH(k_bn_eval_stats, (size_t)C, ((size_t)C, (const float *)running_mean->data, (long long)running_mean->strides[0],
                                               (const float *)running_var->data, (long long)running_var->strides[0], eps, c.mean, c.var,
                                               c.invstd));
    y = dl__cu_norm_forward(op, &c, x, gamma, beta, training);
    if (y && training && (running_mean || running_var)) {
        float unbias = (float)((double)m / (double)(m - 1));
        DL__LAUNCH(k_bn_running, (size_t)C, ((size_t)C, running_mean ? (float *)running_mean->data : (float *)NULL,
                                            running_mean ? (long long)running_mean->strides[0] : 0,
                                            running_var ? (float *)running_var->data : (float *)NULL,
                                            running_var ? (long long)running_var->strides[0] : 0, (const float *)c.mean,
                                            (const float *)c.var, momentum, unbias));
        if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    }
    return y;
}

DLDEF dl_tensor *dl__cuda_layer_norm(dl_tensor *x, int normalized_ndim, dl_tensor *gamma, dl_tensor *beta, float eps) {
    static const char *const names[3] = {"input", "gamma", "beta"};
    const char *op = "dl_layer_norm";
    dl_tensor *in[3] = {x, gamma, beta};
    dl__cu_norm c;
    int k;
    if (!dl__cu_on_gpu(op, 3, in, names) || !dl__cu_norm_input(op, x, 1)) return NULL;
    if (normalized_ndim < 1 || normalized_ndim > x->ndim) {
        dl_set_error("%s: normalized_ndim %d out of range 1..%d", op, normalized_ndim, x->ndim);
        return NULL;
    }
    if (!(eps >= 0)) { dl_set_error("%s: eps must be >= 0, got %g", op, (double)eps); return NULL; }
    k = x->ndim - normalized_ndim;
    if (!dl__cu_shaped(op, "gamma", gamma, normalized_ndim, x->shape + k) || !dl__cu_shaped(op, "beta", beta, normalized_ndim, x->shape + k))
        return NULL;
    if (!dl__cu_norm_init(&c, x, 1, dl__cu_dims_prod(x, 0, k), dl__cu_dims_prod(x, k, x->ndim), eps)) return NULL;
    c.per_position = 1;
    return dl__cu_norm_forward(op, &c, x, gamma, beta, 1);
}

DLDEF dl_tensor *dl__cuda_instance_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, float eps) {
    static const char *const names[3] = {"input", "gamma", "beta"};
    const char *op = "dl_instance_norm";
    dl_tensor *in[3] = {x, gamma, beta};
    dl__cu_norm c;
    int C, S;
    if (!dl__cu_on_gpu(op, 3, in, names) || !dl__cu_norm_input(op, x, 3)) return NULL;
    C = x->shape[1];
    S = dl__cu_dims_prod(x, 2, x->ndim);
    if (!dl__cu_shaped(op, "gamma", gamma, 1, &C) || !dl__cu_shaped(op, "beta", beta, 1, &C)) return NULL;
    if (!(eps >= 0)) { dl_set_error("%s: eps must be >= 0, got %g", op, (double)eps); return NULL; }
    if (S <= 1) {
        char s[64];
        dl_set_error("%s: expected more than 1 spatial element, got input %s", op, dl_shape_str(x, s, sizeof s));
        return NULL;
    }
    if (!dl__cu_norm_init(&c, x, 1, x->shape[0] * C, S, eps)) return NULL;
    c.period = C;
    return dl__cu_norm_forward(op, &c, x, gamma, beta, 1);
}

/* ---- Gram matrix: G[n] = F F^T / L, dF = (dG + dG^T) F / L ---- */

typedef struct dl__cu_gram_ctx {
    const float *f; /* x as contiguous [N, C, L] */
    int N, C, L;
} dl__cu_gram_ctx;

DL__KERNEL k_gram_sym(size_t n, int C, const float *g, float *sym) {
    DL__LOOP(i, n) {
        size_t cc = (size_t)C * C, b = i / cc, r = (i % cc) / (size_t)C, q = i % (size_t)C;
        sym[i] = g[i] + g[b * cc + q * (size_t)C + r];
    }
}

static void dl__cu_gram_backward(dl_node *nd) {
    const dl__cu_gram_ctx *c = (const dl__cu_gram_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]), *sym;
    size_t cc = (size_t)c->C * (size_t)c->C, n = (size_t)c->N * cc;
    if (!gx || c->L == 0 || n == 0) return;
    if (!(sym = dl__cu_scratch(n))) return;
    DL__LAUNCH(k_gram_sym, n, (n, c->C, (const float *)nd->out->grad, sym));
    dl__cu_gemm("dl_gram", 0, 0, c->C, c->L, c->C, 1.0f / (float)c->L, sym, c->C, (long long)cc, c->f, c->L, (long long)c->C * c->L, 1.0f, gx,
                c->L, (long long)c->C * c->L, c->N);
}

DLDEF dl_tensor *dl__cuda_gram(dl_tensor *x) {
    const char *op = "dl_gram";
    dl__cu_gram_ctx c;
    dl_tensor *y;
    dl_node *nd;
    int shape[3];
    if (!dl__cu_on_gpu(op, 1, &x, dl__cu_ab) || !dl__cu_norm_input(op, x, 3)) return NULL;
    c.N = x->shape[0];
    c.C = x->shape[1];
    c.L = dl__cu_dims_prod(x, 2, x->ndim);
    c.f = dl__cu_contig_data(x);
    shape[0] = c.N; shape[1] = c.C; shape[2] = c.C;
    y = dl__cu_out(3, shape);
    if (!c.f || !y) return NULL;
    if (c.L == 0) {
        if (dl__cuda_memset0(y->data, y->numel * sizeof(float)) != 0) return NULL;
    } else if (dl__cu_gemm(op, 0, 1, c.C, c.C, c.L, 1.0f / (float)c.L, c.f, c.L, (long long)c.C * c.L, c.f, c.L, (long long)c.C * c.L, 0.0f,
                           (float *)y->data, c.C, (long long)c.C * c.C, c.N) != 0) {
        return NULL;
    }
    nd = dl_record("gram", y, 1, &x, dl__cu_gram_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(y);
}

/* ---- Dropout: a counter-based mask (see the section's comment) ---- */

/* 1 when element i is kept: u >= p for u the top 24 bits of splitmix64's (i+1)-th output from
   state seed, in [0, 1) as dl_rng_uniform makes it. */
DL__DEV int dl__cu_keep(unsigned long long seed, size_t i, float p) {
    unsigned long long z = seed + ((unsigned long long)i + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

typedef struct dl__cu_dropout_ctx {
    unsigned long long seed;
    float p, scale;
} dl__cu_dropout_ctx;

/* y = x * (keep ? scale : 0) (multiplying, as the CPU: a dropped inf gives NaN); backward:
   gx += gy * the same factor. */
DL__KERNEL k_dropout(size_t n, dl__cu_dropout_ctx c, const float *x, float *y, int grad) {
    DL__LOOP(i, n) {
        float mult = dl__cu_keep(c.seed, i, c.p) ? c.scale : 0.0f;
        if (grad) y[i] += x[i] * mult;
        else y[i] = x[i] * mult;
    }
}

static void dl__cu_dropout_backward(dl_node *nd) {
    const dl__cu_dropout_ctx *c = (const dl__cu_dropout_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) DL__LAUNCH(k_dropout, nd->out->numel, (nd->out->numel, *c, (const float *)nd->out->grad, gx, 1));
}

DLDEF dl_tensor *dl__cuda_dropout(dl_tensor *x, float p, int training, dl_rng *rng) {
    static const char *const names[1] = {"input"};
    const char *op = "dl_dropout";
    dl__cu_dropout_ctx c;
    const float *xs;
    dl_tensor *y;
    dl_node *nd;
    if (!dl__cu_on_gpu(op, 1, &x, names)) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) { dl_set_error("%s: p must be in [0, 1], got %g", op, (double)p); return NULL; }
    if (!training || p == 0.0f) return x;
    if (!rng) { dl_set_error("%s: rng is NULL while training", op); return NULL; }
    c.seed = (unsigned long long)dl_rng_u64(rng);
    c.p = p;
    c.scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    xs = dl__cu_contig_data(x);
    y = dl__cu_out(x->ndim, x->shape);
    if (!xs || !y) return NULL;
    DL__LAUNCH(k_dropout, y->numel, (y->numel, c, xs, (float *)y->data, 0));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    nd = dl_record("dropout", y, 1, &x, dl__cu_dropout_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(y);
}

/* ---- Embedding ---- */

typedef struct dl__cu_emb_ctx {
    const int *idx; /* contiguous, checked */
    size_t rows;
} dl__cu_emb_ctx;

DL__KERNEL k_embedding(size_t n, int D, const int *idx, const float *w, float *y) {
    DL__LOOP(i, n) { y[i] = w[(size_t)idx[i / (size_t)D] * (size_t)D + i % (size_t)D]; }
}

/* One thread per weight row v: the rows of dy whose index is v, in order (the CPU's order). */
DL__KERNEL k_embedding_grad(size_t V, size_t rows, int D, const int *idx, const float *gy, float *gw) {
    DL__LOOP(v, V) {
        size_t r;
        int d;
        for (r = 0; r < rows; r++)
            if ((size_t)idx[r] == v)
                for (d = 0; d < D; d++) gw[v * (size_t)D + (size_t)d] += gy[r * (size_t)D + (size_t)d];
    }
}

static void dl__cu_embedding_backward(dl_node *nd) {
    const dl__cu_emb_ctx *c = (const dl__cu_emb_ctx *)nd->ctx;
    dl_tensor *w = nd->in[0];
    float *gw = dl_grad_buf(w);
    if (gw && w->shape[1] > 0)
        DL__LAUNCH(k_embedding_grad, (size_t)w->shape[0], ((size_t)w->shape[0], c->rows, w->shape[1], c->idx, (const float *)nd->out->grad, gw));
}

DLDEF dl_tensor *dl__cuda_embedding(dl_tensor *weight, dl_tensor *indices) {
    static const char *const names[2] = {"weight", "indices"};
    const char *op = "dl_embedding";
    dl_tensor *in[2] = {weight, indices}, *y;
    dl__cu_emb_ctx c;
    const float *w;
    int shape[DL_MAX_DIMS], V, D, i, bad = 0, rc;
    dl_node *nd;
    char s[64];
    if (!dl__cu_all_gpu(op, 2, in, names)) return NULL;
    if (weight->dtype != DL_DTYPE_F32 || weight->ndim != 2) {
        dl_set_error("%s: weight must be a 2-d f32 tensor [V, D], got %s %s", op, dl_dtype_name(weight->dtype), dl_shape_str(weight, s, sizeof s));
        return NULL;
    }
    if (indices->dtype != DL_DTYPE_I32) { dl_set_error("%s: indices must be i32, got %s", op, dl_dtype_name(indices->dtype)); return NULL; }
    if (indices->ndim >= DL_MAX_DIMS) { dl_set_error("%s: indices have too many dimensions (%d)", op, indices->ndim); return NULL; }
    V = weight->shape[0];
    D = weight->shape[1];
    c.rows = indices->numel;
    if (!(c.idx = dl__cu_contig_i32(indices))) return NULL;
    if ((rc = dl__cu_check_indices(op, c.idx, c.rows, 0, V, &bad, NULL)) != 0) {
        if (rc > 0) dl_set_error("%s: index %d out of range for %d rows", op, bad, V);
        return NULL;
    }
    for (i = 0; i < indices->ndim; i++) shape[i] = indices->shape[i];
    shape[indices->ndim] = D;
    w = dl__cu_contig_data(weight);
    y = dl__cu_out(indices->ndim + 1, shape);
    if (!w || !y) return NULL;
    if (D > 0) DL__LAUNCH(k_embedding, y->numel, (y->numel, D, c.idx, w, (float *)y->data));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    nd = dl_record("embedding", y, 1, &weight, dl__cu_embedding_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(y);
}

/* ---- index_select, gather ---- */

typedef struct dl__cu_isel_ctx {
    const int *idx;
    size_t outer, inner, len, m; /* x as [outer, len, inner], out as [outer, m, inner] */
} dl__cu_isel_ctx;

DL__KERNEL k_index_select(size_t n, dl__cu_isel_ctx c, int esize, const char *src, char *dst) {
    DL__LOOP(i, n) {
        size_t t = i % c.inner, k = (i / c.inner) % c.m, o = i / (c.inner * c.m);
        size_t from = (o * c.len + (size_t)c.idx[k]) * c.inner + t;
        if (esize == 4) ((int *)dst)[i] = ((const int *)src)[from];
        else dst[i] = src[from];
    }
}

/* One thread per element (o, j, t) of gx: the entries k with idx[k] == j, in order. */
DL__KERNEL k_index_select_grad(size_t n, dl__cu_isel_ctx c, const float *g, float *gx) {
    DL__LOOP(i, n) {
        size_t t = i % c.inner, j = (i / c.inner) % c.len, o = i / (c.inner * c.len), k;
        float acc = gx[i];
        for (k = 0; k < c.m; k++)
            if ((size_t)c.idx[k] == j) acc += g[(o * c.m + k) * c.inner + t];
        gx[i] = acc;
    }
}

static void dl__cu_index_select_backward(dl_node *nd) {
    const dl__cu_isel_ctx *c = (const dl__cu_isel_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) DL__LAUNCH(k_index_select_grad, nd->in[0]->numel, (nd->in[0]->numel, *c, (const float *)nd->out->grad, gx));
}

/* An axis in [-ndim, ndim) made non-negative; -1 with the CPU's message. */
static int dl__cu_axis(const char *op, int axis, int ndim) {
    if (axis < -ndim || axis >= ndim) { dl_set_error("%s: axis %d out of range for a %d-d tensor", op, axis, ndim); return -1; }
    return axis < 0 ? axis + ndim : axis;
}

/* idx's values contiguous, checked against [0, limit) with the CPU's messages; NULL on error. */
static const int *dl__cu_indices(const char *op, dl_tensor *idx, int limit) {
    const int *v;
    int bad = 0, rc;
    if (idx->dtype != DL_DTYPE_I32) { dl_set_error("%s: indices must be i32, got %s", op, dl_dtype_name(idx->dtype)); return NULL; }
    if (!(v = dl__cu_contig_i32(idx))) return NULL;
    if ((rc = dl__cu_check_indices(op, v, idx->numel, 0, limit, &bad, NULL)) != 0) {
        if (rc > 0) dl_set_error("%s: index %d out of range [0, %d)", op, bad, limit);
        return NULL;
    }
    return v;
}

DLDEF dl_tensor *dl__cuda_index_select(dl_tensor *x, int axis, dl_tensor *idx) {
    static const char *const names[2] = {"x", "indices"};
    const char *op = "dl_index_select";
    dl_tensor *in[2] = {x, idx}, *out;
    dl__cu_isel_ctx c;
    int shape[DL_MAX_DIMS], i, es;
    const void *src;
    dl_node *nd;
    if (!dl__cu_all_gpu(op, 2, in, names)) return NULL;
    if (x->ndim == 0) { dl_set_error("%s: x is 0-d", op); return NULL; }
    if ((axis = dl__cu_axis(op, axis, x->ndim)) < 0) return NULL;
    if (idx->ndim != 1) { dl_set_error("%s: indices must be 1-d, got %d-d", op, idx->ndim); return NULL; }
    if (!(c.idx = dl__cu_indices(op, idx, x->shape[axis]))) return NULL;
    if (!(src = dl__cu_contig_any(x))) return NULL;
    for (i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[axis] = idx->shape[0];
    if (!(out = dl__tmp_on(DL_DEVICE_CUDA, x->dtype, x->ndim, shape))) return NULL;
    c.outer = c.inner = 1;
    for (i = 0; i < axis; i++) c.outer *= (size_t)x->shape[i];
    for (i = axis + 1; i < x->ndim; i++) c.inner *= (size_t)x->shape[i];
    c.len = (size_t)x->shape[axis];
    c.m = (size_t)idx->shape[0];
    es = (int)dl_dtype_size(x->dtype);
    DL__LAUNCH(k_index_select, out->numel, (out->numel, c, es, (const char *)src, (char *)out->data));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    nd = dl_record("index_select", out, 1, &x, dl__cu_index_select_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(out);
}

typedef struct dl__cu_gather_ctx {
    int nd, axis;
    long long xshape[DL_MAX_DIMS], ishape[DL_MAX_DIMS];
    long long xst[DL_MAX_DIMS];  /* x's strides (forward: x read in place) */
    long long ist[DL_MAX_DIMS];  /* idx's contiguous strides */
    const int *idx;
} dl__cu_gather_ctx;

/* out[i] = x[i's coordinates, with idx[i] on the axis] */
DL__KERNEL k_gather(size_t n, dl__cu_gather_ctx c, const float *x, float *out) {
    DL__LOOP(i, n) {
        long long off = 0;
        size_t r = i;
        int d;
        for (d = c.nd - 1; d >= 0; d--) {
            long long q = (long long)(r % (size_t)c.ishape[d]);
            r /= (size_t)c.ishape[d];
            off += (d == c.axis ? (long long)c.idx[i] : q) * c.xst[d];
        }
        out[i] = x[off];
    }
}

/* One thread per element of gx (contiguous, x's shape): the entries of idx that differ from its
   coordinates only on the axis and point at it, in order of the axis coordinate (the CPU's). */
DL__KERNEL k_gather_grad(size_t n, dl__cu_gather_ctx c, const float *g, float *gx) {
    DL__LOOP(i, n) {
        long long base = 0, ca = 0, k;
        size_t r = i;
        int d, inside = 1;
        float acc;
        for (d = c.nd - 1; d >= 0; d--) {
            long long q = (long long)(r % (size_t)c.xshape[d]);
            r /= (size_t)c.xshape[d];
            if (d == c.axis) { ca = q; continue; }
            if (q >= c.ishape[d]) inside = 0;
            base += q * c.ist[d];
        }
        if (!inside) continue;
        acc = gx[i];
        for (k = 0; k < c.ishape[c.axis]; k++) {
            long long at = base + k * c.ist[c.axis];
            if ((long long)c.idx[at] == ca) acc += g[at];
        }
        gx[i] = acc;
    }
}

static void dl__cu_gather_backward(dl_node *nd) {
    const dl__cu_gather_ctx *c = (const dl__cu_gather_ctx *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) DL__LAUNCH(k_gather_grad, nd->in[0]->numel, (nd->in[0]->numel, *c, (const float *)nd->out->grad, gx));
}

DLDEF dl_tensor *dl__cuda_gather(dl_tensor *x, int axis, dl_tensor *idx) {
    static const char *const names[2] = {"x", "indices"};
    const char *op = "dl_gather";
    dl_tensor *in[2] = {x, idx}, *out;
    dl__cu_gather_ctx c;
    ptrdiff_t ist[DL_MAX_DIMS];
    int d;
    dl_node *nd;
    if (!dl__cu_all_gpu(op, 2, in, names)) return NULL;
    if (x->dtype != DL_DTYPE_F32) { dl_set_error("%s: need an f32 tensor, got %s", op, dl_dtype_name(x->dtype)); return NULL; }
    if (x->ndim == 0) { dl_set_error("%s: x is 0-d", op); return NULL; }
    if ((axis = dl__cu_axis(op, axis, x->ndim)) < 0) return NULL;
    if (idx->ndim != x->ndim) { dl_set_error("%s: indices are %d-d, x is %d-d", op, idx->ndim, x->ndim); return NULL; }
    for (d = 0; d < x->ndim; d++)
        if (d != axis && idx->shape[d] > x->shape[d]) {
            char s1[64], s2[64];
            dl_set_error("%s: indices %s larger than x %s on axis %d", op, dl_shape_str(idx, s1, sizeof s1), dl_shape_str(x, s2, sizeof s2), d);
            return NULL;
        }
    memset(&c, 0, sizeof c);
    if (!(c.idx = dl__cu_indices(op, idx, x->shape[axis]))) return NULL;
    if (!(out = dl__cu_out(idx->ndim, idx->shape))) return NULL;
    c.nd = x->ndim;
    c.axis = axis;
    dl__cu_contig(idx->ndim, idx->shape, ist);
    for (d = 0; d < x->ndim; d++) {
        c.xshape[d] = x->shape[d];
        c.ishape[d] = idx->shape[d];
        c.xst[d] = x->strides[d];
        c.ist[d] = ist[d];
    }
    DL__LAUNCH(k_gather, out->numel, (out->numel, c, (const float *)x->data, (float *)out->data));
    if (DL__CHECK_LAUNCH(op) != 0) return NULL;
    nd = dl_record("gather", out, 1, &x, dl__cu_gather_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__cu_checked(out);
}

/* ---- concat (any dtype): one strided copy per input into its slice of the result ---- */

typedef struct dl__cu_concat_ctx { int axis; } dl__cu_concat_ctx;

static void dl__cu_concat_backward(dl_node *nd) {
    int axis = ((const dl__cu_concat_ctx *)nd->ctx)->axis, k;
    dl_tensor *out = nd->out;
    ptrdiff_t so[DL_MAX_DIMS], sx[DL_MAX_DIMS];
    size_t off = 0;
    dl__cu_contig(out->ndim, out->shape, so);
    for (k = 0; k < nd->n_in; k++) {
        dl_tensor *x = nd->in[k];
        float *gx = dl_grad_buf(x);
        if (gx) {
            dl__cu_contig(x->ndim, x->shape, sx);
            dl__cuda_strided_copy(gx, sx, out->grad + off * (size_t)so[axis], so, x->ndim, x->shape, 4, 1);
        }
        off += (size_t)x->shape[axis];
    }
}

DLDEF dl_tensor *dl__cuda_concat(int n, dl_tensor *const *xs, int axis) {
    const char *op = "dl_concat";
    dl_tensor *x0 = xs[0], *out;
    int k, d, shape[DL_MAX_DIMS];
    long long len = 0;
    size_t off = 0, es;
    dl_node *nd;
    for (k = 0; k < n; k++)
        if (xs[k]->device != DL_DEVICE_CUDA) {
            int j;
            for (j = 0; j < n && xs[j]->device != DL_DEVICE_CUDA; j++) {}
            dl_set_error("%s: tensor %d is on the %s and tensor %d on the GPU: move one (dl_to_device); ops never copy across devices", op, k,
                         dl_device_name(xs[k]->device), j);
            return NULL;
        }
    if (x0->ndim == 0) { dl_set_error("%s: cannot concatenate 0-d tensors", op); return NULL; }
    if ((axis = dl__cu_axis(op, axis, x0->ndim)) < 0) return NULL;
    for (k = 0; k < n; k++) {
        dl_tensor *x = xs[k];
        char s1[64], s2[64];
        if (x->dtype != x0->dtype) {
            dl_set_error("%s: tensor %d is %s, tensor 0 is %s", op, k, dl_dtype_name(x->dtype), dl_dtype_name(x0->dtype));
            return NULL;
        }
        for (d = 0; d < x0->ndim && x->ndim == x0->ndim; d++)
            if (d != axis && x->shape[d] != x0->shape[d]) break;
        if (x->ndim != x0->ndim || d < x0->ndim) {
            dl_set_error("%s: tensor %d has shape %s, tensor 0 has %s (must match except on axis %d)", op, k, dl_shape_str(x, s1, sizeof s1),
                         dl_shape_str(x0, s2, sizeof s2), axis);
            return NULL;
        }
        if ((len += x->shape[axis]) > 0x7fffffff) { dl_set_error("%s: concatenated axis %d is over INT_MAX", op, axis); return NULL; }
    }
    for (d = 0; d < x0->ndim; d++) shape[d] = x0->shape[d];
    shape[axis] = (int)len;
    if (!(out = dl__tmp_on(DL_DEVICE_CUDA, x0->dtype, x0->ndim, shape))) return NULL;
    es = dl_dtype_size(x0->dtype);
    for (k = 0; k < n; k++) {
        dl_tensor *x = xs[k];
        if (dl__cuda_strided_copy((char *)out->data + off * (size_t)out->strides[axis] * es, out->strides, x->data, x->strides, x->ndim,
                                  x->shape, (int)es, 0) != 0)
            return NULL;
        off += (size_t)x->shape[axis];
    }
    nd = dl_record("concat", out, n, xs, dl__cu_concat_backward, sizeof(dl__cu_concat_ctx));
    if (nd) ((dl__cu_concat_ctx *)nd->ctx)->axis = axis;
    return dl__cu_checked(out);
}

/* ---- one_hot, cast, broadcast_to ---- */

DL__KERNEL k_one_hot(size_t n, int classes, const int *lab, float *out) {
    DL__LOOP(i, n) { out[i] = lab[i / (size_t)classes] == (int)(i % (size_t)classes) ? 1.0f : 0.0f; }
}

DLDEF dl_tensor *dl__cuda_one_hot(dl_tensor *labels, int num_classes) {
    const char *op = "dl_one_hot";
    int shape[DL_MAX_DIMS], bad = 0, rc;
    const int *lab;
    dl_tensor *out;
    if (labels->dtype != DL_DTYPE_I32 && labels->dtype != DL_DTYPE_U8) {
        dl_set_error("%s: labels must be i32 or u8, got %s", op, dl_dtype_name(labels->dtype));
        return NULL;
    }
    if (labels->ndim >= DL_MAX_DIMS) { dl_set_error("%s: labels have too many axes (%d)", op, labels->ndim); return NULL; }
    if (num_classes == -1 && labels->numel == 0) { dl_set_error("%s: cannot infer num_classes from no labels", op); return NULL; }
    if (!(lab = dl__cu_contig_i32(labels))) return NULL;
    if (num_classes == -1) { /* max + 1, negative labels first */
        int mx = 0;
        if ((rc = dl__cu_check_indices(op, lab, labels->numel, 0, -1, &bad, &mx)) != 0) {
            if (rc > 0) dl_set_error("%s: label %d is negative", op, bad);
            return NULL;
        }
        num_classes = mx == 0x7fffffff ? mx : mx + 1;
    } else if (num_classes >= 1 && (rc = dl__cu_check_indices(op, lab, labels->numel, 0, num_classes, &bad, NULL)) != 0) {
        if (rc > 0) dl_set_error("%s: label %d out of range [0, %d)", op, bad, num_classes);
        return NULL;
    }
    if (num_classes < 1) { dl_set_error("%s: num_classes must be >= 1 or -1, got %d", op, num_classes); return NULL; }
    memcpy(shape, labels->shape, sizeof(int) * (size_t)labels->ndim);
    shape[labels->ndim] = num_classes;
    if (!(out = dl__cu_out(labels->ndim + 1, shape))) return NULL;
    DL__LAUNCH(k_one_hot, out->numel, (out->numel, num_classes, lab, (float *)out->data));
    return DL__CHECK_LAUNCH(op) != 0 ? NULL : out;
}

/* dl_cast's conversions (not dl_copy's): to i32 truncated and saturated (NaN -> 0), to u8 the
   i32 value modulo 256, i32 to f32 rounded to nearest. */
DL__DEV int dl__cu_load_i32(const void *p, int dt, long long off) {
    float f;
    if (dt == 1) return ((const int *)p)[off];
    if (dt == 2) return ((const unsigned char *)p)[off];
    f = ((const float *)p)[off];
    if (f != f) return 0;
    if (f >= 2147483647.0f) return 0x7fffffff;
    if (f <= -2147483648.0f) return -0x7fffffff - 1;
    return (int)f;
}

DL__KERNEL k_cast(size_t n, dl__cu_geom g, const void *src, int sdt, void *dst, int ddt) {
    DL__LOOP(i, n) {
        long long off[3];
        dl__cu_geom_at(&g, i, off);
        if (ddt == 0) ((float *)dst)[i] = dl__cu_ld(src, sdt, off[1]);
        else if (ddt == 1) ((int *)dst)[i] = dl__cu_load_i32(src, sdt, off[1]);
        else ((unsigned char *)dst)[i] = (unsigned char)((unsigned)dl__cu_load_i32(src, sdt, off[1]) & 255u);
    }
}

DL__KERNEL k_cast_grad(size_t n, float *gx, const float *g) {
    DL__LOOP(i, n) { gx[i] += g[i]; }
}

static void dl__cu_flat_add_backward(dl_node *nd) {
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) DL__LAUNCH(k_cast_grad, nd->out->numel, (nd->out->numel, gx, (const float *)nd->out->grad));
}

DLDEF dl_tensor *dl__cuda_cast(dl_tensor *x, dl_dtype dtype) {
    const char *op = "dl_cast";
    dl_tensor *out;
    dl__cu_geom g;
    ptrdiff_t so[DL_MAX_DIMS];
    if (dl_dtype_size(dtype) == 0) { dl_set_error("%s: unknown dtype %d", op, (int)dtype); return NULL; }
    if (!(out = dl__tmp_on(DL_DEVICE_CUDA, dtype, x->ndim, x->shape))) return NULL;
    if (dtype == DL_DTYPE_F32 && x->dtype == DL_DTYPE_F32) {
        if (dl_copy(out, x) != 0) return NULL;
        dl_record("cast", out, 1, &x, dl__cu_flat_add_backward, 0);
        return dl__cu_checked(out);
    }
    dl__cu_contig(x->ndim, x->shape, so);
    dl__cu_geom2(&g, x->ndim, x->shape, so, x->strides);
    DL__LAUNCH(k_cast, out->numel, (out->numel, g, (const void *)x->data, (int)x->dtype, out->data, (int)dtype));
    return DL__CHECK_LAUNCH(op) != 0 ? NULL : out;
}

/* x's gradient: out's summed over the axes x was broadcast along (k_binary_grad with a plain
   add: one thread per element of x, the broadcast elements in order). */
static void dl__cu_broadcast_to_backward(dl_node *nd) {
    dl_tensor *x = nd->in[0], *out = nd->out;
    float *gx = dl_grad_buf(x);
    ptrdiff_t so[DL_MAX_DIMS];
    dl__cu_geom outer, inner;
    size_t n_inner = 1;
    int i, off = out->ndim - x->ndim;
    if (!gx) return;
    dl__cu_contig(out->ndim, out->shape, so);
    memset(&outer, 0, sizeof outer);
    memset(&inner, 0, sizeof inner);
    for (i = 0; i < out->ndim; i++) {
        int xi = i - off, kept = xi >= 0 && x->shape[xi] == out->shape[i];
        dl__cu_geom *t = kept ? &outer : &inner;
        int k = t->nd++;
        t->shape[k] = out->shape[i];
        t->st[0][k] = t->st[1][k] = t->st[2][k] = so[i];
        if (!kept) n_inner *= (size_t)out->shape[i];
    }
    DL__LAUNCH(k_binary_grad, x->numel, (x->numel, outer, inner, n_inner, (int)DL__ADD, 0, gx, (const float *)out->grad,
                                         (const float *)out->grad, (const float *)out->grad));
}

DLDEF dl_tensor *dl__cuda_broadcast_to(dl_tensor *x, int ndim, const int *shape) {
    const char *op = "dl_broadcast_to";
    dl_tensor *out;
    long long bs[DL_MAX_DIMS];
    ptrdiff_t sx[DL_MAX_DIMS];
    int i;
    if (!dl__cu_on_gpu(op, 1, &x, dl__cu_ab)) return NULL;
    if (ndim < x->ndim || ndim > DL_MAX_DIMS || (ndim && !shape)) {
        dl_set_error("%s: cannot broadcast a %d-d tensor to %d axes", op, x->ndim, ndim);
        return NULL;
    }
    for (i = 0; i < x->ndim; i++) {
        int want = shape[i + ndim - x->ndim];
        if (x->shape[i] != want && x->shape[i] != 1) {
            char s[64];
            dl_set_error("%s: shape %s does not broadcast to size %d at axis %d", op, dl_shape_str(x, s, sizeof s), want, i + ndim - x->ndim);
            return NULL;
        }
    }
    if (!(out = dl__cu_out(ndim, shape))) return NULL;
    dl__cu_bcast(x, ndim, shape, bs);
    for (i = 0; i < ndim; i++) sx[i] = (ptrdiff_t)bs[i];
    if (dl__cuda_strided_copy(out->data, out->strides, x->data, sx, ndim, shape, 4, 0) != 0) return NULL;
    dl_record("broadcast_to", out, 1, &x, dl__cu_broadcast_to_backward, 0);
    return dl__cu_checked(out);
}

/* ==== Optimizer updates (dl_optim.h) ===========================================================
   (tests: tests/test_cuda_train.c) */
/* What dl_optim.h does on the GPU (dl_optim_step with parameters on the GPU, dl_clip_grad_norm
   and dl_clip_grad_value given GPU tensors):
   - each parameter's update is one kernel (k_optim_update), one thread per element, with the
     CPU loop's operations in the CPU loop's order and rounding: products, sums, quotients and
     roots are written as __fmul_rn / __fadd_rn / __fdiv_rn / __fsqrt_rn so that nvcc does not
     fuse them, and the CPU's fmaf is __fmaf_rn (two roundings with DL_OPTIM_NO_FMA, as the CPU
     then does). The constants (lr / (1 - beta1^t), ...) are computed on the host by dl_optim.h
     exactly as for its CPU loops, so an update gives the CPU's bits;
   - the state buffers (momentum, square_avg, exp_avg, ...) are dl_tensor_new'd tensors moved to
     the parameter's device when the parameter is added (dl_optim_move moves them later);
   - global-norm clipping: each gradient's sum of squares in chunks of DL__CHUNK (double), the
     chunks summed in order by one thread, the coefficient computed and applied on the device:
     no host round trip inside dl_optim_step (dl_clip_grad_norm copies the total back, since it
     returns it). The same inputs give the same bits on every run; against the CPU, whose double
     sum runs element by element, the float total can differ in its last bit. */

#ifdef DL_CUDA_EMULATE
#define DL__CU_FMUL(a, b) ((a) * (b))
#define DL__CU_FADD(a, b) ((a) + (b))
#define DL__CU_FDIV(a, b) ((a) / (b))
#define DL__CU_FSQRT(a) sqrtf(a)
#define DL__CU_FFMA(a, b, c) fmaf(a, b, c)
#else
#define DL__CU_FMUL(a, b) __fmul_rn(a, b)
#define DL__CU_FADD(a, b) __fadd_rn(a, b)
#define DL__CU_FDIV(a, b) __fdiv_rn(a, b)
#define DL__CU_FSQRT(a) __fsqrt_rn(a)
#define DL__CU_FFMA(a, b, c) __fmaf_rn(a, b, c)
#endif

/* a*b + c as dl_optim.h's DL__FMAF: one rounding, or two with DL_OPTIM_NO_FMA. */
DL__DEV float dl__cu_opt_fma(int nofma, float a, float b, float c) {
    return nofma ? DL__CU_FADD(DL__CU_FMUL(a, b), c) : DL__CU_FFMA(a, b, c);
}

/* dl_optim.h's loops, element i (see dl__sgd_update, dl__rmsprop_scalar, dl__adagrad_update,
   dl__adam_scalar there for the constants in a.k). */
DL__KERNEL k_optim_update(size_t n, dl__cuda_optim_args a) {
    DL__LOOP(i, n) {
        int nf = (a.flags & DL__OPTF_NOFMA) != 0;
        float *p = a.p, gi = a.g[i];
        switch (a.kind) {
        case 0: { /* SGD: k wd, mu, -lr, dampening factor */
            float d = gi, *v = a.buf[0];
            if (a.flags & DL__OPTF_WD) d = dl__cu_opt_fma(nf, a.k[0], p[i], d);
            if (v) {
                if (a.flags & DL__OPTF_FIRST) v[i] = d;
                else v[i] = dl__cu_opt_fma(nf, a.k[3], d, DL__CU_FMUL(v[i], a.k[1]));
                d = (a.flags & DL__OPTF_NESTEROV) ? dl__cu_opt_fma(nf, a.k[1], v[i], d) : v[i];
            }
            p[i] = dl__cu_opt_fma(nf, a.k[2], d, p[i]);
            break;
        }
        case 1: { /* RMSprop: k alpha, 1 - alpha, eps, momentum, -lr */
            float *s = a.buf[0], *b = a.buf[1], *av = a.buf[2], d;
            s[i] = dl__cu_opt_fma(nf, DL__CU_FMUL(a.k[1], gi), gi, DL__CU_FMUL(s[i], a.k[0]));
            if (av) {
                av[i] = dl__cu_opt_fma(nf, a.k[1], gi, DL__CU_FMUL(av[i], a.k[0]));
                d = DL__CU_FSQRT(dl__cu_opt_fma(nf, DL__CU_FMUL(-1.0f, av[i]), av[i], s[i]));
            } else {
                d = DL__CU_FSQRT(s[i]);
            }
            d = DL__CU_FADD(d, a.k[2]);
            if (b) {
                b[i] = DL__CU_FADD(DL__CU_FMUL(b[i], a.k[3]), DL__CU_FDIV(DL__CU_FMUL(1.0f, gi), d));
                p[i] = dl__cu_opt_fma(nf, a.k[4], b[i], p[i]);
            } else {
                p[i] = DL__CU_FADD(p[i], DL__CU_FDIV(DL__CU_FMUL(a.k[4], gi), d));
            }
            break;
        }
        case 2: { /* Adagrad: k eps, -lr */
            float *s = a.buf[0];
            s[i] = dl__cu_opt_fma(nf, DL__CU_FMUL(1.0f, gi), gi, s[i]);
            p[i] = DL__CU_FADD(p[i], DL__CU_FDIV(DL__CU_FMUL(a.k[1], gi), DL__CU_FADD(DL__CU_FSQRT(s[i]), a.k[0])));
            break;
        }
        default: { /* Adam, AdamW: k b1, b2, 1-b1, 1-b2, -lr/bc1, sqrt(bc2), eps, 1-lr*wd */
            float *m = a.buf[0], *v = a.buf[1], pi = p[i];
            if (a.flags & DL__OPTF_ADAMW) pi = DL__CU_FMUL(pi, a.k[7]);
            m[i] = dl__cu_opt_fma(nf, a.k[2], gi, DL__CU_FMUL(m[i], a.k[0]));
            v[i] = dl__cu_opt_fma(nf, DL__CU_FMUL(a.k[3], gi), gi, DL__CU_FMUL(v[i], a.k[1]));
            p[i] = DL__CU_FADD(pi, DL__CU_FDIV(DL__CU_FMUL(a.k[4], m[i]), DL__CU_FADD(DL__CU_FDIV(DL__CU_FSQRT(v[i]), a.k[5]), a.k[6])));
            break;
        }
        }
    }
}

DLDEF int dl__cuda_optim_update(const dl__cuda_optim_args *a) {
    if (a->kind < 0 || a->kind > 4) { dl_set_error("dl_optim_step: unknown optimizer kind %d", a->kind); return -1; }
    DL__LAUNCH(k_optim_update, a->n, (a->n, *a));
    return DL__CHECK_LAUNCH("dl_optim_step");
}

DL__KERNEL k_sumsq_chunks(size_t n_chunks, size_t n, const float *g, double *part) {
    DL__LOOP(i, n_chunks) {
        size_t j, end = (i + 1) * DL__CHUNK < n ? (i + 1) * DL__CHUNK : n;
        double s = 0;
        for (j = i * DL__CHUNK; j < end; j++) s += (double)g[j] * g[j];
        part[i] = s;
    }
}
/* out[0] = the float total, out[1] = min(1, max_norm / (total + 1e-6)) in float, as the CPU. */
DL__KERNEL k_norm_finish(size_t one, size_t n_part, const double *part, float max_norm, float *out) {
    DL__LOOP(i, one) {
        double s = 0;
        size_t j;
        float total, coef;
        (void)i;
        for (j = 0; j < n_part; j++) s += part[j];
        total = (float)sqrt(s);
        coef = DL__CU_FDIV(max_norm, DL__CU_FADD(total, 1e-6f));
        out[0] = total;
        out[1] = coef > 1.0f ? 1.0f : coef;
    }
}
DL__KERNEL k_grad_scale(size_t n, float *g, const float *coef) {
    DL__LOOP(i, n) { g[i] = DL__CU_FMUL(g[i], coef[0]); }
}
DL__KERNEL k_grad_clamp(size_t n, float *g, float c) {
    DL__LOOP(i, n) {
        float v = g[i];
        g[i] = v < -c ? -c : v > c ? c : v; /* NaN stays NaN, as torch.clamp */
    }
}

static dl_tensor *dl__cu_nth(dl_tensor *const *ts, size_t stride, int i) {
    return *(dl_tensor *const *)((const char *)ts + (size_t)i * stride);
}

DLDEF int dl__cuda_clip_grad_norm(int n, dl_tensor *const *ts, size_t stride, double max_norm, float *total) {
    size_t chunks = 0, off = 0;
    double *part;
    float *out;
    int i;
    for (i = 0; i < n; i++) {
        dl_tensor *t = dl__cu_nth(ts, stride, i);
        if (t && t->grad) chunks += (t->numel + DL__CHUNK - 1) / DL__CHUNK;
    }
    part = (double *)dl__device_tmp_alloc((chunks ? chunks : 1) * sizeof(double));
    out = dl__cu_scratch(2);
    if (!part || !out) return -1;
    for (i = 0; i < n; i++) {
        dl_tensor *t = dl__cu_nth(ts, stride, i);
        size_t c;
        if (!t || !t->grad) continue;
        c = (t->numel + DL__CHUNK - 1) / DL__CHUNK;
        DL__LAUNCH(k_sumsq_chunks, c, (c, t->numel, t->grad, part + off));
        off += c;
    }
    DL__LAUNCH(k_norm_finish, (size_t)1, ((size_t)1, chunks, part, (float)max_norm, out));
    for (i = 0; i < n; i++) {
        dl_tensor *t = dl__cu_nth(ts, stride, i);
        if (t && t->grad) DL__LAUNCH(k_grad_scale, t->numel, (t->numel, t->grad, out + 1));
    }
    if (DL__CHECK_LAUNCH("dl_clip_grad_norm") != 0) return -1;
    return total ? dl__cuda_memcpy(total, out, sizeof(float), DL__D2H) : 0;
}

DLDEF int dl__cuda_clip_grad_value(float *g, size_t n, float clip) {
    DL__LAUNCH(k_grad_clamp, n, (n, g, clip));
    return DL__CHECK_LAUNCH("dl_clip_grad_value");
}

/* ==== GANs (dl_gan.h) ==========================================================================
   (tests: tests/test_cuda_gan.c) */
/* What dl_gan.h needs beyond the ops: the average of G's weights (opts.ema_decay), one kernel a
   weight with the CPU loop's two products and sum, unfused (__fmul_rn / __fadd_rn: the CPU's
   bits), and dl_gan_ema_swap's exchange of a weight and its average in place. Everything else
   of dl_gan.h on the GPU is ops, copies and host arithmetic (see its "GPU" paragraph). */

DL__KERNEL k_gan_ema(size_t n, float *avg, const float *w, float d, float e) {
    DL__LOOP(i, n) { avg[i] = DL__CU_FADD(DL__CU_FMUL(d, avg[i]), DL__CU_FMUL(e, w[i])); }
}

DL__KERNEL k_gan_swap(size_t n, unsigned char *a, unsigned char *b) {
    DL__LOOP(i, n) {
        unsigned char t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

DLDEF int dl__cuda_gan_ema(float *avg, const float *w, size_t n, float d, float e) {
    DL__LAUNCH(k_gan_ema, n, (n, avg, w, d, e));
    return DL__CHECK_LAUNCH("dl_gan_train_step");
}

DLDEF int dl__cuda_gan_swap(void *a, void *b, size_t bytes) {
    DL__LAUNCH(k_gan_swap, bytes, (bytes, (unsigned char *)a, (unsigned char *)b));
    return DL__CHECK_LAUNCH("dl_gan_ema_swap");
}
