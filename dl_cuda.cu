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

   EMULATION: compiled as C++ with DL_CUDA_EMULATE defined (g++ -x c++ -DDL_CUDA_EMULATE -c
   dl_cuda.cu), the same source runs on the CPU: "device memory" is malloc'd host memory, a
   kernel launch is one call that runs the kernel's grid-stride loop serially, and cuBLAS is
   dl_sgemm. Indexing, broadcasting, backward accumulation and dispatch are then tested in CI
   (and under ASan) without a GPU: tests/test_cuda.c runs against either build. Only real
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

   OPS ON THE GPU: broadcasting add/sub/mul/div/minimum/maximum, the scalar and unary ops,
   sum/mean/var/max over axes, argmax, matmul (batched, transposes), linear, the activations,
   softmax/log_softmax, cross_entropy, mse/l1/huber/bce_with_logits, copies, views (the view
   ops themselves are shared with the CPU), dl_to_device with gradients across devices.
   Everything else still fails with "... is not on the CPU": see the README's list.

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
    DL__LAUNCH(k_reduce, out->numel, (out->numel, b.c, (float *)out->data));
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

typedef struct dl__cu_axis {
    int kind; /* 0 upsample by a, 1 zero padding a before, 2 reflect padding a before */
    int a, n, out; /* scale or pad before; input and output size */
} dl__cu_axis;

DL__DEV int dl__cu_axis_src(dl__cu_axis ax, int o) {
    int s;
    if (ax.kind == 0) return o / ax.a;
    s = o - ax.a;
    if (s >= 0 && s < ax.n) return s;
    if (ax.kind == 1) return -1;
    return s < 0 ? -s : 2 * (ax.n - 1) - s;
}
DL__DEV int dl__cu_axis_cands(dl__cu_axis ax) { return ax.kind == 0 ? ax.a : 3; }
DL__DEV int dl__cu_axis_cand(dl__cu_axis ax, int in, int k) {
    if (ax.kind == 0) return in * ax.a + k;
    return k == 0 ? ax.a - in : k == 1 ? ax.a + in : ax.a + 2 * (ax.n - 1) - in;
}

DL__KERNEL k_remap(size_t n, dl__cu_axis ry, dl__cu_axis rx, const float *x, float *y) {
    DL__LOOP(i, n) {
        size_t ohw = (size_t)ry.out * rx.out, pl = i / ohw;
        int r = dl__cu_axis_src(ry, (int)(i % ohw / (size_t)rx.out)), c = dl__cu_axis_src(rx, (int)(i % (size_t)rx.out));
        y[i] = r >= 0 && c >= 0 ? x[(pl * ry.n + (size_t)r) * rx.n + c] : 0.0f;
    }
}

DL__KERNEL k_remap_grad(size_t n, dl__cu_axis ry, dl__cu_axis rx, const float *gy, float *gx) {
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

typedef struct dl__cu_remap_ctx { dl__cu_axis ry, rx; } dl__cu_remap_ctx;

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
   (tests: tests/test_cuda_norm.c) */

/* ==== Optimizer updates (dl_optim.h) ===========================================================
   (tests: tests/test_cuda_train.c) */
