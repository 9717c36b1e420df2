/* dl_tensor.h - v0.2.0 - tensors, eager autograd and fast CPU kernels, in C99.
   Part of dl, a family of single-file deep-learning libraries: dl_tensor.h is the base that
   dl_optim.h, dl_nn.h, dl_gan.h and dl_rl.h build on.

   Do this:
       #define DL_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.
   Every other file includes it plainly. Link with -lm, plus -lpthread unless DL_NO_THREADS.

   EXAMPLE: fit y = 2x + 1 by gradient descent

       float xs[4] = {0, 1, 2, 3}, ys[4] = {1, 3, 5, 7};
       dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(4, 1), xs);    // yours: dl_tensor_free
       dl_tensor *y = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(4, 1), ys);
       dl_tensor *w = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(1, 1)), *b = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(1));
       dl_set_requires_grad(w, 1); dl_set_requires_grad(b, 1);
       for (int step = 0; step < 500; step++) {
           dl_arena_reset(dl_arena_current());                 // last step's temporaries are gone
           dl_tensor *loss = dl_mse(dl_linear(x, w, b), y);    // NULL + dl_error() if anything fails
           dl_zero_grad(w); dl_zero_grad(b);
           dl_backward(loss);                                  // fills w->grad and b->grad
           dl_f32(w)[0] -= 0.05f * w->grad[0];
           dl_f32(b)[0] -= 0.05f * b->grad[0];
       }

   CONTENTS (declarations below are grouped in this order)
       core         tensors (f32, i32, u8; up to DL_MAX_DIMS = 8 axes; strided views), arenas,
                    errors, autograd (tape, backward, no-grad, detach, gradcheck, your own ops,
                    NaN/infinity checks), random numbers (xoshiro256**) and Keras' initializers
       gemm         dl_sgemm: one packed, cache-blocked GEMM with AVX-512, AVX2+FMA and portable
                    C micro-kernels chosen at run time; the thread pool (dl_parallel_for)
       math         broadcasting add/sub/mul/div/minimum/maximum, scalar ops, neg exp log sqrt
                    pow abs clamp, sum/mean/max/var/argmax over axes, concat, split,
                    index_select, gather, one_hot, cast, broadcast_to
       nn           matmul (batched, transposes), linear, relu leaky_relu elu gelu sigmoid tanh
                    softplus softmax log_softmax, losses: cross_entropy, bce_with_logits, mse,
                    l1, huber
       norm         batch_norm, layer_norm, instance_norm, dropout, embedding, gram
       conv         conv2d, conv_transpose2d, max/avg/global-avg pooling, nearest upsampling,
                    zero and reflection padding (NCHW, PyTorch's weight layouts)
       safetensors  load/save named tensors in the format of PyTorch and Hugging Face
       devices      tensors on an NVIDIA GPU with dl_cuda.cu (DL_CUDA): dl_cuda_init,
                    dl_tensor_move, dl_to_device (an op), dl_tensor_read; ops dispatch on their
                    inputs' device (the "Devices" section below; README, "GPU")
   Ops follow PyTorch's semantics (arguments, ties, gradients at kinks); comments name the
   places where Keras differs.

   CONFIGURATION (define before including, in the implementation file; DL_STATIC and
   DL_NO_STDIO before every include)
       DL_MALLOC(n), DL_REALLOC(p, n), DL_FREE(p)   all three or none (default: libc)
       DL_ASSERT(c)     internal invariants only (default: assert); never used on user input
       DL_STATIC        every function static, for a private copy in one file
       DL_NO_STDIO      leaves out dl_safetensors_load/save (the in-memory versions remain)
       DL_NO_THREADS    no pthreads: every kernel runs on the calling thread
       DL_CUDA          GPU execution: link dl_cuda.cu (compiled by nvcc, or as C with
                        DL_CUDA_EMULATE for its CPU emulation) and -lcudart -lcublas. Define it
                        for every file, like DL_STATIC; not with DL_STATIC
       DL_IMPLEMENTATION_ELSEWHERE  (e.g. -D on a build's command line) every dl header ignores
                        DL_IMPLEMENTATION: this file is linked with one that has it, so a
                        program written as one file can share an implementation compiled once
   Environment: DL_NUM_THREADS=n (default: online CPUs), DL_GEMM_KERNEL=generic|avx2|avx512.

   MEMORY
       dl_tensor_new / _from / _clone give tensors you own: free them with dl_tensor_free.
       Every op returns a tensor in the thread's current arena (dl_arena_use; a default arena
       is made on first use). dl_arena_reset drops all of it at once, tape included, and keeps
       the memory, so a training step in steady state calls malloc zero times. Never keep an
       arena tensor across a reset, never dl_tensor_free it, and do not change an op's input
       in place before the backward pass that needs it. A persistent tensor's gradient is
       allocated on its first backward and owned by the tensor.

   ERRORS
       Functions that can fail return NULL (or -1) and set a message for dl_error()
       that names the function and the shapes. An op given a NULL input returns NULL and
       keeps the first message, so one check at the end of a computation is enough. Nothing
       here calls exit or abort on bad input; loaders validate every field before use.
       Nothing in dl prints: progress, summaries and warnings go to one log function
       (dl_set_log; default stdout/stderr, dl_log_silent for silence).
       NaN and infinity are values, not errors: they propagate as in IEEE arithmetic. To find
       where one first appears, dl_check_numerics(1) (per thread, off by default, like
       TensorFlow's check_numerics and PyTorch's anomaly mode) makes the first op whose
       output is not finite return NULL, and dl_backward return -1 at the first op whose
       backward gives a non-finite gradient; the message names the op and its input shapes.
       dl_fit's terminate_on_nan (dl_nn.h) is the coarser tool: it only watches the loss, and
       stops training before the bad batch is applied.

   THREADS
       Work is cut into pieces fixed by the shapes alone, never by the thread count (GEMM
       splits output blocks, never a sum; convolutions add per-chunk weight gradients in chunk
       order), so results are bit-identical for any thread count. Arenas, the error message,
       no-grad mode and dl_check_numerics are per thread (the log function is per process); a
       tape belongs to the thread that made it. Ops may be called from several threads at
       once: the pool runs one job at a time, and a call that finds it busy runs serially.

   NOT HERE
       layers, models and optimizers (dl_nn.h, dl_optim.h); GPU kernels (dl_cuda.cu); half-precision compute (f16/bf16 files load as f32);
       grouped/depthwise convolution.

   REVISION HISTORY (CHANGELOG.md has the details)
       0.2.0  one naming rule for the family (dl_<object>_<verb>, type-prefixed enum
              constants: DL_DTYPE_F32, DL_DEVICE_CPU; the rng argument last; dl_gradcheck
              returns 0 on success; CHANGELOG.md lists every rename, tools/migrate_0_2.py
              applies them), DL_VERSION_*, DL_ZERO for options structs
       0.1.0  tensors, views, arenas, tape autograd with gradcheck, ops with backward, GEMM with
              AVX-512/AVX2 micro-kernels and a thread pool, convolutions, safetensors files

   LICENSE: MIT, see the end of the file.
*/
#ifndef DL_TENSOR_H
#define DL_TENSOR_H

/* The family's version (all dl headers share it): #if DL_VERSION >= 200 ... */
#define DL_VERSION_MAJOR 0
#define DL_VERSION_MINOR 2
#define DL_VERSION_PATCH 0
#define DL_VERSION (DL_VERSION_MAJOR * 10000 + DL_VERSION_MINOR * 100 + DL_VERSION_PATCH)
#define DL_VERSION_STRING "0.2.0"

#include <stddef.h>
#include <stdint.h>

#ifndef DLDEF
#if defined(DL_STATIC) && (defined(__GNUC__) || defined(__clang__))
#define DLDEF static __attribute__((unused)) /* a unit need not call every function */
#elif defined(DL_STATIC)
#define DLDEF static
#else
#define DLDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Basic types ------------------------------------------------------------------------- */

#define DL_MAX_DIMS 8          /* tensors have 0..DL_MAX_DIMS dimensions */

/* Options structs of the whole family: a field left 0 takes its default (so `= {0}` is every
   default). A field whose default is not 0 is set to a real 0 with DL_ZERO; such fields take
   no negative values otherwise, so the sentinel is -1 (for integer and floating fields alike). */
#define DL_ZERO (-1)

typedef enum dl_dtype { DL_DTYPE_F32 = 0, DL_DTYPE_I32 = 1, DL_DTYPE_U8 = 2 } dl_dtype;
typedef enum dl_device { DL_DEVICE_CPU = 0, DL_DEVICE_CUDA = 1 } dl_device;

typedef struct dl_tensor dl_tensor;
typedef struct dl_node dl_node;
typedef struct dl_arena dl_arena;

/* A tensor is a strided view of memory. Fresh tensors are row-major contiguous; views
   (reshape, permute, transpose, slice, detach) share the memory of their base and only change
   shape/strides. The gradient is always a separate contiguous buffer in the tensor's own shape. */
struct dl_tensor {
    dl_dtype dtype;
    dl_device device;
    int ndim;
    int shape[DL_MAX_DIMS];
    ptrdiff_t strides[DL_MAX_DIMS]; /* in elements, not bytes */
    size_t numel;                   /* product of shape (1 for a 0-d scalar) */
    void *data;                     /* address of element [0,0,...] */
    float *grad;                    /* NULL until a backward pass reaches the tensor */
    int requires_grad;              /* set by dl_set_requires_grad, or inherited from inputs */
    dl_node *node;                  /* the op that produced it; NULL for leaves */
    unsigned flags;                 /* private (DL__*) */
};

/* ---- Errors ------------------------------------------------------------------------------
   Ops given bad arguments return NULL and set a message; ops given a NULL input return NULL
   (keeping the first message), so one check at the end of a computation suffices.
   Messages are per thread. */
DLDEF const char *dl_error(void);      /* "" when no error since the last dl_clear_error */
DLDEF void dl_clear_error(void);
DLDEF void dl_set_error(const char *fmt, ...); /* for user ops; printf-style */

/* ---- Log -----------------------------------------------------------------------------------
   dl never writes to stdout or stderr itself: everything it has to say (dl_fit's progress bar
   and epoch lines, dl_model_print_summary, the estimators' "global_step" lines, warnings) goes
   through one log function, as sokol's .logger.func. The default writes DL_LOG_INFO text to
   stdout and the rest to stderr (flushing after each call). text is what would have been
   printed: whole lines ending in '\n', or for the progress bar a line starting with '\r' that
   clears its tail with "\033[K". dl_set_log(dl_log_silent, NULL) silences dl;
   dl_set_log(NULL, NULL) brings the default back. The setting is per process (set and read
   under a lock, the function called outside it); the function may be called from several
   threads at once, so it must be thread-safe if dl runs on several threads. */
enum { DL_LOG_INFO = 0, DL_LOG_WARN = 1, DL_LOG_ERROR = 2 };
typedef void (*dl_log_fn)(void *user, int level, const char *text);
DLDEF void dl_set_log(dl_log_fn fn, void *user);                  /* NULL fn: the default */
DLDEF void dl_log_silent(void *user, int level, const char *text); /* writes nothing */
DLDEF void dl_log_write(int level, const char *fmt, ...);         /* printf-style, to the log function */

/* Frees a buffer that a dl function returned as owned bytes ("owned: dl_free": dl_gunzip,
   dl_image_grid, ...), through DL_FREE, which is only visible in the implementation file.
   NULL is fine. */
DLDEF void dl_free(void *p);

/* ---- Arenas ------------------------------------------------------------------------------
   Everything that lives one step (op outputs, temporaries, the autograd tape) is bump-
   allocated from the thread's current arena; dl_arena_reset frees all of it at once and keeps
   the memory, so a steady-state step calls malloc zero times. If no arena has been set, a
   per-thread default arena is created on first use (freed by dl_arena_free_default). */
DLDEF dl_arena *dl_arena_new(size_t initial_bytes);     /* owned by caller: dl_arena_free; at most 2^46 */
DLDEF void dl_arena_free(dl_arena *a);
DLDEF void dl_arena_reset(dl_arena *a);                 /* everything allocated from a is gone */
DLDEF dl_arena *dl_arena_use(dl_arena *a);              /* make a current; returns the previous */
DLDEF dl_arena *dl_arena_current(void);
DLDEF void dl_arena_free_default(void);
DLDEF void *dl_arena_alloc(dl_arena *a, size_t bytes);  /* 64-byte aligned; NULL + error if out of memory or over 2^46 */
DLDEF size_t dl_arena_used(const dl_arena *a);          /* bytes in use since last reset */
DLDEF size_t dl_arena_capacity(const dl_arena *a);      /* bytes held */
DLDEF size_t dl_arena_device_bytes(const dl_arena *a);  /* GPU memory held for the arena's device tensors (DL_CUDA) */

/* ---- Creating tensors ----------------------------------------------------------------------
   Persistent tensors (parameters, datasets) are owned by the caller and freed with
   dl_tensor_free. Temporary tensors live in the current arena until its reset; never free them. */
DLDEF dl_tensor *dl_tensor_new(dl_dtype dtype, int ndim, const int *shape);   /* zeroed, owned */
DLDEF dl_tensor *dl_tensor_from(dl_dtype dtype, int ndim, const int *shape, const void *data); /* copy, owned */
DLDEF dl_tensor *dl_tensor_clone(const dl_tensor *t);  /* owned contiguous copy of data (no grad) */
DLDEF void dl_tensor_free(dl_tensor *t);               /* NULL is fine; never on arena tensors */
DLDEF dl_tensor *dl_tmp(dl_dtype dtype, int ndim, const int *shape);          /* zeroed, arena */
DLDEF dl_tensor *dl_tmp_from(dl_dtype dtype, int ndim, const int *shape, const void *data);
DLDEF dl_tensor *dl_full(int ndim, const int *shape, float value);            /* f32, arena */
DLDEF dl_tensor *dl_scalar(float value);                                      /* 0-d f32, arena */
#define DL_SHAPE(...) ((const int[]){__VA_ARGS__})   /* C only: dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 4)) */

DLDEF size_t dl_dtype_size(dl_dtype dtype);
DLDEF const char *dl_dtype_name(dl_dtype dtype);
DLDEF int dl_is_contiguous(const dl_tensor *t);
DLDEF int dl_same_shape(const dl_tensor *a, const dl_tensor *b);
DLDEF float *dl_f32(const dl_tensor *t);        /* data as float*, NULL if not f32 */
DLDEF int32_t *dl_i32(const dl_tensor *t);
DLDEF uint8_t *dl_u8(const dl_tensor *t);
DLDEF float dl_item(const dl_tensor *t);        /* the single value of a 1-element f32 tensor */
DLDEF float dl_get(const dl_tensor *t, const int *index);  /* any dtype, strided, as float */
DLDEF void dl_set(dl_tensor *t, const int *index, float v);
DLDEF void dl_fill(dl_tensor *t, float value);
DLDEF int dl_copy(dl_tensor *dst, const dl_tensor *src);  /* same shape, any strides; 0 on success. Same dtype: exact;
                                                             else converted as dl_set does (saturating, toward zero, NaN -> 0) */
DLDEF char *dl_shape_str(const dl_tensor *t, char *buf, size_t size);  /* "[2, 3]" */

/* ---- Devices --------------------------------------------------------------------------------
   A tensor lives on one device: DL_DEVICE_CPU, or DL_DEVICE_CUDA when dl_cuda.cu is linked and
   every dl header was compiled with DL_CUDA defined (README, "GPU"). An op runs where its
   inputs are; inputs on two devices are an error, never a silent copy. Device tensors have the
   same shapes, strides, views, arenas, tape and errors as CPU ones, but their data and grad
   point to device memory: dl_f32/dl_i32/dl_u8 return NULL for them (read them with
   dl_tensor_read, dl_item or dl_get, which copy). An op without a GPU kernel yet fails with
   "... is not on the CPU". In a build without DL_CUDA every function below that asks for
   DL_DEVICE_CUDA fails with a message that says so, and the CPU path is unchanged. */
DLDEF int dl_cuda_init(void);        /* 0 when a GPU is ready; -1 + dl_error() (no DL_CUDA build, no driver,
                                        no GPU). Called by every function that needs the GPU; repeats are free */
DLDEF int dl_cuda_available(void);   /* 1 when dl_cuda_init succeeds, else 0 (and the error is cleared) */
DLDEF int dl_device_synchronize(void); /* waits for the GPU work queued by this thread; 0, or -1 + the first
                                          failure of a kernel since the last call */
/* An op: x copied to device (an arena tensor, contiguous; x itself when it is there already).
   Gradients flow back to x across devices, as torch's Tensor.to. */
DLDEF dl_tensor *dl_to_device(dl_tensor *x, dl_device device);
DLDEF dl_tensor *dl_tensor_clone_to(const dl_tensor *t, dl_device device); /* owned contiguous copy on device */
/* Moves a persistent tensor (dl_tensor_new: a parameter, a running statistic) to device in place:
   its data and, if it has one, its gradient. Pointers to t stay valid; views of it made before
   the move do not. 0, or -1 + dl_error() (arena tensor, view, no GPU) with t unchanged. */
DLDEF int dl_tensor_move(dl_tensor *t, dl_device device);
/* Copies t's elements (any device, any strides) to dst in row-major order on the host:
   t->numel * dl_dtype_size(t->dtype) bytes. 0, or -1 + dl_error(). */
DLDEF int dl_tensor_read(const dl_tensor *t, void *dst);
DLDEF const char *dl_device_name(dl_device device);   /* "cpu", "cuda" */

/* ---- Views (no copy when possible; gradients flow back to the base) ------------------------ */
DLDEF dl_tensor *dl_reshape(dl_tensor *x, int ndim, const int *shape); /* one -1 allowed; copies if x is not contiguous */
DLDEF dl_tensor *dl_flatten(dl_tensor *x, int start_dim, int end_dim); /* like torch.flatten */
DLDEF dl_tensor *dl_permute(dl_tensor *x, const int *perm);
DLDEF dl_tensor *dl_transpose(dl_tensor *x, int dim0, int dim1);
DLDEF dl_tensor *dl_slice(dl_tensor *x, int dim, int start, int stop, int step); /* Python x[start:stop:step] on dim; negative start/stop count from the end */
DLDEF dl_tensor *dl_squeeze(dl_tensor *x, int dim);
DLDEF dl_tensor *dl_unsqueeze(dl_tensor *x, int dim);
DLDEF dl_tensor *dl_contiguous(dl_tensor *x);   /* x itself if contiguous, else a copy */
DLDEF dl_tensor *dl_detach(dl_tensor *x);       /* shares data, no grad, no history */

/* ---- Autograd ------------------------------------------------------------------------------
   Ops run eagerly. When an input requires a gradient (and no-grad mode is off) the op records
   a node on the current arena's tape. dl_backward walks the tape from the loss back to the
   start and accumulates into .grad of every tensor that requires a gradient. Gradients of
   leaves (e.g. parameters) accumulate across calls until dl_zero_grad. All ops of one
   computation must use the same arena. */
typedef void (*dl_backward_fn)(dl_node *node);
struct dl_node {
    const char *op;            /* op name, for messages */
    dl_backward_fn backward;
    dl_tensor *out;
    int n_in;
    dl_tensor **in;
    void *ctx;                 /* op-specific saved state (arena) */
    dl_node *prev;             /* earlier node of the same tape */
};
DLDEF void dl_set_requires_grad(dl_tensor *t, int on);
DLDEF int dl_backward(dl_tensor *loss);                        /* loss must have 1 element; 0 on success */
DLDEF int dl_backward_grad(dl_tensor *out, const float *grad_out); /* seed d(out) explicitly */
DLDEF void dl_zero_grad(dl_tensor *t);
DLDEF int dl_no_grad(int on);                                  /* returns the previous setting */
DLDEF int dl_grad_enabled(void);

/* Checking for NaN and infinity, per thread, off by default (TF's check_numerics, PyTorch's
   anomaly mode). When on, every op but the views (reshape, flatten, permute, transpose,
   slice, squeeze, unsqueeze, contiguous, detach: they compute no value) scans its f32
   output, and the first whose output holds a NaN or an infinity returns NULL with the
   message "log: output [3] is not finite (nan at element 1); inputs [3] (dl_check_numerics)",
   adding "input 0 already was not finite" when the bad value came in rather than being made.
   dl_backward / dl_backward_grad check the seed and, after each node's backward, the
   gradients of its inputs, and return -1 at the first non-finite one, naming that op (the
   gradients are then partly accumulated: zero them before the next pass). With finite
   values the results are bit-identical to checking off and nothing is allocated; off, it
   costs each op a test of one thread-local flag. Returns the previous setting. dl_fit's
   terminate_on_nan (dl_nn.h) only watches the loss and skips the bad batch; this finds the
   op that made the value. */
DLDEF int dl_check_numerics(int on);

/* Writing an op (this is how every built-in op is written too):
     1. check inputs (return NULL on NULL inputs and set errors on bad shapes);
     2. allocate the output with dl_tmp / dl_tmp_uninit and compute it;
     3. dl_node *n = dl_record("my_op", out, n_in, inputs, my_op_backward, sizeof(my_ctx));
        n is NULL when no input needs a gradient: skip saving state then. With
        dl_check_numerics on, dl_record also scans out: if it is not finite, dl_record sets
        the error ("my_op: output ... is not finite") and returns NULL; the next op given
        out (or a view of it) then returns NULL, keeping that message.
     4. my_op_backward(dl_node *n) reads n->out->grad (contiguous, out's shape) and adds into
        dl_grad_buf(n->in[i]) (contiguous, in[i]'s shape; NULL when in[i] needs no gradient).
   Inputs may be non-contiguous views: read them with dl_contig_f32 or through their strides. */
DLDEF dl_tensor *dl_tmp_uninit(dl_dtype dtype, int ndim, const int *shape);
DLDEF dl_node *dl_record(const char *op, dl_tensor *out, int n_in, dl_tensor *const *in,
                         dl_backward_fn backward, size_t ctx_bytes);
DLDEF float *dl_grad_buf(dl_tensor *t);
DLDEF const float *dl_contig_f32(const dl_tensor *t); /* t's data if contiguous, else an arena copy */

/* Finite-difference gradient check. f maps inputs to an output tensor; the check compares
   d(sum(w * f))/d(input) from dl_backward with central differences for random weights w, on
   every element of every f32 input that requires a gradient. eps <= 0 and tol <= 0 pick
   defaults (1e-3, 1e-2). Returns 0 if |analytic - numeric| <= tol * (1 + |numeric|) for
   every element, else -1 with the worst element described in dl_error(). */
typedef dl_tensor *(*dl_gradcheck_fn)(dl_tensor **inputs, void *user);
DLDEF int dl_gradcheck(dl_gradcheck_fn f, void *user, int n_in, dl_tensor **inputs, float eps, float tol);

/* ---- Random numbers --------------------------------------------------------------------------
   Explicit state: xoshiro256** (Blackman & Vigna, 2018) seeded through splitmix64. */
typedef struct dl_rng { uint64_t s[4]; } dl_rng;
DLDEF void dl_rng_seed(dl_rng *r, uint64_t seed);
DLDEF uint64_t dl_rng_u64(dl_rng *r);
DLDEF float dl_rng_uniform(dl_rng *r);             /* [0, 1) */
DLDEF float dl_rng_normal(dl_rng *r);              /* mean 0, std 1 */
DLDEF int dl_rng_int(dl_rng *r, int n);            /* [0, n) without modulo bias */
DLDEF void dl_rng_permutation(dl_rng *r, int n, int *out); /* a random permutation of 0..n-1 */
DLDEF void dl_fill_uniform(dl_tensor *t, float lo, float hi, dl_rng *r);
DLDEF void dl_fill_normal(dl_tensor *t, float mean, float std, dl_rng *r);
DLDEF void dl_fill_truncated_normal(dl_tensor *t, float mean, float std, dl_rng *r); /* resampled beyond 2 std */
DLDEF void dl_fill_bernoulli(dl_tensor *t, float p, dl_rng *r);  /* 1 with probability p, else 0 */
/* Initializers with Keras' definitions; fan_in/fan_out are given explicitly (for a conv:
   in_channels*kh*kw and out_channels*kh*kw). */
DLDEF void dl_init_glorot_uniform(dl_tensor *t, int fan_in, int fan_out, dl_rng *r);  /* U(+-sqrt(6/(in+out))) */
DLDEF void dl_init_glorot_normal(dl_tensor *t, int fan_in, int fan_out, dl_rng *r);   /* TN, std sqrt(2/(in+out)) */
DLDEF void dl_init_he_uniform(dl_tensor *t, int fan_in, dl_rng *r);                   /* U(+-sqrt(6/in)) */
DLDEF void dl_init_he_normal(dl_tensor *t, int fan_in, dl_rng *r);                    /* TN, std sqrt(2/in) */
/* ---- Matrix multiply (GEMM) and the thread pool ---------------------------------------------

   dl_sgemm: C = alpha * op(A) @ op(B) + beta * C, single precision, all matrices row-major.
     op(A) is m x k: A is stored m x k (lda >= k) when trans_a == 0, k x m (lda >= m) otherwise.
     op(B) is k x n: B is stored k x n (ldb >= n) when trans_b == 0, n x k (ldb >= k) otherwise.
     C is m x n (ldc >= n). alpha and beta mean what they mean in BLAS: when beta == 0, C is
     only written, never read (NaNs already in C do not leak into the result); when alpha == 0
     or k == 0, A and B are not read and C becomes beta * C.
   Results are bit-identical whatever the number of threads: work is split over rows and columns
   of C only, never over k. They can differ between kernels (avx512 / avx2 / generic) in the last
   bits. dl_sgemm never fails; it allocates only the first time a thread needs packing room
   bigger than it has had (buffers are kept and reused, freed by dl_threads_shutdown).

   Threads: a small pool of pthreads, started on first use. The default count is the environment
   variable DL_NUM_THREADS, else the number of online CPUs. Build with DL_NO_THREADS to get no
   pthreads at all (everything runs on the calling thread; then do not call dl_sgemm from several
   threads at once). The pool runs one parallel loop at a time: a dl_parallel_for (or dl_sgemm)
   issued while another is running, from a pool task or from another thread, runs serially on the
   calling thread instead of waiting.

   DL_GEMM_KERNEL=generic|avx2|avx512 in the environment (read once, at the first GEMM) forces a
   micro-kernel, for testing and comparison; an unsupported or unknown name is ignored.
   dl_gemm_set_kernel does the same from code. */

DLDEF void dl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);

DLDEF void dl_set_num_threads(int n);   /* n <= 0: back to the default. Not while work runs. */
DLDEF int  dl_num_threads(void);

/* Runs fn(ctx, task) for task = 0 .. n_tasks-1 on the pool and returns when all are done. Tasks
   may run in any order and on any thread, so they must not allocate from a dl arena or touch
   other shared state without their own locking. Serial when there is 1 thread, when n_tasks
   == 1, and when called from inside a pool task (no nested deadlock). */
typedef void (*dl_parallel_fn)(void *ctx, int task);
DLDEF void dl_parallel_for(int n_tasks, dl_parallel_fn fn, void *ctx);

DLDEF const char *dl_gemm_kernel_name(void);   /* "avx512", "avx2" or "generic" */

/* Forces the micro-kernel by name, like DL_GEMM_KERNEL (tests, comparisons); returns 0 and
   changes nothing when the name is unknown or this CPU lacks it. Not while a GEMM runs. */
DLDEF int dl_gemm_set_kernel(const char *name);

/* Joins and frees the pool and the calling thread's packing buffers (for leak checkers). The pool
   starts again lazily when used. Do not call it while another thread is using dl. */
DLDEF void dl_threads_shutdown(void);
/* ---- Elementwise math, reductions, shape ops -------------------------------------------------

   Every op here returns a new tensor in the current arena (or NULL with dl_error() set), takes
   input views of any strides, and records its backward when an input requires a gradient.
   Math ops need f32 tensors on the CPU; the index and shape ops say which dtypes they take.
   They follow PyTorch's semantics (argument meaning, ties, gradients at kinks); where Keras
   differs, the comment says so.

   Broadcasting (NumPy / PyTorch rules), used by the binary ops:
     - shapes are aligned at their last axis; a missing leading axis counts as size 1;
     - two sizes are compatible when they are equal or one of them is 1;
     - the result takes the larger size on every axis: [2, 1, 3] with [4, 1] gives [2, 4, 3],
       [B, N] with [N] gives [B, N] (a Dense bias), anything with a 0-d scalar keeps its shape.
   The gradient of a broadcast input is the output gradient summed over the axes it was
   stretched along ("sum to shape").

   Axes: negative axes count from the end (-1 is the last). Reductions take naxes axes;
   naxes == 0 means all of them. keepdim keeps reduced axes with size 1, as in PyTorch. */

/* Binary, broadcasting. */
DLDEF dl_tensor *dl_add(dl_tensor *a, dl_tensor *b);       /* a + b;  da = g, db = g */
DLDEF dl_tensor *dl_sub(dl_tensor *a, dl_tensor *b);       /* a - b;  da = g, db = -g */
DLDEF dl_tensor *dl_mul(dl_tensor *a, dl_tensor *b);       /* a * b;  da = g b, db = g a */
DLDEF dl_tensor *dl_div(dl_tensor *a, dl_tensor *b);       /* a / b;  da = g / b, db = -g a / b^2 */
DLDEF dl_tensor *dl_minimum(dl_tensor *a, dl_tensor *b);   /* torch.minimum: NaN wins; g goes to the smaller */
DLDEF dl_tensor *dl_maximum(dl_tensor *a, dl_tensor *b);   /* torch.maximum: NaN wins; g goes to the larger */
      /* at ties each side gets g / 2 (PyTorch); TensorFlow/Keras gives all of g to a */

/* With a float scalar (no broadcasting needed). Divide by s with dl_mul_scalar(x, 1 / s). */
DLDEF dl_tensor *dl_add_scalar(dl_tensor *x, float s);     /* x + s */
DLDEF dl_tensor *dl_mul_scalar(dl_tensor *x, float s);     /* x * s */
DLDEF dl_tensor *dl_rsub_scalar(float s, dl_tensor *x);    /* s - x */
DLDEF dl_tensor *dl_pow(dl_tensor *x, float p);            /* x^p; dx = g p x^(p-1), and 0 when p == 0 (torch) */

/* Unary. */
DLDEF dl_tensor *dl_neg(dl_tensor *x);                     /* -x */
DLDEF dl_tensor *dl_exp(dl_tensor *x);                     /* e^x; dx = g e^x */
DLDEF dl_tensor *dl_log(dl_tensor *x);                     /* ln x; dx = g / x */
DLDEF dl_tensor *dl_sqrt(dl_tensor *x);                    /* sqrt x; dx = g / (2 sqrt x) */
DLDEF dl_tensor *dl_abs(dl_tensor *x);                     /* |x|; dx = g sign(x), 0 at x == 0 */
DLDEF dl_tensor *dl_clamp(dl_tensor *x, float lo, float hi); /* min(max(x, lo), hi) (all hi when lo > hi);
                                                                 dx = g where lo <= x <= hi, else 0.
                                                                 One-sided: lo = -INFINITY or hi = INFINITY */

/* Reductions over axes[0..naxes-1] (naxes == 0: all). */
DLDEF dl_tensor *dl_sum(dl_tensor *x, int naxes, const int *axes, int keepdim);   /* dx = g broadcast back */
DLDEF dl_tensor *dl_mean(dl_tensor *x, int naxes, const int *axes, int keepdim);  /* sum / N; dx = g / N */
DLDEF dl_tensor *dl_max(dl_tensor *x, int naxes, const int *axes, int keepdim);   /* torch.amax: NaN wins;
                                                  dx = g / (number of maxima) at every maximum, else 0 */
DLDEF dl_tensor *dl_var(dl_tensor *x, int naxes, const int *axes, int correction, int keepdim);
      /* torch.var: sum (x - mean)^2 / (N - correction); correction 1 = unbiased (torch's default),
         0 = population variance (Keras' / NumPy's default); dx = g 2 (x - mean) / (N - correction) */
DLDEF dl_tensor *dl_argmax(dl_tensor *x, int axis, int keepdim); /* DL_DTYPE_I32; first maximal index, NaN counts
                                                                    as the maximum (torch); not differentiable */
DLDEF dl_tensor *dl_sum_all(dl_tensor *x);                 /* 0-d sum of every element */
DLDEF dl_tensor *dl_mean_all(dl_tensor *x);                /* 0-d mean of every element */

/* Shape and index ops. */
DLDEF dl_tensor *dl_concat(int n, dl_tensor *const *xs, int axis);
      /* torch.cat: same dtype (any), same shape except along axis; dx_i = g's slice for x_i */
DLDEF int dl_split(dl_tensor *x, int axis, int n, const int *sizes, dl_tensor **outs);
      /* outs[i] = views (dl_slice) of sizes[i] consecutive entries along axis; sizes must add up to
         x->shape[axis]; sizes == NULL splits into n equal parts. Returns 0, or -1 with dl_error(). */
DLDEF dl_tensor *dl_index_select(dl_tensor *x, int axis, dl_tensor *idx);
      /* torch.index_select: idx is 1-D DL_DTYPE_I32 in [0, x->shape[axis]); x of any dtype;
         out[.., k, ..] = x[.., idx[k], ..]; dx scatter-adds g (repeated indices accumulate) */
DLDEF dl_tensor *dl_gather(dl_tensor *x, int axis, dl_tensor *idx);
      /* torch.gather: idx DL_DTYPE_I32 with x's ndim, idx->shape[d] <= x->shape[d] for d != axis;
         out has idx's shape, out[i][j][k] = x[i][idx[i][j][k]][k] (axis 1); dx scatter-adds g */
DLDEF dl_tensor *dl_one_hot(dl_tensor *labels, int num_classes);
      /* DL_DTYPE_I32 or DL_DTYPE_U8 labels of any shape -> f32 [..., num_classes]; num_classes -1 means
         max(labels) + 1 (torch); a label outside [0, num_classes) is an error */
DLDEF dl_tensor *dl_cast(dl_tensor *x, dl_dtype dtype);
      /* a contiguous copy converted to dtype. To integers: truncated toward zero (NaN -> 0);
         to u8 the result wraps modulo 256 like PyTorch on x86 (-1.0 -> 255). Differentiable only
         f32 -> f32. */
DLDEF dl_tensor *dl_broadcast_to(dl_tensor *x, int ndim, const int *shape);
      /* x broadcast to shape and materialized (f32); dx = g summed back to x's shape */
/* ---- Matrix products, activations, softmax, losses ------------------------------------------
   PyTorch semantics (argument names, edge cases, gradients at kinks). Inputs may be any f32
   views (transposed, sliced); outputs are fresh contiguous arena tensors; NULL + dl_error() on
   bad arguments, NULL on a NULL input. */

/* torch.matmul: a [..., m, k] @ b [..., k, n] -> [..., m, n], batch axes broadcast (a 2-D
   operand against a batched one is fine). A 1-D a is [1, k] and a 1-D b is [k, 1], with that
   axis dropped from the result, as in torch. Operands that are matrices or transposed views of
   matrices in their last two axes are read in place (no copy). */
DLDEF dl_tensor *dl_matmul(dl_tensor *a, dl_tensor *b);
/* op(a) @ op(b) where op transposes the last two axes when its flag is nonzero, without a copy:
   dl_matmul_t(a, b, 0, 1) is a @ b^T. Both operands need at least 2 axes. */
DLDEF dl_tensor *dl_matmul_t(dl_tensor *a, dl_tensor *b, int trans_a, int trans_b);
/* Dense layer: x [..., in] @ w [in, out] + b [out] -> [..., out]; b may be NULL. w has Keras'
   Dense kernel layout; torch.nn.Linear stores its weight as [out, in], so pass a transposed
   view (dl_transpose(w_torch, 0, 1)), which is read in place. One GEMM forward, two backward. */
DLDEF dl_tensor *dl_linear(dl_tensor *x, dl_tensor *w, dl_tensor *b);

/* Elementwise activations. */
DLDEF dl_tensor *dl_relu(dl_tensor *x);                              /* gradient 0 at x == 0 */
DLDEF dl_tensor *dl_leaky_relu(dl_tensor *x, float negative_slope); /* torch default 0.01 */
DLDEF dl_tensor *dl_elu(dl_tensor *x, float alpha);                  /* torch default 1.0 */
DLDEF dl_tensor *dl_gelu(dl_tensor *x);           /* exact: x * Phi(x) with erf (torch default) */
DLDEF dl_tensor *dl_gelu_tanh(dl_tensor *x);      /* torch gelu(approximate='tanh') */
DLDEF dl_tensor *dl_sigmoid(dl_tensor *x);
DLDEF dl_tensor *dl_tanh(dl_tensor *x);
DLDEF dl_tensor *dl_softplus(dl_tensor *x);       /* log(1 + e^x); x itself above 20 (torch) */

/* Softmax and log-softmax along axis (negative counts from the end), max-subtracted so any
   finite input gives finite probabilities. */
DLDEF dl_tensor *dl_softmax(dl_tensor *x, int axis);
DLDEF dl_tensor *dl_log_softmax(dl_tensor *x, int axis);

/* Losses: each returns a 0-d tensor, the mean over elements (torch reduction='mean', Keras'
   default). pred and target must have the same shape (no broadcasting). */

/* torch.nn.functional.cross_entropy from logits: logits [N, C] with labels DL_DTYPE_I32 [N], or
   logits [N, C, d1, ...] with labels [N, d1, ...]. A label of -100 is ignored (torch's default
   ignore_index) and left out of the mean; any other label outside [0, C) is an error. Keras:
   SparseCategoricalCrossentropy(from_logits=True). */
DLDEF dl_tensor *dl_cross_entropy(dl_tensor *logits, dl_tensor *labels);
/* torch.nn.functional.binary_cross_entropy_with_logits: targets f32 in [0, 1], same shape.
   Keras: BinaryCrossentropy(from_logits=True) averages over the last axis first (the same
   mean when every row has the same length). */
DLDEF dl_tensor *dl_bce_with_logits(dl_tensor *logits, dl_tensor *targets);
DLDEF dl_tensor *dl_mse(dl_tensor *pred, dl_tensor *target);  /* mean((pred - target)^2) */
DLDEF dl_tensor *dl_l1(dl_tensor *pred, dl_tensor *target);   /* mean(|pred - target|) */
/* torch.nn.HuberLoss(delta): 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta); delta > 0.
   Keras' Huber(delta) is the same. (torch's SmoothL1Loss(beta) is this divided by beta.) */
DLDEF dl_tensor *dl_huber(dl_tensor *pred, dl_tensor *target, float delta);
/* ---- Normalization, dropout, embedding, Gram matrix -----------------------------------------
   PyTorch semantics, channels on axis 1 (NCHW). Outputs are arena tensors; NULL + dl_error() on
   bad arguments. Variances used for normalizing are biased (divide by the count), eps is added
   inside the square root. */

/* Batch normalization over every axis but 1: x is [N, C] or [N, C, d1, d2, ...].
   gamma, beta: [C] or NULL (scale 1, shift 0). running_mean, running_var: persistent [C] f32
   tensors (or NULL while training: then nothing is tracked).
   training != 0: normalizes with the batch statistics and updates the running ones in place,
     running = (1 - momentum) * running + momentum * batch_stat, where running_var tracks the
     UNBIASED batch variance (torch.nn.BatchNorm2d; momentum 0.1 and eps 1e-5 are torch's
     defaults). Keras' BatchNormalization(momentum=0.99, epsilon=1e-3) is momentum 0.01 here.
     Needs more than one value per channel.
   training == 0: normalizes with running_mean / running_var (both required).
   Gradients reach x, gamma and beta (never the running statistics). */
DLDEF dl_tensor *dl_batch_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta,
                               dl_tensor *running_mean, dl_tensor *running_var,
                               int training, float momentum, float eps);

/* torch.nn.functional.layer_norm: normalizes over the last normalized_ndim axes of x;
   gamma, beta: shaped like those axes, or NULL. */
DLDEF dl_tensor *dl_layer_norm(dl_tensor *x, int normalized_ndim, dl_tensor *gamma,
                               dl_tensor *beta, float eps);

/* torch.nn.functional.instance_norm without running statistics: x is [N, C, d1, ...] with more
   than one spatial element, statistics per (n, c); gamma, beta: [C] or NULL. */
DLDEF dl_tensor *dl_instance_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, float eps);

/* Inverted dropout: while training, each element is kept with probability 1 - p and scaled by
   1 / (1 - p), else zeroed (one dl_rng_uniform draw per element, in row-major order, so the
   same seed gives the same mask). Returns x itself (no copy) when !training or p == 0; p == 1
   gives zeros. p outside [0, 1], or rng NULL while training, is an error. */
DLDEF dl_tensor *dl_dropout(dl_tensor *x, float p, int training, dl_rng *rng);

/* torch.nn.functional.embedding: weight [V, D] f32, indices DL_DTYPE_I32 of any shape with values in
   [0, V) -> [..., D] (indices' shape plus D). The gradient adds each output row into the weight
   row it came from (repeated indices accumulate). */
DLDEF dl_tensor *dl_embedding(dl_tensor *weight, dl_tensor *indices);

/* Gram matrix for style losses: x [N, C, H, W] (any number >= 1 of trailing spatial axes) ->
   [N, C, C], G[n] = F F^T / (H*W) with F = x[n] as [C, H*W]. Dividing by the number of
   locations follows the TensorFlow neural style transfer tutorial's gram_matrix
   (tensorflow.org/tutorials/generative/style_transfer); Gatys et al. and the PyTorch tutorial
   use other normalizations. */
DLDEF dl_tensor *dl_gram(dl_tensor *x);
/* ---- Convolution, pooling, padding, upsampling (NCHW, PyTorch semantics) ---------------------

   Images are [N, C, H, W] f32 tensors on the CPU (inputs may be any strided view). Every op
   returns a new arena tensor, or NULL with dl_error() set (NULL inputs give NULL and keep the
   first message). Window geometry is given by one options struct for all ops; pass NULL, or a
   zero-initialised struct, for the defaults:

       dl_conv2d(x, w, b, NULL);                                        stride 1, no padding
       dl_conv_opts o = {{2, 2}, {1, 1}};  dl_conv2d(x, w, b, &o);       stride 2, padding 1
       dl_max_pool2d(x, 2, 2, NULL);                                    2x2 windows, stride 2

   Output size along each axis (floor division, as torch with ceil_mode=False):
       conv / pool:      out = (in + 2*padding - dilation*(k-1) - 1) / stride + 1
       conv_transpose:   out = (in-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1
   Padding is symmetric, as in torch. Keras' padding="same" with stride 1 and an odd kernel is
   padding = k/2; for other "same" cases (asymmetric) use dl_pad2d first. */

typedef struct dl_conv_opts {
    int stride[2];          /* [h, w]; 0 means 1 for convolutions, the kernel size for pools */
    int padding[2];         /* [h, w] zeros (-inf for max pooling) added on both sides; 0 default */
    int dilation[2];        /* [h, w] spacing of kernel taps; 0 means 1. Not for avg_pool2d */
    int output_padding[2];  /* [h, w] conv_transpose2d only: extra rows/columns at the end */
} dl_conv_opts;

/* y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x[n,c, i*s-pad+p*d, j*s-pad+q*d]  (zero outside)
   x [N, Cin, H, W], w [Cout, Cin, kh, kw] (torch layout; Keras stores [kh, kw, Cin, Cout]),
   b [Cout] or NULL for no bias. No groups. */
DLDEF dl_tensor *dl_conv2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts);

/* The adjoint (gradient w.r.t. the input) of dl_conv2d, plus a bias: every input pixel scatters
   w[c,:,:,:] * x[n,c,i,j] into the output. x [N, Cin, H, W], w [Cin, Cout, kh, kw] (torch
   layout), b [Cout] or NULL. output_padding must be smaller than the stride or the dilation. */
DLDEF dl_tensor *dl_conv_transpose2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts);

/* y = max over each window (padding counts as -inf; a NaN in a window wins). The gradient goes to
   the first maximum in row-major scan order of the window, as in torch. kernel_h x kernel_w
   windows; padding must be at most half the kernel, as in torch. */
DLDEF dl_tensor *dl_max_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts);

/* y = sum over each window / (kernel_h * kernel_w): zeros of the padding count in the mean
   (torch's default count_include_pad=True; Keras pools only valid pixels). No dilation. */
DLDEF dl_tensor *dl_avg_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts);

/* [N, C, H, W] -> [N, C]: y[n,c] = mean over h,w of x[n,c,h,w] (Keras GlobalAveragePooling2D). */
DLDEF dl_tensor *dl_global_avg_pool2d(dl_tensor *x);

/* y[n,c,i,j] = x[n,c, i/scale_h, j/scale_w]: each pixel repeated scale_h x scale_w times
   (torch Upsample(scale_factor, mode="nearest") with integer factors; Keras UpSampling2D). */
DLDEF dl_tensor *dl_upsample_nearest2d(dl_tensor *x, int scale_h, int scale_w);

/* Pads the last two axes: [N, C, H, W] -> [N, C, top+H+bottom, left+W+right] (any tensor with at
   least 2 dims works; the leading dims are kept). DL_PAD_ZERO adds zeros (Keras ZeroPadding2D);
   DL_PAD_REFLECT mirrors without repeating the edge (torch "reflect": x = [1 2 3], pad 2 ->
   [3 2 1 2 3 2 1]), which needs each pad < the size of its axis. Pads must be >= 0. Note the
   argument order (left, right, top, bottom) is torch's F.pad order. */
typedef enum dl_pad_mode { DL_PAD_ZERO = 0, DL_PAD_REFLECT = 1 } dl_pad_mode;
DLDEF dl_tensor *dl_pad2d(dl_tensor *x, int pad_left, int pad_right, int pad_top, int pad_bottom, dl_pad_mode mode);
/* ---- Files: safetensors ------------------------------------------------------------------------
   The format of Hugging Face's `safetensors` (also what PyTorch, JAX and Keras 3 read and write):
       8 bytes   N, little-endian u64: the length of the header
       N bytes   UTF-8 JSON object: "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}
                 for every tensor, plus an optional "__metadata__": {"key": "value", ...} of strings
       the rest  raw little-endian row-major tensor data; tensor bytes are [b, e) of this part

   Loading validates everything before trusting it, with the rules of the reference reader: the
   header is at most 100,000,000 bytes and starts with '{', is strict JSON (trailing spaces are
   allowed), the tensors' byte ranges tile the data part exactly (no gap, no overlap, ending at the
   end of the file) and e - b == numel * element size. dl also rejects what the reference leaves
   ambiguous: duplicate names or metadata keys, strings containing \u0000, more than DL_MAX_DIMS
   dimensions or a dimension above INT_MAX. A truncated, corrupt or hostile file gives NULL and
   dl_error(), never a crash, and never an allocation bigger than a small multiple of the file.

   dtypes on load: F32, I32, U8 stay as they are; BOOL loads as U8 (0/1); F16, BF16 and F64 are
   converted to F32 (F64 rounds to nearest, overflowing to +-inf like a C cast); I64 is converted to
   I32 and a value outside the int32 range is an error. I8, I16, U16, U32, U64 and the 8-bit float
   types are rejected with a message.

   Writing produces the same bytes as the Python writer (safetensors.numpy.save_file) for the same
   tensors and at most one metadata entry: header in compact JSON, "__metadata__" first, tensors
   ordered by dtype (F32, I32, U8) then by name (bytewise), header padded with spaces to a multiple
   of 8 bytes so that the data part starts 8-byte aligned. Differences: metadata is written in the
   given order (Python's writer uses hash order), and a 0-d tensor has shape [] (safetensors.numpy
   writes [1]; both load in Python). Byte order is handled on any host, little- or big-endian.

   Ownership: a dl_safetensors owns all its tensors, names and strings (one allocation); what the
   getters return is borrowed and lives until dl_safetensors_free. The loaded tensors are plain
   contiguous CPU tensors; to train one, copy it (dl_tensor_clone, or dl_copy into a parameter).

     dl_safetensors *st = dl_safetensors_load("model.safetensors");
     if (!st) { printf("%s\n", dl_error()); return 1; }
     dl_tensor *w = dl_safetensors_get(st, "fc1.weight");      // NULL when absent
     const char *arch = dl_safetensors_meta(st, "arch");        // NULL when absent
     dl_safetensors_free(st);

     const char *names[] = {"w", "b"};  dl_tensor *ts[] = {w, b};
     const char *keys[] = {"format"}, *values[] = {"dl"};
     if (dl_safetensors_save("out.safetensors", 2, names, ts, 1, keys, values) != 0) ...

   Saving is atomic (through dl_file_writer, below): a failed save (full disk, bad tensor) returns
   -1 and leaves the previous file at path as it was.

   With DL_NO_STDIO only the memory functions (parse, serialize) exist. */

typedef struct dl_safetensors dl_safetensors;   /* a loaded file: tensors + metadata, owns all memory */

#ifndef DL_NO_STDIO
DLDEF dl_safetensors *dl_safetensors_load(const char *path);  /* owned: dl_safetensors_free; NULL + dl_error() on any problem */
#endif
DLDEF dl_safetensors *dl_safetensors_parse(const void *bytes, size_t size); /* a whole file in memory (copied); owned */
DLDEF void dl_safetensors_free(dl_safetensors *st);               /* NULL is fine */

DLDEF int dl_safetensors_num_tensors(const dl_safetensors *st);        /* number of tensors */
DLDEF const char *dl_safetensors_name(const dl_safetensors *st, int i); /* i-th name in bytewise sorted order; borrowed */
DLDEF dl_tensor *dl_safetensors_get(const dl_safetensors *st, const char *name); /* borrowed, owned by st; NULL if absent */
DLDEF int dl_safetensors_num_meta(const dl_safetensors *st);   /* number of __metadata__ entries */
DLDEF const char *dl_safetensors_meta_key(const dl_safetensors *st, int i); /* i-th key, sorted; borrowed */
DLDEF const char *dl_safetensors_meta(const dl_safetensors *st, const char *key); /* borrowed; NULL if absent */

/* Writing: n tensors (any strides; written in logical row-major order) under n names, plus n_meta
   metadata strings (n_meta may be 0 and the arrays NULL). Names must be distinct, valid UTF-8,
   not "__metadata__"; tensors must be on the CPU. */
#ifndef DL_NO_STDIO
DLDEF int dl_safetensors_save(const char *path, int n, const char *const *names, dl_tensor *const *tensors,
                              int n_meta, const char *const *meta_keys, const char *const *meta_values); /* 0 on success, else -1 + dl_error() */
#endif
/* ---- Files written whole: every file the dl headers save goes through a dl_file_writer ----
   Bytes go to a temporary file in path's directory ("<path>.tmp-<pid>-<n>"); commit checks every
   write, flushes the data to disk (fsync), closes and renames the temporary over path. So path
   holds either its previous content or all of the new one, after any failure (a full disk, a
   crash, a signal), and no temporary file is left behind by a failure that returns. Messages
   name the path and the system's reason (strerror); callers put their own name in front. On systems without POSIX I/O, writes go through
   stdio and the rename is not atomic on Windows (the old file is removed first).

     dl_file_writer *w = dl_file_writer_open("out.bin");   // NULL + dl_error()
     if (!w) return -1;
     dl_file_writer_write(w, bytes, n);                     // errors stick: check at commit
     if (dl_file_writer_commit(w) != 0) return -1;          // frees w either way */
typedef struct dl_file_writer dl_file_writer;
#ifndef DL_NO_STDIO
DLDEF dl_file_writer *dl_file_writer_open(const char *path); /* owned: freed by _commit or _abort */
DLDEF int dl_file_writer_write(dl_file_writer *w, const void *p, size_t n); /* 0, or -1 + dl_error() (and commit fails) */
DLDEF int dl_file_writer_commit(dl_file_writer *w); /* 0: path has the bytes; -1 + dl_error(): path untouched. Frees w */
DLDEF void dl_file_writer_abort(dl_file_writer *w);  /* drops the temporary file; frees w; NULL is fine */
#endif
/* Only when stb_image_write.h (Debian: <stb/stb_image_write.h>) was included before this file
   (in the implementation file too): pixels (h rows of w pixels of `channels` interleaved bytes:
   1 gray, 3 RGB, 4 RGBA) as a PNG file, written atomically. 0, or -1 + dl_error(). */
#if defined(INCLUDE_STB_IMAGE_WRITE_H) && !defined(STBI_WRITE_NO_STDIO) && !defined(DL_NO_STDIO)
#define DL_HAVE_PNG 1
DLDEF int dl_png_save(const char *path, const unsigned char *pixels, int w, int h, int channels);
#endif

/* The same file in memory: returns its size in bytes and writes it to out when out != NULL and
   capacity >= that size (call once with out == NULL to learn the size). Returns 0 on error. */
DLDEF size_t dl_safetensors_serialize(int n, const char *const *names, dl_tensor *const *tensors,
                                      int n_meta, const char *const *meta_keys, const char *const *meta_values,
                                      void *out, size_t capacity);

#ifdef DL_CUDA
/* ---- Private: what dl_tensor.h's implementation and dl_cuda.cu call of each other ----------
   Not an API: names and arguments change without notice. dl_cuda.cu defines the dl__cuda_*
   functions (kernels and cuBLAS, or loops in its CPU emulation), the implementation above
   defines the rest. Ops dispatch to dl__cuda_<op> when an input is not on the CPU; those
   check that every input is on the GPU. */
enum { DL__H2D = 1, DL__D2H = 2, DL__D2D = 3 };
DLDEF int dl__cuda_setup(void);                             /* 0 or -1 + error; the first call does the work */
DLDEF void *dl__cuda_malloc(size_t bytes);                   /* NULL + error */
DLDEF void dl__cuda_free(void *p);
DLDEF int dl__cuda_memcpy(void *dst, const void *src, size_t bytes, int kind); /* DL__H2D ...; synchronous */
DLDEF int dl__cuda_memset0(void *p, size_t bytes);
DLDEF int dl__cuda_sync(void);
/* dst[i] (+)= src[i] over shape, both strided, elements of esize bytes (accumulate: f32 only). */
DLDEF int dl__cuda_strided_copy(void *dst, const ptrdiff_t *dst_strides, const void *src, const ptrdiff_t *src_strides,
                                int ndim, const int *shape, int esize, int accumulate);
DLDEF int dl__cuda_fill(dl_tensor *t, float value);
DLDEF int dl__cuda_copy_convert(dl_tensor *dst, const dl_tensor *src); /* same shape, both on the GPU, any dtypes */
/* From the implementation: an uninitialized arena tensor on device, and device arena bytes. */
DLDEF dl_tensor *dl__tmp_on(dl_device device, dl_dtype dtype, int ndim, const int *shape);
DLDEF void *dl__device_tmp_alloc(size_t bytes);
/* Ops on the GPU (same arguments and semantics as the public ones). */
/* dl_nn.h's fused LSTM (lstm = 1) and GRU steps, as its dl__rnn_cell */
DLDEF dl_tensor *dl__cuda_rnn_cell(int lstm, int B, int U, dl_tensor *xw, int t, dl_tensor *m, dl_tensor *prev);
DLDEF dl_tensor *dl__cuda_binary(int op, const char *name, dl_tensor *a, dl_tensor *b);
DLDEF dl_tensor *dl__cuda_unary(const char *name, int op, dl_tensor *x, float p, float q);
DLDEF dl_tensor *dl__cuda_activation(const char *name, int op, dl_tensor *x, float alpha);
DLDEF dl_tensor *dl__cuda_matmul_t(dl_tensor *a, dl_tensor *b, int trans_a, int trans_b);
DLDEF dl_tensor *dl__cuda_linear(dl_tensor *x, dl_tensor *w, dl_tensor *b);
DLDEF dl_tensor *dl__cuda_reduce(const char *name, int op, dl_tensor *x, int naxes, const int *axes, int keepdim, int correction);
DLDEF dl_tensor *dl__cuda_argmax(dl_tensor *x, int axis, int keepdim);
DLDEF dl_tensor *dl__cuda_softmax(dl_tensor *x, int axis, int log);
DLDEF dl_tensor *dl__cuda_cross_entropy(dl_tensor *logits, dl_tensor *labels);
DLDEF dl_tensor *dl__cuda_loss(const char *name, int op, dl_tensor *pred, dl_tensor *target, float delta);
/* convolutions, pooling, padding, upsampling */
DLDEF dl_tensor *dl__cuda_conv2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts);
DLDEF dl_tensor *dl__cuda_conv_transpose2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts);
DLDEF dl_tensor *dl__cuda_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts, int is_max);
DLDEF dl_tensor *dl__cuda_global_avg_pool2d(dl_tensor *x);
DLDEF dl_tensor *dl__cuda_upsample_nearest2d(dl_tensor *x, int scale_h, int scale_w);
DLDEF dl_tensor *dl__cuda_pad2d(dl_tensor *x, int pad_left, int pad_right, int pad_top, int pad_bottom, dl_pad_mode mode);

/* normalization, dropout, embedding, indexing, concat */
DLDEF dl_tensor *dl__cuda_batch_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, dl_tensor *running_mean, dl_tensor *running_var,
                                     int training, float momentum, float eps);
DLDEF dl_tensor *dl__cuda_layer_norm(dl_tensor *x, int normalized_ndim, dl_tensor *gamma, dl_tensor *beta, float eps);
DLDEF dl_tensor *dl__cuda_instance_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, float eps);
DLDEF dl_tensor *dl__cuda_gram(dl_tensor *x);
DLDEF dl_tensor *dl__cuda_dropout(dl_tensor *x, float p, int training, dl_rng *rng);
DLDEF dl_tensor *dl__cuda_embedding(dl_tensor *weight, dl_tensor *indices);
DLDEF dl_tensor *dl__cuda_index_select(dl_tensor *x, int axis, dl_tensor *idx);
DLDEF dl_tensor *dl__cuda_gather(dl_tensor *x, int axis, dl_tensor *idx);
DLDEF dl_tensor *dl__cuda_concat(int n, dl_tensor *const *xs, int axis);  /* n >= 1, no NULLs, some on the GPU */
DLDEF dl_tensor *dl__cuda_one_hot(dl_tensor *labels, int num_classes);
DLDEF dl_tensor *dl__cuda_cast(dl_tensor *x, dl_dtype dtype);
DLDEF dl_tensor *dl__cuda_broadcast_to(dl_tensor *x, int ndim, const int *shape);

/* optimizer updates (dl_optim.h) */

/* One parameter's whole update as one kernel, with dl_optim.h's formulas and its float constants
   k (computed by dl_optim.h as its CPU loops compute them). kind: dl_optim_kind's value (Adam
   and AdamW are one kernel, DL__OPTF_ADAMW); buf: the kind's state buffers in dl_optim.h's order
   (NULL where unused), all on the GPU like p and g. */
enum { DL__OPTF_WD = 1, DL__OPTF_FIRST = 2, DL__OPTF_NESTEROV = 4, DL__OPTF_ADAMW = 8, DL__OPTF_NOFMA = 16 };
typedef struct dl__cuda_optim_args {
    int kind, flags;
    size_t n;
    float *p, *buf[3];
    const float *g;
    float k[8];
} dl__cuda_optim_args;
DLDEF int dl__cuda_optim_update(const dl__cuda_optim_args *a);   /* 0, or -1 + error */
/* Global L2-norm clipping of the gradients of the n tensors at ts, stride bytes apart (NULL
   tensors and NULL grads skipped; all on the GPU): each chunk's sum of squares in double, the
   chunks summed in order, the float total and min(1, max_norm / (total + 1e-6)) computed and
   applied on the device. total != NULL: the total copied to the host (a sync); else no sync. */
DLDEF int dl__cuda_clip_grad_norm(int n, dl_tensor *const *ts, size_t stride, double max_norm, float *total);
DLDEF int dl__cuda_clip_grad_value(float *g, size_t n, float clip);   /* clamp to [-clip, clip], NaN stays */
/* dl_gan.h: avg[i] = d avg[i] + (1 - d) w[i] (one minus d given as e, computed on the host as the
   CPU loop does), and the exchange of two device buffers of bytes bytes. 0, or -1 + dl_error(). */
DLDEF int dl__cuda_gan_ema(float *avg, const float *w, size_t n, float d, float e);
DLDEF int dl__cuda_gan_swap(void *a, void *b, size_t bytes);

#endif

#ifdef __cplusplus
}
#endif
#endif /* DL_TENSOR_H */

#if (defined(DL_CUDA) || defined(DL_IMPLEMENTATION) || defined(DL_TENSOR_IMPLEMENTATION)) && !defined(DL__OP_CODES)
#define DL__OP_CODES
/* Private op codes, shared by the implementation and dl_cuda.cu (outside the include guard: a
   file that includes the header plainly first and then with DL_IMPLEMENTATION still gets them). */
enum { DL__ADD, DL__SUB, DL__MUL, DL__DIV, DL__MIN, DL__MAX };                      /* binary */
enum { DL__AFFINE, DL__POW, DL__EXP, DL__LOG, DL__SQRT, DL__ABS, DL__CLAMP };         /* unary */
enum { DL__RELU, DL__LEAKY_RELU, DL__ELU, DL__GELU, DL__GELU_TANH, DL__SIGMOID, DL__TANH, DL__SOFTPLUS }; /* activations */
enum { DL__REDUCE_SUM, DL__REDUCE_MEAN, DL__REDUCE_VAR, DL__REDUCE_MAX };           /* reductions */
enum { DL__MSE, DL__L1, DL__HUBER, DL__BCE_LOGITS };                                  /* losses */
#define DL__NONFINITE 4u /* tensor flag: dl_check_numerics failed the op that made it */
#endif

#if defined(DL_IMPLEMENTATION) && !defined(DL_TENSOR_IMPLEMENTATION)
#define DL_TENSOR_IMPLEMENTATION
#endif

#if defined(DL_TENSOR_IMPLEMENTATION) && !defined(DL__TENSOR_IMPLEMENTED) && !defined(DL_IMPLEMENTATION_ELSEWHERE)
#define DL__TENSOR_IMPLEMENTED

#include <stdlib.h>
#include <string.h>

#if defined(DL_MALLOC) && defined(DL_REALLOC) && defined(DL_FREE)
#elif !defined(DL_MALLOC) && !defined(DL_REALLOC) && !defined(DL_FREE)
#define DL_MALLOC(sz) malloc(sz)
#define DL_REALLOC(p, sz) realloc(p, sz)
#define DL_FREE(p) free(p)
#else
#error "define all of DL_MALLOC, DL_REALLOC and DL_FREE, or none of them"
#endif

/* ==== Core: errors, arenas, tensors, views, autograd, RNG (tests: tests/test_core.c, tests/test_numerics.c) */

#include <errno.h>
#include <stdio.h>
#include <stdarg.h>
#include <math.h>
#include <limits.h>

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
#define DL__DEVICE_DATA 8u  /* persistent, data moved to the GPU: data (and grad) are dl__cuda_malloc'd */

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

/* ---- Log ---- */

static void dl__log_default(void *user, int level, const char *text) {
    FILE *f = level == DL_LOG_INFO ? stdout : stderr;
    (void)user;
    fputs(text, f);
    fflush(f);
}
DLDEF void dl_log_silent(void *user, int level, const char *text) { (void)user; (void)level; (void)text; }

static dl_log_fn dl__log_fn = dl__log_default;   /* both under dl__log_mutex */
static void *dl__log_user;
#if !defined(DL_NO_THREADS) && !defined(_WIN32)
#include <pthread.h>
static pthread_mutex_t dl__log_mutex = PTHREAD_MUTEX_INITIALIZER;
#define DL__LOG_LOCK() pthread_mutex_lock(&dl__log_mutex)
#define DL__LOG_UNLOCK() pthread_mutex_unlock(&dl__log_mutex)
#else
#define DL__LOG_LOCK() ((void)0)
#define DL__LOG_UNLOCK() ((void)0)
#endif

DLDEF void dl_set_log(dl_log_fn fn, void *user) {
    DL__LOG_LOCK();
    dl__log_fn = fn ? fn : dl__log_default;
    dl__log_user = fn ? user : NULL;
    DL__LOG_UNLOCK();
}

/* Formats into a stack buffer (a heap one for long text, e.g. a summary) and calls the log
   function outside the lock. */
DLDEF void dl_log_write(int level, const char *fmt, ...) {
    char small[512], *text = small;
    dl_log_fn fn;
    void *user;
    va_list ap;
    int n;
    if (!fmt) return;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof small && (text = (char *)DL_MALLOC((size_t)n + 1)) != NULL) {
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (!text) text = small;   /* out of memory: the truncated text */
    DL__LOG_LOCK();
    fn = dl__log_fn;
    user = dl__log_user;
    DL__LOG_UNLOCK();
    fn(user, level, text);
    if (text != small) DL_FREE(text);
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
    dl__block *dfirst, *dcur; /* DL_CUDA: the same for device memory (headers on the host), made on first use */
};

#define DL__ALIGN 64

/* Blocks and single allocations are capped well below SIZE_MAX, so no size arithmetic wraps. */
#define DL__ARENA_MAX_BYTES ((size_t)1 << 46)

static dl__block *dl__block_new(size_t size) {
    dl__block *b;
    uintptr_t p;
    if (size > DL__ARENA_MAX_BYTES) return NULL;
    b = (dl__block *)DL_MALLOC(sizeof(dl__block) + size + DL__ALIGN);
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
    if (initial_bytes > DL__ARENA_MAX_BYTES) {
        DL_FREE(a);
        return (dl_arena *)dl__fail("dl_arena_new: %zu bytes is more than the limit of 2^46", initial_bytes);
    }
    a->first = a->cur = dl__block_new(initial_bytes);
    if (!a->first) { DL_FREE(a); return (dl_arena *)dl__fail("dl_arena_new: out of memory (%zu bytes)", initial_bytes); }
    a->used_total = 0;
    a->tape = NULL;
    a->dfirst = a->dcur = NULL;
    return a;
}

DLDEF void dl_arena_free(dl_arena *a) {
    dl__block *b, *next;
    if (!a) return;
    for (b = a->first; b; b = next) { next = b->next; DL_FREE(b); }
#ifdef DL_CUDA
    for (b = a->dfirst; b; b = next) { next = b->next; dl__cuda_free(b->mem); DL_FREE(b); }
#endif
    DL_FREE(a);
}

DLDEF void dl_arena_reset(dl_arena *a) {
    dl__block *b;
    if (!a) return;
    for (b = a->first; b; b = b->next) b->used = 0;
    for (b = a->dfirst; b; b = b->next) b->used = 0;
    a->cur = a->first;
    a->dcur = a->dfirst;
    a->used_total = 0;
    a->tape = NULL;
}

DLDEF void dl_free(void *p) { DL_FREE(p); }

DLDEF void *dl_arena_alloc(dl_arena *a, size_t bytes) {
    dl__block *b;
    if (!a) return dl__fail("dl_arena_alloc: no arena");
    if (bytes > DL__ARENA_MAX_BYTES) return dl__fail("dl_arena_alloc: %zu bytes is more than the limit of 2^46", bytes);
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
        size = last->size > DL__ARENA_MAX_BYTES / 2 ? DL__ARENA_MAX_BYTES : last->size * 2;
        if (size < bytes) size = bytes;
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

DLDEF size_t dl_arena_device_bytes(const dl_arena *a) {
    size_t total = 0;
    const dl__block *b;
    for (b = a ? a->dfirst : NULL; b; b = b->next) total += b->size;
    return total;
}

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

#ifdef DL_CUDA
/* Device memory of the current arena: the same bump allocation over a chain of cudaMalloc'd
   blocks (256-byte aligned), kept across resets, so a steady-state step allocates nothing. */
DLDEF void *dl__device_tmp_alloc(size_t bytes) {
    dl_arena *a = dl_arena_current();
    dl__block *b;
    if (!a) return NULL;
    if (bytes > DL__ARENA_MAX_BYTES) return dl__fail("dl_arena_alloc: %zu device bytes is more than the limit of 2^46", bytes);
    bytes = (bytes + 255) & ~(size_t)255;
    if (bytes == 0) bytes = 256;
    for (b = a->dcur; b; b = b->next) {
        if (b->size - b->used >= bytes) break;
        if (b->next) b->next->used = 0;
    }
    if (!b) {
        dl__block *last = a->dcur ? a->dcur : a->dfirst;
        size_t size = (size_t)1 << 22;
        while (last && last->next) last = last->next;
        if (last) size = last->size > DL__ARENA_MAX_BYTES / 2 ? DL__ARENA_MAX_BYTES : last->size * 2;
        if (size < bytes) size = bytes;
        if (!(b = (dl__block *)DL_MALLOC(sizeof(dl__block)))) return dl__fail("dl_arena_alloc: out of memory");
        b->next = NULL;
        b->size = size;
        b->used = 0;
        if (!(b->mem = (unsigned char *)dl__cuda_malloc(size))) { DL_FREE(b); return NULL; }
        if (last) last->next = b;
        else a->dfirst = b;
    }
    a->dcur = b;
    b->used += bytes;
    return b->mem + b->used - bytes;
}
#endif

/* ---- Tensors ---- */

DLDEF size_t dl_dtype_size(dl_dtype dtype) {
    switch (dtype) {
    case DL_DTYPE_F32: return 4;
    case DL_DTYPE_I32: return 4;
    case DL_DTYPE_U8: return 1;
    }
    return 0;
}

DLDEF const char *dl_dtype_name(dl_dtype dtype) {
    switch (dtype) {
    case DL_DTYPE_F32: return "f32";
    case DL_DTYPE_I32: return "i32";
    case DL_DTYPE_U8: return "u8";
    }
    return "?";
}

#define DL__MAX_NUMEL ((size_t)1 << 40) /* no tensor has more elements (nor more in its nonzero axes) */

/* Validates a shape and fills t's shape, contiguous strides and numel. Returns 0 on error. */
static int dl__init_shape(dl_tensor *t, const char *op, dl_dtype dtype, int ndim, const int *shape) {
    int i;
    size_t n = 1, nz = 1; /* nz: product of the nonzero sizes, bounds the strides when numel is 0 */
    if (dl_dtype_size(dtype) == 0) { dl__fail("%s: unknown dtype %d", op, (int)dtype); return 0; }
    if (ndim < 0 || ndim > DL_MAX_DIMS) { dl__fail("%s: ndim %d out of range 0..%d", op, ndim, DL_MAX_DIMS); return 0; }
    if (ndim > 0 && !shape) { dl__fail("%s: shape is NULL", op); return 0; }
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0) { dl__fail("%s: negative dimension %d at axis %d", op, shape[i], i); return 0; }
        if (shape[i] && nz > DL__MAX_NUMEL / (size_t)shape[i]) {
            dl__fail("%s: shape has more than 2^40 elements (axis %d of size %d)", op, i, shape[i]);
            return 0;
        }
        if (shape[i]) nz *= (size_t)shape[i];
        n *= (size_t)shape[i];
    }
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->device = DL_DEVICE_CPU;
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
#ifdef DL_CUDA
    if (t->device != DL_DEVICE_CPU) {
        if (t->flags & DL__DEVICE_DATA) dl__cuda_free(t->data);
        dl__cuda_free(t->grad);
        DL_FREE(t);
        return;
    }
#endif
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

#ifdef DL_CUDA
DLDEF dl_tensor *dl__tmp_on(dl_device device, dl_dtype dtype, int ndim, const int *shape) {
    dl_tensor tmp, *t;
    if (device == DL_DEVICE_CPU) return dl_tmp_uninit(dtype, ndim, shape);
    if (!dl__init_shape(&tmp, "dl_tmp", dtype, ndim, shape)) return NULL;
    if (!(t = (dl_tensor *)dl__tmp_alloc(sizeof(dl_tensor)))) return NULL;
    *t = tmp;
    t->device = device;
    t->data = dl__device_tmp_alloc(tmp.numel * dl_dtype_size(dtype));
    return t->data ? t : NULL;
}
#endif

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
    dl_tensor *t = dl_tmp_uninit(DL_DTYPE_F32, ndim, shape);
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

DLDEF float *dl_f32(const dl_tensor *t) { return t && t->dtype == DL_DTYPE_F32 && !t->device ? (float *)t->data : NULL; }
DLDEF int32_t *dl_i32(const dl_tensor *t) { return t && t->dtype == DL_DTYPE_I32 && !t->device ? (int32_t *)t->data : NULL; }
DLDEF uint8_t *dl_u8(const dl_tensor *t) { return t && t->dtype == DL_DTYPE_U8 && !t->device ? (uint8_t *)t->data : NULL; }

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
    case DL_DTYPE_F32: return ((const float *)t->data)[off];
    case DL_DTYPE_I32: return (float)((const int32_t *)t->data)[off];
    case DL_DTYPE_U8: return (float)((const uint8_t *)t->data)[off];
    }
    return 0.0f;
}

static void dl__store(dl_tensor *t, ptrdiff_t off, float v) {
    switch (t->dtype) {
    case DL_DTYPE_F32: ((float *)t->data)[off] = v; break;
    /* Converting an out-of-range float to an integer is undefined in C: saturate first. */
    case DL_DTYPE_I32: ((int32_t *)t->data)[off] = v != v ? 0 : v >= 2147483520.0f ? INT32_MAX : v <= -2147483648.0f ? INT32_MIN : (int32_t)v; break;
    case DL_DTYPE_U8: ((uint8_t *)t->data)[off] = v != v ? 0 : v >= 255.0f ? 255 : v <= 0.0f ? 0 : (uint8_t)v; break;
    }
}

#ifdef DL_CUDA
/* One element of a device tensor, read (or written) through a host copy of its bytes. */
static float dl__device_load(const dl_tensor *t, ptrdiff_t off) {
    dl_tensor h = *t;
    unsigned char b[8];
    size_t esz = dl_dtype_size(t->dtype);
    if (dl__cuda_memcpy(b, (const char *)t->data + off * (ptrdiff_t)esz, esz, DL__D2H) != 0) return NAN;
    h.data = b;
    h.device = DL_DEVICE_CPU;
    return dl__load(&h, 0);
}
static void dl__device_store(dl_tensor *t, ptrdiff_t off, float v) {
    dl_tensor h = *t;
    unsigned char b[8];
    size_t esz = dl_dtype_size(t->dtype);
    h.data = b;
    h.device = DL_DEVICE_CPU;
    dl__store(&h, 0, v);
    dl__cuda_memcpy((char *)t->data + off * (ptrdiff_t)esz, b, esz, DL__H2D);
}
#define DL__LOAD(t, off) ((t)->device ? dl__device_load(t, off) : dl__load(t, off))
#define DL__STORE(t, off, v) ((t)->device ? dl__device_store(t, off, v) : dl__store(t, off, v))
#else
#define DL__LOAD(t, off) dl__load(t, off)
#define DL__STORE(t, off, v) dl__store(t, off, v)
#endif

DLDEF float dl_item(const dl_tensor *t) {
    if (!t || t->numel != 1) { dl__fail("dl_item: tensor must have exactly one element"); return NAN; }
    return DL__LOAD(t, 0);
}

DLDEF float dl_get(const dl_tensor *t, const int *index) {
    ptrdiff_t off = 0;
    int i;
    if (!t) return NAN;
    for (i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) { dl__fail("dl_get: index %d out of range at axis %d", index[i], i); return NAN; }
        off += index[i] * t->strides[i];
    }
    return DL__LOAD(t, off);
}

DLDEF void dl_set(dl_tensor *t, const int *index, float v) {
    ptrdiff_t off = 0;
    int i;
    if (!t) return;
    for (i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) { dl__fail("dl_set: index %d out of range at axis %d", index[i], i); return; }
        off += index[i] * t->strides[i];
    }
    DL__STORE(t, off, v);
}

DLDEF void dl_fill(dl_tensor *t, float value) {
    size_t i;
    if (!t) return;
#ifdef DL_CUDA
    if (t->device) { dl__cuda_fill(t, value); return; }
#endif
    if (dl_is_contiguous(t) && t->dtype == DL_DTYPE_F32) {
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

#ifdef DL_CUDA
static int dl__copy_device(dl_tensor *dst, const dl_tensor *src);
#endif

DLDEF int dl_copy(dl_tensor *dst, const dl_tensor *src) {
    size_t i;
    if (!dst || !src) { dl__fail("dl_copy: NULL tensor"); return -1; }
    if (!dl_same_shape(dst, src)) {
        char a[64], b[64];
        dl__fail("dl_copy: shapes %s and %s differ", dl_shape_str(dst, a, sizeof a), dl_shape_str(src, b, sizeof b));
        return -1;
    }
#ifdef DL_CUDA
    if (dst->device || src->device) return dl__copy_device(dst, src);
#endif
    if (dst->dtype == DL_DTYPE_F32 && src->dtype == DL_DTYPE_F32) {
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
    if (t->device) return dl_tensor_clone_to(t, t->device);
    c = dl_tensor_new(t->dtype, t->ndim, t->shape);
    if (c && dl_copy(c, t) != 0) { dl_tensor_free(c); return NULL; }
    return c;
}

DLDEF const float *dl_contig_f32(const dl_tensor *t) {
    float *p;
    ptrdiff_t strides[DL_MAX_DIMS];
    if (!t || t->dtype != DL_DTYPE_F32) return (const float *)dl__fail("dl_contig_f32: need an f32 tensor");
    if (dl_is_contiguous(t)) return (const float *)t->data;
#ifdef DL_CUDA
    if (t->device) { /* a device copy, for dl_cuda.cu's ops */
        dl_tensor *c = dl__tmp_on(t->device, DL_DTYPE_F32, t->ndim, t->shape);
        return c && dl_copy(c, t) == 0 ? (const float *)c->data : NULL;
    }
#endif
    p = (float *)dl__tmp_alloc(t->numel * sizeof(float));
    if (!p) return NULL;
    dl__contig_strides(t->ndim, t->shape, strides);
    dl__strided_copy_f32(p, strides, (const float *)t->data, t->strides, t->ndim, t->shape, 0);
    return p;
}

/* ---- Devices ---- */

DLDEF const char *dl_device_name(dl_device device) {
    return device == DL_DEVICE_CPU ? "cpu" : device == DL_DEVICE_CUDA ? "cuda" : "?";
}

#ifdef DL_CUDA
DLDEF int dl_cuda_init(void) { return dl__cuda_setup(); }
DLDEF int dl_device_synchronize(void) { return dl__cuda_sync(); }
#else
DLDEF int dl_cuda_init(void) {
    dl__fail("dl_cuda_init: this program was built without DL_CUDA (build dl_cuda.cu with nvcc and define DL_CUDA; README, \"GPU\")");
    return -1;
}
DLDEF int dl_device_synchronize(void) { return 0; }
#endif

DLDEF int dl_cuda_available(void) {
    if (dl_cuda_init() == 0) return 1;
    dl_clear_error();
    return 0;
}

/* 0 when device can hold tensors (the CPU always; the GPU after dl_cuda_init). */
static int dl__device_ready(const char *op, dl_device device) {
    if (device == DL_DEVICE_CPU) return 0;
    if (device != DL_DEVICE_CUDA) { dl__fail("%s: unknown device %d", op, (int)device); return -1; }
    if (dl_cuda_init() != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%.400s", dl_error());
        dl__fail("%s: %s", op, msg);
        return -1;
    }
    return 0;
}

#ifdef DL_CUDA
/* dl_copy when a side is on the GPU. Same device: a kernel. Across devices: the same dtype,
   through a contiguous staging copy where a side is strided. */
static int dl__copy_device(dl_tensor *dst, const dl_tensor *src) {
    size_t esz = dl_dtype_size(src->dtype), bytes = src->numel * esz;
    void *stage = NULL;
    int rc = -1;
    if (dst->device == src->device) {
        if (dst->dtype == src->dtype)
            return dl__cuda_strided_copy(dst->data, dst->strides, src->data, src->strides, dst->ndim, dst->shape, (int)esz, 0);
        return dl__cuda_copy_convert(dst, src);
    }
    if (dst->dtype != src->dtype) {
        dl__fail("dl_copy: %s to %s across devices (%s to %s): cast on one side first", dl_dtype_name(src->dtype),
                 dl_dtype_name(dst->dtype), dl_device_name(src->device), dl_device_name(dst->device));
        return -1;
    }
    if (src->numel == 0) return 0;
    if (dst->device == DL_DEVICE_CPU) { /* device -> host */
        if (dl_is_contiguous(dst)) return dl_tensor_read(src, dst->data);
        if (!(stage = DL_MALLOC(bytes))) { dl__fail("dl_copy: out of memory"); return -1; }
        if (dl_tensor_read(src, stage) == 0) {
            dl_tensor h = *src;
            h.device = DL_DEVICE_CPU;
            h.data = stage;
            dl__contig_strides(h.ndim, h.shape, h.strides);
            rc = dl_copy(dst, &h);
        }
        DL_FREE(stage);
        return rc;
    }
    /* host -> device */
    if (dl_is_contiguous(src) && dl_is_contiguous(dst)) return dl__cuda_memcpy(dst->data, src->data, bytes, DL__H2D);
    {
        dl_tensor *hc = dl_tensor_new(src->dtype, src->ndim, src->shape), *dc;
        if (!hc) return -1;
        if (dl_copy(hc, src) == 0 && (dc = dl__tmp_on(dst->device, src->dtype, src->ndim, src->shape)) != NULL &&
            dl__cuda_memcpy(dc->data, hc->data, bytes, DL__H2D) == 0)
            rc = dl__cuda_strided_copy(dst->data, dst->strides, dc->data, dc->strides, dst->ndim, dst->shape, (int)esz, 0);
        dl_tensor_free(hc);
        return rc;
    }
}
#endif

DLDEF int dl_tensor_read(const dl_tensor *t, void *dst) {
    dl_tensor h;
    if (!t || !dst) { dl__fail("dl_tensor_read: NULL argument"); return -1; }
    if (t->numel == 0) return 0;
#ifdef DL_CUDA
    if (t->device) {
        const dl_tensor *c = t;
        if (!dl_is_contiguous(t)) { /* made contiguous on the device first */
            dl_tensor *d = dl__tmp_on(t->device, t->dtype, t->ndim, t->shape);
            if (!d || dl_copy(d, t) != 0) return -1;
            c = d;
        }
        return dl__cuda_memcpy(dst, c->data, t->numel * dl_dtype_size(t->dtype), DL__D2H);
    }
#endif
    h = *t;
    h.data = dst;
    h.flags = 0;
    dl__contig_strides(h.ndim, h.shape, h.strides);
    return dl_copy(&h, t);
}

DLDEF dl_tensor *dl_tensor_clone_to(const dl_tensor *t, dl_device device) {
    dl_tensor *c;
    if (!t) return NULL;
    if (dl__device_ready("dl_tensor_clone_to", device) != 0) return NULL;
    if (!(c = dl_tensor_new(t->dtype, t->ndim, t->shape))) return NULL;
    if (device == DL_DEVICE_CPU) {
        if (dl_copy(c, t) != 0) { dl_tensor_free(c); return NULL; }
        return c;
    }
    if (dl_tensor_move(c, device) != 0 || dl_copy(c, t) != 0) { dl_tensor_free(c); return NULL; }
    return c;
}

DLDEF int dl_tensor_move(dl_tensor *t, dl_device device) {
    if (!t) { dl__fail("dl_tensor_move: NULL tensor"); return -1; }
    if (t->device == device) return 0;
    if (!(t->flags & DL__PERSISTENT) || !(t->flags & DL__OWNS_DATA)) {
        dl__fail("dl_tensor_move: only a tensor from dl_tensor_new / _from / _clone moves (not an arena tensor or a view)");
        return -1;
    }
    if (dl__device_ready("dl_tensor_move", device) != 0) return -1;
#ifdef DL_CUDA
    {
        size_t bytes = t->numel * dl_dtype_size(t->dtype), gbytes = t->numel * sizeof(float);
        /* the host copy of the data is the buffer after the struct, kept while on the GPU */
        void *host = (void *)(((uintptr_t)(t + 1) + DL__ALIGN - 1) & ~(uintptr_t)(DL__ALIGN - 1));
        if (device != DL_DEVICE_CPU) { /* CPU -> GPU */
            void *d = dl__cuda_malloc(bytes ? bytes : 1), *g = NULL;
            if (!d) return -1;
            if (dl__cuda_memcpy(d, t->data, bytes, DL__H2D) != 0 ||
                (t->grad && (!(g = dl__cuda_malloc(gbytes ? gbytes : 1)) || dl__cuda_memcpy(g, t->grad, gbytes, DL__H2D) != 0))) {
                dl__cuda_free(d);
                dl__cuda_free(g);
                return -1;
            }
            DL_FREE(t->grad);
            t->grad = (float *)g;
            t->data = d;
            t->device = device;
            t->flags |= DL__DEVICE_DATA;
        } else { /* GPU -> CPU */
            float *g = NULL;
            if (t->grad && !(g = (float *)DL_MALLOC(gbytes ? gbytes : 1))) { dl__fail("dl_tensor_move: out of memory"); return -1; }
            if (dl__cuda_memcpy(host, t->data, bytes, DL__D2H) != 0 || (g && dl__cuda_memcpy(g, t->grad, gbytes, DL__D2H) != 0)) {
                DL_FREE(g);
                return -1;
            }
            dl__cuda_free(t->data);
            dl__cuda_free(t->grad);
            t->grad = g;
            t->data = host;
            t->device = DL_DEVICE_CPU;
            t->flags &= ~DL__DEVICE_DATA;
        }
    }
    return 0;
#else
    return -1; /* dl__device_ready refused */
#endif
}

/* dl_to_device's backward: x's gradient += out's, carried back to x's device. */
static void dl__to_device_backward(dl_node *n) {
    dl_tensor *x = n->in[0], *out = n->out, g;
    float *gx = dl_grad_buf(x);
    if (!gx) return;
    g = *out; /* out's gradient as a tensor on out's device */
    g.data = out->grad;
    g.dtype = DL_DTYPE_F32;
    g.grad = NULL;
    g.node = NULL;
    g.flags = 0;
#ifdef DL_CUDA
    if (x->device) { /* host -> device: stage the gradient on the device, then add */
        dl_tensor *d = dl__tmp_on(x->device, DL_DTYPE_F32, x->ndim, x->shape);
        ptrdiff_t st[DL_MAX_DIMS];
        if (!d || dl_copy(d, &g) != 0) return;
        dl__contig_strides(x->ndim, x->shape, st);
        dl__cuda_strided_copy(gx, st, d->data, st, x->ndim, x->shape, 4, 1);
        return;
    }
#endif
    {
        float *h = (float *)dl__tmp_alloc(x->numel * sizeof(float));
        size_t i;
        if (!h || dl_tensor_read(&g, h) != 0) return;
        for (i = 0; i < x->numel; i++) gx[i] += h[i];
    }
}

DLDEF dl_tensor *dl_to_device(dl_tensor *x, dl_device device) {
    dl_tensor *out;
    if (!x) return NULL;
    if (x->device == device) return x;
    if (dl__device_ready("dl_to_device", device) != 0) return NULL;
#ifdef DL_CUDA
    out = dl__tmp_on(device, x->dtype, x->ndim, x->shape);
#else
    out = dl_tmp_uninit(x->dtype, x->ndim, x->shape);
#endif
    if (!out || dl_copy(out, x) != 0) return NULL;
    if (x->dtype == DL_DTYPE_F32) dl_record("to_device", out, 1, &x, dl__to_device_backward, 0);
    return out;
}

/* ---- Autograd ---- */

static DL__TLS int dl__no_grad_mode;
static DL__TLS int dl__check_mode;      /* dl_check_numerics */

DLDEF int dl_no_grad(int on) {
    int prev = dl__no_grad_mode;
    dl__no_grad_mode = on;
    return prev;
}

DLDEF int dl_grad_enabled(void) { return !dl__no_grad_mode; }

DLDEF int dl_check_numerics(int on) {
    int prev = dl__check_mode;
    dl__check_mode = on != 0;
    return prev;
}

DLDEF void dl_set_requires_grad(dl_tensor *t, int on) {
    if (!t) return;
    if (on && t->dtype != DL_DTYPE_F32) { dl__fail("dl_set_requires_grad: only f32 tensors can require a gradient"); return; }
    t->requires_grad = on;
}

/* dl_record without dl_check_numerics: for views, which compute no value. */
static dl_node *dl__record(const char *op, dl_tensor *out, int n_in, dl_tensor *const *in,
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

/* 1 if v is a NaN or an infinity. Tests the exponent bits, which -ffast-math cannot fold away. */
static int dl__nonfinite(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* "nan", "inf" or "-inf" (printf's %g may write "-nan"). */
static const char *dl__nonfinite_name(float v) { return v != v ? "nan" : v > 0 ? "inf" : "-inf"; }

/* Index of the first NaN or infinity in p[0..n), or n. Blocks keep the all-finite case a
   branch-free loop (which clang and gcc -O3 vectorize). */
static size_t dl__find_nonfinite(const float *p, size_t n) {
    size_t i, j, end;
    for (i = 0; i < n; i = end) {
        int bad = 0;
        end = n - i > 1024 ? i + 1024 : n;
        for (j = i; j < end; j++) bad |= dl__nonfinite(p[j]);
        if (bad)
            for (j = i; j < end; j++)
                if (dl__nonfinite(p[j])) return j;
    }
    return n;
}

/* The same for t through its strides, as a row-major flat index; t->numel if all are finite
   (tensors that are not f32 always are). */
static size_t dl__find_nonfinite_tensor(const dl_tensor *t) {
    size_t i;
    if (t->dtype != DL_DTYPE_F32) return t->numel;
#ifdef DL_CUDA
    if (t->device) { /* scanned on a host copy: a debugging mode, not a fast one */
        float *h = (float *)DL_MALLOC(t->numel * sizeof(float) + 1);
        i = h && dl_tensor_read(t, h) == 0 ? dl__find_nonfinite(h, t->numel) : t->numel;
        DL_FREE(h);
        return i;
    }
#endif
    if (dl_is_contiguous(t)) return dl__find_nonfinite((const float *)t->data, t->numel);
    for (i = 0; i < t->numel; i++)
        if (dl__nonfinite(((const float *)t->data)[dl__offset_of(t, i)])) return i;
    return t->numel;
}

/* "[2, 3], [3]": the shapes of an op's inputs, for messages. */
static char *dl__shapes_str(int n_in, dl_tensor *const *in, char *buf, size_t size) {
    char s[128];
    size_t used = 0;
    int i;
    snprintf(buf, size, "none");
    for (i = 0; i < n_in && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %s" : "%s", dl_shape_str(in[i], s, sizeof s));
    return buf;
}

/* dl_check_numerics in the forward pass: returns 0, with the error set and out marked
   DL__NONFINITE, when out holds a NaN or an infinity. An input already marked (only an op of
   your own returns such a tensor: built-in ops return NULL instead) fails out too, keeping
   the first message. */
static int dl__check_forward(const char *op, dl_tensor *out, int n_in, dl_tensor *const *in) {
    char shapes[256], os[128], also[64] = "";
    size_t at;
    int i;
    for (i = 0; i < n_in; i++)
        if (in[i] && (in[i]->flags & DL__NONFINITE)) break;
    if (i == n_in) {
        at = dl__find_nonfinite_tensor(out);
        if (at == out->numel) return 1;
        for (i = 0; i < n_in; i++)
            if (in[i] && dl__find_nonfinite_tensor(in[i]) < in[i]->numel) {
                snprintf(also, sizeof also, "; input %d already was not finite", i);
                break;
            }
        dl__fail("%s: output %s is not finite (%s at element %zu); inputs %s%s (dl_check_numerics)", op ? op : "(op)",
                 dl_shape_str(out, os, sizeof os), dl__nonfinite_name(DL__LOAD(out, dl__offset_of(out, at))), at,
                 dl__shapes_str(n_in, in, shapes, sizeof shapes), also);
    }
    if (!(out->flags & DL__PERSISTENT)) out->flags |= DL__NONFINITE;
    return 0;
}

/* dl_check_numerics in dl_backward: -1 with the error set when n's backward left a NaN or an
   infinity in the gradient of one of its inputs. */
static int dl__check_backward(const dl_node *n) {
    char shapes[256], os[128];
    size_t at;
    int i;
    for (i = 0; i < n->n_in; i++) {
        const dl_tensor *t = n->in[i];
        float bad;
        if (!t || !t->requires_grad || !t->grad) continue;
#ifdef DL_CUDA
        if (t->device) {
            dl_tensor g = *t;
            g.data = t->grad;
            dl__contig_strides(g.ndim, g.shape, g.strides);
            g.dtype = DL_DTYPE_F32;
            at = dl__find_nonfinite_tensor(&g);
            if (at == t->numel) continue;
            bad = dl__device_load(&g, (ptrdiff_t)at);
        } else
#endif
        {
            at = dl__find_nonfinite(t->grad, t->numel);
            if (at == t->numel) continue;
            bad = t->grad[at];
        }
        dl__fail("dl_backward: backward of %s gave input %d a non-finite gradient (%s at element %zu); "
                 "inputs %s, output %s (dl_check_numerics)", n->op ? n->op : "(op)", i, dl__nonfinite_name(bad),
                 at, dl__shapes_str(n->n_in, n->in, shapes, sizeof shapes), dl_shape_str(n->out, os, sizeof os));
        return -1;
    }
    return 0;
}

DLDEF dl_node *dl_record(const char *op, dl_tensor *out, int n_in, dl_tensor *const *in,
                         dl_backward_fn backward, size_t ctx_bytes) {
    if (dl__check_mode && out && !dl__check_forward(op, out, n_in, in)) return NULL; /* off: one test */
    return dl__record(op, out, n_in, in, backward, ctx_bytes);
}

/* What a built-in op returns: out, or NULL when dl_record failed it (dl_check_numerics). */
static dl_tensor *dl__checked(dl_tensor *out) {
    return dl__check_mode && out && (out->flags & DL__NONFINITE) ? NULL : out;
}

DLDEF float *dl_grad_buf(dl_tensor *t) {
    size_t bytes;
    if (!t || !t->requires_grad) return NULL;
    if (t->grad) return t->grad;
    bytes = t->numel * sizeof(float);
#ifdef DL_CUDA
    if (t->device) {
        t->grad = (float *)((t->flags & DL__PERSISTENT) ? dl__cuda_malloc(bytes ? bytes : 1) : dl__device_tmp_alloc(bytes));
        if (t->grad && dl__cuda_memset0(t->grad, bytes) != 0) t->grad = NULL; /* a failed memset leaks nothing: arena */
        return t->grad;
    }
#endif
    if (t->flags & DL__PERSISTENT) t->grad = (float *)DL_MALLOC(bytes ? bytes : 1);
    else t->grad = (float *)dl__tmp_alloc(bytes);
    if (t->grad) memset(t->grad, 0, bytes);
    else dl__fail("dl_grad_buf: out of memory");
    return t->grad;
}

DLDEF void dl_zero_grad(dl_tensor *t) {
#ifdef DL_CUDA
    if (t && t->grad && t->device) { dl__cuda_memset0(t->grad, t->numel * sizeof(float)); return; }
#endif
    if (t && t->grad) memset(t->grad, 0, t->numel * sizeof(float));
}

DLDEF int dl_backward_grad(dl_tensor *out, const float *grad_out) {
    dl_node *n;
    float *g;
    size_t i;
    if (!out || !grad_out) { dl__fail("dl_backward: NULL argument"); return -1; }
    if (!out->requires_grad) { dl__fail("dl_backward: tensor does not require a gradient"); return -1; }
    if (dl__check_mode && dl__find_nonfinite(grad_out, out->numel) < out->numel) {
        dl__fail("dl_backward: the seed gradient is not finite (dl_check_numerics)");
        return -1;
    }
    /* Intermediate gradients start from zero on every pass (leaves keep accumulating). */
    for (n = out->node; n; n = n->prev) n->out->grad = NULL;
    g = dl_grad_buf(out);
    if (!g) return -1;
#ifdef DL_CUDA
    if (out->device) { /* the buffer is fresh (zero): the seed is a copy, from the host */
        if (dl__cuda_memcpy(g, grad_out, out->numel * sizeof(float), DL__H2D) != 0) return -1;
    } else
#endif
    for (i = 0; i < out->numel; i++) g[i] += grad_out[i];
    /* The tape is in creation order, which is a topological order: walking it backwards
       visits every node after all the nodes that consume its output. */
    for (n = out->node; n; n = n->prev)
        if (n->out->grad) {
            n->backward(n);
            if (dl__check_mode && dl__check_backward(n) != 0) return -1;
        }
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
    v->flags = x->flags & DL__NONFINITE; /* a view of a tensor dl_check_numerics failed fails the next op too */
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

/* The views' backward: dst += src through strides, on x's device. */
#ifdef DL_CUDA
#define DL__STRIDED_ADD(x, dst, dst_strides, src, src_strides, ndim, shape)                                      \
    ((x)->device ? (void)dl__cuda_strided_copy(dst, dst_strides, src, src_strides, ndim, shape, 4, 1)            \
                 : dl__strided_copy_f32(dst, dst_strides, src, src_strides, ndim, shape, 1))
#else
#define DL__STRIDED_ADD(x, dst, dst_strides, src, src_strides, ndim, shape) \
    dl__strided_copy_f32(dst, dst_strides, src, src_strides, ndim, shape, 1)
#endif

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
    DL__STRIDED_ADD(x, gx, dst, out->grad, src, out->ndim, out->shape);
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
    DL__STRIDED_ADD(x, gx, dst, out->grad, src, out->ndim, out->shape);
}

static void dl__copy_backward(dl_node *n) {
    float *gx = dl_grad_buf(n->in[0]);
    size_t i;
#ifdef DL_CUDA
    if (gx && n->in[0]->device) {
        ptrdiff_t st[DL_MAX_DIMS];
        dl__contig_strides(n->out->ndim, n->out->shape, st);
        dl__cuda_strided_copy(gx, st, n->out->grad, st, n->out->ndim, n->out->shape, 4, 1);
        return;
    }
#endif
    if (gx) for (i = 0; i < n->out->numel; i++) gx[i] += n->out->grad[i];
}

DLDEF dl_tensor *dl_contiguous(dl_tensor *x) {
    dl_tensor *out;
    if (!x) return NULL;
    if (dl_is_contiguous(x)) return x;
#ifdef DL_CUDA
    out = dl__tmp_on(x->device, x->dtype, x->ndim, x->shape);
#else
    out = dl_tmp_uninit(x->dtype, x->ndim, x->shape);
#endif
    if (!out || dl_copy(out, x) != 0) return NULL;
    out->flags |= x->flags & DL__NONFINITE; /* as views do */
    dl__record("contiguous", out, 1, &x, dl__copy_backward, 0);
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
        } else if (shape[i] && n > DL__MAX_NUMEL / (size_t)shape[i]) {
            return (dl_tensor *)dl__fail("dl_reshape: shape has more than 2^40 elements (axis %d of size %d)", i, shape[i]);
        } else {
            n *= (size_t)shape[i];
        }
    }
    if (infer >= 0) {
        if (n == 0 || x->numel % n) return (dl_tensor *)dl__fail("dl_reshape: cannot infer -1 for %zu elements", x->numel);
        if (x->numel / n > INT_MAX) return (dl_tensor *)dl__fail("dl_reshape: inferred size %zu is over INT_MAX", x->numel / n);
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
    dl__record("reshape", v, 1, &x, dl__copy_backward, 0);
    return v;
}

DLDEF dl_tensor *dl_flatten(dl_tensor *x, int start_dim, int end_dim) {
    int sh[DL_MAX_DIMS], i, k = 0;
    long long prod = 1;
    if (!x) return NULL;
    if (x->ndim == 0) { int one = 1; return dl_reshape(x, 1, &one); }
    if (start_dim < 0) start_dim += x->ndim;
    if (end_dim < 0) end_dim += x->ndim;
    if (start_dim < 0 || end_dim >= x->ndim || start_dim > end_dim)
        return (dl_tensor *)dl__fail("dl_flatten: bad dims for a %d-d tensor", x->ndim);
    for (i = 0; i < start_dim; i++) sh[k++] = x->shape[i];
    for (i = start_dim; i <= end_dim; i++) prod *= x->shape[i]; /* <= numel <= 2^40: no overflow */
    if (prod > INT_MAX) return (dl_tensor *)dl__fail("dl_flatten: flattened size %lld is over INT_MAX", prod);
    sh[k++] = (int)prod;
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
    n = dl__record("permute", v, 1, &x, dl__permute_backward, sizeof(dl__view_ctx));
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
    len = stop > start ? (stop - start - 1) / step + 1 : 0; /* ceil((stop - start) / step), without overflow */
    v = dl__view_of(x);
    if (!v) return NULL;
    v->data = (char *)x->data + (ptrdiff_t)start * x->strides[dim] * (ptrdiff_t)dl_dtype_size(x->dtype);
    v->shape[dim] = len;
    v->strides[dim] = len > 1 ? x->strides[dim] * step : x->strides[dim]; /* a stride a huge step never walks */
    v->numel = len ? x->numel / (size_t)n * (size_t)len : 0;
    node = dl__record("slice", v, 1, &x, dl__slice_backward, sizeof(dl__view_ctx));
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
    if (!f || n_in <= 0 || !inputs) { dl__fail("dl_gradcheck: bad arguments"); return -1; }
    for (i = 0; i < n_in; i++) if (!inputs[i]) { dl__fail("dl_gradcheck: input %d is NULL", i); return -1; }
    if (eps <= 0) eps = 1e-3f;
    if (tol <= 0) tol = 1e-2f;
    arena = dl_arena_new((size_t)1 << 20);
    if (!arena) return -1;
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
    if (y->dtype != DL_DTYPE_F32 || !y->requires_grad) { ok = 0; dl__fail("dl_gradcheck: output is not an f32 tensor that requires a gradient"); goto done; }
    w = (float *)dl_arena_alloc(arena, y->numel * sizeof(float) + 4);
    analytic = (float **)dl_arena_alloc(arena, sizeof(float *) * (size_t)n_in);
    dl_rng_seed(&rng, 1234);
    for (j = 0; j < y->numel; j++) w[j] = dl_rng_uniform(&rng) * 2.0f - 1.0f;
    if (dl_backward_grad(y, w) != 0) { ok = 0; goto done; }
    /* Keep analytic gradients: later evaluations reuse the arena but not these copies. */
    for (i = 0; i < n_in; i++) {
        analytic[i] = NULL;
        if (inputs[i]->dtype != DL_DTYPE_F32 || !inputs[i]->requires_grad) continue;
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
    return ok ? 0 : -1;
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

DLDEF void dl_rng_permutation(dl_rng *r, int n, int *out) {
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
    if (t->dtype != DL_DTYPE_F32) { dl__fail("dl_fill: random fills need an f32 tensor"); return; }
#ifdef DL_CUDA
    if (t->device) { /* the CPU's values, drawn into a host copy in the same order, then copied over */
        dl_tensor *h = dl_tensor_new(DL_DTYPE_F32, t->ndim, t->shape);
        if (!h) return;
        dl__fill_each(h, r, kind, a, b);
        dl_copy(t, h);
        dl_tensor_free(h);
        return;
    }
#endif
    for (i = 0; i < t->numel; i++) {
        float v;
        if (kind == 0) v = a + (b - a) * dl_rng_uniform(r);
        else if (kind == 1) v = a + b * dl_rng_normal(r);
        else if (kind == 2) { float z; do z = dl_rng_normal(r); while (z < -2.0f || z > 2.0f); v = a + b * z; }
        else v = dl_rng_uniform(r) < a ? 1.0f : 0.0f;
        ((float *)t->data)[dl__offset_of(t, i)] = v;
    }
}

DLDEF void dl_fill_uniform(dl_tensor *t, float lo, float hi, dl_rng *r) { dl__fill_each(t, r, 0, lo, hi); }
DLDEF void dl_fill_normal(dl_tensor *t, float mean, float std, dl_rng *r) { dl__fill_each(t, r, 1, mean, std); }
DLDEF void dl_fill_truncated_normal(dl_tensor *t, float mean, float std, dl_rng *r) { dl__fill_each(t, r, 2, mean, std); }
DLDEF void dl_fill_bernoulli(dl_tensor *t, float p, dl_rng *r) { dl__fill_each(t, r, 3, p, 0); }

/* Keras' variance-scaling initializers divide the truncated normal's std by 0.8796..., the std
   of a unit normal truncated to [-2, 2], so the result has exactly the target variance. */
#define DL__TRUNC_STD 0.87962566103423978f

DLDEF void dl_init_glorot_uniform(dl_tensor *t, int fan_in, int fan_out, dl_rng *r) {
    float limit = sqrtf(6.0f / (float)(fan_in + fan_out));
    dl_fill_uniform(t, -limit, limit, r);
}
DLDEF void dl_init_glorot_normal(dl_tensor *t, int fan_in, int fan_out, dl_rng *r) {
    dl_fill_truncated_normal(t, 0.0f, sqrtf(2.0f / (float)(fan_in + fan_out)) / DL__TRUNC_STD, r);
}
DLDEF void dl_init_he_uniform(dl_tensor *t, int fan_in, dl_rng *r) {
    float limit = sqrtf(6.0f / (float)fan_in);
    dl_fill_uniform(t, -limit, limit, r);
}
DLDEF void dl_init_he_normal(dl_tensor *t, int fan_in, dl_rng *r) {
    dl_fill_truncated_normal(t, 0.0f, sqrtf(2.0f / (float)fan_in) / DL__TRUNC_STD, r);
}
/* ==== GEMM: the one matrix multiply of the library (tests: tests/test_gemm.c) ====================

   C = alpha * op(A) @ op(B) + beta * C        row-major, op(X) = X or X^T

   Dense, conv (through im2col), RNN and attention layers all end up here, so this is where the
   time goes. The scheme is the one of GotoBLAS and BLIS:

     K. Goto and R. van de Geijn, "Anatomy of high-performance matrix multiplication",
       ACM Transactions on Mathematical Software 34(3), 2008.
     F. Van Zee and R. van de Geijn, "BLIS: a framework for rapidly instantiating BLAS
       functionality", ACM Transactions on Mathematical Software 41(3), 2015.

   Five loops around a micro-kernel; each loop keeps one block in one level of the cache:

     for jc in 0..n step NC                        columns of C and B
       for pc in 0..k step KC                      the shared dimension
         pack op(B)[pc:+KC, jc:+NC] -> Bp          KC x NC, kept in L3
         for ic in 0..m step MC                    rows of C and A
           pack op(A)[ic:+MC, pc:+KC] -> Ap        MC x KC, kept in L2
           for jr in 0..NC step NR                 one KC x NR micro-panel of Bp, kept in L1
             for ir in 0..MC step MR               one MR x KC micro-panel of Ap, streamed from L2
               C[ic+ir:+MR, jc+jr:+NR] = micro-kernel(Ap micro-panel, Bp micro-panel)

   Packing copies a block into the exact order the micro-kernel reads it, so the kernel walks
   memory strictly forward with unit stride whatever the transposes and leading dimensions were:

     Ap micro-panel: for p in 0..KC: the MR values op(A)[ir+0..MR-1, p]     (MR floats per step)
     Bp micro-panel: for p in 0..KC: the NR values op(B)[p, jr+0..NR-1]     (NR floats per step)

   The micro-kernel keeps the MR x NR block of C in vector registers and, for each p, loads one
   row of NR B values, broadcasts each of the MR A values and does MR * NR / width fused
   multiply-adds. Then it writes alpha * acc + beta * C once (beta is the caller's for the first
   KC block and 1 for the next ones, which add to what is already there).

     kernel    MR x NR   registers                             KC    MC    NC
     avx512    14 x 32   28 zmm accumulators + 2 for B          512   224   4096
     avx2       6 x 16   12 ymm accumulators + 2 for B          256   144   4096
     generic    4 x 16   plain C the compiler may vectorize     256   128   4096

   Edges. The last block of rows (fewer than MR) gets a kernel compiled for exactly that many
   rows, so no work is wasted there; the last block of columns is zero-padded to NR when B is
   packed and only its valid columns of C are written (AVX-512 masked stores).

   Small shapes. Packing costs about as much as one pass over the data, so when a matrix is used
   only a few times it is read in place instead:
     - op(A) and op(B) are packed only when big (> 2 MB) and, for A, when n > 2 NR; otherwise
       the kernel reads A through two strides and B through its row stride (measured faster
       while the blocks fit the L2 cache; big ones with power-of-two strides thrash it).
     - m <= 3 (a batch of one in RL, a GEMV) skips the blocking entirely: each row of C is
       x^T @ op(B), as 8 vector accumulators sweeping rows of B, or as dot products when op(B)
       is transposed.
     - n < NR / 2 (a small output layer) with op(A) = A: each element of C is a dot product,
       computed 4 x 4 at a time. Dot products of one row against many reduce 16 at once (one
       accumulator each, a transposing reduction, one vector store), not one by one.
     - n <= 16 with op(A) = A^T (a weight gradient X^T dY with few outputs, AVX-512): C^T =
       op(B)^T A with the roles swapped, rows of A are vectors of C columns; the accumulators
       are transposed in registers at the end (dl__avx512_tn_body).
     - op(B) = B^T is packed 16 x 16 blocks at a time, transposed in registers.
     - Read in place, the rows of a block are shared out evenly among micro-kernel calls.
     - n == 1 with ldc == 1 is turned into the m == 1 case by computing C^T = op(B)^T op(A)^T.

   Threads. C is cut into one tile per thread, by whole NR column panels (or MR row panels when
   C is taller than wide); each thread runs the loops above on its tile with its own packing
   buffers. K is never split, and which path and kernel computes an element depends only on the
   shape, so every element of C sees the same operations in the same order whatever the thread
   count: results are bit-identical for 1, 2, ... threads. Threads are used only when the work
   pays for waking them (see DL__GEMM_PARALLEL_MIN_FLOPS).

   Run-time dispatch. The SIMD kernels are compiled with __attribute__((target(...))), so this
   file builds with a plain `cc -O2` and picks AVX-512, AVX2+FMA or the C kernel on the machine
   it runs on (__builtin_cpu_supports). DL_GEMM_KERNEL=generic|avx2|avx512 forces one. */

#if !defined(DL_NO_THREADS) && !defined(_WIN32)
#define DL__THREADS 1
#include <pthread.h>
#include <unistd.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(DL_NO_SIMD)
#define DL__X86_SIMD 1
#include <immintrin.h>
#define DL__TARGET_AVX512 __attribute__((target("avx512f")))
#define DL__TARGET_AVX2 __attribute__((target("avx2,fma")))
#define DL__ALWAYS_INLINE inline __attribute__((always_inline))
#endif

/* restrict lets compilers vectorize loops whose output cannot overlap their inputs. */
#ifndef DL__RESTRICT
#if defined(__cplusplus)
#define DL__RESTRICT __restrict
#else
#define DL__RESTRICT restrict
#endif
#endif

/* Threads are woken only for at least this many multiply-adds (m * n * k) in total. */
#ifndef DL__GEMM_PARALLEL_MIN_FLOPS
#define DL__GEMM_PARALLEL_MIN_FLOPS (96.0 * 96.0 * 96.0)
#endif
#define DL__GEMM_PACK_MIN_FLOATS (512.0 * 1024.0)   /* 2 MB of op(A) */
#define DL__GEMM_MAX_MR 14    /* the largest MR of all kernels */
#define DL__GEMM_SMALL_M 3    /* m up to this skips packing (row-at-a-time path); so does */
                              /* n < NR / 2 (dot products) */

/* How the micro-kernel combines its result with C. */
enum { DL__BETA_ZERO, DL__BETA_ONE, DL__BETA_ANY };

static int dl__beta_mode(float beta) {
    return beta == 0.0f ? DL__BETA_ZERO : beta == 1.0f ? DL__BETA_ONE : DL__BETA_ANY;
}

/* One micro-kernel call: C[0:rows, 0:cols] = alpha * (A @ B) + beta * C, with
     A[i][p] = a[i * rs_a + p * cs_a]   for i < rows, p < k    (rows <= MR)
     B[p][j] = b[p * rs_b + j]          for j < NR             (all NR readable: a packed,
                                                                 zero-padded micro-panel, or B)
   Only the first cols (<= NR) columns of C are written. */
typedef void (*dl__microkernel_fn)(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                                   ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                                   ptrdiff_t ldc, float alpha, float beta);

/* y[j] = alpha * sum_p x[p * incx] * b[p * ldb + j] + beta * y[j], for j < n (B read in place). */
typedef void (*dl__gemv_fn)(int n, int k, const float *x, ptrdiff_t incx, const float *b,
                            ptrdiff_t ldb, float *y, float alpha, float beta);

/* y[j] = alpha * dot(x[0:k], b[j * ldb + 0:k]) + beta * y[j], for j < n. */
typedef void (*dl__dots_fn)(int n, int k, const float *x, const float *b, ptrdiff_t ldb,
                            float *y, float alpha, float beta);

/* Y[i][j] = alpha * dot(x[i * ldx + 0:k], b[j * ldb + 0:k]) + beta * Y[i][j], i < m, j < n. */
typedef void (*dl__dots_block_fn)(int m, int n, int k, const float *x, ptrdiff_t ldx,
                                  const float *b, ptrdiff_t ldb, float *y, ptrdiff_t ldy,
                                  float alpha, float beta);

/* C[i][j] = alpha * sum_p A[p * lda + i] * B[p * rs_b + j * cs_b] + beta * C[i][j], for i < m,
   j < n <= DL__GEMM_TN_MAX_N: op(A) transposed, few columns. */
#define DL__GEMM_TN_MAX_N 16
typedef void (*dl__tn_small_fn)(int m, int n, int k, const float *a, ptrdiff_t lda,
                                const float *b, ptrdiff_t rs_b, ptrdiff_t cs_b, float *c,
                                ptrdiff_t ldc, float alpha, float beta);

typedef struct dl__gemm_kernels {
    const char *name;
    int mr, nr, kc, mc, nc;
    dl__microkernel_fn packed[DL__GEMM_MAX_MR + 1];   /* [rows]; A packed: rs_a 1, cs_a MR */
    dl__microkernel_fn strided[DL__GEMM_MAX_MR + 1];  /* [rows]; A read in place, any strides */
    dl__gemv_fn gemv;
    dl__dots_fn dots;               /* one row of X */
    dl__dots_block_fn dots_block;   /* many rows of X */
    /* Packs a full MR-row micro-panel of row-major A (rows contiguous along k) into
       dst[p * MR + i]; may write up to 16 floats past the panel. NULL: plain C loops. */
    void (*pack_a_panel)(const float *a, ptrdiff_t lda, int kc, float *dst);
    /* Packs a full NR-column micro-panel of op(B) = B^T (rows of B contiguous along k) into
       dst[p * NR + j]. NULL: plain C loops. */
    void (*pack_bt_panel)(const float *b, ptrdiff_t ldb, int kc, float *dst);
    dl__tn_small_fn tn_small;   /* op(A) = A^T, n <= DL__GEMM_TN_MAX_N; NULL: not this way */
} dl__gemm_kernels;

/* ---- Generic C kernels (every platform) ---- */

#define DL__GENERIC_MR 4
#define DL__GENERIC_NR 16

static void dl__store_scalar(float *c, float acc, float alpha, float beta, int mode) {
    if (mode == DL__BETA_ZERO) *c = alpha * acc;
    else if (mode == DL__BETA_ONE) *c = alpha * acc + *c;
    else *c = alpha * acc + beta * *c;
}

static void dl__generic_microkernel(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                                    ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                                    ptrdiff_t ldc, float alpha, float beta) {
    float acc[DL__GENERIC_MR][DL__GENERIC_NR];
    int i, j, p, mode = dl__beta_mode(beta);
    memset(acc, 0, sizeof acc);
    for (p = 0; p < k; p++) {
        const float *bp = b + p * rs_b;
        for (i = 0; i < rows; i++) {
            float ai = a[i * rs_a + p * cs_a];
            for (j = 0; j < DL__GENERIC_NR; j++) acc[i][j] += ai * bp[j];
        }
    }
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++) dl__store_scalar(c + i * ldc + j, acc[i][j], alpha, beta, mode);
}

static void dl__generic_gemv(int n, int k, const float *x, ptrdiff_t incx, const float *b,
                             ptrdiff_t ldb, float *y, float alpha, float beta) {
    float acc[64];
    int j0, j, p, w, mode = dl__beta_mode(beta);
    for (j0 = 0; j0 < n; j0 += 64) {
        w = n - j0 < 64 ? n - j0 : 64;
        memset(acc, 0, sizeof acc);
        for (p = 0; p < k; p++) {
            float xp = x[p * incx];
            const float *bp = b + p * ldb + j0;
            for (j = 0; j < w; j++) acc[j] += xp * bp[j];
        }
        for (j = 0; j < w; j++) dl__store_scalar(y + j0 + j, acc[j], alpha, beta, mode);
    }
}

static void dl__generic_dots(int n, int k, const float *x, const float *b, ptrdiff_t ldb,
                             float *y, float alpha, float beta) {
    int j, p, mode = dl__beta_mode(beta);
    for (j = 0; j < n; j++) {
        const float *bj = b + j * ldb;
        float acc[4] = {0, 0, 0, 0};
        for (p = 0; p + 4 <= k; p += 4) {
            acc[0] += x[p] * bj[p];
            acc[1] += x[p + 1] * bj[p + 1];
            acc[2] += x[p + 2] * bj[p + 2];
            acc[3] += x[p + 3] * bj[p + 3];
        }
        for (; p < k; p++) acc[0] += x[p] * bj[p];
        dl__store_scalar(y + j, (acc[0] + acc[1]) + (acc[2] + acc[3]), alpha, beta, mode);
    }
}

static void dl__generic_dots_block(int m, int n, int k, const float *x, ptrdiff_t ldx,
                                   const float *b, ptrdiff_t ldb, float *y, ptrdiff_t ldy,
                                   float alpha, float beta) {
    int i;
    for (i = 0; i < m; i++) dl__generic_dots(n, k, x + i * ldx, b, ldb, y + i * ldy, alpha, beta);
}

static const dl__gemm_kernels dl__gemm_generic = {
    "generic", DL__GENERIC_MR, DL__GENERIC_NR, 256, 128, 4096,
    {0, dl__generic_microkernel, dl__generic_microkernel, dl__generic_microkernel,
     dl__generic_microkernel},
    {0, dl__generic_microkernel, dl__generic_microkernel, dl__generic_microkernel,
     dl__generic_microkernel},
    dl__generic_gemv, dl__generic_dots, dl__generic_dots_block, NULL, NULL, NULL};

#ifdef DL__X86_SIMD
/* ---- AVX-512 kernels: MR x NR = 14 x 32 ----

   The body is written once for any number of rows; each wrapper below inlines it with a constant
   row count (and, for packed A, constant strides), and the compiler drops the unused rows. */

DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_store_row(float *c, __m512 acc0, __m512 acc1, int cols, __m512 alpha, __m512 beta,
                     int mode) {
    if (cols == 32) {
        if (mode == DL__BETA_ZERO) {
            _mm512_storeu_ps(c, _mm512_mul_ps(alpha, acc0));
            _mm512_storeu_ps(c + 16, _mm512_mul_ps(alpha, acc1));
        } else if (mode == DL__BETA_ONE) {
            _mm512_storeu_ps(c, _mm512_fmadd_ps(alpha, acc0, _mm512_loadu_ps(c)));
            _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(alpha, acc1, _mm512_loadu_ps(c + 16)));
        } else {
            _mm512_storeu_ps(c, _mm512_fmadd_ps(alpha, acc0, _mm512_mul_ps(beta, _mm512_loadu_ps(c))));
            _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(alpha, acc1,
                                                     _mm512_mul_ps(beta, _mm512_loadu_ps(c + 16))));
        }
    } else {
        __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
        __mmask16 m1 = (__mmask16)(cols <= 16 ? 0 : (1u << (cols - 16)) - 1);
        if (mode == DL__BETA_ZERO) {
            _mm512_mask_storeu_ps(c, m0, _mm512_mul_ps(alpha, acc0));
            _mm512_mask_storeu_ps(c + 16, m1, _mm512_mul_ps(alpha, acc1));
        } else if (mode == DL__BETA_ONE) {
            _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(alpha, acc0, _mm512_maskz_loadu_ps(m0, c)));
            _mm512_mask_storeu_ps(c + 16, m1,
                                  _mm512_fmadd_ps(alpha, acc1, _mm512_maskz_loadu_ps(m1, c + 16)));
        } else {
            _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(alpha, acc0,
                                                         _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m0, c))));
            _mm512_mask_storeu_ps(c + 16, m1,
                                  _mm512_fmadd_ps(alpha, acc1,
                                                  _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m1, c + 16))));
        }
    }
}

#define DL__AVX512_FMA_ROW(i)                                           \
    if (rows > i) {                                                     \
        __m512 a_i = _mm512_set1_ps(a[(i) * rs_a]);                     \
        acc##i##_0 = _mm512_fmadd_ps(a_i, b0, acc##i##_0);              \
        acc##i##_1 = _mm512_fmadd_ps(a_i, b1, acc##i##_1);              \
    }
#define DL__AVX512_STORE_ROW(i)                                                               \
    if (rows > i) dl__avx512_store_row(c + (i) * ldc, acc##i##_0, acc##i##_1, cols, valpha, vbeta, \
                                       mode);

DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_microkernel_body(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                            ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                            ptrdiff_t ldc, float alpha, float beta) {
    __m512 acc0_0 = _mm512_setzero_ps(), acc0_1 = acc0_0, acc1_0 = acc0_0, acc1_1 = acc0_0;
    __m512 acc2_0 = acc0_0, acc2_1 = acc0_0, acc3_0 = acc0_0, acc3_1 = acc0_0;
    __m512 acc4_0 = acc0_0, acc4_1 = acc0_0, acc5_0 = acc0_0, acc5_1 = acc0_0;
    __m512 acc6_0 = acc0_0, acc6_1 = acc0_0, acc7_0 = acc0_0, acc7_1 = acc0_0;
    __m512 acc8_0 = acc0_0, acc8_1 = acc0_0, acc9_0 = acc0_0, acc9_1 = acc0_0;
    __m512 acc10_0 = acc0_0, acc10_1 = acc0_0, acc11_0 = acc0_0, acc11_1 = acc0_0;
    __m512 acc12_0 = acc0_0, acc12_1 = acc0_0, acc13_0 = acc0_0, acc13_1 = acc0_0;
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    int p, mode = dl__beta_mode(beta);
    for (p = 0; p < rows; p++) {   /* start fetching the C tile now; it is needed at the end */
        _mm_prefetch((const char *)(c + p * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + p * ldc + 31), _MM_HINT_T0);
    }
    for (p = 0; p < k; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        DL__AVX512_FMA_ROW(0) DL__AVX512_FMA_ROW(1) DL__AVX512_FMA_ROW(2) DL__AVX512_FMA_ROW(3)
        DL__AVX512_FMA_ROW(4) DL__AVX512_FMA_ROW(5) DL__AVX512_FMA_ROW(6) DL__AVX512_FMA_ROW(7)
        DL__AVX512_FMA_ROW(8) DL__AVX512_FMA_ROW(9) DL__AVX512_FMA_ROW(10) DL__AVX512_FMA_ROW(11)
        DL__AVX512_FMA_ROW(12) DL__AVX512_FMA_ROW(13)
        a += cs_a;
        b += rs_b;
    }
    DL__AVX512_STORE_ROW(0) DL__AVX512_STORE_ROW(1) DL__AVX512_STORE_ROW(2)
    DL__AVX512_STORE_ROW(3) DL__AVX512_STORE_ROW(4) DL__AVX512_STORE_ROW(5)
    DL__AVX512_STORE_ROW(6) DL__AVX512_STORE_ROW(7) DL__AVX512_STORE_ROW(8)
    DL__AVX512_STORE_ROW(9) DL__AVX512_STORE_ROW(10) DL__AVX512_STORE_ROW(11)
    DL__AVX512_STORE_ROW(12) DL__AVX512_STORE_ROW(13)
}

#define DL__AVX512_KERNELS(R)                                                                     \
    DL__TARGET_AVX512 static void dl__avx512_packed_##R(                                          \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows, (void)rs_a, (void)cs_a;                                                       \
        dl__avx512_microkernel_body(R, cols, k, a, 1, 14, b, rs_b, c, ldc, alpha, beta); \
    }                                                                                             \
    DL__TARGET_AVX512 static void dl__avx512_strided_##R(                                         \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows;                                                                               \
        dl__avx512_microkernel_body(R, cols, k, a, rs_a, cs_a, b, rs_b, c, ldc, alpha, beta); \
    }
DL__AVX512_KERNELS(1) DL__AVX512_KERNELS(2) DL__AVX512_KERNELS(3) DL__AVX512_KERNELS(4)
DL__AVX512_KERNELS(5) DL__AVX512_KERNELS(6) DL__AVX512_KERNELS(7) DL__AVX512_KERNELS(8)
DL__AVX512_KERNELS(9) DL__AVX512_KERNELS(10) DL__AVX512_KERNELS(11) DL__AVX512_KERNELS(12)
DL__AVX512_KERNELS(13) DL__AVX512_KERNELS(14)

DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_combine(__m512 acc, __m512 old,
                                                                     __m512 alpha, __m512 beta,
                                                                     int mode) {
    if (mode == DL__BETA_ZERO) return _mm512_mul_ps(alpha, acc);
    if (mode == DL__BETA_ONE) return _mm512_fmadd_ps(alpha, acc, old);
    return _mm512_fmadd_ps(alpha, acc, _mm512_mul_ps(beta, old));
}

/* Row vector times matrix, B read in place. 128 columns at a time in 8 accumulators (enough
   independent FMA chains to hide their latency); a last part of 64 to 127 columns the same way
   with masks; under 64 columns, 16 at a time with 4 chains over alternate p, summed at the end. */
DL__TARGET_AVX512 static void dl__avx512_gemv(int n, int k, const float *x, ptrdiff_t incx,
                                              const float *b, ptrdiff_t ldb, float *y,
                                              float alpha, float beta) {
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    int j0 = 0, v, p, mode = dl__beta_mode(beta);
    for (; n - j0 >= 64; j0 += 128) {
        __mmask16 mask[8];
        int offset[8];   /* masked-off vectors load from column j0 (valid memory) */
        __m512 acc[8];
        const float *bp = b + j0;
        for (v = 0; v < 8; v++) {
            int left = n - j0 - 16 * v;
            mask[v] = (__mmask16)(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
            offset[v] = left > 0 ? 16 * v : 0;
            acc[v] = _mm512_setzero_ps();
        }
        if (n - j0 >= 128) {
            for (p = 0; p < k; p++, bp += ldb) {
                __m512 xp = _mm512_set1_ps(x[p * incx]);
                acc[0] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp), acc[0]);
                acc[1] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 16), acc[1]);
                acc[2] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 32), acc[2]);
                acc[3] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 48), acc[3]);
                acc[4] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 64), acc[4]);
                acc[5] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 80), acc[5]);
                acc[6] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 96), acc[6]);
                acc[7] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 112), acc[7]);
            }
        } else {
#define DL__GEMV_MASKED(v) \
    acc[v] = _mm512_fmadd_ps(xp, _mm512_maskz_loadu_ps(mask[v], bp + offset[v]), acc[v]);
            for (p = 0; p < k; p++, bp += ldb) {
                __m512 xp = _mm512_set1_ps(x[p * incx]);
                DL__GEMV_MASKED(0) DL__GEMV_MASKED(1) DL__GEMV_MASKED(2) DL__GEMV_MASKED(3)
                DL__GEMV_MASKED(4) DL__GEMV_MASKED(5) DL__GEMV_MASKED(6) DL__GEMV_MASKED(7)
            }
#undef DL__GEMV_MASKED
        }
        for (v = 0; v < 8; v++) {
            float *yv = y + j0 + offset[v];
            __m512 old = mode == DL__BETA_ZERO ? acc[v] : _mm512_maskz_loadu_ps(mask[v], yv);
            _mm512_mask_storeu_ps(yv, mask[v], dl__avx512_combine(acc[v], old, valpha, vbeta, mode));
        }
    }
    for (; j0 < n; j0 += 16) {
        int left = n - j0;
        __mmask16 mask = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, old;
        const float *bp = b + j0;
        for (p = 0; p + 4 <= k; p += 4, bp += 4 * ldb) {
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(x[p * incx]), _mm512_maskz_loadu_ps(mask, bp), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(x[(p + 1) * incx]),
                                   _mm512_maskz_loadu_ps(mask, bp + ldb), acc1);
            acc2 = _mm512_fmadd_ps(_mm512_set1_ps(x[(p + 2) * incx]),
                                   _mm512_maskz_loadu_ps(mask, bp + 2 * ldb), acc2);
            acc3 = _mm512_fmadd_ps(_mm512_set1_ps(x[(p + 3) * incx]),
                                   _mm512_maskz_loadu_ps(mask, bp + 3 * ldb), acc3);
        }
        for (; p < k; p++, bp += ldb)
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(x[p * incx]), _mm512_maskz_loadu_ps(mask, bp), acc0);
        acc0 = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
        old = mode == DL__BETA_ZERO ? acc0 : _mm512_maskz_loadu_ps(mask, y + j0);
        _mm512_mask_storeu_ps(y + j0, mask, dl__avx512_combine(acc0, old, valpha, vbeta, mode));
    }
}

/* Partial sums of 4 vectors: in each 128-bit block, lane q holds the sum of that block's 4 lanes
   of a_q, as (l0 + l2) + (l1 + l3) whatever q is. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_sum4_blocks(__m512 a0, __m512 a1,
                                                                         __m512 a2, __m512 a3) {
    __m512 s01 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, a0, a1),
                               _mm512_maskz_unpackhi_ps(0xFFFF, a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, a2, a3),
                               _mm512_maskz_unpackhi_ps(0xFFFF, a2, a3));
    return _mm512_add_ps(_mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0x44),
                         _mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0xEE));
}

/* Folds the 4 blocks b0..b3 of v0 and v1 into [v0 (b0 + b2), v0 (b1 + b3), v1 (..), v1 (..)]. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_fold_pair(__m512 v0, __m512 v1) {
    return _mm512_add_ps(_mm512_maskz_shuffle_f32x4(0xFFFF, v0, v1, 0x44),
                         _mm512_maskz_shuffle_f32x4(0xFFFF, v0, v1, 0xEE));
}

/* [x01 b0 + x01 b1, x23 b0 + x23 b1] per 256 bits: the totals of 4 + 4 rows. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_fold_final(__m512 x01, __m512 x23) {
    return _mm512_add_ps(_mm512_maskz_shuffle_f32x4(0xFFFF, x01, x23, 0x88),
                         _mm512_maskz_shuffle_f32x4(0xFFFF, x01, x23, 0xDD));
}

/* Dot products of x with 16 rows of B: one accumulator per row (16 FMA chains, each x load
   feeds 16 FMAs), then all 16 horizontal sums at once by a transposing reduction, and one vector
   store of the results. Row r's sum is ((block 0 + block 2) + (block 1 + block 3)) of its
   (l0 + l2) + (l1 + l3) lane sums, the same for every r, so dl__avx512_dots4 (the last rows)
   gives the same bits. */
#define DL__DOTS16_FMA(r) acc##r = _mm512_fmadd_ps(xv, DL__DOTS16_LOAD(bp + (r) * ldb), acc##r);
#define DL__DOTS16_STEP                                                                         \
    DL__DOTS16_FMA(0) DL__DOTS16_FMA(1) DL__DOTS16_FMA(2) DL__DOTS16_FMA(3) DL__DOTS16_FMA(4)   \
    DL__DOTS16_FMA(5) DL__DOTS16_FMA(6) DL__DOTS16_FMA(7) DL__DOTS16_FMA(8) DL__DOTS16_FMA(9)   \
    DL__DOTS16_FMA(10) DL__DOTS16_FMA(11) DL__DOTS16_FMA(12) DL__DOTS16_FMA(13)                 \
    DL__DOTS16_FMA(14) DL__DOTS16_FMA(15)
DL__TARGET_AVX512 static void dl__avx512_dots16(int k, const float *x, const float *b,
                                                ptrdiff_t ldb, float *y, __m512 valpha,
                                                __m512 vbeta, int mode) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0;
    __m512 acc5 = acc0, acc6 = acc0, acc7 = acc0, acc8 = acc0, acc9 = acc0, acc10 = acc0;
    __m512 acc11 = acc0, acc12 = acc0, acc13 = acc0, acc14 = acc0, acc15 = acc0, sum;
    const float *bp = b;
    int p;
    for (p = 0; p + 16 <= k; p += 16, bp += 16) {
        __m512 xv = _mm512_loadu_ps(x + p);
#define DL__DOTS16_LOAD(ptr) _mm512_loadu_ps(ptr)
        DL__DOTS16_STEP
#undef DL__DOTS16_LOAD
    }
    if (p < k) {
        __mmask16 mask = (__mmask16)((1u << (k - p)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(mask, x + p);
#define DL__DOTS16_LOAD(ptr) _mm512_maskz_loadu_ps(mask, ptr)
        DL__DOTS16_STEP
#undef DL__DOTS16_LOAD
    }
    sum = dl__avx512_fold_final(
        dl__avx512_fold_pair(dl__avx512_sum4_blocks(acc0, acc1, acc2, acc3),
                             dl__avx512_sum4_blocks(acc4, acc5, acc6, acc7)),
        dl__avx512_fold_pair(dl__avx512_sum4_blocks(acc8, acc9, acc10, acc11),
                             dl__avx512_sum4_blocks(acc12, acc13, acc14, acc15)));
    _mm512_storeu_ps(y, dl__avx512_combine(sum, mode == DL__BETA_ZERO ? sum : _mm512_loadu_ps(y),
                                           valpha, vbeta, mode));
}
#undef DL__DOTS16_FMA
#undef DL__DOTS16_STEP

/* The same for `rows` (1 to 4) rows; missing rows repeat the last one and are not stored. */
DL__TARGET_AVX512 static void dl__avx512_dots4(int rows, int k, const float *x, const float *b,
                                               ptrdiff_t ldb, float *y, __m512 valpha,
                                               __m512 vbeta, int mode) {
    const float *b0 = b, *b1 = b + (rows > 1) * ldb, *b2 = b + (rows > 2 ? 2 : rows - 1) * ldb;
    const float *b3 = b + (rows - 1) * ldb;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, v;
    __mmask16 out = (__mmask16)((1u << rows) - 1);
    int p;
    for (p = 0; p < k; p += 16) {
        __mmask16 mask = (__mmask16)(k - p >= 16 ? 0xFFFF : (1u << (k - p)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(mask, x + p);
        acc0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b0 + p), acc0);
        acc1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b1 + p), acc1);
        acc2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b2 + p), acc2);
        acc3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b3 + p), acc3);
    }
    v = dl__avx512_sum4_blocks(acc0, acc1, acc2, acc3);
    v = dl__avx512_fold_pair(v, v);
    v = dl__avx512_fold_final(v, v);
    _mm512_mask_storeu_ps(y, out, dl__avx512_combine(v, mode == DL__BETA_ZERO ? v
                                                        : _mm512_maskz_loadu_ps(out, y),
                                                     valpha, vbeta, mode));
}

/* Up to 4 x 4 dot products at once: rows of X against rows of B, 16 accumulators, so each load
   feeds 4 FMAs. Missing rows (rx or rb < 4) repeat the last one and are not stored, so every
   element is computed by the same instructions. The 4 sums of one X row are reduced together. */
#define DL__DOT_FMA(r, q) acc##r##q = _mm512_fmadd_ps(x##r##v, b##q##v, acc##r##q);
#define DL__DOT_ROW(r)                                                                          \
    if (r < rx) {                                                                               \
        __m512 s01 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, acc##r##0, acc##r##1),      \
                                   _mm512_maskz_unpackhi_ps(0xFFFF, acc##r##0, acc##r##1));     \
        __m512 s23 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, acc##r##2, acc##r##3),      \
                                   _mm512_maskz_unpackhi_ps(0xFFFF, acc##r##2, acc##r##3));     \
        /* each 128-bit block: [q0 q1 q2 q3] partial sums; then fold the four blocks */         \
        __m512 sum = _mm512_add_ps(_mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0x44),             \
                                   _mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0xEE));            \
        sum = _mm512_add_ps(sum, _mm512_maskz_shuffle_f32x4(0xFFFF, sum, sum, 0x4E));           \
        sum = _mm512_add_ps(sum, _mm512_maskz_shuffle_f32x4(0xFFFF, sum, sum, 0xB1));           \
        _mm512_storeu_ps(sums, sum);                                                            \
        for (q = 0; q < rb; q++) dl__store_scalar(y + r * ldy + q, sums[q], alpha, beta, mode);  \
    }
DL__TARGET_AVX512 static void dl__avx512_dots_4x4(int rx, int rb, int k, const float *x,
                                                  ptrdiff_t ldx, const float *b, ptrdiff_t ldb,
                                                  float *y, ptrdiff_t ldy, float alpha,
                                                  float beta, int mode) {
    const float *x0 = x, *x1 = x + (rx > 1) * ldx, *x2 = x + (rx > 2 ? 2 : rx - 1) * ldx;
    const float *x3 = x + (rx - 1) * ldx, *b0 = b, *b1 = b + (rb > 1) * ldb;
    const float *b2 = b + (rb > 2 ? 2 : rb - 1) * ldb, *b3 = b + (rb - 1) * ldb;
    __m512 acc00 = _mm512_setzero_ps(), acc01 = acc00, acc02 = acc00, acc03 = acc00;
    __m512 acc10 = acc00, acc11 = acc00, acc12 = acc00, acc13 = acc00;
    __m512 acc20 = acc00, acc21 = acc00, acc22 = acc00, acc23 = acc00;
    __m512 acc30 = acc00, acc31 = acc00, acc32 = acc00, acc33 = acc00;
    float sums[16];
    int p, q;
    for (p = 0; p < k; p += 16) {
        __mmask16 mask = (__mmask16)(k - p >= 16 ? 0xFFFF : (1u << (k - p)) - 1);
        __m512 x0v = _mm512_maskz_loadu_ps(mask, x0 + p), x1v = _mm512_maskz_loadu_ps(mask, x1 + p);
        __m512 x2v = _mm512_maskz_loadu_ps(mask, x2 + p), x3v = _mm512_maskz_loadu_ps(mask, x3 + p);
        __m512 b0v = _mm512_maskz_loadu_ps(mask, b0 + p), b1v = _mm512_maskz_loadu_ps(mask, b1 + p);
        __m512 b2v = _mm512_maskz_loadu_ps(mask, b2 + p), b3v = _mm512_maskz_loadu_ps(mask, b3 + p);
        DL__DOT_FMA(0, 0) DL__DOT_FMA(0, 1) DL__DOT_FMA(0, 2) DL__DOT_FMA(0, 3)
        DL__DOT_FMA(1, 0) DL__DOT_FMA(1, 1) DL__DOT_FMA(1, 2) DL__DOT_FMA(1, 3)
        DL__DOT_FMA(2, 0) DL__DOT_FMA(2, 1) DL__DOT_FMA(2, 2) DL__DOT_FMA(2, 3)
        DL__DOT_FMA(3, 0) DL__DOT_FMA(3, 1) DL__DOT_FMA(3, 2) DL__DOT_FMA(3, 3)
    }
    DL__DOT_ROW(0) DL__DOT_ROW(1) DL__DOT_ROW(2) DL__DOT_ROW(3)
}
#undef DL__DOT_FMA
#undef DL__DOT_ROW

/* Y[i][j] = alpha * dot(X row i, B row j) + beta * Y[i][j], i < m, j < n. */
DL__TARGET_AVX512 static void dl__avx512_dots_block(int m, int n, int k, const float *x,
                                                    ptrdiff_t ldx, const float *b, ptrdiff_t ldb,
                                                    float *y, ptrdiff_t ldy, float alpha,
                                                    float beta) {
    int i, j, mode = dl__beta_mode(beta);
    for (i = 0; i < m; i += 4)
        for (j = 0; j < n; j += 4) {
            int rx = m - i < 4 ? m - i : 4, rb = n - j < 4 ? n - j : 4;
            const float *xi = x + i * ldx, *bj = b + j * ldb;
            float *yij = y + i * ldy + j;
            dl__avx512_dots_4x4(rx, rb, k, xi, ldx, bj, ldb, yij, ldy, alpha, beta, mode);
        }
}

DL__TARGET_AVX512 static void dl__avx512_dots(int n, int k, const float *x, const float *b,
                                              ptrdiff_t ldb, float *y, float alpha, float beta) {
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    int j = 0, mode = dl__beta_mode(beta);
    for (; j + 16 <= n; j += 16) dl__avx512_dots16(k, x, b + j * ldb, ldb, y + j, valpha, vbeta, mode);
    for (; j < n; j += 4)
        dl__avx512_dots4(n - j < 4 ? n - j : 4, k, x, b + j * ldb, ldb, y + j, valpha, vbeta, mode);
}

/* Transposes the 16 x 16 block r (r[i] lane j = element (i, j)) into t (t[j] lane i), written
   out without loops so that it stays in registers. Rows known to be zero cost nothing extra: the
   compiler folds them. (The maskz forms with a full mask are the plain instructions; they avoid
   a false -Wmaybe-uninitialized of g++ 12 in its own header.) */
#define DL__TRANSPOSE_GATHER(j)                                                          \
    {                                                                                    \
        __m512 lo01 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[j], u[4 + j], 0x44);          \
        __m512 hi01 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[j], u[4 + j], 0xEE);          \
        __m512 lo23 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + j], u[12 + j], 0x44);     \
        __m512 hi23 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + j], u[12 + j], 0xEE);     \
        t[j] = _mm512_maskz_shuffle_f32x4(0xFFFF, lo01, lo23, 0x88);      /* column j */ \
        t[4 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, lo01, lo23, 0xDD);                 \
        t[8 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, hi01, hi23, 0x88);                 \
        t[12 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, hi01, hi23, 0xDD);                \
    }
DL__TARGET_AVX512 static DL__ALWAYS_INLINE void dl__avx512_transpose16(__m512 *r, __m512 *t) {
    __m512 u[16];
    /* interleave row pairs */
    t[0] = _mm512_maskz_unpacklo_ps(0xFFFF, r[0], r[1]);
    t[1] = _mm512_maskz_unpackhi_ps(0xFFFF, r[0], r[1]);
    t[2] = _mm512_maskz_unpacklo_ps(0xFFFF, r[2], r[3]);
    t[3] = _mm512_maskz_unpackhi_ps(0xFFFF, r[2], r[3]);
    t[4] = _mm512_maskz_unpacklo_ps(0xFFFF, r[4], r[5]);
    t[5] = _mm512_maskz_unpackhi_ps(0xFFFF, r[4], r[5]);
    t[6] = _mm512_maskz_unpacklo_ps(0xFFFF, r[6], r[7]);
    t[7] = _mm512_maskz_unpackhi_ps(0xFFFF, r[6], r[7]);
    t[8] = _mm512_maskz_unpacklo_ps(0xFFFF, r[8], r[9]);
    t[9] = _mm512_maskz_unpackhi_ps(0xFFFF, r[8], r[9]);
    t[10] = _mm512_maskz_unpacklo_ps(0xFFFF, r[10], r[11]);
    t[11] = _mm512_maskz_unpackhi_ps(0xFFFF, r[10], r[11]);
    t[12] = _mm512_maskz_unpacklo_ps(0xFFFF, r[12], r[13]);
    t[13] = _mm512_maskz_unpackhi_ps(0xFFFF, r[12], r[13]);
    t[14] = _mm512_maskz_unpacklo_ps(0xFFFF, r[14], r[15]);
    t[15] = _mm512_maskz_unpackhi_ps(0xFFFF, r[14], r[15]);
    /* 4 x 4 transposes inside each 128-bit lane */
    u[0] = _mm512_maskz_shuffle_ps(0xFFFF, t[0], t[2], 0x44);
    u[1] = _mm512_maskz_shuffle_ps(0xFFFF, t[0], t[2], 0xEE);
    u[2] = _mm512_maskz_shuffle_ps(0xFFFF, t[1], t[3], 0x44);
    u[3] = _mm512_maskz_shuffle_ps(0xFFFF, t[1], t[3], 0xEE);
    u[4] = _mm512_maskz_shuffle_ps(0xFFFF, t[4], t[6], 0x44);
    u[5] = _mm512_maskz_shuffle_ps(0xFFFF, t[4], t[6], 0xEE);
    u[6] = _mm512_maskz_shuffle_ps(0xFFFF, t[5], t[7], 0x44);
    u[7] = _mm512_maskz_shuffle_ps(0xFFFF, t[5], t[7], 0xEE);
    u[8] = _mm512_maskz_shuffle_ps(0xFFFF, t[8], t[10], 0x44);
    u[9] = _mm512_maskz_shuffle_ps(0xFFFF, t[8], t[10], 0xEE);
    u[10] = _mm512_maskz_shuffle_ps(0xFFFF, t[9], t[11], 0x44);
    u[11] = _mm512_maskz_shuffle_ps(0xFFFF, t[9], t[11], 0xEE);
    u[12] = _mm512_maskz_shuffle_ps(0xFFFF, t[12], t[14], 0x44);
    u[13] = _mm512_maskz_shuffle_ps(0xFFFF, t[12], t[14], 0xEE);
    u[14] = _mm512_maskz_shuffle_ps(0xFFFF, t[13], t[15], 0x44);
    u[15] = _mm512_maskz_shuffle_ps(0xFFFF, t[13], t[15], 0xEE);
    /* u[4g + j], lane L, holds rows 4g..4g+3 of column 4L + j: gather the 4 lanes L */
    DL__TRANSPOSE_GATHER(0) DL__TRANSPOSE_GATHER(1) DL__TRANSPOSE_GATHER(2) DL__TRANSPOSE_GATHER(3)
}
#undef DL__TRANSPOSE_GATHER

/* Packs `rows` (<= 16) rows of a matrix that are contiguous along k, 16 columns at a time: load
   a 16 x 16 block (missing rows zero), transpose it in registers, and store column p as the 16
   floats at dst + ld p. With ld < 16 each store's last lanes are overwritten by the next one, so
   it runs 16 - ld floats past the panel, which the workspace leaves room for. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_pack_rows(int rows, const float *a, ptrdiff_t lda, int kc, float *dst, int ld) {
    int p = 0, i, j;
    for (; p + 16 <= kc; p += 16) {
        __m512 r[16], t[16];
        for (i = 0; i < 16; i++) r[i] = i < rows ? _mm512_loadu_ps(a + i * lda + p) : _mm512_setzero_ps();
        dl__avx512_transpose16(r, t);
        for (j = 0; j < 16; j++) _mm512_storeu_ps(dst + (p + j) * ld, t[j]);
    }
    for (; p < kc; p++)
        for (i = 0; i < rows; i++) dst[p * ld + i] = a[i * lda + p];
}

/* A micro-panel of A: 14 rows, dst[p * 14 + i]. */
DL__TARGET_AVX512 static void dl__avx512_pack_a_panel(const float *a, ptrdiff_t lda, int kc,
                                                      float *dst) {
    dl__avx512_pack_rows(14, a, lda, kc, dst, 14);
}

/* A micro-panel of op(B) = B^T: 32 rows of B (contiguous along k) to dst[p * 32 + j]. */
DL__TARGET_AVX512 static void dl__avx512_pack_bt_panel(const float *b, ptrdiff_t ldb, int kc,
                                                       float *dst) {
    dl__avx512_pack_rows(16, b, ldb, kc, dst, 32);
    dl__avx512_pack_rows(16, b + 16 * ldb, ldb, kc, dst + 16, 32);
}

/* op(A) = A^T with few columns of C (n <= 16): the weight gradient X^T dY of a dense layer with
   few outputs. Computed as C^T = op(B)^T A with the roles swapped: a row p of A (stored k x m)
   holds 16 V consecutive rows i of C, so each step loads V vectors of A, broadcasts the n values
   op(B)[p, j] and does n V multiply-adds into accumulators that hold columns of C. At the end
   each 16 x 16 block of them (n columns, the rest zero) is transposed in registers and stored as
   16 rows of C. Every element is one FMA chain over p in order, so the result does not depend on
   where a block starts (threads split the rows anywhere). */
#define DL__TN_FMA(j)                                                                 \
    if (N > j) {                                                                      \
        __m512 bj = _mm512_set1_ps(bp[(j) * cs_b]);                                   \
        acc##j##_0 = _mm512_fmadd_ps(a0, bj, acc##j##_0);                             \
        if (V > 1) acc##j##_1 = _mm512_fmadd_ps(a1, bj, acc##j##_1);                  \
        if (V > 2) acc##j##_2 = _mm512_fmadd_ps(a2, bj, acc##j##_2);                  \
        if (V > 2) acc##j##_3 = _mm512_fmadd_ps(a3, bj, acc##j##_3);                  \
    }
#define DL__TN_ROW(ii, v)                                                               \
    {                                                                                  \
        float *cr = c + (i0 + 16 * v + (ii)) * ldc;                                    \
        __m512 old = mode == DL__BETA_ZERO ? t[ii] : _mm512_maskz_loadu_ps(cmask, cr); \
        _mm512_mask_storeu_ps(cr, cmask, dl__avx512_combine(t[ii], old, valpha, vbeta, mode)); \
    }
#define DL__TN_TAKE(j, v) r[j] = N > j ? acc##j##_##v : _mm512_setzero_ps();
#define DL__TN_STORE(v)                                                                    \
    if (V > v && m - i0 - 16 * v > 0) {                                                    \
        __m512 r[16], t[16];                                                               \
        int rows = m - i0 - 16 * v < 16 ? m - i0 - 16 * v : 16, ii;                        \
        DL__TN_TAKE(0, v) DL__TN_TAKE(1, v) DL__TN_TAKE(2, v) DL__TN_TAKE(3, v)            \
        DL__TN_TAKE(4, v) DL__TN_TAKE(5, v) DL__TN_TAKE(6, v) DL__TN_TAKE(7, v)            \
        DL__TN_TAKE(8, v) DL__TN_TAKE(9, v) DL__TN_TAKE(10, v) DL__TN_TAKE(11, v)          \
        DL__TN_TAKE(12, v) DL__TN_TAKE(13, v) DL__TN_TAKE(14, v) DL__TN_TAKE(15, v)        \
        dl__avx512_transpose16(r, t);                                                      \
        if (rows == 16) {                                                                  \
            DL__TN_ROW(0, v) DL__TN_ROW(1, v) DL__TN_ROW(2, v) DL__TN_ROW(3, v) DL__TN_ROW(4, v) \
            DL__TN_ROW(5, v) DL__TN_ROW(6, v) DL__TN_ROW(7, v) DL__TN_ROW(8, v) DL__TN_ROW(9, v) \
            DL__TN_ROW(10, v) DL__TN_ROW(11, v) DL__TN_ROW(12, v) DL__TN_ROW(13, v) DL__TN_ROW(14, v) \
            DL__TN_ROW(15, v)                                                                 \
        } else                                                                             \
            for (ii = 0; ii < rows; ii++) DL__TN_ROW(ii, v)                                \
    }
DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_tn_body(int N, int V, int m, int k, const float *a, ptrdiff_t lda, const float *b,
                   ptrdiff_t rs_b, ptrdiff_t cs_b, float *c, ptrdiff_t ldc, float alpha,
                   float beta) {
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    __mmask16 cmask = (__mmask16)((1u << N) - 1);
    int i0, p, mode = dl__beta_mode(beta);
    for (i0 = 0; i0 < m; i0 += 16 * V) {
    __m512 acc0_0 = _mm512_setzero_ps(), acc0_1 = acc0_0, acc0_2 = acc0_0, acc0_3 = acc0_0;
    __m512 acc1_0 = _mm512_setzero_ps(), acc1_1 = acc1_0, acc1_2 = acc1_0, acc1_3 = acc1_0;
    __m512 acc2_0 = _mm512_setzero_ps(), acc2_1 = acc2_0, acc2_2 = acc2_0, acc2_3 = acc2_0;
    __m512 acc3_0 = _mm512_setzero_ps(), acc3_1 = acc3_0, acc3_2 = acc3_0, acc3_3 = acc3_0;
    __m512 acc4_0 = _mm512_setzero_ps(), acc4_1 = acc4_0, acc4_2 = acc4_0, acc4_3 = acc4_0;
    __m512 acc5_0 = _mm512_setzero_ps(), acc5_1 = acc5_0, acc5_2 = acc5_0, acc5_3 = acc5_0;
    __m512 acc6_0 = _mm512_setzero_ps(), acc6_1 = acc6_0, acc6_2 = acc6_0, acc6_3 = acc6_0;
    __m512 acc7_0 = _mm512_setzero_ps(), acc7_1 = acc7_0, acc7_2 = acc7_0, acc7_3 = acc7_0;
    __m512 acc8_0 = _mm512_setzero_ps(), acc8_1 = acc8_0, acc8_2 = acc8_0, acc8_3 = acc8_0;
    __m512 acc9_0 = _mm512_setzero_ps(), acc9_1 = acc9_0, acc9_2 = acc9_0, acc9_3 = acc9_0;
    __m512 acc10_0 = _mm512_setzero_ps(), acc10_1 = acc10_0, acc10_2 = acc10_0, acc10_3 = acc10_0;
    __m512 acc11_0 = _mm512_setzero_ps(), acc11_1 = acc11_0, acc11_2 = acc11_0, acc11_3 = acc11_0;
    __m512 acc12_0 = _mm512_setzero_ps(), acc12_1 = acc12_0, acc12_2 = acc12_0, acc12_3 = acc12_0;
    __m512 acc13_0 = _mm512_setzero_ps(), acc13_1 = acc13_0, acc13_2 = acc13_0, acc13_3 = acc13_0;
    __m512 acc14_0 = _mm512_setzero_ps(), acc14_1 = acc14_0, acc14_2 = acc14_0, acc14_3 = acc14_0;
    __m512 acc15_0 = _mm512_setzero_ps(), acc15_1 = acc15_0, acc15_2 = acc15_0, acc15_3 = acc15_0;
        const float *ap = a + i0, *bp = b;
        int left = m - i0;
        if (left >= 16 * V) {
            for (p = 0; p < k; p++, ap += lda, bp += rs_b) {
                __m512 a0 = _mm512_loadu_ps(ap), a1 = a0, a2 = a0, a3 = a0;
                if (V > 1) a1 = _mm512_loadu_ps(ap + 16);
                if (V > 2) a2 = _mm512_loadu_ps(ap + 32), a3 = _mm512_loadu_ps(ap + 48);
                DL__TN_FMA(0) DL__TN_FMA(1) DL__TN_FMA(2) DL__TN_FMA(3) DL__TN_FMA(4)
                DL__TN_FMA(5) DL__TN_FMA(6) DL__TN_FMA(7) DL__TN_FMA(8) DL__TN_FMA(9)
                DL__TN_FMA(10) DL__TN_FMA(11) DL__TN_FMA(12) DL__TN_FMA(13) DL__TN_FMA(14)
                DL__TN_FMA(15)
            }
        } else {   /* the last rows: masked loads (lanes past m compute zeros, not stored) */
            __mmask16 m0 = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1);
            __mmask16 m1 = (__mmask16)(left >= 32 ? 0xFFFF : left <= 16 ? 0 : (1u << (left - 16)) - 1);
            __mmask16 m2 = (__mmask16)(left >= 48 ? 0xFFFF : left <= 32 ? 0 : (1u << (left - 32)) - 1);
            __mmask16 m3 = (__mmask16)(left >= 64 ? 0xFFFF : left <= 48 ? 0 : (1u << (left - 48)) - 1);
            for (p = 0; p < k; p++, ap += lda, bp += rs_b) {
                __m512 a0 = _mm512_maskz_loadu_ps(m0, ap), a1 = a0, a2 = a0, a3 = a0;
                if (V > 1) a1 = _mm512_maskz_loadu_ps(m1, ap + 16);
                if (V > 2) a2 = _mm512_maskz_loadu_ps(m2, ap + 32), a3 = _mm512_maskz_loadu_ps(m3, ap + 48);
                DL__TN_FMA(0) DL__TN_FMA(1) DL__TN_FMA(2) DL__TN_FMA(3) DL__TN_FMA(4)
                DL__TN_FMA(5) DL__TN_FMA(6) DL__TN_FMA(7) DL__TN_FMA(8) DL__TN_FMA(9)
                DL__TN_FMA(10) DL__TN_FMA(11) DL__TN_FMA(12) DL__TN_FMA(13) DL__TN_FMA(14)
                DL__TN_FMA(15)
            }
        }
        DL__TN_STORE(0) DL__TN_STORE(1) DL__TN_STORE(2) DL__TN_STORE(3)
    }
}
#undef DL__TN_FMA
#undef DL__TN_TAKE
#undef DL__TN_ROW
#undef DL__TN_STORE

#define DL__AVX512_TN(N, V)                                                                     \
    DL__TARGET_AVX512 static void dl__avx512_tn_##N(int m, int k, const float *a, ptrdiff_t lda, \
                                                    const float *b, ptrdiff_t rs_b,             \
                                                    ptrdiff_t cs_b, float *c, ptrdiff_t ldc,    \
                                                    float alpha, float beta) {                  \
        dl__avx512_tn_body(N, V, m, k, a, lda, b, rs_b, cs_b, c, ldc, alpha, beta);             \
    }
DL__AVX512_TN(1, 4) DL__AVX512_TN(2, 4) DL__AVX512_TN(3, 4) DL__AVX512_TN(4, 4)
DL__AVX512_TN(5, 4) DL__AVX512_TN(6, 4) DL__AVX512_TN(7, 2) DL__AVX512_TN(8, 2)
DL__AVX512_TN(9, 2) DL__AVX512_TN(10, 2) DL__AVX512_TN(11, 2) DL__AVX512_TN(12, 2)
DL__AVX512_TN(13, 2) DL__AVX512_TN(14, 2) DL__AVX512_TN(15, 1) DL__AVX512_TN(16, 1)
#undef DL__AVX512_TN

DL__TARGET_AVX512 static void dl__avx512_tn_small(int m, int n, int k, const float *a,
                                                  ptrdiff_t lda, const float *b, ptrdiff_t rs_b,
                                                  ptrdiff_t cs_b, float *c, ptrdiff_t ldc,
                                                  float alpha, float beta) {
    typedef void (*fn_t)(int, int, const float *, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t,
                         float *, ptrdiff_t, float, float);
    static const fn_t fns[17] = {0, dl__avx512_tn_1, dl__avx512_tn_2, dl__avx512_tn_3,
                                 dl__avx512_tn_4, dl__avx512_tn_5, dl__avx512_tn_6,
                                 dl__avx512_tn_7, dl__avx512_tn_8, dl__avx512_tn_9,
                                 dl__avx512_tn_10, dl__avx512_tn_11, dl__avx512_tn_12,
                                 dl__avx512_tn_13, dl__avx512_tn_14, dl__avx512_tn_15,
                                 dl__avx512_tn_16};
    fns[n](m, k, a, lda, b, rs_b, cs_b, c, ldc, alpha, beta);
}

static const dl__gemm_kernels dl__gemm_avx512 = {
    "avx512", 14, 32, 512, 224, 4096,
    {0, dl__avx512_packed_1, dl__avx512_packed_2, dl__avx512_packed_3, dl__avx512_packed_4,
     dl__avx512_packed_5, dl__avx512_packed_6, dl__avx512_packed_7, dl__avx512_packed_8,
     dl__avx512_packed_9, dl__avx512_packed_10, dl__avx512_packed_11, dl__avx512_packed_12,
     dl__avx512_packed_13, dl__avx512_packed_14},
    {0, dl__avx512_strided_1, dl__avx512_strided_2, dl__avx512_strided_3, dl__avx512_strided_4,
     dl__avx512_strided_5, dl__avx512_strided_6, dl__avx512_strided_7, dl__avx512_strided_8,
     dl__avx512_strided_9, dl__avx512_strided_10, dl__avx512_strided_11, dl__avx512_strided_12,
     dl__avx512_strided_13, dl__avx512_strided_14},
    dl__avx512_gemv, dl__avx512_dots, dl__avx512_dots_block, dl__avx512_pack_a_panel,
    dl__avx512_pack_bt_panel, dl__avx512_tn_small};

/* ---- AVX2 + FMA kernels: MR x NR = 6 x 16 ---- */

DL__TARGET_AVX2 static DL__ALWAYS_INLINE __m256 dl__avx2_combine(__m256 acc, __m256 old,
                                                                 __m256 alpha, __m256 beta,
                                                                 int mode) {
    if (mode == DL__BETA_ZERO) return _mm256_mul_ps(alpha, acc);
    if (mode == DL__BETA_ONE) return _mm256_fmadd_ps(alpha, acc, old);
    return _mm256_fmadd_ps(alpha, acc, _mm256_mul_ps(beta, old));
}

/* Writes `cols` (<= 16) columns; a partial row goes through a small buffer so that the
   arithmetic is the same as for a full one. */
DL__TARGET_AVX2 static DL__ALWAYS_INLINE void
dl__avx2_store_row(float *c, __m256 acc0, __m256 acc1, int cols, __m256 alpha, __m256 beta,
                   int mode) {
    if (cols == 16) {
        __m256 old0 = mode == DL__BETA_ZERO ? acc0 : _mm256_loadu_ps(c);
        __m256 old1 = mode == DL__BETA_ZERO ? acc1 : _mm256_loadu_ps(c + 8);
        _mm256_storeu_ps(c, dl__avx2_combine(acc0, old0, alpha, beta, mode));
        _mm256_storeu_ps(c + 8, dl__avx2_combine(acc1, old1, alpha, beta, mode));
    } else {
        float row[16];
        int j;
        memset(row, 0, sizeof row);
        if (mode != DL__BETA_ZERO) memcpy(row, c, (size_t)cols * sizeof(float));
        _mm256_storeu_ps(row, dl__avx2_combine(acc0, _mm256_loadu_ps(row), alpha, beta, mode));
        _mm256_storeu_ps(row + 8, dl__avx2_combine(acc1, _mm256_loadu_ps(row + 8), alpha, beta, mode));
        for (j = 0; j < cols; j++) c[j] = row[j];
    }
}

#define DL__AVX2_FMA_ROW(i)                                             \
    if (rows > i) {                                                     \
        __m256 a_i = _mm256_broadcast_ss(a + (i) * rs_a);               \
        acc##i##_0 = _mm256_fmadd_ps(a_i, b0, acc##i##_0);              \
        acc##i##_1 = _mm256_fmadd_ps(a_i, b1, acc##i##_1);              \
    }
#define DL__AVX2_STORE_ROW(i)                                                                   \
    if (rows > i) dl__avx2_store_row(c + (i) * ldc, acc##i##_0, acc##i##_1, cols, valpha, vbeta, \
                                     mode);

DL__TARGET_AVX2 static DL__ALWAYS_INLINE void
dl__avx2_microkernel_body(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                          ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                          ptrdiff_t ldc, float alpha, float beta) {
    __m256 acc0_0 = _mm256_setzero_ps(), acc0_1 = acc0_0, acc1_0 = acc0_0, acc1_1 = acc0_0;
    __m256 acc2_0 = acc0_0, acc2_1 = acc0_0, acc3_0 = acc0_0, acc3_1 = acc0_0;
    __m256 acc4_0 = acc0_0, acc4_1 = acc0_0, acc5_0 = acc0_0, acc5_1 = acc0_0;
    __m256 valpha = _mm256_set1_ps(alpha), vbeta = _mm256_set1_ps(beta);
    int p, mode = dl__beta_mode(beta);
    for (p = 0; p < k; p++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        DL__AVX2_FMA_ROW(0) DL__AVX2_FMA_ROW(1) DL__AVX2_FMA_ROW(2)
        DL__AVX2_FMA_ROW(3) DL__AVX2_FMA_ROW(4) DL__AVX2_FMA_ROW(5)
        a += cs_a;
        b += rs_b;
    }
    DL__AVX2_STORE_ROW(0) DL__AVX2_STORE_ROW(1) DL__AVX2_STORE_ROW(2)
    DL__AVX2_STORE_ROW(3) DL__AVX2_STORE_ROW(4) DL__AVX2_STORE_ROW(5)
}

#define DL__AVX2_KERNELS(R)                                                                       \
    DL__TARGET_AVX2 static void dl__avx2_packed_##R(                                              \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows, (void)rs_a, (void)cs_a;                                                       \
        dl__avx2_microkernel_body(R, cols, k, a, 1, 6, b, rs_b, c, ldc, alpha, beta); \
    }                                                                                             \
    DL__TARGET_AVX2 static void dl__avx2_strided_##R(                                             \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows;                                                                               \
        dl__avx2_microkernel_body(R, cols, k, a, rs_a, cs_a, b, rs_b, c, ldc, alpha, beta); \
    }
DL__AVX2_KERNELS(1) DL__AVX2_KERNELS(2) DL__AVX2_KERNELS(3)
DL__AVX2_KERNELS(4) DL__AVX2_KERNELS(5) DL__AVX2_KERNELS(6)

/* Row vector times matrix: 64 columns at a time in 8 accumulators; a partial last chunk is
   finished 8 columns at a time, the last few through a small buffer. */
DL__TARGET_AVX2 static void dl__avx2_gemv(int n, int k, const float *x, ptrdiff_t incx,
                                          const float *b, ptrdiff_t ldb, float *y, float alpha,
                                          float beta) {
    __m256 valpha = _mm256_set1_ps(alpha), vbeta = _mm256_set1_ps(beta);
    int j0 = 0, v, p, mode = dl__beta_mode(beta);
    for (; j0 + 64 <= n; j0 += 64) {
        __m256 acc[8];
        const float *bp = b + j0;
        for (v = 0; v < 8; v++) acc[v] = _mm256_setzero_ps();
        for (p = 0; p < k; p++, bp += ldb) {
            __m256 xp = _mm256_set1_ps(x[p * incx]);
            for (v = 0; v < 8; v++) acc[v] = _mm256_fmadd_ps(xp, _mm256_loadu_ps(bp + 8 * v), acc[v]);
        }
        for (v = 0; v < 8; v++) {
            float *yv = y + j0 + 8 * v;
            __m256 old = mode == DL__BETA_ZERO ? acc[v] : _mm256_loadu_ps(yv);
            _mm256_storeu_ps(yv, dl__avx2_combine(acc[v], old, valpha, vbeta, mode));
        }
    }
    for (; j0 < n; j0 += 8) {
        int w = n - j0 < 8 ? n - j0 : 8, j;
        __m256 acc = _mm256_setzero_ps();
        float tmp[8];
        const float *bp = b + j0;
        if (w == 8) {
            for (p = 0; p < k; p++, bp += ldb)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(x[p * incx]), _mm256_loadu_ps(bp), acc);
        } else {
            for (p = 0; p < k; p++, bp += ldb) {
                memset(tmp, 0, sizeof tmp);
                for (j = 0; j < w; j++) tmp[j] = bp[j];
                acc = _mm256_fmadd_ps(_mm256_set1_ps(x[p * incx]), _mm256_loadu_ps(tmp), acc);
            }
        }
        memset(tmp, 0, sizeof tmp);
        if (mode != DL__BETA_ZERO)
            for (j = 0; j < w; j++) tmp[j] = y[j0 + j];
        _mm256_storeu_ps(tmp, dl__avx2_combine(acc, _mm256_loadu_ps(tmp), valpha, vbeta, mode));
        for (j = 0; j < w; j++) y[j0 + j] = tmp[j];
    }
}

DL__TARGET_AVX2 static DL__ALWAYS_INLINE float dl__avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

DL__TARGET_AVX2 static void dl__avx2_dots(int n, int k, const float *x, const float *b,
                                          ptrdiff_t ldb, float *y, float alpha, float beta) {
    int j, p, mode = dl__beta_mode(beta);
    for (j = 0; j < n; j++) {
        const float *bj = b + j * ldb;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        float tail = 0.0f;
        for (p = 0; p + 32 <= k; p += 32) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(bj + p), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), _mm256_loadu_ps(bj + p + 8), acc1);
            acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 16), _mm256_loadu_ps(bj + p + 16), acc2);
            acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 24), _mm256_loadu_ps(bj + p + 24), acc3);
        }
        for (; p + 8 <= k; p += 8)
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(bj + p), acc0);
        for (; p < k; p++) tail += x[p] * bj[p];
        acc0 = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
        dl__store_scalar(y + j, dl__avx2_hsum(acc0) + tail, alpha, beta, mode);
    }
}

DL__TARGET_AVX2 static void dl__avx2_dots_block(int m, int n, int k, const float *x,
                                                ptrdiff_t ldx, const float *b, ptrdiff_t ldb,
                                                float *y, ptrdiff_t ldy, float alpha, float beta) {
    int i;
    for (i = 0; i < m; i++) dl__avx2_dots(n, k, x + i * ldx, b, ldb, y + i * ldy, alpha, beta);
}

static const dl__gemm_kernels dl__gemm_avx2 = {
    "avx2", 6, 16, 256, 144, 4096,
    {0, dl__avx2_packed_1, dl__avx2_packed_2, dl__avx2_packed_3, dl__avx2_packed_4,
     dl__avx2_packed_5, dl__avx2_packed_6},
    {0, dl__avx2_strided_1, dl__avx2_strided_2, dl__avx2_strided_3, dl__avx2_strided_4,
     dl__avx2_strided_5, dl__avx2_strided_6},
    dl__avx2_gemv, dl__avx2_dots, dl__avx2_dots_block, NULL, NULL, NULL};
#endif /* DL__X86_SIMD */

/* ---- Choosing the kernel ---- */

static const dl__gemm_kernels *dl__gemm_active;

static int dl__gemm_supported(const dl__gemm_kernels *kern) {
#ifdef DL__X86_SIMD
    __builtin_cpu_init();
    if (kern == &dl__gemm_avx512) return __builtin_cpu_supports("avx512f");
    if (kern == &dl__gemm_avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return kern == &dl__gemm_generic;
}

static const dl__gemm_kernels *dl__gemm_by_name(const char *name) {
    if (!name) return NULL;
#ifdef DL__X86_SIMD
    if (strcmp(name, "avx512") == 0) return &dl__gemm_avx512;
    if (strcmp(name, "avx2") == 0) return &dl__gemm_avx2;
#endif
    if (strcmp(name, "generic") == 0) return &dl__gemm_generic;
    return NULL;
}

static const dl__gemm_kernels *dl__gemm_kernels_get(void);

DLDEF int dl_gemm_set_kernel(const char *name) {
    const dl__gemm_kernels *kern = dl__gemm_by_name(name);
    dl__gemm_kernels_get();   /* the automatic choice happens first, so it cannot undo this */
    if (!kern || !dl__gemm_supported(kern)) return 0;
    dl__gemm_active = kern;
    return 1;
}

static void dl__gemm_choose_kernel(void) {
    const dl__gemm_kernels *forced = dl__gemm_by_name(getenv("DL_GEMM_KERNEL"));
    if (forced && dl__gemm_supported(forced)) dl__gemm_active = forced;
#ifdef DL__X86_SIMD
    else if (dl__gemm_supported(&dl__gemm_avx512)) dl__gemm_active = &dl__gemm_avx512;
    else if (dl__gemm_supported(&dl__gemm_avx2)) dl__gemm_active = &dl__gemm_avx2;
#endif
    else dl__gemm_active = &dl__gemm_generic;
}

#ifdef DL__THREADS
static pthread_once_t dl__gemm_choose_once = PTHREAD_ONCE_INIT;
#endif

static const dl__gemm_kernels *dl__gemm_kernels_get(void) {
#ifdef DL__THREADS
    pthread_once(&dl__gemm_choose_once, dl__gemm_choose_kernel);
#else
    if (!dl__gemm_active) dl__gemm_choose_kernel();
#endif
    return dl__gemm_active;
}

DLDEF const char *dl_gemm_kernel_name(void) { return dl__gemm_kernels_get()->name; }

/* ---- Per-thread packing buffers ----

   Each thread that runs GEMM work owns one workspace: its packed A block and B panel. They grow
   to the largest size needed and are then reused, so steady-state calls do not allocate.
   Which pool thread runs which task changes from call to call, so a thread could meet a large
   shape for the first time long after others did; to keep "no allocation in steady state"
   true, the pool also grows every worker's workspace to the largest size any thread has needed
   (dl__ws_high_*) before it posts a job, while the workers are idle. */

typedef struct dl__gemm_workspace {
    void *a_mem, *b_mem;         /* as allocated */
    float *a, *b;                /* 64-byte aligned */
    size_t a_cap, b_cap;         /* in floats */
} dl__gemm_workspace;

static size_t dl__ws_high_a, dl__ws_high_b;   /* largest a / b sizes needed so far, in floats */
static void dl__ws_note_high(size_t *high, size_t n_floats);

static float *dl__workspace_grow(void **mem, float **aligned, size_t *cap, size_t n_floats, size_t *high) {
    if (*cap < n_floats) {
        dl__ws_note_high(high, n_floats);
        void *fresh = DL_MALLOC(n_floats * sizeof(float) + 64);
        if (!fresh) return NULL;
        if (*mem) DL_FREE(*mem);
        *mem = fresh;
        *aligned = (float *)(void *)(((uintptr_t)fresh + 63) & ~(uintptr_t)63);
        *cap = n_floats;
    }
    return *aligned;
}

static void dl__workspace_free(dl__gemm_workspace *ws) {
    if (ws->a_mem) DL_FREE(ws->a_mem);
    if (ws->b_mem) DL_FREE(ws->b_mem);
    memset(ws, 0, sizeof *ws);
}

#ifdef DL__THREADS
static pthread_key_t dl__workspace_key;
static pthread_once_t dl__workspace_key_once = PTHREAD_ONCE_INIT;

static void dl__workspace_destroy(void *ws) {   /* runs when a thread that used GEMM exits */
    dl__workspace_free((dl__gemm_workspace *)ws);
    DL_FREE(ws);
}
static void dl__workspace_key_create(void) {
    pthread_key_create(&dl__workspace_key, dl__workspace_destroy);
}

static dl__gemm_workspace *dl__workspace_get(void) {
    dl__gemm_workspace *ws;
    pthread_once(&dl__workspace_key_once, dl__workspace_key_create);
    ws = (dl__gemm_workspace *)pthread_getspecific(dl__workspace_key);
    if (!ws) {
        ws = (dl__gemm_workspace *)DL_MALLOC(sizeof *ws);
        if (!ws) return NULL;
        memset(ws, 0, sizeof *ws);
        if (pthread_setspecific(dl__workspace_key, ws) != 0) {
            DL_FREE(ws);
            return NULL;
        }
    }
    return ws;
}

static void dl__workspace_release_mine(void) {
    dl__gemm_workspace *ws;
    pthread_once(&dl__workspace_key_once, dl__workspace_key_create);
    ws = (dl__gemm_workspace *)pthread_getspecific(dl__workspace_key);
    if (ws) {
        pthread_setspecific(dl__workspace_key, NULL);
        dl__workspace_destroy(ws);
    }
}
#else
static void dl__ws_note_high(size_t *high, size_t n_floats) { if (*high < n_floats) *high = n_floats; }
static dl__gemm_workspace dl__the_workspace;
static dl__gemm_workspace *dl__workspace_get(void) { return &dl__the_workspace; }
static void dl__workspace_release_mine(void) { dl__workspace_free(&dl__the_workspace); }
#endif

/* ---- The thread pool ----

   Workers sleep on a condition variable. dl_parallel_for posts a job (function, context, task
   count), wakes them, claims tasks itself like a worker, and waits until every task is done.
   Tasks are handed out one at a time under the mutex, so any number of tasks works; GEMM posts
   one coarse task per thread. One job at a time: `dispatch` is held by the thread running a job,
   and a call that cannot take it (a nested call from a task, or another user thread) runs its
   tasks serially right away. */

static int dl__num_threads;   /* 0 until decided */

#ifdef DL__THREADS
static int dl__default_num_threads(void) {
    const char *env = getenv("DL_NUM_THREADS");
    char *end;
    long v = env ? strtol(env, &end, 10) : 0; /* not atoi: "4294967356" must not read as 60 */
    int n = env && end != env && *end == 0 && v > 0 ? (v > 256 ? 256 : (int)v) : 0; /* garbage: the default */
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    if (n > 256) n = 256;
    return n;
}
#endif

static void dl__parallel_serial(int n_tasks, dl_parallel_fn fn, void *ctx) {
    int task;
    for (task = 0; task < n_tasks; task++) fn(ctx, task);
}

#ifdef DL__THREADS
static pthread_mutex_t dl__threadpool_mutex = PTHREAD_MUTEX_INITIALIZER;   /* guards the job */
static pthread_mutex_t dl__threadpool_dispatch = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_cond_t dl__threadpool_wake = PTHREAD_COND_INITIALIZER;      /* new job or quit */
static pthread_cond_t dl__threadpool_done = PTHREAD_COND_INITIALIZER;      /* last task finished */
static pthread_t *dl__threadpool_workers;
static int dl__threadpool_worker_count;
static int dl__threadpool_quit;                 /* written under the mutex, atomically */
static unsigned long dl__threadpool_job_id;     /* written under the mutex, atomically */
static int dl__threadpool_tasks_left;           /* written under the mutex, atomically */
static dl_parallel_fn dl__threadpool_fn;
static void *dl__threadpool_ctx;
static int dl__threadpool_n_tasks, dl__threadpool_next_task;

/* Waking a sleeping thread costs tens of microseconds (much more than a small GEMM), so both
   sides spin for a while before sleeping: workers waiting for the next job, the caller waiting
   for the last task. With GNU C atomics only; elsewhere they go straight to sleep. */
#if defined(__GNUC__) && !defined(DL_NO_SPIN)
#ifndef DL_SPIN_ITERATIONS
#define DL_SPIN_ITERATIONS 30000   /* pause instructions, roughly 0.1 to 1 ms */
#endif
#define DL__THREADPOOL_STORE(var, value) __atomic_store_n(&(var), (value), __ATOMIC_RELEASE)
#define DL__THREADPOOL_LOAD(var) __atomic_load_n(&(var), __ATOMIC_ACQUIRE)
static void dl__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
/* Called with the mutex held; returns with it held. */
static void dl__threadpool_spin_until_new_job(unsigned long seen) {
    int i;
    pthread_mutex_unlock(&dl__threadpool_mutex);
    for (i = 0; i < DL_SPIN_ITERATIONS; i++) {
        if (DL__THREADPOOL_LOAD(dl__threadpool_job_id) != seen || DL__THREADPOOL_LOAD(dl__threadpool_quit)) break;
        dl__cpu_relax();
    }
    pthread_mutex_lock(&dl__threadpool_mutex);
}
static void dl__threadpool_spin_until_done(void) {
    int i;
    pthread_mutex_unlock(&dl__threadpool_mutex);
    for (i = 0; i < DL_SPIN_ITERATIONS && DL__THREADPOOL_LOAD(dl__threadpool_tasks_left) > 0; i++) dl__cpu_relax();
    pthread_mutex_lock(&dl__threadpool_mutex);
}
#else
#define DL__THREADPOOL_STORE(var, value) ((var) = (value))
static void dl__threadpool_spin_until_new_job(unsigned long seen) { (void)seen; }
static void dl__threadpool_spin_until_done(void) {}
#endif

static pthread_mutex_t dl__ws_mutex = PTHREAD_MUTEX_INITIALIZER;   /* guards dl__ws_high_a/_b */
/* The workers' workspaces, [worker_count]; read and written only with dispatch held. */
static dl__gemm_workspace **dl__threadpool_ws;

static void dl__ws_note_high(size_t *high, size_t n_floats) {
    pthread_mutex_lock(&dl__ws_mutex);
    if (*high < n_floats) *high = n_floats;
    pthread_mutex_unlock(&dl__ws_mutex);
}

/* Grows ws to the high-water sizes. For a worker's workspace: only while the pool is idle. */
static void dl__ws_grow_to_high(dl__gemm_workspace *ws) {
    size_t high_a, high_b;
    if (!ws) return;
    pthread_mutex_lock(&dl__ws_mutex);
    high_a = dl__ws_high_a;
    high_b = dl__ws_high_b;
    pthread_mutex_unlock(&dl__ws_mutex);
    if (high_a) dl__workspace_grow(&ws->a_mem, &ws->a, &ws->a_cap, high_a, &dl__ws_high_a);
    if (high_b) dl__workspace_grow(&ws->b_mem, &ws->b, &ws->b_cap, high_b, &dl__ws_high_b);
}

/* Claims and runs tasks of the current job until none is left. Called with the mutex held. */
static void dl__threadpool_run_tasks(void) {
    while (dl__threadpool_next_task < dl__threadpool_n_tasks) {
        int task = dl__threadpool_next_task++;
        dl_parallel_fn fn = dl__threadpool_fn;
        void *ctx = dl__threadpool_ctx;
        pthread_mutex_unlock(&dl__threadpool_mutex);
        fn(ctx, task);
        pthread_mutex_lock(&dl__threadpool_mutex);
        DL__THREADPOOL_STORE(dl__threadpool_tasks_left, dl__threadpool_tasks_left - 1);
        if (dl__threadpool_tasks_left == 0) pthread_cond_signal(&dl__threadpool_done);
    }
}

#ifndef DL__TEST_WORKER_START
#define DL__TEST_WORKER_START() ((void)0)   /* tests delay worker start through this */
#endif
/* arg is the worker's workspace, allocated by dl__threadpool_start; it becomes this thread's
   own (freed by the key's destructor when the thread exits). */
static void *dl__threadpool_worker_main(void *arg) {
    unsigned long seen;
    DL__TEST_WORKER_START();
    pthread_once(&dl__workspace_key_once, dl__workspace_key_create);
    pthread_setspecific(dl__workspace_key, arg);
    pthread_mutex_lock(&dl__threadpool_mutex);
    seen = dl__threadpool_job_id;
    for (;;) {
        dl__threadpool_spin_until_new_job(seen);
        while (!dl__threadpool_quit && dl__threadpool_job_id == seen)
            pthread_cond_wait(&dl__threadpool_wake, &dl__threadpool_mutex);
        if (dl__threadpool_quit) break;
        seen = dl__threadpool_job_id;
        dl__threadpool_run_tasks();
    }
    pthread_mutex_unlock(&dl__threadpool_mutex);
    return NULL;
}

/* Stops and joins the workers. Called with dispatch held. */
static void dl__threadpool_stop(void) {
    int i;
    pthread_mutex_lock(&dl__threadpool_mutex);
    DL__THREADPOOL_STORE(dl__threadpool_quit, 1);
    pthread_cond_broadcast(&dl__threadpool_wake);
    pthread_mutex_unlock(&dl__threadpool_mutex);
    for (i = 0; i < dl__threadpool_worker_count; i++) pthread_join(dl__threadpool_workers[i], NULL);
    if (dl__threadpool_workers) DL_FREE(dl__threadpool_workers);
    if (dl__threadpool_ws) DL_FREE(dl__threadpool_ws);
    dl__threadpool_workers = NULL;
    dl__threadpool_ws = NULL;
    dl__threadpool_worker_count = 0;
    DL__THREADPOOL_STORE(dl__threadpool_quit, 0);
}

/* Makes sure there are `wanted` workers. Called with dispatch held. */
static void dl__threadpool_start(int wanted) {
    if (dl__threadpool_worker_count == wanted) return;
    if (dl__threadpool_worker_count) dl__threadpool_stop();
    dl__threadpool_workers = (pthread_t *)DL_MALLOC((size_t)wanted * sizeof(pthread_t));
    dl__threadpool_ws = (dl__gemm_workspace **)DL_MALLOC((size_t)wanted * sizeof(dl__gemm_workspace *));
    if (!dl__threadpool_workers || !dl__threadpool_ws) {
        if (dl__threadpool_workers) DL_FREE(dl__threadpool_workers);
        if (dl__threadpool_ws) DL_FREE(dl__threadpool_ws);
        dl__threadpool_workers = NULL;
        dl__threadpool_ws = NULL;
        return;
    }
    memset(dl__threadpool_ws, 0, (size_t)wanted * sizeof(dl__gemm_workspace *));
    /* Each worker's workspace is made here, before its thread runs, so that the pool can grow it
       to the high-water sizes from the first job on: a worker the OS schedules late (a loaded
       machine) must not allocate its own workspace steps later, in what should be steady state. */
    while (dl__threadpool_worker_count < wanted) {
        int i = dl__threadpool_worker_count;
        dl__gemm_workspace *ws = (dl__gemm_workspace *)DL_MALLOC(sizeof *ws);
        if (!ws) break;
        memset(ws, 0, sizeof *ws);
        if (pthread_create(&dl__threadpool_workers[i], NULL, dl__threadpool_worker_main, ws) != 0) {
            DL_FREE(ws);
            break;
        }
        dl__threadpool_ws[i] = ws;
        dl__threadpool_worker_count++;
    }
}
#endif /* DL__THREADS */

DLDEF void dl_set_num_threads(int n) {
#ifdef DL__THREADS
    pthread_mutex_lock(&dl__threadpool_mutex);
    dl__num_threads = n > 0 ? (n > 256 ? 256 : n) : dl__default_num_threads();
    pthread_mutex_unlock(&dl__threadpool_mutex);
#else
    (void)n;
    dl__num_threads = 1;
#endif
}

DLDEF int dl_num_threads(void) {
#ifdef DL__THREADS
    int n;
    pthread_mutex_lock(&dl__threadpool_mutex);
    if (!dl__num_threads) dl__num_threads = dl__default_num_threads();
    n = dl__num_threads;
    pthread_mutex_unlock(&dl__threadpool_mutex);
    return n;
#else
    return 1;
#endif
}

DLDEF void dl_parallel_for(int n_tasks, dl_parallel_fn fn, void *ctx) {
#ifdef DL__THREADS
    int threads;
    if (n_tasks <= 0) return;
    threads = dl_num_threads();
    if (threads <= 1 || n_tasks == 1 || pthread_mutex_trylock(&dl__threadpool_dispatch) != 0) {
        dl__parallel_serial(n_tasks, fn, ctx);
        return;
    }
    dl__threadpool_start(threads - 1);
    {   /* Workers are idle now: bring every workspace up to the largest size seen. */
        int i;
        dl__ws_grow_to_high(dl__workspace_get());
        for (i = 0; i < dl__threadpool_worker_count; i++) dl__ws_grow_to_high(dl__threadpool_ws[i]);
    }
    pthread_mutex_lock(&dl__threadpool_mutex);
    dl__threadpool_fn = fn;
    dl__threadpool_ctx = ctx;
    dl__threadpool_n_tasks = n_tasks;
    dl__threadpool_next_task = 0;
    DL__THREADPOOL_STORE(dl__threadpool_tasks_left, n_tasks);
    DL__THREADPOOL_STORE(dl__threadpool_job_id, dl__threadpool_job_id + 1);
    pthread_cond_broadcast(&dl__threadpool_wake);
    dl__threadpool_run_tasks();
    if (dl__threadpool_tasks_left > 0) dl__threadpool_spin_until_done();
    while (dl__threadpool_tasks_left > 0) pthread_cond_wait(&dl__threadpool_done, &dl__threadpool_mutex);
    pthread_mutex_unlock(&dl__threadpool_mutex);
    pthread_mutex_unlock(&dl__threadpool_dispatch);
#else
    if (n_tasks > 0) dl__parallel_serial(n_tasks, fn, ctx);
#endif
}

DLDEF void dl_threads_shutdown(void) {
#ifdef DL__THREADS
    pthread_mutex_lock(&dl__threadpool_dispatch);
    if (dl__threadpool_worker_count) dl__threadpool_stop();
    pthread_mutex_unlock(&dl__threadpool_dispatch);
#endif
    dl__workspace_release_mine();
}

/* ---- The blocked GEMM ---- */

typedef struct dl__gemm_job {
    const dl__gemm_kernels *kern;
    int trans_a, trans_b, m, n, k;
    float alpha, beta;
    const float *a, *b;
    float *c;
    ptrdiff_t lda, ldb, ldc;
    int pack_a;          /* pack op(A), or let the kernel read it in place */
    int pack_b;          /* pack op(B), or let the kernel read it in place (trans_b == 0) */
    int split_columns;   /* the thread tiles cut C by columns (else by rows) */
    int rows_use_dots;   /* row path: dot products (else GEMV) */
    int rows_copy_b;     /* row path: copy op(B)^T first */
    int n_tiles;
} dl__gemm_job;

/* Packs op(A)[i0:i0+mc, p0:p0+kc] as MR-row micro-panels: panel r, step p holds op(A)[i, p] for
   the MR rows i of the panel, at dst[r * MR * kc + p * MR + (i - first row)]. */
static void dl__pack_a(const dl__gemm_job *job, int i0, int mc, int p0, int kc, float *dst) {
    int mr = job->kern->mr, ir, i, p;
    for (ir = 0; ir < mc; ir += mr) {
        int rows = mc - ir < mr ? mc - ir : mr;
        if (!job->trans_a) {   /* rows of op(A) are contiguous: gather one column at a time */
            const float *src = job->a + (size_t)(i0 + ir) * job->lda + p0;
            ptrdiff_t lda = job->lda;
            if (rows == mr && job->kern->pack_a_panel) job->kern->pack_a_panel(src, lda, kc, dst);
            else for (p = 0; p < kc; p++)
                for (i = 0; i < rows; i++) dst[(size_t)p * mr + i] = src[i * lda + p];
        } else {   /* column p of op(A) is contiguous: copy `rows` values per step */
            for (p = 0; p < kc; p++)
                memcpy(dst + (size_t)p * mr, job->a + (size_t)(p0 + p) * job->lda + i0 + ir,
                       (size_t)rows * sizeof(float));
        }
        dst += (size_t)mr * kc;
    }
}

/* Packs op(B)[p0:p0+kc, j0:j0+nc] as NR-column micro-panels, zero-padding the last one. */
static void dl__pack_b(const dl__gemm_job *job, int p0, int kc, int j0, int nc, float *dst) {
    int nr = job->kern->nr, jr, j, p;
    for (jr = 0; jr < nc; jr += nr) {
        int cols = nc - jr < nr ? nc - jr : nr;
        if (!job->trans_b) {   /* row p of op(B) is contiguous */
            for (p = 0; p < kc; p++) {
                float *out = dst + (size_t)p * nr;
                memcpy(out, job->b + (size_t)(p0 + p) * job->ldb + j0 + jr,
                       (size_t)cols * sizeof(float));
                if (cols < nr) memset(out + cols, 0, (size_t)(nr - cols) * sizeof(float));
            }
        } else if (cols == nr && job->kern->pack_bt_panel) {   /* transposed in registers */
            job->kern->pack_bt_panel(job->b + (size_t)(j0 + jr) * job->ldb + p0, job->ldb, kc, dst);
        } else {   /* column j of op(B) is contiguous: scatter it with stride NR */
            for (j = 0; j < cols; j++) {
                const float *src = job->b + (size_t)(j0 + jr + j) * job->ldb + p0;
                float *out = dst + j;
                for (p = 0; p < kc; p++) out[(size_t)p * nr] = src[p];
            }
            for (p = 0; cols < nr && p < kc; p++)
                memset(dst + (size_t)p * nr + cols, 0, (size_t)(nr - cols) * sizeof(float));
        }
        dst += (size_t)nr * kc;
    }
}

/* Plain triple loop, used only if packing room cannot be allocated. */
static void dl__gemm_naive(const dl__gemm_job *job, int i0, int i1, int j0, int j1) {
    int i, j, p, mode = dl__beta_mode(job->beta);
    for (i = i0; i < i1; i++)
        for (j = j0; j < j1; j++) {
            float acc = 0.0f;
            for (p = 0; p < job->k; p++) {
                float av = job->trans_a ? job->a[p * job->lda + i] : job->a[i * job->lda + p];
                float bv = job->trans_b ? job->b[j * job->ldb + p] : job->b[p * job->ldb + j];
                acc += av * bv;
            }
            dl__store_scalar(job->c + i * job->ldc + j, acc, job->alpha, job->beta, mode);
        }
}

/* Splits `units` panels into `parts` contiguous runs; returns the first panel of run `part`. */
static int dl__split(int units, int parts, int part) {
    return (int)(((long long)units * part) / parts);
}

/* The five loops on the tile C[i0:i1, j0:j1]. */
static void dl__gemm_tile(const dl__gemm_job *job, int i0, int i1, int j0, int j1) {
    const dl__gemm_kernels *kern = job->kern;
    const int MR = kern->mr, NR = kern->nr, KC = kern->kc, MC = kern->mc, NC = kern->nc;
    dl__gemm_workspace *ws = dl__workspace_get();
    int jc, pc, ic, jr, ir;
    float *packed_b, *packed_a = NULL;
    {   /* packing room: one B panel (or just its partial last micro-panel) and one A block */
        int nc_max = j1 - j0 < NC ? j1 - j0 : NC, mc_max = i1 - i0 < MC ? i1 - i0 : MC;
        int kc_max = job->k < KC ? job->k : KC;
        size_t b_size = (size_t)(job->pack_b ? (nc_max + NR - 1) / NR * NR : NR) * kc_max;
        size_t a_size = (size_t)((mc_max + MR - 1) / MR) * MR * kc_max + 16;
        packed_b = ws ? dl__workspace_grow(&ws->b_mem, &ws->b, &ws->b_cap, b_size, &dl__ws_high_b) : NULL;
        if (job->pack_a && packed_b) packed_a = dl__workspace_grow(&ws->a_mem, &ws->a, &ws->a_cap, a_size, &dl__ws_high_a);
        if (!packed_b || (job->pack_a && !packed_a)) {
            dl__gemm_naive(job, i0, i1, j0, j1);
            return;
        }
    }
    for (jc = j0; jc < j1; jc += NC) {
        int nc = j1 - jc < NC ? j1 - jc : NC, full_cols = nc / NR * NR;
        for (pc = 0; pc < job->k; pc += KC) {
            int kc = job->k - pc < KC ? job->k - pc : KC;
            float beta = pc == 0 ? job->beta : 1.0f;   /* later K blocks add to C */
            if (job->pack_b) dl__pack_b(job, pc, kc, jc, nc, packed_b);
            else if (full_cols < nc) dl__pack_b(job, pc, kc, jc + full_cols, nc - full_cols, packed_b);
            for (ic = i0; ic < i1; ic += MC) {
                int mc = i1 - ic < MC ? i1 - ic : MC;
                if (job->pack_a) dl__pack_a(job, ic, mc, pc, kc, packed_a);
                for (jr = 0; jr < nc; jr += NR) {
                    int cols = nc - jr < NR ? nc - jr : NR;
                    const float *bp = packed_b + (size_t)jr * kc;   /* B micro-panel */
                    ptrdiff_t rs_b = NR;
                    if (!job->pack_b) {   /* B in place; its partial last micro-panel packed */
                        bp = jr < full_cols ? job->b + (size_t)pc * job->ldb + jc + jr : packed_b;
                        rs_b = jr < full_cols ? job->ldb : NR;
                    }
                    /* In place, the rows are shared out evenly (64 = 13+13+13+13+12, not
                       14+14+14+14+8): a short micro-kernel wastes its fixed costs. Packed, the
                       panels are MR rows. Every element is computed the same way either way. */
                    int panels = (mc + MR - 1) / MR, q, rows;
                    for (q = 0, ir = 0; ir < mc; q++, ir += rows) {
                        float *cp;
                        rows = job->pack_a ? (mc - ir < MR ? mc - ir : MR)
                                           : dl__split(mc, panels, q + 1) - ir;
                        cp = job->c + (size_t)(ic + ir) * job->ldc + jc + jr;
                        if (job->pack_a) {
                            kern->packed[rows](rows, cols, kc, packed_a + (size_t)ir * kc, 1, MR,
                                               bp, rs_b, cp, job->ldc, job->alpha, beta);
                        } else if (!job->trans_a) {
                            const float *ap = job->a + (size_t)(ic + ir) * job->lda + pc;
                            kern->strided[rows](rows, cols, kc, ap, job->lda, 1, bp, rs_b, cp,
                                                job->ldc, job->alpha, beta);
                        } else {
                            const float *ap = job->a + (size_t)pc * job->lda + ic + ir;
                            kern->strided[rows](rows, cols, kc, ap, 1, job->lda, bp, rs_b, cp,
                                                job->ldc, job->alpha, beta);
                        }
                    }
                }
            }
        }
    }
}


static void dl__gemm_tile_task(void *ctx, int task) {
    const dl__gemm_job *job = (const dl__gemm_job *)ctx;
    if (job->split_columns) {
        int NR = job->kern->nr, panels = (job->n + NR - 1) / NR;
        int j0 = dl__split(panels, job->n_tiles, task) * NR;
        int j1 = dl__split(panels, job->n_tiles, task + 1) * NR;
        if (j1 > job->n) j1 = job->n;
        if (j0 < j1) dl__gemm_tile(job, 0, job->m, j0, j1);
    } else {
        int MR = job->kern->mr, panels = (job->m + MR - 1) / MR;
        int i0 = dl__split(panels, job->n_tiles, task) * MR;
        int i1 = dl__split(panels, job->n_tiles, task + 1) * MR;
        if (i1 > job->m) i1 = job->m;
        if (i0 < i1) dl__gemm_tile(job, i0, i1, 0, job->n);
    }
}

/* ---- Few rows or few columns: one row of C at a time, no blocking ----

   Row i of C is x^T op(B) with x = row i of op(A). When op(B) has contiguous rows (trans_b == 0)
   and C is wide, that is a GEMV sweeping the rows of B (dl__gemv_fn). Otherwise each element is
   a dot product of x with a row of op(B)^T (dl__dots_fn); a non-transposed B is first copied
   into op(B)^T, which is small because n is. Tasks cut C by rows when it has many, else by
   columns (in runs of 128 or 4, so every element is computed the same way in any split). */

#define DL__ROWS_CHUNK 128

static void dl__gemm_rows_part(const dl__gemm_job *job, int i0, int i1, int j0, int j1) {
    const dl__gemm_kernels *kern = job->kern;
    const float *bt = job->b;   /* op(B)^T, rows contiguous, for dot products */
    ptrdiff_t ldbt = job->trans_b ? job->ldb : 1;   /* 1: a single column with ldb == 1 */
    float *x_copy = NULL;
    int i, p, j;
    if (job->rows_use_dots && (job->trans_a || job->rows_copy_b)) {
        dl__gemm_workspace *ws = dl__workspace_get();
        size_t bt_size = job->rows_copy_b ? (size_t)(j1 - j0) * job->k : 1;
        float *room_b = ws ? dl__workspace_grow(&ws->b_mem, &ws->b, &ws->b_cap, bt_size, &dl__ws_high_b) : NULL;
        x_copy = ws ? dl__workspace_grow(&ws->a_mem, &ws->a, &ws->a_cap, (size_t)job->k, &dl__ws_high_a) : NULL;
        if (!room_b || !x_copy) {
            dl__gemm_naive(job, i0, i1, j0, j1);
            return;
        }
        if (job->rows_copy_b) {   /* op(B)^T[j][p] = B[p][j] */
            for (p = 0; p < job->k; p++)
                for (j = j0; j < j1; j++) room_b[(size_t)(j - j0) * job->k + p] = job->b[(size_t)p * job->ldb + j];
            bt = room_b - (ptrdiff_t)j0 * job->k;
            ldbt = job->k;
        }
    }
    if (job->rows_use_dots && !job->trans_a && !job->split_columns) {   /* a block at once */
        kern->dots_block(i1 - i0, j1 - j0, job->k, job->a + (size_t)i0 * job->lda, job->lda,
                         bt + j0 * ldbt, ldbt, job->c + (size_t)i0 * job->ldc + j0, job->ldc,
                         job->alpha, job->beta);
        return;
    }
    for (i = i0; i < i1; i++) {
        float *y = job->c + (size_t)i * job->ldc + j0;
        /* row i of op(A): x[p * incx] */
        ptrdiff_t incx = job->trans_a ? job->lda : 1;
        const float *x = job->trans_a ? job->a + i : job->a + (size_t)i * job->lda;
        if (!job->rows_use_dots) {
            kern->gemv(j1 - j0, job->k, x, incx, job->b + j0, job->ldb, y, job->alpha, job->beta);
            continue;
        }
        if (incx != 1) {   /* dot products want x contiguous */
            for (p = 0; p < job->k; p++) x_copy[p] = x[p * incx];
            x = x_copy;
        }
        kern->dots(j1 - j0, job->k, x, bt + j0 * ldbt, ldbt, y, job->alpha, job->beta);
    }
}

static void dl__gemm_rows_task(void *ctx, int task) {
    const dl__gemm_job *job = (const dl__gemm_job *)ctx;
    if (job->split_columns) {
        int chunk = job->rows_use_dots ? 4 : DL__ROWS_CHUNK, units = (job->n + chunk - 1) / chunk;
        int j0 = dl__split(units, job->n_tiles, task) * chunk;
        int j1 = dl__split(units, job->n_tiles, task + 1) * chunk;
        if (j1 > job->n) j1 = job->n;
        if (j0 < j1) dl__gemm_rows_part(job, 0, job->m, j0, j1);
    } else {
        int i0 = dl__split(job->m, job->n_tiles, task), i1 = dl__split(job->m, job->n_tiles, task + 1);
        if (i0 < i1) dl__gemm_rows_part(job, i0, i1, 0, job->n);
    }
}

/* ---- op(A) transposed, few columns: C^T = op(B)^T A, see dl__avx512_tn_body ---- */

#define DL__TN_CHUNK 64   /* rows per thread unit */

static void dl__gemm_tn_part(const dl__gemm_job *job, int i0, int i1) {
    ptrdiff_t rs_b = job->trans_b ? 1 : job->ldb, cs_b = job->trans_b ? job->ldb : 1;
    job->kern->tn_small(i1 - i0, job->n, job->k, job->a + i0, job->lda, job->b, rs_b, cs_b,
                        job->c + (size_t)i0 * job->ldc, job->ldc, job->alpha, job->beta);
}

static void dl__gemm_tn_task(void *ctx, int task) {
    const dl__gemm_job *job = (const dl__gemm_job *)ctx;
    int units = (job->m + DL__TN_CHUNK - 1) / DL__TN_CHUNK;
    int i0 = dl__split(units, job->n_tiles, task) * DL__TN_CHUNK;
    int i1 = dl__split(units, job->n_tiles, task + 1) * DL__TN_CHUNK;
    if (i1 > job->m) i1 = job->m;
    if (i0 < i1) dl__gemm_tn_part(job, i0, i1);
}

/* ---- Entry point ---- */

static void dl__gemm_scale_c(int m, int n, float beta, float *c, int ldc) {
    int i, j;
    for (i = 0; i < m; i++) {
        float *row = c + (size_t)i * ldc;
        if (beta == 0.0f) memset(row, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f)
            for (j = 0; j < n; j++) row[j] *= beta;
    }
}

DLDEF void dl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    dl__gemm_job job;
    double flops = (double)m * n * k;
    int threads, units;
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {   /* C = beta * C, A and B not read */
        dl__gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    if (n == 1 && ldc == 1 && m > 1) {
        /* A column of C that is contiguous: compute C^T = op(B)^T op(A)^T, a single row. */
        dl_sgemm(!trans_b, !trans_a, 1, m, k, alpha, b, ldb, a, lda, beta, c, m);
        return;
    }
    memset(&job, 0, sizeof job);
    job.kern = dl__gemm_kernels_get();
    job.trans_a = trans_a != 0;
    job.trans_b = trans_b != 0;
    job.m = m, job.n = n, job.k = k;
    job.alpha = alpha, job.beta = beta;
    job.a = a, job.b = b, job.c = c;
    job.lda = lda, job.ldb = ldb, job.ldc = ldc;
    threads = flops >= DL__GEMM_PARALLEL_MIN_FLOPS ? dl_num_threads() : 1;

    if (trans_a && n <= DL__GEMM_TN_MAX_N && m > DL__GEMM_SMALL_M && job.kern->tn_small) {
        units = (m + DL__TN_CHUNK - 1) / DL__TN_CHUNK;
        job.n_tiles = threads < units ? threads : units;
        if (job.n_tiles > 1) dl_parallel_for(job.n_tiles, dl__gemm_tn_task, &job);
        else dl__gemm_tn_part(&job, 0, m);
        return;
    }
    if (m <= DL__GEMM_SMALL_M || (2 * n < job.kern->nr && !trans_a)) {   /* row by row */
        int chunk;
        job.rows_use_dots = trans_b || (n == 1 && ldb == 1) || m > DL__GEMM_SMALL_M;
        job.rows_copy_b = job.rows_use_dots && !trans_b && !(n == 1 && ldb == 1);
        job.split_columns = m <= DL__GEMM_SMALL_M;
        chunk = job.rows_use_dots ? 4 : DL__ROWS_CHUNK;
        units = job.split_columns ? (n + chunk - 1) / chunk : m;
        job.n_tiles = threads < units ? threads : units;
        if (job.n_tiles > 1) dl_parallel_for(job.n_tiles, dl__gemm_rows_task, &job);
        else dl__gemm_rows_part(&job, 0, m, 0, n);
        return;
    }

    /* Pack op(A) when it is big and each of its values feeds enough micro-kernel calls (n / NR
       of them). Read in place, a block of A that fits the L2 cache is as fast as a packed one
       (measured), and the copy is saved; a big one with a power-of-two row stride thrashes the
       cache sets and needs the packed copy. */
    job.pack_a = n > 2 * job.kern->nr && (double)m * k > DL__GEMM_PACK_MIN_FLOATS;
    /* Pack op(B) when it must be transposed, or is big (the same reasoning as for A). */
    job.pack_b = trans_b || (double)k * n > DL__GEMM_PACK_MIN_FLOATS;
    /* One tile per thread, cut along the longer side of C so the copies made by packing the
       other operand twice are the smaller ones. */
    job.split_columns = n >= m;
    units = job.split_columns ? (n + job.kern->nr - 1) / job.kern->nr
                              : (m + job.kern->mr - 1) / job.kern->mr;
    job.n_tiles = threads < units ? threads : units;
    if (job.n_tiles > 1) dl_parallel_for(job.n_tiles, dl__gemm_tile_task, &job);
    else dl__gemm_tile(&job, 0, m, 0, n);
}
/* ==== Elementwise math, reductions, shape ops (tests: tests/test_ops_math.c) ================== */

/* ---- Argument checks (each sets a message naming the op and returns 0 on failure) ---- */

static int dl__check_cpu(const char *op, const dl_tensor *x) {
    if (x->device != DL_DEVICE_CPU) { dl__fail("%s: tensor is not on the CPU", op); return 0; }
    return 1;
}

static int dl__check_f32(const char *op, const dl_tensor *x) {
    if (!dl__check_cpu(op, x)) return 0;
    if (x->dtype != DL_DTYPE_F32) { dl__fail("%s: need an f32 tensor, got %s", op, dl_dtype_name(x->dtype)); return 0; }
    return 1;
}

/* An axis in [-ndim, ndim) made non-negative; -1 (with a message) when out of range. */
static int dl__axis(const char *op, int axis, int ndim) {
    if (axis < -ndim || axis >= ndim) { dl__fail("%s: axis %d out of range for a %d-d tensor", op, axis, ndim); return -1; }
    return axis < 0 ? axis + ndim : axis;
}

/* Product of the sizes before and after axis: a contiguous tensor is then [outer, size, inner]. */
static void dl__outer_inner(const dl_tensor *t, int axis, size_t *outer, size_t *inner) {
    int i;
    *outer = *inner = 1;
    for (i = 0; i < axis; i++) *outer *= (size_t)t->shape[i];
    for (i = axis + 1; i < t->ndim; i++) *inner *= (size_t)t->shape[i];
}

/* t's elements in row-major order, any dtype: t's own data when contiguous, else an arena copy. */
static const void *dl__contig_data(const dl_tensor *t) {
    size_t i, es = dl_dtype_size(t->dtype);
    char *p;
    if (dl_is_contiguous(t)) return t->data;
    if (t->dtype == DL_DTYPE_F32) return dl_contig_f32(t);
    p = (char *)dl__tmp_alloc(t->numel * es);
    if (p) for (i = 0; i < t->numel; i++) memcpy(p + i * es, (const char *)t->data + dl__offset_of(t, i) * (ptrdiff_t)es, es);
    return p;
}

/* ---- The row iterator ----
   Walks a shape row by row for up to four operands, each with its own element strides (0 along
   axes where it is broadcast). Size-1 axes are dropped and neighbouring axes that every operand
   steps through contiguously are merged, so a same-shape contiguous op is one long row,
   x[B, N] + b[N] is B rows of N, and inner loops see strides 1 or 0 whenever they can:
       dl__iter it; dl__iter_begin(&it, ndim, shape); dl__iter_op(&it, strides_a); ...;
       dl__iter_ready(&it);
       for (r = 0; r < it.rows; r++, dl__iter_next(&it)) row(base_a + it.off[0], it.inner[0], ..., it.n); */

#define DL__MAX_OPS 4

typedef struct dl__iter {
    int nops, ndim;
    ptrdiff_t shape[DL_MAX_DIMS];
    ptrdiff_t strides[DL__MAX_OPS][DL_MAX_DIMS];
    ptrdiff_t idx[DL_MAX_DIMS];
    size_t rows;                   /* rows to visit */
    ptrdiff_t n;                   /* elements per row */
    ptrdiff_t inner[DL__MAX_OPS];  /* each operand's stride along a row */
    ptrdiff_t off[DL__MAX_OPS];    /* each operand's offset of the current row's first element */
} dl__iter;

static void dl__iter_begin(dl__iter *it, int ndim, const int *shape) {
    int i;
    memset(it, 0, sizeof *it);
    it->ndim = ndim;
    for (i = 0; i < ndim; i++) it->shape[i] = shape[i];
}

static void dl__iter_op(dl__iter *it, const ptrdiff_t *strides) {
    int i;
    for (i = 0; i < it->ndim; i++) it->strides[it->nops][i] = strides[i];
    it->nops++;
}

static void dl__iter_ready(dl__iter *it) {
    int i, k, nd = 0, m = 0;
    size_t numel = 1;
    for (i = 0; i < it->ndim; i++) { /* drop size-1 axes */
        numel *= (size_t)it->shape[i];
        if (it->shape[i] == 1) continue;
        it->shape[nd] = it->shape[i];
        for (k = 0; k < it->nops; k++) it->strides[k][nd] = it->strides[k][i];
        nd++;
    }
    for (i = 1; i < nd; i++) { /* merge axis i into the kept axis m when all operands allow it */
        int merge = 1;
        for (k = 0; k < it->nops; k++)
            if (it->strides[k][m] != it->strides[k][i] * it->shape[i]) merge = 0;
        if (merge) it->shape[m] *= it->shape[i];
        else it->shape[++m] = it->shape[i];
        for (k = 0; k < it->nops; k++) it->strides[k][m] = it->strides[k][i];
    }
    if (nd == 0) { /* a single element */
        it->shape[0] = 1;
        for (k = 0; k < it->nops; k++) it->strides[k][0] = 0;
        m = 0;
    }
    it->ndim = m + 1;
    it->n = it->shape[m];
    it->rows = numel ? numel / (size_t)it->n : 0;
    for (k = 0; k < it->nops; k++) it->inner[k] = it->strides[k][m];
}

static void dl__iter_next(dl__iter *it) {
    int i, k;
    for (i = it->ndim - 2; i >= 0; i--) { /* odometer over the outer axes */
        for (k = 0; k < it->nops; k++) it->off[k] += it->strides[k][i];
        if (++it->idx[i] < it->shape[i]) return;
        for (k = 0; k < it->nops; k++) it->off[k] -= it->strides[k][i] * it->shape[i];
        it->idx[i] = 0;
    }
}

/* ---- Broadcasting ---- */

/* Strides that read a tensor of shape xshape (element strides xst) at the index of an nd-d
   broadcast result: aligned at the last axis, 0 where x lacks the axis or has size 1. */
static void dl__bcast_strides(int xnd, const int *xshape, const ptrdiff_t *xst, int nd, ptrdiff_t *out) {
    int i;
    for (i = 0; i < nd; i++) {
        int j = i - (nd - xnd);
        out[i] = (j >= 0 && xshape[j] != 1) ? xst[j] : 0;
    }
}

static int dl__broadcast_shape(const char *op, const dl_tensor *a, const dl_tensor *b, int *nd, int *shape) {
    int i;
    *nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (i = 0; i < *nd; i++) {
        int ia = i - (*nd - a->ndim), ib = i - (*nd - b->ndim);
        int sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char s1[64], s2[64];
            dl__fail("%s: shapes %s and %s cannot broadcast (axis %d: %d vs %d)", op,
                     dl_shape_str(a, s1, sizeof s1), dl_shape_str(b, s2, sizeof s2), i, sa, sb);
            return 0;
        }
        shape[i] = sa == 1 ? sb : sa;
    }
    return 1;
}

/* ---- Binary ops ---- */

static const char *const dl__binary_names[] = {"dl_add", "dl_sub", "dl_mul", "dl_div", "dl_minimum", "dl_maximum"};

/* o[i] = EXPR for one row, where A and B are the i-th elements of a and b (strides sa, sb).
   The stride patterns get their own loops so the compiler vectorizes the common ones. */
#define DL__BINARY_ROW(EXPR)                                                                               \
    do {                                                                                                   \
        if (sa == 1 && sb == 1) for (i = 0; i < n; i++) { float A = a[i], B = b[i]; o[i] = (EXPR); }        \
        else if (sa == 1 && sb == 0) { float B = b[0]; for (i = 0; i < n; i++) { float A = a[i]; o[i] = (EXPR); } } \
        else if (sa == 0 && sb == 1) { float A = a[0]; for (i = 0; i < n; i++) { float B = b[i]; o[i] = (EXPR); } } \
        else for (i = 0; i < n; i++) { float A = a[i * sa], B = b[i * sb]; o[i] = (EXPR); }               \
    } while (0)

static void dl__binary_row(int op, float *o, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t sb, ptrdiff_t n) {
    ptrdiff_t i;
    switch (op) {
    case DL__ADD: DL__BINARY_ROW(A + B); break;
    case DL__SUB: DL__BINARY_ROW(A - B); break;
    case DL__MUL: DL__BINARY_ROW(A * B); break;
    case DL__DIV: DL__BINARY_ROW(A / B); break;
    case DL__MIN: DL__BINARY_ROW((A != A || A < B) ? A : B); break; /* a NaN on either side wins */
    case DL__MAX: DL__BINARY_ROW((A != A || A > B) ? A : B); break;
    }
}

/* gx[i] += EXPR for one row, where G, A, B are the i-th output gradient, a and b. x's gradient
   steps 1 along the row, or 0 when x is broadcast along it: then the row is summed first. */
#define DL__GRAD_ROW(EXPR)                                                                                 \
    do {                                                                                                   \
        if (sx == 0) {                                                                                     \
            float s = 0;                                                                                   \
            for (i = 0; i < n; i++) { float G = g[i], A = a[i * sa], B = b[i * sb]; (void)A; (void)B; s += (EXPR); } \
            gx[0] += s;                                                                                    \
        } else {                                                                                           \
            for (i = 0; i < n; i++) { float G = g[i], A = a[i * sa], B = b[i * sb]; (void)A; (void)B; gx[i * sx] += (EXPR); } \
        }                                                                                                  \
    } while (0)

/* The gradient of a op b with respect to a (side 0) or b (side 1); at ties of minimum/maximum
   each side gets half, as in PyTorch, whose rule is "g, halved at ties, zeroed where the other
   side won": where either side is NaN no comparison holds, so both get the whole g. */
static void dl__binary_grad_row(int op, int side, float *gx, ptrdiff_t sx, const float *g, const float *a,
                                ptrdiff_t sa, const float *b, ptrdiff_t sb, ptrdiff_t n) {
    ptrdiff_t i;
    switch (op * 2 + side) {
    case DL__ADD * 2: case DL__ADD * 2 + 1: case DL__SUB * 2: DL__GRAD_ROW(G); break;
    case DL__SUB * 2 + 1: DL__GRAD_ROW(-G); break;
    case DL__MUL * 2: DL__GRAD_ROW(G * B); break;
    case DL__MUL * 2 + 1: DL__GRAD_ROW(G * A); break;
    case DL__DIV * 2: DL__GRAD_ROW(G / B); break;
    case DL__DIV * 2 + 1: DL__GRAD_ROW(-G * A / (B * B)); break;
    case DL__MIN * 2: DL__GRAD_ROW(A > B ? 0.0f : A == B ? 0.5f * G : G); break;
    case DL__MIN * 2 + 1: DL__GRAD_ROW(B > A ? 0.0f : A == B ? 0.5f * G : G); break;
    case DL__MAX * 2: DL__GRAD_ROW(A < B ? 0.0f : A == B ? 0.5f * G : G); break;
    case DL__MAX * 2 + 1: DL__GRAD_ROW(B < A ? 0.0f : A == B ? 0.5f * G : G); break;
    }
}

static void dl__binary_backward(dl_node *n) {
    int op = *(const int *)n->ctx, side;
    dl_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS];
    dl__bcast_strides(a->ndim, a->shape, a->strides, out->ndim, sa);
    dl__bcast_strides(b->ndim, b->shape, b->strides, out->ndim, sb);
    for (side = 0; side < 2; side++) {
        dl_tensor *x = n->in[side];
        float *gx = dl_grad_buf(x);
        ptrdiff_t xst[DL_MAX_DIMS], sx[DL_MAX_DIMS];
        dl__iter it;
        size_t r;
        if (!gx) continue;
        dl__contig_strides(x->ndim, x->shape, xst);
        dl__bcast_strides(x->ndim, x->shape, xst, out->ndim, sx);
        dl__iter_begin(&it, out->ndim, out->shape);
        dl__iter_op(&it, out->strides); /* out's gradient has out's (contiguous) strides */
        dl__iter_op(&it, sa);
        dl__iter_op(&it, sb);
        dl__iter_op(&it, sx);
        dl__iter_ready(&it);
        for (r = 0; r < it.rows; r++, dl__iter_next(&it))
            dl__binary_grad_row(op, side, gx + it.off[3], it.inner[3], out->grad + it.off[0],
                                (const float *)a->data + it.off[1], it.inner[1],
                                (const float *)b->data + it.off[2], it.inner[2], it.n);
    }
}

static dl_tensor *dl__binary(int op, dl_tensor *a, dl_tensor *b) {
    const char *name = dl__binary_names[op];
    int nd, shape[DL_MAX_DIMS] = {0};
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS];
    dl_tensor *out, *in[2];
    dl_node *node;
    dl__iter it;
    size_t r;
    if (!a || !b) return NULL;
#ifdef DL_CUDA
    if (a->device || b->device) return dl__cuda_binary(op, name, a, b);
#endif
    if (!dl__check_f32(name, a) || !dl__check_f32(name, b)) return NULL;
    if (!dl__broadcast_shape(name, a, b, &nd, shape)) return NULL;
    out = dl_tmp_uninit(DL_DTYPE_F32, nd, shape);
    if (!out) return NULL;
    dl__bcast_strides(a->ndim, a->shape, a->strides, nd, sa);
    dl__bcast_strides(b->ndim, b->shape, b->strides, nd, sb);
    dl__iter_begin(&it, nd, shape);
    dl__iter_op(&it, out->strides);
    dl__iter_op(&it, sa);
    dl__iter_op(&it, sb);
    dl__iter_ready(&it);
    for (r = 0; r < it.rows; r++, dl__iter_next(&it)) /* out is contiguous: its rows step 1 */
        dl__binary_row(op, (float *)out->data + it.off[0], (const float *)a->data + it.off[1], it.inner[1],
                       (const float *)b->data + it.off[2], it.inner[2], it.n);
    in[0] = a;
    in[1] = b;
    node = dl_record(name + 3, out, 2, in, dl__binary_backward, sizeof(int)); /* "dl_add" -> "add" */
    if (node) *(int *)node->ctx = op;
    return dl__checked(out);
}

DLDEF dl_tensor *dl_add(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__ADD, a, b); }
DLDEF dl_tensor *dl_sub(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__SUB, a, b); }
DLDEF dl_tensor *dl_mul(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__MUL, a, b); }
DLDEF dl_tensor *dl_div(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__DIV, a, b); }
DLDEF dl_tensor *dl_minimum(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__MIN, a, b); }
DLDEF dl_tensor *dl_maximum(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__MAX, a, b); }

/* ---- Unary ops (including those with a float scalar) ----
   y = f(x) elementwise on a contiguous copy of x; backward uses x or y as the formula needs. */


typedef struct dl__unary_ctx {
    int op;
    float p, q;        /* affine: y = p x + q; pow: exponent p; clamp: [p, q] */
    const float *x;    /* x's elements, contiguous */
} dl__unary_ctx;

static void dl__unary_backward(dl_node *n) {
    const dl__unary_ctx *c = (const dl__unary_ctx *)n->ctx;
    const float *x = c->x, *y = (const float *)n->out->data, *g = n->out->grad;
    float *gx = dl_grad_buf(n->in[0]), p = c->p, q = c->q;
    size_t i, len = n->out->numel;
    if (!gx) return;
    switch (c->op) {
    case DL__AFFINE: for (i = 0; i < len; i++) gx[i] += p * g[i]; break;
    case DL__POW:
        if (p == 0.0f) break; /* d(x^0) = 0 everywhere, also at x = 0 (PyTorch) */
        if (p == 2.0f) for (i = 0; i < len; i++) gx[i] += 2.0f * x[i] * g[i];
        else for (i = 0; i < len; i++) gx[i] += g[i] * p * powf(x[i], p - 1.0f);
        break;
    case DL__EXP: for (i = 0; i < len; i++) gx[i] += g[i] * y[i]; break;
    case DL__LOG: for (i = 0; i < len; i++) gx[i] += g[i] / x[i]; break;
    case DL__SQRT: for (i = 0; i < len; i++) gx[i] += g[i] / (2.0f * y[i]); break;
    case DL__ABS: for (i = 0; i < len; i++) gx[i] += x[i] > 0 ? g[i] : x[i] < 0 ? -g[i] : 0.0f; break;
    case DL__CLAMP: for (i = 0; i < len; i++) gx[i] += (x[i] >= p && x[i] <= q) ? g[i] : 0.0f; break;
    }
}

static dl_tensor *dl__unary(const char *name, int op, dl_tensor *xt, float p, float q) {
    dl_tensor *out;
    const float *x;
    float *y;
    size_t i, len;
    dl_node *node;
    if (!xt) return NULL;
#ifdef DL_CUDA
    if (xt->device) return dl__cuda_unary(name, op, xt, p, q);
#endif
    if (!dl__check_f32(name, xt)) return NULL;
    x = dl_contig_f32(xt);
    out = dl_tmp_uninit(DL_DTYPE_F32, xt->ndim, xt->shape);
    if (!x || !out) return NULL;
    y = (float *)out->data;
    len = out->numel;
    switch (op) {
    case DL__AFFINE: /* the special cases keep -0.0 and skip needless work */
        if (q == 0.0f) for (i = 0; i < len; i++) y[i] = p * x[i];
        else if (p == 1.0f) for (i = 0; i < len; i++) y[i] = x[i] + q;
        else for (i = 0; i < len; i++) y[i] = p * x[i] + q;
        break;
    case DL__POW:
        if (p == 2.0f) for (i = 0; i < len; i++) y[i] = x[i] * x[i];
        else for (i = 0; i < len; i++) y[i] = powf(x[i], p);
        break;
    case DL__EXP: for (i = 0; i < len; i++) y[i] = expf(x[i]); break;
    case DL__LOG: for (i = 0; i < len; i++) y[i] = logf(x[i]); break;
    case DL__SQRT: for (i = 0; i < len; i++) y[i] = sqrtf(x[i]); break;
    case DL__ABS: for (i = 0; i < len; i++) y[i] = fabsf(x[i]); break;
    case DL__CLAMP: /* NaN stays NaN; lo > hi gives hi everywhere, like torch.clamp */
        for (i = 0; i < len; i++) { float v = x[i] < p ? p : x[i]; y[i] = v > q ? q : v; }
        break;
    }
    node = dl_record(name + 3, out, 1, &xt, dl__unary_backward, sizeof(dl__unary_ctx));
    if (node) {
        dl__unary_ctx *c = (dl__unary_ctx *)node->ctx;
        c->op = op;
        c->p = p;
        c->q = q;
        c->x = x;
    }
    return dl__checked(out);
}

DLDEF dl_tensor *dl_add_scalar(dl_tensor *x, float s) { return dl__unary("dl_add_scalar", DL__AFFINE, x, 1.0f, s); }
DLDEF dl_tensor *dl_mul_scalar(dl_tensor *x, float s) { return dl__unary("dl_mul_scalar", DL__AFFINE, x, s, 0.0f); }
DLDEF dl_tensor *dl_rsub_scalar(float s, dl_tensor *x) { return dl__unary("dl_rsub_scalar", DL__AFFINE, x, -1.0f, s); }
DLDEF dl_tensor *dl_neg(dl_tensor *x) { return dl__unary("dl_neg", DL__AFFINE, x, -1.0f, 0.0f); }
DLDEF dl_tensor *dl_pow(dl_tensor *x, float p) { return dl__unary("dl_pow", DL__POW, x, p, 0.0f); }
DLDEF dl_tensor *dl_exp(dl_tensor *x) { return dl__unary("dl_exp", DL__EXP, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_log(dl_tensor *x) { return dl__unary("dl_log", DL__LOG, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_sqrt(dl_tensor *x) { return dl__unary("dl_sqrt", DL__SQRT, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_abs(dl_tensor *x) { return dl__unary("dl_abs", DL__ABS, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_clamp(dl_tensor *x, float lo, float hi) { return dl__unary("dl_clamp", DL__CLAMP, x, lo, hi); }

/* ---- Reductions ----
   Every reduction walks x once (in memory order, through its strides) with the row iterator and
   a second operand that indexes the result: the result's contiguous strides placed at x's axes,
   0 along reduced axes. Reducing the last axis then sums rows into one value, reducing the
   first axis adds whole rows into the result; both are plain stride-1 loops. Sums accumulate
   in double. */

typedef struct dl__reduce {
    int kind;                         /* 0 sum, 1 mean, 2 var, 3 max */
    int ndim, shape[DL_MAX_DIMS];     /* the result's shape (with or without kept axes) */
    ptrdiff_t rst[DL_MAX_DIMS];       /* the result's strides at x's index, 0 along reduced axes */
    size_t count;                     /* elements of x reduced into each result element */
    float scale;                      /* backward: sum 1, mean 1/N, var 2/(N - correction) */
    float *res;                       /* result values: the maxima of max, the means of var */
} dl__reduce;

static int dl__reduce_setup(const char *op, const dl_tensor *x, int naxes, const int *axes, int keepdim, dl__reduce *r) {
    int i, reduced[DL_MAX_DIMS] = {0}, kept[DL_MAX_DIMS];
    memset(r, 0, sizeof *r);
    if (naxes < 0 || naxes > DL_MAX_DIMS || (naxes > 0 && !axes)) { dl__fail("%s: bad naxes %d", op, naxes); return 0; }
    for (i = 0; i < x->ndim; i++) reduced[i] = naxes == 0;
    for (i = 0; i < naxes; i++) {
        int ax;
        if (x->ndim == 0 && (axes[i] == 0 || axes[i] == -1)) continue; /* a 0-d tensor has axis 0 (torch) */
        ax = dl__axis(op, axes[i], x->ndim);
        if (ax < 0) return 0;
        if (reduced[ax]) { dl__fail("%s: axis %d given twice", op, axes[i]); return 0; }
        reduced[ax] = 1;
    }
    r->count = 1;
    for (i = 0; i < x->ndim; i++) {
        kept[i] = reduced[i] ? 1 : x->shape[i];
        if (reduced[i]) r->count *= (size_t)x->shape[i];
        if (!reduced[i] || keepdim) r->shape[r->ndim++] = kept[i];
    }
    dl__contig_strides(x->ndim, kept, r->rst);
    for (i = 0; i < x->ndim; i++) if (reduced[i]) r->rst[i] = 0;
    return 1;
}

/* What one pass over x does, per element v of x and j of the result. */
enum {
    DL__R_SUM,       /* acc[j] += v */
    DL__R_SQDEV,     /* acc[j] += (v - res[j])^2 */
    DL__R_MAX,       /* res[j] = max(res[j], v), NaN wins */
    DL__R_COUNT,     /* acc[j] += (v == res[j]) */
    DL__R_GRAD_SUM,  /* gx += scale g[j] */
    DL__R_GRAD_VAR,  /* gx += scale g[j] (v - res[j]) */
    DL__R_GRAD_MAX   /* gx += g[j] / acc[j] where v == res[j] */
};

/* Sum of v[i * sv] for i < n in double, or of (v[i * sv] - *mean)^2 when mean is given. Four
   running sums keep the adds independent (about 3x faster than one dependency chain). */
static double dl__reduce_row_sum(const float *v, ptrdiff_t sv, ptrdiff_t n, const float *mean) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, m = mean ? *mean : 0.0, d0, d1, d2, d3;
    ptrdiff_t i;
    for (i = 0; i + 3 < n; i += 4) {
        d0 = v[i * sv] - m; d1 = v[(i + 1) * sv] - m; d2 = v[(i + 2) * sv] - m; d3 = v[(i + 3) * sv] - m;
        if (mean) { d0 *= d0; d1 *= d1; d2 *= d2; d3 *= d3; }
        s0 += d0; s1 += d1; s2 += d2; s3 += d3;
    }
    for (; i < n; i++) { d0 = v[i * sv] - m; s0 += mean ? d0 * d0 : d0; }
    return (s0 + s1) + (s2 + s3);
}

/* Maximum of v[i * sv] for i < n (n >= 1), NaN if any is NaN: four running maxima and a NaN
   flag, so no element waits for the previous comparison. */
static float dl__reduce_row_max(const float *v, ptrdiff_t sv, ptrdiff_t n) {
    float m0 = v[0], m1 = v[0], m2 = v[0], m3 = v[0], a0, a1, a2, a3;
    int nan = 0;
    ptrdiff_t i;
    for (i = 0; i + 3 < n; i += 4) {
        a0 = v[i * sv]; a1 = v[(i + 1) * sv]; a2 = v[(i + 2) * sv]; a3 = v[(i + 3) * sv];
        m0 = a0 > m0 ? a0 : m0; m1 = a1 > m1 ? a1 : m1; m2 = a2 > m2 ? a2 : m2; m3 = a3 > m3 ? a3 : m3;
        nan |= (a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3);
    }
    for (; i < n; i++) { a0 = v[i * sv]; m0 = a0 > m0 ? a0 : m0; nan |= a0 != a0; }
    m0 = m1 > m0 ? m1 : m0;
    m2 = m3 > m2 ? m3 : m2;
    return nan ? NAN : m2 > m0 ? m2 : m0;
}

static void dl__reduce_pass(int kind, const dl_tensor *x, const dl__reduce *r, double *acc, const float *g, float *gx) {
    ptrdiff_t gst[DL_MAX_DIMS], i;
    float *res = r->res, scale = r->scale;
    dl__iter it;
    size_t row;
    dl__contig_strides(x->ndim, x->shape, gst);
    dl__iter_begin(&it, x->ndim, x->shape);
    dl__iter_op(&it, x->strides);
    dl__iter_op(&it, r->rst);
    dl__iter_op(&it, gst);
    dl__iter_ready(&it);
    for (row = 0; row < it.rows; row++, dl__iter_next(&it)) {
        const float *v = (const float *)x->data + it.off[0];
        ptrdiff_t sv = it.inner[0], j = it.off[1], sj = it.inner[1], n = it.n;
        float *gxr = gx ? gx + it.off[2] : NULL; /* x's gradient is contiguous: steps 1 */
        switch (kind) {
        case DL__R_SUM:
            if (sj == 0) acc[j] += dl__reduce_row_sum(v, sv, n, NULL);
            else for (i = 0; i < n; i++) acc[j + i * sj] += v[i * sv];
            break;
        case DL__R_SQDEV:
            if (sj == 0) acc[j] += dl__reduce_row_sum(v, sv, n, &res[j]);
            else for (i = 0; i < n; i++) { double d = (double)v[i * sv] - res[j + i * sj]; acc[j + i * sj] += d * d; }
            break;
        case DL__R_MAX: /* a NaN wins: once m is NaN, a > m is false and m stays */
            if (sj == 0) {
                float m = dl__reduce_row_max(v, sv, n);
                res[j] = (m > res[j] || m != m) ? m : res[j];
            } else {
                for (i = 0; i < n; i++) {
                    float a = v[i * sv], m = res[j + i * sj];
                    res[j + i * sj] = (a > m || a != a) ? a : m;
                }
            }
            break;
        case DL__R_COUNT:
            for (i = 0; i < n; i++) acc[j + i * sj] += v[i * sv] == res[j + i * sj];
            break;
        case DL__R_GRAD_SUM:
            for (i = 0; i < n; i++) gxr[i] += scale * g[j + i * sj];
            break;
        case DL__R_GRAD_VAR:
            for (i = 0; i < n; i++) gxr[i] += scale * g[j + i * sj] * (v[i * sv] - res[j + i * sj]);
            break;
        case DL__R_GRAD_MAX: /* g [x == max] / count; a NaN maximum matches nothing: 0 / 0, as torch */
            for (i = 0; i < n; i++)
                gxr[i] += (v[i * sv] == res[j + i * sj] ? g[j + i * sj] : 0.0f) / (float)acc[j + i * sj];
            break;
        }
    }
}

static void dl__reduce_backward(dl_node *n) {
    const dl__reduce *r = (const dl__reduce *)n->ctx;
    dl_tensor *x = n->in[0];
    float *gx = dl_grad_buf(x);
    double *count;
    if (!gx) return;
    if (r->kind < 2) { dl__reduce_pass(DL__R_GRAD_SUM, x, r, NULL, n->out->grad, gx); return; }
    if (r->kind == 2) { dl__reduce_pass(DL__R_GRAD_VAR, x, r, NULL, n->out->grad, gx); return; }
    /* max: the gradient is shared evenly by all elements equal to the maximum */
    count = (double *)dl__tmp_alloc(n->out->numel * sizeof(double));
    if (!count) return;
    memset(count, 0, n->out->numel * sizeof(double));
    dl__reduce_pass(DL__R_COUNT, x, r, count, NULL, NULL);
    dl__reduce_pass(DL__R_GRAD_MAX, x, r, count, n->out->grad, gx);
}

static dl_tensor *dl__reduction(const char *name, int kind, dl_tensor *x, int naxes, const int *axes, int correction, int keepdim) {
    dl__reduce r;
    dl_tensor *out;
    double *acc = NULL;
    float *o;
    size_t i, m;
    dl_node *node;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_reduce(name, kind, x, naxes, axes, keepdim, correction);
#endif
    if (!dl__check_f32(name, x) || !dl__reduce_setup(name, x, naxes, axes, keepdim, &r)) return NULL;
    r.kind = kind;
    if (kind == 3 && r.count == 0) return (dl_tensor *)dl__fail("%s: cannot reduce over an empty axis", name);
    out = dl_tmp_uninit(DL_DTYPE_F32, r.ndim, r.shape);
    if (!out) return NULL;
    o = (float *)out->data;
    m = out->numel;
    if (kind == 3) {
        for (i = 0; i < m; i++) o[i] = -INFINITY;
        r.res = o;
        dl__reduce_pass(DL__R_MAX, x, &r, NULL, NULL, NULL);
    } else {
        acc = (double *)dl__tmp_alloc(m * sizeof(double));
        if (!acc) return NULL;
        memset(acc, 0, m * sizeof(double));
        dl__reduce_pass(DL__R_SUM, x, &r, acc, NULL, NULL);
        r.scale = kind == 0 ? 1.0f : (float)(1.0 / (double)r.count); /* 0 elements: 0 * inf = NaN, as torch */
        for (i = 0; i < m; i++) o[i] = (float)(acc[i] * (kind == 0 ? 1.0 : 1.0 / (double)r.count));
    }
    if (kind == 2) { /* second pass: squared deviations from the mean */
        double denom = (double)r.count - (double)correction;
        if (denom < 0) denom = 0; /* torch: max(0, N - correction); 0 gives inf or NaN */
        r.res = (float *)dl__tmp_alloc(m * sizeof(float));
        if (!r.res) return NULL;
        memcpy(r.res, o, m * sizeof(float));
        memset(acc, 0, m * sizeof(double));
        dl__reduce_pass(DL__R_SQDEV, x, &r, acc, NULL, NULL);
        for (i = 0; i < m; i++) o[i] = (float)(acc[i] / denom);
        r.scale = (float)(2.0 / denom);
    }
    node = dl_record(name + 3, out, 1, &x, dl__reduce_backward, sizeof(dl__reduce));
    if (node) *(dl__reduce *)node->ctx = r;
    return dl__checked(out);
}

DLDEF dl_tensor *dl_sum(dl_tensor *x, int naxes, const int *axes, int keepdim) { return dl__reduction("dl_sum", 0, x, naxes, axes, 0, keepdim); }
DLDEF dl_tensor *dl_mean(dl_tensor *x, int naxes, const int *axes, int keepdim) { return dl__reduction("dl_mean", 1, x, naxes, axes, 0, keepdim); }
DLDEF dl_tensor *dl_var(dl_tensor *x, int naxes, const int *axes, int correction, int keepdim) { return dl__reduction("dl_var", 2, x, naxes, axes, correction, keepdim); }
DLDEF dl_tensor *dl_max(dl_tensor *x, int naxes, const int *axes, int keepdim) { return dl__reduction("dl_max", 3, x, naxes, axes, 0, keepdim); }
DLDEF dl_tensor *dl_sum_all(dl_tensor *x) { return dl__reduction("dl_sum_all", 0, x, 0, NULL, 0, 0); }
DLDEF dl_tensor *dl_mean_all(dl_tensor *x) { return dl__reduction("dl_mean_all", 1, x, 0, NULL, 0, 0); }

DLDEF dl_tensor *dl_argmax(dl_tensor *x, int axis, int keepdim) {
    dl__reduce r;
    dl__iter it;
    dl_tensor *out;
    int32_t *o;
    ptrdiff_t step, i, k;
    int len, shape1[DL_MAX_DIMS];
    size_t row;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_argmax(x, axis, keepdim);
#endif
    if (!dl__check_f32("dl_argmax", x) || (axis = dl__axis("dl_argmax", axis, x->ndim)) < 0) return NULL;
    if (x->shape[axis] == 0) return (dl_tensor *)dl__fail("dl_argmax: cannot reduce over an empty axis");
    if (!dl__reduce_setup("dl_argmax", x, 1, &axis, keepdim, &r)) return NULL;
    out = dl_tmp_uninit(DL_DTYPE_I32, r.ndim, r.shape);
    if (!out) return NULL;
    o = (int32_t *)out->data;
    /* Walk x with the reduced axis squeezed to 1 (one visit per result) and scan along it. */
    len = x->shape[axis];
    step = x->strides[axis];
    memcpy(shape1, x->shape, sizeof shape1);
    shape1[axis] = 1;
    dl__iter_begin(&it, x->ndim, shape1);
    dl__iter_op(&it, x->strides);
    dl__iter_op(&it, r.rst);
    dl__iter_ready(&it);
    for (row = 0; row < it.rows; row++, dl__iter_next(&it)) {
        for (i = 0; i < it.n; i++) {
            const float *v = (const float *)x->data + it.off[0] + i * it.inner[0];
            float best = v[0];
            int32_t bi = 0;
            for (k = 1; k < len; k++) {
                float a = v[k * step];
                if (a > best || (a != a && best == best)) { best = a; bi = (int32_t)k; } /* first max, NaN wins */
            }
            o[it.off[1] + i * it.inner[1]] = bi;
        }
    }
    return out;
}

/* ---- Shape and index ops ---- */

typedef struct dl__shape_ctx {
    int axis;
    const int32_t *idx;   /* index_select: the indices, contiguous */
} dl__shape_ctx;

static void dl__concat_backward(dl_node *n) {
    int axis = ((const dl__shape_ctx *)n->ctx)->axis, k;
    size_t outer, inner, total = (size_t)n->out->shape[axis], off = 0, o, t;
    dl__outer_inner(n->out, axis, &outer, &inner);
    for (k = 0; k < n->n_in; k++) {
        dl_tensor *x = n->in[k];
        size_t block = (size_t)x->shape[axis] * inner;
        float *gx = dl_grad_buf(x);
        if (gx) /* x's gradient is [outer, len, inner]; its part of out's is at column off */
            for (o = 0; o < outer; o++) {
                const float *g = n->out->grad + (o * total + off) * inner;
                for (t = 0; t < block; t++) gx[o * block + t] += g[t];
            }
        off += (size_t)x->shape[axis];
    }
}

DLDEF dl_tensor *dl_concat(int n, dl_tensor *const *xs, int axis) {
    int k, d, shape[DL_MAX_DIMS];
    long long len;
    size_t outer, inner, total, off = 0, o, es;
    dl_tensor *x0, *out;
    dl_node *node;
    if (n < 1 || !xs) return (dl_tensor *)dl__fail("dl_concat: need at least one tensor");
    for (k = 0; k < n; k++) if (!xs[k]) return NULL;
#ifdef DL_CUDA
    for (k = 0; k < n; k++)
        if (xs[k]->device) return dl__cuda_concat(n, xs, axis);
#endif
    x0 = xs[0];
    if (x0->ndim == 0) return (dl_tensor *)dl__fail("dl_concat: cannot concatenate 0-d tensors");
    if ((axis = dl__axis("dl_concat", axis, x0->ndim)) < 0) return NULL;
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = 0;
    for (k = 0, len = 0; k < n; k++) {
        dl_tensor *x = xs[k];
        char s1[64], s2[64];
        if (!dl__check_cpu("dl_concat", x)) return NULL;
        if (x->dtype != x0->dtype) return (dl_tensor *)dl__fail("dl_concat: tensor %d is %s, tensor 0 is %s", k, dl_dtype_name(x->dtype), dl_dtype_name(x0->dtype));
        for (d = 0; d < x0->ndim && x->ndim == x0->ndim; d++)
            if (d != axis && x->shape[d] != x0->shape[d]) break;
        if (x->ndim != x0->ndim || d < x0->ndim)
            return (dl_tensor *)dl__fail("dl_concat: tensor %d has shape %s, tensor 0 has %s (must match except on axis %d)", k,
                                         dl_shape_str(x, s1, sizeof s1), dl_shape_str(x0, s2, sizeof s2), axis);
        if ((len += x->shape[axis]) > INT_MAX) return (dl_tensor *)dl__fail("dl_concat: concatenated axis %d is over INT_MAX", axis);
    }
    shape[axis] = (int)len;
    out = dl_tmp_uninit(x0->dtype, x0->ndim, shape);
    if (!out) return NULL;
    es = dl_dtype_size(x0->dtype);
    total = (size_t)shape[axis];
    dl__outer_inner(out, axis, &outer, &inner);
    for (k = 0; k < n; k++) {
        const char *src = (const char *)dl__contig_data(xs[k]);
        size_t block = (size_t)xs[k]->shape[axis] * inner * es;
        if (!src) return NULL;
        for (o = 0; o < outer; o++) memcpy((char *)out->data + (o * total + off) * inner * es, src + o * block, block);
        off += (size_t)xs[k]->shape[axis];
    }
    node = dl_record("concat", out, n, xs, dl__concat_backward, sizeof(dl__shape_ctx));
    if (node) ((dl__shape_ctx *)node->ctx)->axis = axis;
    return dl__checked(out);
}

DLDEF int dl_split(dl_tensor *x, int axis, int n, const int *sizes, dl_tensor **outs) {
    int k, start = 0;
    if (!x) return -1;
    if (n < 1 || !outs) { dl__fail("dl_split: need n >= 1 and an outs array"); return -1; }
    if ((axis = dl__axis("dl_split", axis, x->ndim)) < 0) return -1;
    if (!sizes && x->shape[axis] % n) { dl__fail("dl_split: axis %d of size %d does not split into %d equal parts", axis, x->shape[axis], n); return -1; }
    for (k = 0; k < n; k++) {
        int len = sizes ? sizes[k] : x->shape[axis] / n;
        if (len < 0 || len > x->shape[axis] - start) break;
        start += len;
    }
    if (k < n || start != x->shape[axis]) { dl__fail("dl_split: sizes do not add up to %d (axis %d)", x->shape[axis], axis); return -1; }
    for (k = 0, start = 0; k < n; k++) {
        int len = sizes ? sizes[k] : x->shape[axis] / n;
        outs[k] = dl_slice(x, axis, start, start + len, 1);
        if (!outs[k]) return -1;
        start += len;
    }
    return 0;
}

/* Checks idx (DL_DTYPE_I32, any strides) against [0, limit): returns idx's values contiguous, or NULL. */
static const int32_t *dl__indices(const char *op, const dl_tensor *idx, int limit) {
    const int32_t *v;
    size_t i;
    if (!dl__check_cpu(op, idx)) return NULL;
    if (idx->dtype != DL_DTYPE_I32) return (const int32_t *)dl__fail("%s: indices must be i32, got %s", op, dl_dtype_name(idx->dtype));
    v = (const int32_t *)dl__contig_data(idx);
    if (!v) return NULL;
    for (i = 0; i < idx->numel; i++)
        if (v[i] < 0 || v[i] >= limit) return (const int32_t *)dl__fail("%s: index %d out of range [0, %d)", op, (int)v[i], limit);
    return v;
}

static void dl__index_select_backward(dl_node *n) {
    const dl__shape_ctx *c = (const dl__shape_ctx *)n->ctx;
    dl_tensor *x = n->in[0];
    float *gx = dl_grad_buf(x);
    const float *g = n->out->grad;
    size_t outer, inner, o, k, t, len = (size_t)x->shape[c->axis], m = (size_t)n->out->shape[c->axis];
    if (!gx) return;
    dl__outer_inner(x, c->axis, &outer, &inner);
    for (o = 0; o < outer; o++)
        for (k = 0; k < m; k++) {
            float *dst = gx + (o * len + (size_t)c->idx[k]) * inner;
            const float *src = g + (o * m + k) * inner;
            for (t = 0; t < inner; t++) dst[t] += src[t];
        }
}

DLDEF dl_tensor *dl_index_select(dl_tensor *x, int axis, dl_tensor *idx) {
    int shape[DL_MAX_DIMS];
    size_t outer, inner, o, k, m, len, es;
    const int32_t *iv;
    const char *src;
    dl_tensor *out;
    dl_node *node;
    if (!x || !idx) return NULL;
#ifdef DL_CUDA
    if (x->device || idx->device) return dl__cuda_index_select(x, axis, idx);
#endif
    if (!dl__check_cpu("dl_index_select", x)) return NULL;
    if (x->ndim == 0) return (dl_tensor *)dl__fail("dl_index_select: x is 0-d");
    if ((axis = dl__axis("dl_index_select", axis, x->ndim)) < 0) return NULL;
    if (idx->ndim != 1) return (dl_tensor *)dl__fail("dl_index_select: indices must be 1-d, got %d-d", idx->ndim);
    iv = dl__indices("dl_index_select", idx, x->shape[axis]);
    src = (const char *)dl__contig_data(x);
    if (!iv || !src) return NULL;
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = idx->shape[0];
    out = dl_tmp_uninit(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    es = dl_dtype_size(x->dtype);
    len = (size_t)x->shape[axis];
    m = (size_t)idx->shape[0];
    dl__outer_inner(x, axis, &outer, &inner);
    for (o = 0; o < outer; o++)
        for (k = 0; k < m; k++)
            memcpy((char *)out->data + (o * m + k) * inner * es, src + (o * len + (size_t)iv[k]) * inner * es, inner * es);
    node = dl_record("index_select", out, 1, &x, dl__index_select_backward, sizeof(dl__shape_ctx));
    if (node) {
        dl__shape_ctx *c = (dl__shape_ctx *)node->ctx;
        c->axis = axis;
        c->idx = iv;
    }
    return dl__checked(out);
}

/* gather (scatter == 0): o[i] = x[i with axis coordinate idx[i]];
   its backward (scatter == 1): x[i with axis coordinate idx[i]] += o[i].
   x has strides xst; o and idx (contiguous, validated) have the shape of idx. */
static void dl__gather_pass(int scatter, float *x, const ptrdiff_t *xst, int axis, const dl_tensor *idx,
                            const int32_t *iv, float *o) {
    ptrdiff_t xs0[DL_MAX_DIMS], ist[DL_MAX_DIMS], i;
    dl__iter it;
    size_t r;
    memcpy(xs0, xst, sizeof xs0);
    xs0[axis] = 0; /* the axis coordinate comes from idx */
    dl__contig_strides(idx->ndim, idx->shape, ist);
    dl__iter_begin(&it, idx->ndim, idx->shape);
    dl__iter_op(&it, ist);
    dl__iter_op(&it, xs0);
    dl__iter_ready(&it);
    for (r = 0; r < it.rows; r++, dl__iter_next(&it)) {
        float *orow = o + it.off[0], *xrow = x + it.off[1];
        const int32_t *irow = iv + it.off[0];
        ptrdiff_t so = it.inner[0], sx = it.inner[1];
        if (scatter) for (i = 0; i < it.n; i++) xrow[i * sx + irow[i * so] * xst[axis]] += orow[i * so];
        else for (i = 0; i < it.n; i++) orow[i * so] = xrow[i * sx + irow[i * so] * xst[axis]];
    }
}

static void dl__gather_backward(dl_node *n) {
    const dl__shape_ctx *c = (const dl__shape_ctx *)n->ctx;
    dl_tensor *x = n->in[0];
    ptrdiff_t gst[DL_MAX_DIMS];
    float *gx = dl_grad_buf(x);
    if (!gx) return;
    dl__contig_strides(x->ndim, x->shape, gst);
    dl__gather_pass(1, gx, gst, c->axis, n->out, c->idx, n->out->grad);
}

DLDEF dl_tensor *dl_gather(dl_tensor *x, int axis, dl_tensor *idx) {
    const int32_t *iv;
    dl_tensor *out;
    dl_node *node;
    int d;
    if (!x || !idx) return NULL;
#ifdef DL_CUDA
    if (x->device || idx->device) return dl__cuda_gather(x, axis, idx);
#endif
    if (!dl__check_f32("dl_gather", x)) return NULL;
    if (x->ndim == 0) return (dl_tensor *)dl__fail("dl_gather: x is 0-d");
    if ((axis = dl__axis("dl_gather", axis, x->ndim)) < 0) return NULL;
    if (idx->ndim != x->ndim) return (dl_tensor *)dl__fail("dl_gather: indices are %d-d, x is %d-d", idx->ndim, x->ndim);
    for (d = 0; d < x->ndim; d++)
        if (d != axis && idx->shape[d] > x->shape[d]) {
            char s1[64], s2[64];
            return (dl_tensor *)dl__fail("dl_gather: indices %s larger than x %s on axis %d",
                                         dl_shape_str(idx, s1, sizeof s1), dl_shape_str(x, s2, sizeof s2), d);
        }
    iv = dl__indices("dl_gather", idx, x->shape[axis]);
    out = dl_tmp_uninit(DL_DTYPE_F32, idx->ndim, idx->shape);
    if (!iv || !out) return NULL;
    dl__gather_pass(0, (float *)x->data, x->strides, axis, idx, iv, (float *)out->data);
    node = dl_record("gather", out, 1, &x, dl__gather_backward, sizeof(dl__shape_ctx));
    if (node) {
        dl__shape_ctx *c = (dl__shape_ctx *)node->ctx;
        c->axis = axis;
        c->idx = iv;
    }
    return dl__checked(out);
}

/* An element of an integer or float tensor as int32: floats are truncated toward zero and
   saturated, NaN gives 0. */
static int32_t dl__load_i32(const dl_tensor *t, ptrdiff_t off) {
    float f;
    switch (t->dtype) {
    case DL_DTYPE_I32: return ((const int32_t *)t->data)[off];
    case DL_DTYPE_U8: return ((const uint8_t *)t->data)[off];
    case DL_DTYPE_F32:
        f = ((const float *)t->data)[off];
        if (f != f) return 0;
        if (f >= 2147483647.0f) return INT32_MAX;
        if (f <= -2147483648.0f) return INT32_MIN;
        return (int32_t)f;
    }
    return 0;
}

DLDEF dl_tensor *dl_one_hot(dl_tensor *labels, int num_classes) {
    int shape[DL_MAX_DIMS];
    size_t i;
    int32_t v;
    dl_tensor *out;
    float *o;
    if (!labels) return NULL;
#ifdef DL_CUDA
    if (labels->device) return dl__cuda_one_hot(labels, num_classes);
#endif
    if (!dl__check_cpu("dl_one_hot", labels)) return NULL;
    if (labels->dtype != DL_DTYPE_I32 && labels->dtype != DL_DTYPE_U8)
        return (dl_tensor *)dl__fail("dl_one_hot: labels must be i32 or u8, got %s", dl_dtype_name(labels->dtype));
    if (labels->ndim >= DL_MAX_DIMS) return (dl_tensor *)dl__fail("dl_one_hot: labels have too many axes (%d)", labels->ndim);
    if (num_classes == -1) { /* infer max + 1 */
        if (labels->numel == 0) return (dl_tensor *)dl__fail("dl_one_hot: cannot infer num_classes from no labels");
        for (i = 0; i < labels->numel; i++) {
            v = dl__load_i32(labels, dl__offset_of(labels, i));
            if (v < 0) return (dl_tensor *)dl__fail("dl_one_hot: label %d is negative", (int)v);
            if (v >= num_classes) num_classes = v == INT32_MAX ? v : v + 1;
        }
    }
    if (num_classes < 1) return (dl_tensor *)dl__fail("dl_one_hot: num_classes must be >= 1 or -1, got %d", num_classes);
    memcpy(shape, labels->shape, sizeof(int) * (size_t)labels->ndim);
    shape[labels->ndim] = num_classes;
    out = dl_tmp(DL_DTYPE_F32, labels->ndim + 1, shape);
    if (!out) return NULL;
    o = (float *)out->data;
    for (i = 0; i < labels->numel; i++) {
        v = dl__load_i32(labels, dl__offset_of(labels, i));
        if (v < 0 || v >= num_classes) return (dl_tensor *)dl__fail("dl_one_hot: label %d out of range [0, %d)", (int)v, num_classes);
        o[i * (size_t)num_classes + (size_t)v] = 1.0f;
    }
    return out;
}

DLDEF dl_tensor *dl_cast(dl_tensor *x, dl_dtype dtype) {
    dl_tensor *out;
    size_t i;
    int contig;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_cast(x, dtype);
#endif
    if (!dl__check_cpu("dl_cast", x)) return NULL;
    if (dl_dtype_size(dtype) == 0) return (dl_tensor *)dl__fail("dl_cast: unknown dtype %d", (int)dtype);
    out = dl_tmp_uninit(dtype, x->ndim, x->shape);
    if (!out) return NULL;
    if (dtype == DL_DTYPE_F32 && x->dtype == DL_DTYPE_F32) {
        dl_copy(out, x);
        dl_record("cast", out, 1, &x, dl__copy_backward, 0); /* core's flat gradient add */
        return dl__checked(out);
    }
    contig = dl_is_contiguous(x);
    for (i = 0; i < x->numel; i++) {
        ptrdiff_t off = contig ? (ptrdiff_t)i : dl__offset_of(x, i);
        if (dtype == DL_DTYPE_F32) ((float *)out->data)[i] = dl__load(x, off); /* i32 rounds to nearest float */
        else if (dtype == DL_DTYPE_I32) ((int32_t *)out->data)[i] = dl__load_i32(x, off);
        else ((uint8_t *)out->data)[i] = (uint8_t)dl__load_i32(x, off); /* modulo 256 */
    }
    return out;
}

static void dl__broadcast_to_backward(dl_node *n) {
    dl_tensor *x = n->in[0], *out = n->out;
    ptrdiff_t xst[DL_MAX_DIMS], sx[DL_MAX_DIMS];
    float *gx = dl_grad_buf(x);
    if (!gx) return;
    dl__contig_strides(x->ndim, x->shape, xst);
    dl__bcast_strides(x->ndim, x->shape, xst, out->ndim, sx);
    /* stride 0 along broadcast axes: the copy accumulates (sums) them into one element */
    dl__strided_copy_f32(gx, sx, out->grad, out->strides, out->ndim, out->shape, 1);
}

DLDEF dl_tensor *dl_broadcast_to(dl_tensor *x, int ndim, const int *shape) {
    ptrdiff_t sx[DL_MAX_DIMS];
    dl_tensor *out;
    int i;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_broadcast_to(x, ndim, shape);
#endif
    if (!dl__check_f32("dl_broadcast_to", x)) return NULL;
    if (ndim < x->ndim || ndim > DL_MAX_DIMS || (ndim && !shape))
        return (dl_tensor *)dl__fail("dl_broadcast_to: cannot broadcast a %d-d tensor to %d axes", x->ndim, ndim);
    for (i = 0; i < x->ndim; i++) {
        int want = shape[i + ndim - x->ndim];
        if (x->shape[i] != want && x->shape[i] != 1) {
            char s[64];
            return (dl_tensor *)dl__fail("dl_broadcast_to: shape %s does not broadcast to size %d at axis %d",
                                         dl_shape_str(x, s, sizeof s), want, i + ndim - x->ndim);
        }
    }
    out = dl_tmp_uninit(DL_DTYPE_F32, ndim, shape);
    if (!out) return NULL;
    dl__bcast_strides(x->ndim, x->shape, x->strides, ndim, sx);
    dl__strided_copy_f32((float *)out->data, out->strides, (const float *)x->data, sx, ndim, shape, 0);
    dl_record("broadcast_to", out, 1, &x, dl__broadcast_to_backward, 0);
    return dl__checked(out);
}
/* ==== Matrix products, activations, softmax, losses (tests: tests/test_ops_nn.c) ============== */

/* 1 if x is an f32 tensor on the CPU; else sets "op: what ..." and returns 0. */
static int dl__nn_check(const char *op, const dl_tensor *x, const char *what) {
    if (x->device != DL_DEVICE_CPU) { dl__fail("%s: %s is not on the CPU", op, what); return 0; }
    if (x->dtype != DL_DTYPE_F32) { dl__fail("%s: %s must be f32, got %s", op, what, dl_dtype_name(x->dtype)); return 0; }
    return 1;
}

/* ---- Matrix products ---- */

/* dl_sgemm with alpha 1 that also takes empty matrices. beta is 0 (C = A B) or 1 (C += A B). */
static void dl__gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    int i;
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* A B is all zeros */
        if (beta == 0) for (i = 0; i < m; i++) memset(c + (ptrdiff_t)i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    dl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* A [r, c] block of floats as dl_sgemm reads it: element (i, j) is at p[i*ld + j] when t == 0
   (a row-major matrix) and at p[j*ld + i] when t == 1 (a transposed view of one). */
typedef struct dl__mat {
    const float *p;
    int t, ld;
} dl__mat;

/* Describes the block at p with row stride s0 and column stride s1 as a dl__mat; 0 if it is
   neither layout (then the caller copies it). Strides of size-1 axes do not matter. */
static int dl__as_mat(const float *p, int r, int c, ptrdiff_t s0, ptrdiff_t s1, dl__mat *m) {
    m->p = p;
    if (c <= 1 || s1 == 1) {
        ptrdiff_t ld = r <= 1 ? c : s0;
        if (ld < c || ld > 0x7fffffff) return 0;
        m->t = 0;
        m->ld = ld < 1 ? 1 : (int)ld;
        return 1;
    }
    if (r <= 1 || s0 == 1) {
        if (s1 < r || s1 > 0x7fffffff) return 0;
        m->t = 1;
        m->ld = (int)s1;
        return 1;
    }
    return 0;
}

/* Reads x [..., c] as a matrix [r, c] whose rows are the axes first .. ndim-2 flattened (r = 1
   when there are none). In place when those axes nest into one row stride and the block is a
   matrix or a transposed one; otherwise from a contiguous arena copy. Returns 2 if it copied,
   1 if not, 0 on failure. */
static int dl__read_mat(const dl_tensor *x, int first, dl__mat *m) {
    int i, nd = x->ndim, r = 1, c = x->shape[nd - 1], nested = 1;
    ptrdiff_t s0 = 0, span = 0;
    const float *p;
    for (i = nd - 2; i >= first; i--) {
        r *= x->shape[i];
        if (x->shape[i] == 1) continue;
        if (span == 0) { s0 = x->strides[i]; span = s0 * x->shape[i]; }
        else if (x->strides[i] == span) span *= x->shape[i];
        else nested = 0;
    }
    if (span == 0) s0 = c; /* at most one row */
    if (nested && dl__as_mat((const float *)x->data, r, c, s0, x->strides[nd - 1], m)) return 1;
    p = dl_contig_f32(x);
    if (!p) return 0;
    dl__as_mat(p, r, c, c, 1, m);
    return 2;
}

/* A batch of GEMMs C[i] (+)= op(A[i]) op(B[i]) over the batch axes `shape`; the strides of
   each operand's batch axes are in elements, 0 where it is broadcast (or, for C, reduced). */
typedef struct dl__gemm_batch {
    int nb, shape[DL_MAX_DIMS];
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS], sc[DL_MAX_DIMS];
    int ta, tb, m, n, k, lda, ldb, ldc;
    const float *a, *b;
    float *c;
    float beta;
    size_t count, per_task;   /* number of GEMMs, and per parallel task (set when run) */
} dl__gemm_batch;

/* Fewer, bigger GEMMs for the same work: drops size-1 batch axes, merges axes whose strides
   nest, then folds the innermost batch axis into the GEMM itself when the matrices of
   consecutive batches continue each other:
     into m: A's row blocks follow each other and B is shared ([B, T, C] @ [C, D]);
     into k: C is shared (a gradient reduced over a broadcast batch) and A^T, B stack along k. */
static void dl__gemm_batch_simplify(dl__gemm_batch *g) {
    int i, d = 0;
    for (i = 0; i < g->nb; i++) {
        int len = g->shape[i];
        if (len == 1) continue;
        if (d > 0 && g->sa[d - 1] == g->sa[i] * len && g->sb[d - 1] == g->sb[i] * len &&
            g->sc[d - 1] == g->sc[i] * len && (double)g->shape[d - 1] * len <= 0x7fffffff) {
            g->shape[d - 1] *= len;
        } else {
            g->shape[d] = len;
            d++;
        }
        g->sa[d - 1] = g->sa[i];
        g->sb[d - 1] = g->sb[i];
        g->sc[d - 1] = g->sc[i];
    }
    g->nb = d;
    while (g->nb > 0) {
        int len = g->shape[g->nb - 1];
        ptrdiff_t sa = g->sa[g->nb - 1], sb = g->sb[g->nb - 1], sc = g->sc[g->nb - 1];
        if (!g->ta && sb == 0 && sa == (ptrdiff_t)g->m * g->lda && sc == (ptrdiff_t)g->m * g->ldc &&
            (double)g->m * len <= 0x7fffffff)
            g->m *= len;
        else if (sc == 0 && g->ta && !g->tb && sa == (ptrdiff_t)g->k * g->lda &&
                 sb == (ptrdiff_t)g->k * g->ldb && (double)g->k * len <= 0x7fffffff)
            g->k *= len;
        else
            break;
        g->nb--;
    }
}

static void dl__gemm_batch_task(void *ctx, int task) {
    const dl__gemm_batch *g = (const dl__gemm_batch *)ctx;
    size_t i, lo = (size_t)task * g->per_task, hi = lo + g->per_task;
    if (hi > g->count) hi = g->count;
    for (i = lo; i < hi; i++) {
        ptrdiff_t oa = 0, ob = 0, oc = 0;
        size_t rest = i;
        int d;
        for (d = g->nb - 1; d >= 0; d--) {
            ptrdiff_t j = (ptrdiff_t)(rest % (size_t)g->shape[d]);
            rest /= (size_t)g->shape[d];
            oa += j * g->sa[d];
            ob += j * g->sb[d];
            oc += j * g->sc[d];
        }
        dl__gemm(g->ta, g->tb, g->m, g->n, g->k, g->a + oa, g->lda, g->b + ob, g->ldb, g->beta, g->c + oc, g->ldc);
    }
}

/* Runs the batch. Small GEMMs writing distinct C blocks run in parallel, one per thread; big
   ones in order, each threaded by dl_sgemm. Both give the same bits. */
static void dl__gemm_batch_run(dl__gemm_batch *g) {
    int d, distinct = 1, threads = dl_num_threads();
    dl__gemm_batch_simplify(g);
    g->count = 1;
    for (d = 0; d < g->nb; d++) {
        g->count *= (size_t)g->shape[d];
        if (g->sc[d] == 0) distinct = 0;
    }
    if (g->count == 0 || g->m == 0 || g->n == 0) return;
    if (g->count > 1 && distinct && threads > 1 && (double)g->m * g->n * g->k < 64.0 * 64 * 64) {
        size_t tasks = g->count < (size_t)threads * 4 ? g->count : (size_t)threads * 4;
        g->per_task = (g->count + tasks - 1) / tasks;
        dl_parallel_for((int)((g->count + g->per_task - 1) / g->per_task), dl__gemm_batch_task, g);
    } else {
        g->per_task = g->count;
        dl__gemm_batch_task(g, 0);
    }
}

/* The strides of x's batch axes (all but its last two), aligned to the right of the nb batch
   axes of a matmul output; 0 where x has no such axis or broadcasts it. */
static void dl__batch_strides(const dl_tensor *x, const ptrdiff_t *strides, int nb, ptrdiff_t *out) {
    int i, off = nb - (x->ndim - 2);
    for (i = 0; i < nb; i++) out[i] = (i >= off && x->shape[i - off] != 1) ? strides[i - off] : 0;
}

/* What matmul's backward needs: both operands as read, and the user's transpose flags. */
typedef struct dl__matmul_ctx {
    dl__mat a, b;
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS];   /* their batch strides */
    int ta, tb, m, n, k;
} dl__matmul_ctx;

/* Reads a matmul operand's last two axes as a matrix (copying x only when they are not one)
   and its batch strides over nb output batch axes. */
static int dl__matmul_operand(const dl_tensor *x, int nb, dl__mat *m, ptrdiff_t *bs) {
    int copied = dl__read_mat(x, x->ndim - 2, m);
    ptrdiff_t contig[DL_MAX_DIMS];
    if (!copied) return 0;
    dl__contig_strides(x->ndim, x->shape, contig);
    dl__batch_strides(x, copied == 2 ? contig : x->strides, nb, bs);
    return 1;
}

/* A GEMM batch over the batch axes of out, writing or adding into c (batch strides sc). */
static void dl__gemm_batch_init(dl__gemm_batch *g, const dl_tensor *out, float *c, const ptrdiff_t *sc, float beta) {
    int i;
    memset(g, 0, sizeof *g);
    g->nb = out->ndim - 2;
    for (i = 0; i < g->nb; i++) { g->shape[i] = out->shape[i]; g->sc[i] = sc[i]; }
    g->c = c;
    g->beta = beta;
}

static void dl__gemm_batch_set_a(dl__gemm_batch *g, const float *p, int t, int ld, const ptrdiff_t *s) {
    g->a = p; g->ta = t; g->lda = ld;
    memcpy(g->sa, s, sizeof g->sa);
}

static void dl__gemm_batch_set_b(dl__gemm_batch *g, const float *p, int t, int ld, const ptrdiff_t *s) {
    g->b = p; g->tb = t; g->ldb = ld;
    memcpy(g->sb, s, sizeof g->sb);
}

/* C = op(A) op(B) with dC given: dop(A) = dC op(B)^T and dop(B) = op(A)^T dC. When op
   transposes an operand, its gradient is the transpose: dA = op(B) dC^T, dB = dC^T op(A).
   Batches broadcast in the forward are summed here (beta = 1 into the gradient buffers). */
static void dl__matmul_backward(dl_node *nd) {
    const dl__matmul_ctx *c = (const dl__matmul_ctx *)nd->ctx;
    dl_tensor *a = nd->in[0], *b = nd->in[1], *out = nd->out;
    float *ga = dl_grad_buf(a), *gb = dl_grad_buf(b);
    const float *gc = out->grad;
    ptrdiff_t so[DL_MAX_DIMS], contig[DL_MAX_DIMS], sg[DL_MAX_DIMS];
    int nb = out->ndim - 2, opa = c->ta ^ c->a.t, opb = c->tb ^ c->b.t; /* dl_sgemm flags giving op(A), op(B) */
    dl__gemm_batch g;
    dl__contig_strides(out->ndim, out->shape, so);
    if (ga) {
        dl__contig_strides(a->ndim, a->shape, contig);
        dl__batch_strides(a, contig, nb, sg);
        dl__gemm_batch_init(&g, out, ga, sg, 1.0f);
        if (!c->ta) { /* dA [m, k] = dC [m, n] @ op(B)^T [n, k] */
            g.m = c->m; g.n = c->k; g.k = c->n; g.ldc = c->k;
            dl__gemm_batch_set_a(&g, gc, 0, c->n, so);
            dl__gemm_batch_set_b(&g, c->b.p, !opb, c->b.ld, c->sb);
        } else {      /* dA [k, m] = op(B) [k, n] @ dC^T [n, m] */
            g.m = c->k; g.n = c->m; g.k = c->n; g.ldc = c->m;
            dl__gemm_batch_set_a(&g, c->b.p, opb, c->b.ld, c->sb);
            dl__gemm_batch_set_b(&g, gc, 1, c->n, so);
        }
        dl__gemm_batch_run(&g);
    }
    if (gb) {
        dl__contig_strides(b->ndim, b->shape, contig);
        dl__batch_strides(b, contig, nb, sg);
        dl__gemm_batch_init(&g, out, gb, sg, 1.0f);
        if (!c->tb) { /* dB [k, n] = op(A)^T [k, m] @ dC [m, n] */
            g.m = c->k; g.n = c->n; g.k = c->m; g.ldc = c->n;
            dl__gemm_batch_set_a(&g, c->a.p, !opa, c->a.ld, c->sa);
            dl__gemm_batch_set_b(&g, gc, 0, c->n, so);
        } else {      /* dB [n, k] = dC^T [n, m] @ op(A) [m, k] */
            g.m = c->n; g.n = c->k; g.k = c->m; g.ldc = c->k;
            dl__gemm_batch_set_a(&g, gc, 1, c->n, so);
            dl__gemm_batch_set_b(&g, c->a.p, opa, c->a.ld, c->sa);
        }
        dl__gemm_batch_run(&g);
    }
}

/* C[..., m, n] = op(A)[..., m, k] @ op(B)[..., k, n], batch axes broadcast. */
static dl_tensor *dl__matmul(const char *op, dl_tensor *a, dl_tensor *b, int ta, int tb) {
    dl__matmul_ctx c;
    dl__gemm_batch g;
    dl_tensor *out, *in[2];
    dl_node *nd;
    int shape[DL_MAX_DIMS], nb, i, kb;
    ptrdiff_t so[DL_MAX_DIMS];
    char sa_str[64], sb_str[64];
    if (!a || !b) return NULL;
#ifdef DL_CUDA
    if (a->device || b->device) return dl__cuda_matmul_t(a, b, ta, tb);
#endif
    if (!dl__nn_check(op, a, "a") || !dl__nn_check(op, b, "b")) return NULL;
    if (a->ndim < 2 || b->ndim < 2)
        return (dl_tensor *)dl__fail("%s: operands need at least 2 axes, got %s and %s", op,
                                     dl_shape_str(a, sa_str, sizeof sa_str), dl_shape_str(b, sb_str, sizeof sb_str));
    c.ta = ta = ta != 0;
    c.tb = tb = tb != 0;
    c.m = a->shape[a->ndim - 2 + ta];
    c.k = a->shape[a->ndim - 1 - ta];
    kb = b->shape[b->ndim - 2 + tb];
    c.n = b->shape[b->ndim - 1 - tb];
    if (c.k != kb)
        return (dl_tensor *)dl__fail("%s: inner dimensions differ: %s%s @ %s%s", op, dl_shape_str(a, sa_str, sizeof sa_str),
                                     ta ? "^T" : "", dl_shape_str(b, sb_str, sizeof sb_str), tb ? "^T" : "");
    nb = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    for (i = 0; i < nb; i++) { /* broadcast the batch axes, aligned right */
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return (dl_tensor *)dl__fail("%s: batch axes of %s and %s do not broadcast", op,
                                         dl_shape_str(a, sa_str, sizeof sa_str), dl_shape_str(b, sb_str, sizeof sb_str));
        shape[i] = da == 1 ? db : da;
    }
    shape[nb] = c.m;
    shape[nb + 1] = c.n;
    out = dl_tmp_uninit(DL_DTYPE_F32, nb + 2, shape);
    if (!out || !dl__matmul_operand(a, nb, &c.a, c.sa) || !dl__matmul_operand(b, nb, &c.b, c.sb)) return NULL;
    dl__contig_strides(out->ndim, out->shape, so);
    dl__gemm_batch_init(&g, out, (float *)out->data, so, 0.0f);
    g.m = c.m; g.n = c.n; g.k = c.k; g.ldc = c.n;
    dl__gemm_batch_set_a(&g, c.a.p, ta ^ c.a.t, c.a.ld, c.sa);
    dl__gemm_batch_set_b(&g, c.b.p, tb ^ c.b.t, c.b.ld, c.sb);
    dl__gemm_batch_run(&g);
    in[0] = a;
    in[1] = b;
    nd = dl_record(op + 3, out, 2, in, dl__matmul_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__checked(out);
}

DLDEF dl_tensor *dl_matmul_t(dl_tensor *a, dl_tensor *b, int trans_a, int trans_b) {
    return dl__matmul("dl_matmul_t", a, b, trans_a, trans_b);
}

DLDEF dl_tensor *dl_matmul(dl_tensor *a, dl_tensor *b) {
    int a_vec, b_vec;
    dl_tensor *y;
    if (!a || !b) return NULL;
    if (a->ndim == 0 || b->ndim == 0) return (dl_tensor *)dl__fail("dl_matmul: operands need at least 1 axis, not 0-d");
    /* torch: a vector is a one-row (a) or one-column (b) matrix, and that axis is dropped. */
    a_vec = a->ndim == 1;
    b_vec = b->ndim == 1;
    if (a_vec) a = dl_unsqueeze(a, 0);
    if (b_vec) b = dl_unsqueeze(b, 1);
    y = dl__matmul("dl_matmul", a, b, 0, 0);
    if (y && b_vec) y = dl_squeeze(y, -1);
    if (y && a_vec) y = dl_squeeze(y, b_vec ? -1 : -2);
    return y;
}

/* ---- Dense layer ---- */

typedef struct dl__linear_ctx {
    dl__mat x, w;   /* x as [rows, in], w as [in, out], as read in the forward */
    int rows;
} dl__linear_ctx;

/* y = x w + b: dx = dy w^T, dw = x^T dy, db = sum of dy over rows. */
static void dl__linear_backward(dl_node *nd) {
    const dl__linear_ctx *c = (const dl__linear_ctx *)nd->ctx;
    int in = nd->in[1]->shape[0], out = nd->in[1]->shape[1], i, j;
    float *gx = dl_grad_buf(nd->in[0]), *gw = dl_grad_buf(nd->in[1]);
    float *gb = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    const float *gy = nd->out->grad;
    if (gx) dl__gemm(0, !c->w.t, c->rows, in, out, gy, out, c->w.p, c->w.ld, 1.0f, gx, in);
    if (gw) dl__gemm(!c->x.t, 0, in, out, c->rows, c->x.p, c->x.ld, gy, out, 1.0f, gw, out);
    if (gb)
        for (i = 0; i < c->rows; i++)
            for (j = 0; j < out; j++) gb[j] += gy[(size_t)i * (size_t)out + (size_t)j];
}

DLDEF dl_tensor *dl_linear(dl_tensor *x, dl_tensor *w, dl_tensor *b) {
    dl__linear_ctx c;
    dl_tensor *y, *in[3];
    dl_node *nd;
    int shape[DL_MAX_DIMS], i, out;
    size_t rows = 1;
    char sx[64], sw[64];
    float *yp;
    if (!x || !w) return NULL;
#ifdef DL_CUDA
    if (x->device || w->device || (b && b->device)) return dl__cuda_linear(x, w, b);
#endif
    if (!dl__nn_check("dl_linear", x, "x") || !dl__nn_check("dl_linear", w, "w")) return NULL;
    if (b && !dl__nn_check("dl_linear", b, "b")) return NULL;
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[0])
        return (dl_tensor *)dl__fail("dl_linear: x %s does not match w %s (want x [..., in], w [in, out])",
                                     dl_shape_str(x, sx, sizeof sx), dl_shape_str(w, sw, sizeof sw));
    out = w->shape[1];
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return (dl_tensor *)dl__fail("dl_linear: bias %s does not match w %s (want [%d])",
                                     dl_shape_str(b, sx, sizeof sx), dl_shape_str(w, sw, sizeof sw), out);
    for (i = 0; i < x->ndim - 1; i++) rows *= (size_t)x->shape[i];
    if (rows > 0x7fffffff) return (dl_tensor *)dl__fail("dl_linear: x %s has too many rows", dl_shape_str(x, sx, sizeof sx));
    c.rows = (int)rows;
    for (i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out;
    y = dl_tmp_uninit(DL_DTYPE_F32, x->ndim, shape);
    if (!y || !dl__read_mat(x, 0, &c.x) || !dl__read_mat(w, 0, &c.w)) return NULL;
    yp = (float *)y->data;
    if (b) { /* beta trick: every row starts as b, the GEMM adds x w */
        const float *bp = dl_contig_f32(b);
        if (!bp) return NULL;
        for (i = 0; i < c.rows; i++) memcpy(yp + (size_t)i * (size_t)out, bp, (size_t)out * sizeof(float));
    }
    dl__gemm(c.x.t, c.w.t, c.rows, out, w->shape[0], c.x.p, c.x.ld, c.w.p, c.w.ld, b ? 1.0f : 0.0f, yp, out);
    in[0] = x;
    in[1] = w;
    in[2] = b;
    nd = dl_record("linear", y, b ? 3 : 2, in, dl__linear_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__checked(y);
}

/* ---- Activations ---- */


#define DL__SQRT1_2 0.70710678118654752f       /* 1 / sqrt(2) */
#define DL__INV_SQRT_2PI 0.39894228040143268f  /* 1 / sqrt(2 pi) */
#define DL__SQRT_2_PI 0.79788456080286536f     /* sqrt(2 / pi) */

/* One elementwise activation over n contiguous floats: forward writes y from x; backward adds
   dy * f'(x) into gx (sigmoid and tanh use y). alpha: leaky_relu's slope, elu's alpha. */
typedef struct dl__act {
    int kind, backward;
    float alpha;
    const float *x, *y, *gy;
    float *out;         /* y (forward) or x's gradient (backward) */
    size_t n;
} dl__act;

/* ReLU, the hot one, in blocks of 16 with restrict pointers: gcc and clang vectorize these at
   -O2 (a select, no branch: random signs would mispredict every other element). */
static void dl__relu_fwd(const float *DL__RESTRICT x, float *DL__RESTRICT y, size_t lo, size_t hi) {
    size_t i = lo, k;
    for (; i + 16 <= hi; i += 16)
        for (k = 0; k < 16; k++) { float v = x[i + k]; y[i + k] = v < 0 ? 0.0f : v; }  /* NaN stays NaN */
    for (; i < hi; i++) { float v = x[i]; y[i] = v < 0 ? 0.0f : v; }
}
static void dl__relu_bwd(const float *DL__RESTRICT x, const float *DL__RESTRICT gy, float *DL__RESTRICT gx, size_t lo,
                         size_t hi) {
    size_t i = lo, k;
    for (; i + 16 <= hi; i += 16)
        for (k = 0; k < 16; k++) { float g = gy[i + k]; gx[i + k] += x[i + k] <= 0 ? 0.0f : g; }
    for (; i < hi; i++) { float g = gy[i]; gx[i] += x[i] <= 0 ? 0.0f : g; }
}

static void dl__act_forward(const dl__act *a, size_t lo, size_t hi) {
    const float *x = a->x;
    float *y = a->out, al = a->alpha;
    size_t i;
    switch (a->kind) {
    case DL__RELU: dl__relu_fwd(x, y, lo, hi); break;
    case DL__LEAKY_RELU: for (i = lo; i < hi; i++) y[i] = x[i] > 0 ? x[i] : al * x[i]; break;
    case DL__ELU: for (i = lo; i < hi; i++) y[i] = x[i] > 0 ? x[i] : al * expm1f(x[i]); break;
    case DL__GELU: for (i = lo; i < hi; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * DL__SQRT1_2)); break;
    case DL__GELU_TANH:
        for (i = lo; i < hi; i++) y[i] = 0.5f * x[i] * (1.0f + tanhf(DL__SQRT_2_PI * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
        break;
    case DL__SIGMOID: for (i = lo; i < hi; i++) y[i] = 1.0f / (1.0f + expf(-x[i])); break;
    case DL__TANH: for (i = lo; i < hi; i++) y[i] = tanhf(x[i]); break;
    case DL__SOFTPLUS: for (i = lo; i < hi; i++) y[i] = x[i] > 20.0f ? x[i] : log1pf(expf(x[i])); break;
    }
}

static void dl__act_backward(const dl__act *a, size_t lo, size_t hi) {
    const float *x = a->x, *y = a->y, *gy = a->gy;
    float *gx = a->out, al = a->alpha;
    size_t i;
    switch (a->kind) {
    /* g loaded before the test lets compilers select without a branch (random signs mispredict) */
    case DL__RELU: dl__relu_bwd(x, gy, gx, lo, hi); break; /* torch zeroes where x <= 0: NaN passes g */
    case DL__LEAKY_RELU: for (i = lo; i < hi; i++) { float g = gy[i]; gx[i] += x[i] > 0 ? g : al * g; } break;
    case DL__ELU: for (i = lo; i < hi; i++) { float g = gy[i]; gx[i] += x[i] > 0 ? g : g * al * expf(x[i]); } break;
    case DL__GELU:
        for (i = lo; i < hi; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * DL__SQRT1_2)), pdf = DL__INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
            gx[i] += gy[i] * (cdf + x[i] * pdf);
        }
        break;
    case DL__GELU_TANH:
        for (i = lo; i < hi; i++) {
            float x2 = x[i] * x[i], t = tanhf(DL__SQRT_2_PI * x[i] * (1.0f + 0.044715f * x2));
            gx[i] += gy[i] * (0.5f * (1.0f + t) + 0.5f * x[i] * (1.0f - t * t) * DL__SQRT_2_PI * (1.0f + 3.0f * 0.044715f * x2));
        }
        break;
    case DL__SIGMOID: for (i = lo; i < hi; i++) gx[i] += gy[i] * y[i] * (1.0f - y[i]); break;
    case DL__TANH: for (i = lo; i < hi; i++) gx[i] += gy[i] * (1.0f - y[i] * y[i]); break;
    case DL__SOFTPLUS:
        for (i = lo; i < hi; i++) gx[i] += x[i] > 20.0f ? gy[i] : gy[i] / (1.0f + expf(-x[i]));
        break;
    }
}

#define DL__ACT_CHUNK ((size_t)1 << 15)   /* elements per parallel task */

static void dl__act_task(void *ctx, int task) {
    const dl__act *a = (const dl__act *)ctx;
    size_t lo = (size_t)task * DL__ACT_CHUNK, hi = lo + DL__ACT_CHUNK < a->n ? lo + DL__ACT_CHUNK : a->n;
    if (a->backward) dl__act_backward(a, lo, hi);
    else dl__act_forward(a, lo, hi);
}

/* Elementwise, so any split over threads gives the same bits. */
static void dl__act_run(dl__act *a) {
    if (a->n <= DL__ACT_CHUNK) dl__act_task(a, 0);
    else dl_parallel_for((int)((a->n + DL__ACT_CHUNK - 1) / DL__ACT_CHUNK), dl__act_task, a);
}

static void dl__activation_backward(dl_node *nd) {
    dl__act a = *(const dl__act *)nd->ctx;
    a.out = dl_grad_buf(nd->in[0]);
    a.gy = nd->out->grad;
    a.backward = 1;
    if (a.out) dl__act_run(&a);
}

static dl_tensor *dl__activation(const char *op, int kind, dl_tensor *x, float alpha) {
    dl__act a;
    dl_tensor *y;
    dl_node *nd;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_activation(op, kind, x, alpha);
#endif
    if (!dl__nn_check(op, x, "x")) return NULL;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.alpha = alpha;
    a.x = dl_contig_f32(x);
    y = dl_tmp_uninit(DL_DTYPE_F32, x->ndim, x->shape);
    if (!a.x || !y) return NULL;
    a.out = (float *)y->data;
    a.y = a.out;
    a.n = x->numel;
    dl__act_run(&a);
    nd = dl_record(op + 3, y, 1, &x, dl__activation_backward, sizeof a);
    if (nd) memcpy(nd->ctx, &a, sizeof a);
    return dl__checked(y);
}

/* relu(x) = max(x, 0); d/dx = [x > 0] (0 at x == 0, as torch and TF). */
DLDEF dl_tensor *dl_relu(dl_tensor *x) { return dl__activation("dl_relu", DL__RELU, x, 0); }
/* x > 0 ? x : s x; d/dx = x > 0 ? 1 : s (s at 0). torch's default s is 0.01; Keras' LeakyReLU
   layer defaults to 0.3 and keras.activations.leaky_relu to 0.2. */
DLDEF dl_tensor *dl_leaky_relu(dl_tensor *x, float negative_slope) {
    return dl__activation("dl_leaky_relu", DL__LEAKY_RELU, x, negative_slope);
}
/* x > 0 ? x : alpha (e^x - 1); d/dx = x > 0 ? 1 : alpha e^x (alpha at 0). Keras: same. */
DLDEF dl_tensor *dl_elu(dl_tensor *x, float alpha) { return dl__activation("dl_elu", DL__ELU, x, alpha); }
/* x Phi(x) = x/2 (1 + erf(x/sqrt2)); d/dx = Phi(x) + x phi(x). torch's and
   keras.activations.gelu's default; keras.ops.gelu defaults to the tanh form. */
DLDEF dl_tensor *dl_gelu(dl_tensor *x) { return dl__activation("dl_gelu", DL__GELU, x, 0); }
/* x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
   d/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) with t = tanh(u). */
DLDEF dl_tensor *dl_gelu_tanh(dl_tensor *x) { return dl__activation("dl_gelu_tanh", DL__GELU_TANH, x, 0); }
/* 1 / (1 + e^-x); d/dx = y (1 - y). */
DLDEF dl_tensor *dl_sigmoid(dl_tensor *x) { return dl__activation("dl_sigmoid", DL__SIGMOID, x, 0); }
/* tanh x; d/dx = 1 - y^2. */
DLDEF dl_tensor *dl_tanh(dl_tensor *x) { return dl__activation("dl_tanh", DL__TANH, x, 0); }
/* log(1 + e^x), or x where x > 20 (torch's threshold, invisible in f32); d/dx = sigmoid(x), or 1. */
DLDEF dl_tensor *dl_softplus(dl_tensor *x) { return dl__activation("dl_softplus", DL__SOFTPLUS, x, 0); }

/* ---- Softmax ---- */

/* softmax: y_i = e^(x_i - max) / sum_j e^(x_j - max); log_softmax: y_i = x_i - max - log(sum).
   One line of n values at stride s. */
static void dl__softmax_line(const float *x, float *y, int n, ptrdiff_t s, int log_space) {
    float mx = x[0], sum = 0;
    int i;
    for (i = 1; i < n; i++) mx = x[i * s] > mx ? x[i * s] : mx;
    for (i = 0; i < n; i++) {
        float e = expf(x[i * s] - mx);
        sum += e;
        if (!log_space) y[i * s] = e;
    }
    if (log_space) { /* (x - max) - log(sum) keeps the bits that x - (max + log(sum)) would lose */
        float ls = logf(sum);
        for (i = 0; i < n; i++) y[i * s] = (x[i * s] - mx) - ls;
    } else {
        float inv = 1.0f / sum;
        for (i = 0; i < n; i++) y[i * s] *= inv;
    }
}

/* softmax: dx_i = y_i (dy_i - sum_j dy_j y_j); log_softmax: dx_i = dy_i - e^(y_i) sum_j dy_j. */
static void dl__softmax_line_backward(const float *y, const float *gy, float *gx, int n, ptrdiff_t s, int log_space) {
    float dot = 0;
    int i;
    if (log_space) {
        for (i = 0; i < n; i++) dot += gy[i * s];
        for (i = 0; i < n; i++) gx[i * s] += gy[i * s] - expf(y[i * s]) * dot;
    } else {
        for (i = 0; i < n; i++) dot += gy[i * s] * y[i * s];
        for (i = 0; i < n; i++) gx[i * s] += y[i * s] * (gy[i * s] - dot);
    }
}

typedef struct dl__softmax_ctx {
    size_t outer, inner;   /* x is [outer, len, inner] around the axis */
    int len, log_space;
} dl__softmax_ctx;

/* Runs the forward (gy == NULL: y from x) or the backward (gx += from y, gy) over every line.
   The last axis (inner == 1) is the contiguous fast path. */
static void dl__softmax_lines(const dl__softmax_ctx *c, const float *x, float *y, const float *gy, float *gx) {
    size_t o, j, line = (size_t)c->len * c->inner;
    for (o = 0; o < c->outer; o++)
        for (j = 0; j < c->inner; j++) {
            size_t at = o * line + j;
            if (c->inner == 1) {
                if (gy) dl__softmax_line_backward(y + at, gy + at, gx + at, c->len, 1, c->log_space);
                else dl__softmax_line(x + at, y + at, c->len, 1, c->log_space);
            } else {
                if (gy) dl__softmax_line_backward(y + at, gy + at, gx + at, c->len, (ptrdiff_t)c->inner, c->log_space);
                else dl__softmax_line(x + at, y + at, c->len, (ptrdiff_t)c->inner, c->log_space);
            }
        }
}

static void dl__softmax_backward(dl_node *nd) {
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) dl__softmax_lines((const dl__softmax_ctx *)nd->ctx, NULL, (float *)nd->out->data, nd->out->grad, gx);
}

/* Splits x's shape around axis (negative counts from the end) into outer, len, inner. */
static int dl__split_axis(const char *op, const dl_tensor *x, int axis, size_t *outer, int *len, size_t *inner) {
    int i;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) { dl__fail("%s: axis out of range for a %d-d tensor", op, x->ndim); return 0; }
    *outer = *inner = 1;
    for (i = 0; i < axis; i++) *outer *= (size_t)x->shape[i];
    for (i = axis + 1; i < x->ndim; i++) *inner *= (size_t)x->shape[i];
    *len = x->shape[axis];
    return 1;
}

static dl_tensor *dl__softmax(const char *op, dl_tensor *x, int axis, int log_space) {
    dl__softmax_ctx c;
    const float *xs;
    dl_tensor *y;
    dl_node *nd;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_softmax(x, axis, log_space);
#endif
    if (!dl__nn_check(op, x, "x") || !dl__split_axis(op, x, axis, &c.outer, &c.len, &c.inner)) return NULL;
    c.log_space = log_space;
    xs = dl_contig_f32(x);
    y = dl_tmp_uninit(DL_DTYPE_F32, x->ndim, x->shape);
    if (!xs || !y) return NULL;
    if (c.len > 0) dl__softmax_lines(&c, xs, (float *)y->data, NULL, NULL);
    nd = dl_record(op + 3, y, 1, &x, dl__softmax_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__checked(y);
}

DLDEF dl_tensor *dl_softmax(dl_tensor *x, int axis) { return dl__softmax("dl_softmax", x, axis, 0); }
DLDEF dl_tensor *dl_log_softmax(dl_tensor *x, int axis) { return dl__softmax("dl_log_softmax", x, axis, 1); }

/* ---- Losses ---- */

#define DL__IGNORE_INDEX (-100)   /* torch's default ignore_index */

typedef struct dl__ce_ctx {
    const float *z;         /* logits, contiguous [outer, C, inner] */
    const int32_t *label;   /* [outer, inner] */
    float *mx, *ls;         /* each position's max logit and log(sum(e^(z - max))) */
    size_t outer, inner;
    int classes;
    double count;           /* positions not ignored */
} dl__ce_ctx;

/* loss = mean over positions of logsumexp(z) - z[label]; dz = (softmax(z) - onehot(label)) / count. */
static void dl__cross_entropy_backward(dl_node *nd) {
    const dl__ce_ctx *c = (const dl__ce_ctx *)nd->ctx;
    float *gz = dl_grad_buf(nd->in[0]), g;
    size_t o, j, at;
    int k;
    if (!gz) return;
    g = (float)(nd->out->grad[0] / c->count);
    for (o = 0; o < c->outer; o++)
        for (j = 0; j < c->inner; j++) {
            const float *z = c->z + o * (size_t)c->classes * c->inner + j;
            float *gzp = gz + o * (size_t)c->classes * c->inner + j;
            float mx = c->mx[o * c->inner + j], ls = c->ls[o * c->inner + j];
            int label = c->label[o * c->inner + j];
            if (label == DL__IGNORE_INDEX) continue;
            for (k = 0, at = 0; k < c->classes; k++, at += c->inner) gzp[at] += g * expf((z[at] - mx) - ls);
            gzp[(size_t)label * c->inner] -= g;
        }
}

DLDEF dl_tensor *dl_cross_entropy(dl_tensor *logits, dl_tensor *labels) {
    dl__ce_ctx c;
    dl_tensor *loss;
    dl_node *nd;
    double total = 0;
    size_t o, j;
    int i, ok;
    char sz[64], sl[64];
    if (!logits || !labels) return NULL;
#ifdef DL_CUDA
    if (logits->device || labels->device) return dl__cuda_cross_entropy(logits, labels);
#endif
    if (!dl__nn_check("dl_cross_entropy", logits, "logits")) return NULL;
    if (labels->device != DL_DEVICE_CPU || labels->dtype != DL_DTYPE_I32)
        return (dl_tensor *)dl__fail("dl_cross_entropy: labels must be an i32 CPU tensor, got %s", dl_dtype_name(labels->dtype));
    ok = logits->ndim >= 2 && labels->ndim == logits->ndim - 1 && labels->shape[0] == logits->shape[0];
    for (i = 1; ok && i < labels->ndim; i++) ok = labels->shape[i] == logits->shape[i + 1];
    if (!ok)
        return (dl_tensor *)dl__fail("dl_cross_entropy: logits %s and labels %s do not match (want [N, C, ...] and [N, ...])",
                                     dl_shape_str(logits, sz, sizeof sz), dl_shape_str(labels, sl, sizeof sl));
    c.classes = logits->shape[1];
    c.outer = (size_t)logits->shape[0];
    c.inner = labels->numel / (c.outer ? c.outer : 1);
    c.z = dl_contig_f32(logits);
    c.mx = (float *)dl__tmp_alloc(labels->numel * sizeof(float));
    c.ls = (float *)dl__tmp_alloc(labels->numel * sizeof(float));
    if (dl_is_contiguous(labels)) {
        c.label = (const int32_t *)labels->data;
    } else {
        dl_tensor *copy = dl_tmp_uninit(DL_DTYPE_I32, labels->ndim, labels->shape);
        if (!copy || dl_copy(copy, labels) != 0) return NULL;
        c.label = (const int32_t *)copy->data;
    }
    loss = dl_tmp_uninit(DL_DTYPE_F32, 0, NULL);
    if (!c.z || !c.mx || !c.ls || !loss) return NULL;
    c.count = 0;
    for (o = 0; o < c.outer; o++)
        for (j = 0; j < c.inner; j++) {
            const float *z = c.z + o * (size_t)c.classes * c.inner + j;
            int label = c.label[o * c.inner + j];
            float mx, sum = 0;
            if (label == DL__IGNORE_INDEX) continue;
            if (label < 0 || label >= c.classes)
                return (dl_tensor *)dl__fail("dl_cross_entropy: label %d at position %zu is outside [0, %d)", label,
                                             o * c.inner + j, c.classes);
            mx = z[0];
            for (i = 1; i < c.classes; i++) mx = z[(size_t)i * c.inner] > mx ? z[(size_t)i * c.inner] : mx;
            for (i = 0; i < c.classes; i++) sum += expf(z[(size_t)i * c.inner] - mx);
            c.mx[o * c.inner + j] = mx;
            c.ls[o * c.inner + j] = logf(sum);
            total += (double)(mx - z[(size_t)label * c.inner]) + (double)c.ls[o * c.inner + j];
            c.count++;
        }
    ((float *)loss->data)[0] = c.count > 0 ? (float)(total / c.count) : NAN; /* torch: nan when all ignored */
    nd = dl_record("cross_entropy", loss, 1, &logits, dl__cross_entropy_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__checked(loss);
}


typedef struct dl__loss_ctx {
    int kind;
    float delta;
    const float *p, *t;   /* contiguous pred (or logits) and target */
} dl__loss_ctx;

/* Elementwise losses, mean-reduced. With d = p - t:
     mse:   d^2                                   dp = 2 d                     dt = -dp
     l1:    |d|                                   dp = sign(d) (0 at 0)        dt = -dp
     huber: |d| < delta ? d^2/2 : delta (|d| - delta/2)   dp = clamp(d, -delta, delta)   dt = -dp
     bce:   max(p, 0) - p t + log(1 + e^-|p|)      dp = sigmoid(p) - t          dt = -p */
static void dl__loss_backward(dl_node *nd) {
    const dl__loss_ctx *c = (const dl__loss_ctx *)nd->ctx;
    size_t i, n = nd->in[0]->numel;
    float *gp = dl_grad_buf(nd->in[0]), *gt = dl_grad_buf(nd->in[1]), *d, g, delta = c->delta;
    const float *p = c->p, *t = c->t;
    if (n == 0 || (!gp && !gt)) return;
    g = nd->out->grad[0] / (float)n;
    d = (float *)dl__tmp_alloc(n * sizeof(float)); /* d loss_i / d p_i, times g */
    if (!d) return;
    switch (c->kind) {
    case DL__MSE: for (i = 0; i < n; i++) d[i] = 2.0f * g * (p[i] - t[i]); break;
    case DL__L1: for (i = 0; i < n; i++) d[i] = p[i] > t[i] ? g : (p[i] < t[i] ? -g : 0.0f); break;
    case DL__HUBER:
        for (i = 0; i < n; i++) {
            float e = p[i] - t[i];
            d[i] = g * (e < -delta ? -delta : (e > delta ? delta : e));
        }
        break;
    case DL__BCE_LOGITS: for (i = 0; i < n; i++) d[i] = g * (1.0f / (1.0f + expf(-p[i])) - t[i]); break;
    }
    if (gp) for (i = 0; i < n; i++) gp[i] += d[i];
    if (gt && c->kind == DL__BCE_LOGITS) for (i = 0; i < n; i++) gt[i] -= g * p[i];
    else if (gt) for (i = 0; i < n; i++) gt[i] -= d[i];
}

static dl_tensor *dl__loss(const char *op, int kind, dl_tensor *pred, dl_tensor *target, float delta) {
    dl__loss_ctx c;
    dl_tensor *loss, *in[2];
    dl_node *nd;
    double sum = 0;
    size_t i, n;
    char sp[64], st[64];
    if (!pred || !target) return NULL;
#ifdef DL_CUDA
    if (pred->device || target->device) return dl__cuda_loss(op, kind, pred, target, delta);
#endif
    if (!dl__nn_check(op, pred, "input") || !dl__nn_check(op, target, "target")) return NULL;
    if (!dl_same_shape(pred, target))
        return (dl_tensor *)dl__fail("%s: input %s and target %s have different shapes", op,
                                     dl_shape_str(pred, sp, sizeof sp), dl_shape_str(target, st, sizeof st));
    if (kind == DL__HUBER && !(delta > 0)) return (dl_tensor *)dl__fail("%s: delta must be positive, got %g", op, (double)delta);
    c.kind = kind;
    c.delta = delta;
    c.p = dl_contig_f32(pred);
    c.t = dl_contig_f32(target);
    loss = dl_tmp_uninit(DL_DTYPE_F32, 0, NULL);
    if (!c.p || !c.t || !loss) return NULL;
    n = pred->numel;
    switch (kind) {
    case DL__MSE: for (i = 0; i < n; i++) sum += (double)(c.p[i] - c.t[i]) * (double)(c.p[i] - c.t[i]); break;
    case DL__L1: for (i = 0; i < n; i++) sum += fabs((double)c.p[i] - (double)c.t[i]); break;
    case DL__HUBER:
        for (i = 0; i < n; i++) {
            double e = fabs((double)c.p[i] - (double)c.t[i]);
            sum += e < delta ? 0.5 * e * e : delta * (e - 0.5 * delta);
        }
        break;
    case DL__BCE_LOGITS:
        for (i = 0; i < n; i++) {
            float x = c.p[i];
            sum += (double)((x > 0 ? x : 0.0f) - x * c.t[i] + log1pf(expf(-fabsf(x))));
        }
        break;
    }
    ((float *)loss->data)[0] = n ? (float)(sum / (double)n) : NAN; /* torch: the mean of nothing is nan */
    in[0] = pred;
    in[1] = target;
    nd = dl_record(op + 3, loss, 2, in, dl__loss_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return dl__checked(loss);
}

DLDEF dl_tensor *dl_mse(dl_tensor *pred, dl_tensor *target) { return dl__loss("dl_mse", DL__MSE, pred, target, 0); }
DLDEF dl_tensor *dl_l1(dl_tensor *pred, dl_tensor *target) { return dl__loss("dl_l1", DL__L1, pred, target, 0); }
DLDEF dl_tensor *dl_huber(dl_tensor *pred, dl_tensor *target, float delta) {
    return dl__loss("dl_huber", DL__HUBER, pred, target, delta);
}
DLDEF dl_tensor *dl_bce_with_logits(dl_tensor *logits, dl_tensor *targets) {
    return dl__loss("dl_bce_with_logits", DL__BCE_LOGITS, logits, targets, 0);
}
/* ==== Normalization, dropout, embedding, Gram matrix (tests: tests/test_ops_norm.c) =========== */

/* ---- The normalization engine ----
   Batch, instance and layer norm are one computation on x viewed as contiguous [A, G, B]:
   group g holds the A*B elements (a, g, b) and gets its own mean and 1/std.
       batch norm     A = N, G = C,     B = d1*d2*...   (statistics per channel)
       instance norm  A = 1, G = N*C,   B = d1*d2*...   (statistics per sample and channel)
       layer norm     A = 1, G = rows,  B = normalized size
   gamma/beta hold one value per group (g % period: batch and instance norm) or one per position
   b (layer norm). Loops run a, then g, then b, so memory is read in order even when B is 1
   (batch norm of [N, C]). Work is split over groups and each group is summed in the same order
   whatever the split, so results do not depend on the number of threads. */
typedef struct dl__norm {
    int A, G, B, period, per_position;
    float eps;
    const float *x, *gamma, *beta;  /* x contiguous [A, G, B]; gamma/beta contiguous or NULL */
    const float *ones, *zeros;      /* rows of B ones and zeros, standing in for gamma/beta rows */
    float *y;
    float *mean, *var, *invstd;     /* [G] */
    float *k0, *k1, *k2;            /* [G] per-group coefficients of the elementwise passes */
    double *s1, *s2;                /* [G] sums */
    int batch_stats;                /* backward also flows through mean and var */
    const float *dy;
    float *dx;                      /* NULL when x needs no gradient */
    int n_tasks;
} dl__norm;

/* Row sums in 8 float lanes added in a fixed order (compilers vectorize this), then in double
   across rows: accurate enough, and as fast as float. */
#define DL__LANES 8

static double dl__row_sum(const float *x, int n) {
    float l[DL__LANES] = {0};
    double s = 0;
    int i, j;
    for (i = 0; i + DL__LANES <= n; i += DL__LANES)
        for (j = 0; j < DL__LANES; j++) l[j] += x[i + j];
    for (; i < n; i++) s += x[i];
    for (j = 0; j < DL__LANES && n >= DL__LANES; j++) s += l[j];
    return s;
}

static double dl__row_sqdev(const float *x, int n, float mu) { /* sum((x - mu)^2) */
    float l[DL__LANES] = {0};
    double s = 0;
    int i, j;
    for (i = 0; i + DL__LANES <= n; i += DL__LANES)
        for (j = 0; j < DL__LANES; j++) { float d = x[i + j] - mu; l[j] += d * d; }
    for (; i < n; i++) { double d = x[i] - mu; s += d * d; }
    for (j = 0; j < DL__LANES && n >= DL__LANES; j++) s += l[j];
    return s;
}

/* *s1 += sum(dy * w), *s2 += sum(dy * w * xhat) with xhat = (x - mu) * is */
static void dl__row_grad_sums(const float *dy, const float *w, const float *x, int n, float mu,
                              float is, double *s1, double *s2) {
    float l1[DL__LANES] = {0}, l2[DL__LANES] = {0};
    int i, j;
    for (i = 0; i + DL__LANES <= n; i += DL__LANES)
        for (j = 0; j < DL__LANES; j++) {
            float d = dy[i + j] * w[i + j];
            l1[j] += d;
            l2[j] += d * ((x[i + j] - mu) * is);
        }
    for (; i < n; i++) {
        double d = (double)dy[i] * w[i];
        *s1 += d;
        *s2 += d * ((x[i] - mu) * is);
    }
    for (j = 0; j < DL__LANES && n >= DL__LANES; j++) { *s1 += l1[j]; *s2 += l2[j]; }
}

/* [N, C] batch norm (B = 1) walks each row of x across the groups; per-group values are arrays. */
static void dl__cols_sum(double *DL__RESTRICT s, const float *DL__RESTRICT x, int n) {
    int i;
    for (i = 0; i < n; i++) s[i] += x[i];
}

static void dl__cols_sqdev(double *DL__RESTRICT s, const float *DL__RESTRICT x, const float *DL__RESTRICT mu, int n) {
    int i;
    for (i = 0; i < n; i++) { double d = x[i] - mu[i]; s[i] += d * d; }
}

static void dl__cols_grad_sums(double *DL__RESTRICT s1, double *DL__RESTRICT s2, const float *DL__RESTRICT dy,
                               const float *DL__RESTRICT x, const float *DL__RESTRICT mu,
                               const float *DL__RESTRICT is, int n) {
    int i;
    for (i = 0; i < n; i++) {
        s1[i] += dy[i];
        s2[i] += (double)dy[i] * ((x[i] - mu[i]) * is[i]);
    }
}

/* The elementwise passes, per row (scalars per group) and across a row (arrays per group). */
static void dl__row_affine(float *DL__RESTRICT y, const float *DL__RESTRICT x, const float *DL__RESTRICT gw,
                           const float *DL__RESTRICT bw, int n, float mu, float k0, float k1) {
    int i;
    for (i = 0; i < n; i++) y[i] = (x[i] - mu) * k0 * gw[i] + bw[i] + k1;
}

static void dl__cols_affine(float *DL__RESTRICT y, const float *DL__RESTRICT x, const float *DL__RESTRICT mu,
                            const float *DL__RESTRICT k0, const float *DL__RESTRICT k1, int n) {
    int i;
    for (i = 0; i < n; i++) y[i] = (x[i] - mu[i]) * k0[i] + k1[i];
}

static void dl__row_dx(float *DL__RESTRICT dx, const float *DL__RESTRICT dy, const float *DL__RESTRICT x,
                       const float *DL__RESTRICT gw, int n, float mu, float k0, float k1, float k2) {
    int i;
    for (i = 0; i < n; i++) dx[i] += dy[i] * gw[i] * k0 + (x[i] - mu) * k1 + k2;
}

static void dl__cols_dx(float *DL__RESTRICT dx, const float *DL__RESTRICT dy, const float *DL__RESTRICT x,
                        const float *DL__RESTRICT mu, const float *DL__RESTRICT k0,
                        const float *DL__RESTRICT k1, const float *DL__RESTRICT k2, int n) {
    int i;
    for (i = 0; i < n; i++) dx[i] += dy[i] * k0[i] + (x[i] - mu[i]) * k1[i] + k2[i];
}

static void dl__norm_range(const dl__norm *c, int task, int *g0, int *g1) {
    *g0 = (int)((long long)c->G * task / c->n_tasks);
    *g1 = (int)((long long)c->G * (task + 1) / c->n_tasks);
}

static size_t dl__norm_at(const dl__norm *c, int a, int g) {
    return ((size_t)a * (size_t)c->G + (size_t)g) * (size_t)c->B;
}

/* The gamma and beta rows every position b reads: the real rows per position, else ones and
   zeros (per group, gamma[g] and beta[g] go into the per-group coefficients instead). */
static const float *dl__norm_gamma_row(const dl__norm *c) { return c->per_position && c->gamma ? c->gamma : c->ones; }
static const float *dl__norm_beta_row(const dl__norm *c) { return c->per_position && c->beta ? c->beta : c->zeros; }
static float dl__norm_group_gamma(const dl__norm *c, int g) { return !c->per_position && c->gamma ? c->gamma[g % c->period] : 1.0f; }

/* mean = sum(x) / m, var = sum((x - mean)^2) / m (biased, two passes), invstd = 1/sqrt(var + eps) */
static void dl__norm_stats_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    double m = (double)c->A * (double)c->B;
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) c->s1[g] = c->s2[g] = 0;
    for (a = 0; a < c->A; a++) {
        const float *xa = c->x + dl__norm_at(c, a, 0);
        if (c->B == 1) dl__cols_sum(c->s1 + g0, xa + g0, g1 - g0);
        else for (g = g0; g < g1; g++) c->s1[g] += dl__row_sum(xa + (size_t)g * c->B, c->B);
    }
    for (g = g0; g < g1; g++) c->mean[g] = (float)(m > 0 ? c->s1[g] / m : 0.0);
    for (a = 0; a < c->A; a++) {
        const float *xa = c->x + dl__norm_at(c, a, 0);
        if (c->B == 1) dl__cols_sqdev(c->s2 + g0, xa + g0, c->mean + g0, g1 - g0);
        else for (g = g0; g < g1; g++) c->s2[g] += dl__row_sqdev(xa + (size_t)g * c->B, c->B, c->mean[g]);
    }
    for (g = g0; g < g1; g++) {
        double v = m > 0 ? c->s2[g] / m : 0.0;
        c->var[g] = (float)v;
        c->invstd[g] = (float)(1.0 / sqrt(v + (double)c->eps));
    }
}

/* y = (x - mean) * invstd * gamma + beta, as (x - mean) * k0[g] * gw[b] + bw[b] + k1[g] */
static void dl__norm_apply_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    const float *gw = dl__norm_gamma_row(c), *bw = dl__norm_beta_row(c);
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) {
        c->k0[g] = c->invstd[g] * dl__norm_group_gamma(c, g);
        c->k1[g] = !c->per_position && c->beta ? c->beta[g % c->period] : 0.0f;
    }
    for (a = 0; a < c->A; a++) {
        size_t at = dl__norm_at(c, a, 0);
        if (c->B == 1 && !c->per_position) {
            dl__cols_affine(c->y + at + g0, c->x + at + g0, c->mean + g0, c->k0 + g0, c->k1 + g0, g1 - g0);
            continue;
        }
        for (g = g0; g < g1; g++)
            dl__row_affine(c->y + at + (size_t)g * c->B, c->x + at + (size_t)g * c->B, gw, bw, c->B,
                           c->mean[g], c->k0[g], c->k1[g]);
    }
}

/* Backward, with xhat = (x - mean) * invstd and dxhat = dy * gamma:
   s1[g] = sum(dy * gw), s2[g] = sum(dy * gw * xhat) over the group, gw the gamma row (or ones).
   With a per-group gamma, s1 and s2 are the group's d(beta) and d(gamma), and
   sum(dxhat) = gamma * s1, sum(dxhat * xhat) = gamma * s2. */
static void dl__norm_sums_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    const float *gw = dl__norm_gamma_row(c);
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) c->s1[g] = c->s2[g] = 0;
    for (a = 0; a < c->A; a++) {
        const float *xa = c->x + dl__norm_at(c, a, 0), *dya = c->dy + dl__norm_at(c, a, 0);
        if (c->B == 1 && !c->per_position) {
            dl__cols_grad_sums(c->s1 + g0, c->s2 + g0, dya + g0, xa + g0, c->mean + g0, c->invstd + g0, g1 - g0);
        } else {
            for (g = g0; g < g1; g++)
                dl__row_grad_sums(dya + (size_t)g * c->B, gw, xa + (size_t)g * c->B, c->B, c->mean[g],
                                  c->invstd[g], &c->s1[g], &c->s2[g]);
        }
    }
}

/* dx += invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))   with batch statistics,
   dx += invstd * dxhat                                                with fixed statistics;
   as dx += dy * gw[b] * k0[g] + (x - mean) * k1[g] + k2[g]. */
static void dl__norm_dx_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    const float *gw = dl__norm_gamma_row(c);
    double m = (double)c->A * (double)c->B;
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) {
        double gk = dl__norm_group_gamma(c, g), is = c->invstd[g];
        int batch = c->batch_stats && m > 0;
        c->k0[g] = (float)(is * gk);
        c->k1[g] = batch ? (float)(-is * is * gk * c->s2[g] / m) : 0.0f;  /* -invstd^2 mean(dxhat*xhat) */
        c->k2[g] = batch ? (float)(-is * gk * c->s1[g] / m) : 0.0f;       /* -invstd mean(dxhat) */
    }
    for (a = 0; a < c->A; a++) {
        size_t at = dl__norm_at(c, a, 0);
        if (c->B == 1 && !c->per_position) {
            dl__cols_dx(c->dx + at + g0, c->dy + at + g0, c->x + at + g0, c->mean + g0, c->k0 + g0,
                        c->k1 + g0, c->k2 + g0, g1 - g0);
            continue;
        }
        for (g = g0; g < g1; g++) {
            size_t r = at + (size_t)g * c->B;
            dl__row_dx(c->dx + r, c->dy + r, c->x + r, gw, c->B, c->mean[g], c->k0[g], c->k1[g], c->k2[g]);
        }
    }
}

static void dl__norm_run(dl__norm *c, dl_parallel_fn fn) {
    if (c->n_tasks > 1) dl_parallel_for(c->n_tasks, fn, c);
    else fn(c, 0);
}

/* Fills the engine for contiguous x data [A, G, B]; allocates the per-group arrays and rows. */
static int dl__norm_init(dl__norm *c, const float *x, int A, int G, int B, float eps) {
    size_t total = (size_t)A * (size_t)G * (size_t)B;
    float *f;
    int b;
    memset(c, 0, sizeof *c);
    c->A = A; c->G = G; c->B = B; c->period = G ? G : 1; c->eps = eps; c->x = x;
    c->n_tasks = 1;
    if (total >= ((size_t)1 << 15) && G > 1) { /* big enough to be worth waking the pool */
        c->n_tasks = 4 * dl_num_threads();
        if (c->n_tasks > G) c->n_tasks = G;
    }
    c->s1 = (double *)dl__tmp_alloc(2 * (size_t)G * sizeof(double) + (6 * (size_t)G + 2 * (size_t)B) * sizeof(float));
    if (!c->s1) return 0;
    c->s2 = c->s1 + G;
    f = (float *)(c->s2 + G);
    c->mean = f; c->var = f + G; c->invstd = f + 2 * G;
    c->k0 = f + 3 * G; c->k1 = f + 4 * G; c->k2 = f + 5 * G;
    f += 6 * G;
    for (b = 0; b < B; b++) { f[b] = 1.0f; f[B + b] = 0.0f; }
    c->ones = f;
    c->zeros = f + B;
    return 1;
}

/* The shared forward: normalizes c->x into a new tensor shaped like x, computing the statistics
   first unless the caller filled mean/invstd (batch norm inference). Records `op` with inputs
   {x, gamma, beta} and keeps the engine as the node's context. */
static void dl__norm_backward(dl_node *n);

static dl_tensor *dl__norm_forward(const char *op, dl__norm *c, dl_tensor *x, dl_tensor *gamma,
                                   dl_tensor *beta, int compute_stats) {
    dl_tensor *in[3], *y = dl_tmp_uninit(DL_DTYPE_F32, x->ndim, x->shape);
    dl_node *n;
    if (!y) return NULL;
    c->gamma = gamma ? dl_contig_f32(gamma) : NULL;
    c->beta = beta ? dl_contig_f32(beta) : NULL;
    if ((gamma && !c->gamma) || (beta && !c->beta)) return NULL;
    c->y = (float *)y->data;
    c->batch_stats = compute_stats;
    if (compute_stats) dl__norm_run(c, dl__norm_stats_task);
    dl__norm_run(c, dl__norm_apply_task);
    in[0] = x; in[1] = gamma; in[2] = beta;
    n = dl_record(op, y, 3, in, dl__norm_backward, sizeof(dl__norm));
    if (n) *(dl__norm *)n->ctx = *c;
    return dl__checked(y);
}

static void dl__norm_backward(dl_node *n) {
    dl__norm *c = (dl__norm *)n->ctx;
    float *dx = dl_grad_buf(n->in[0]), *dgamma = dl_grad_buf(n->in[1]), *dbeta = dl_grad_buf(n->in[2]);
    int g, a, b;
    c->dy = n->out->grad;
    c->dx = dx;
    if ((dx && c->batch_stats) || (!c->per_position && (dgamma || dbeta))) dl__norm_run(c, dl__norm_sums_task);
    if (dx) dl__norm_run(c, dl__norm_dx_task);
    if (!dgamma && !dbeta) return;
    if (!c->per_position) { /* d(gamma[ch]) = sum(dy * xhat), d(beta[ch]) = sum(dy) over ch's groups */
        for (g = 0; g < c->G; g++) {
            if (dgamma) dgamma[g % c->period] += (float)c->s2[g];
            if (dbeta) dbeta[g % c->period] += (float)c->s1[g];
        }
    } else { /* layer norm: the same sums per position b, over all rows (serial, double sums) */
        double *dg = (double *)dl__tmp_alloc(2 * ((size_t)c->B + 1) * sizeof(double)), *db;
        if (!dg) return;
        db = dg + c->B + 1;
        memset(dg, 0, 2 * ((size_t)c->B + 1) * sizeof(double));
        for (a = 0; a < c->A; a++)
            for (g = 0; g < c->G; g++) {
                const float *xr = c->x + dl__norm_at(c, a, g), *dyr = c->dy + dl__norm_at(c, a, g);
                float mu = c->mean[g], is = c->invstd[g];
                for (b = 0; b < c->B; b++) {
                    dg[b] += (double)dyr[b] * ((xr[b] - mu) * is);
                    db[b] += dyr[b];
                }
            }
        for (b = 0; b < c->B; b++) {
            if (dgamma) dgamma[b] += (float)dg[b];
            if (dbeta) dbeta[b] += (float)db[b];
        }
    }
}

/* ---- Argument checks shared by the ops ---- */

/* 1 when t is an f32 CPU tensor of exactly the given shape (t NULL is allowed when optional). */
static int dl__check_shaped(const char *op, const char *name, const dl_tensor *t, int ndim, const int *shape) {
    char s[64];
    int i, ok;
    if (!t) return 1;
    if (t->device != DL_DEVICE_CPU) { dl__fail("%s: %s is not on the CPU", op, name); return 0; }
    if (t->dtype != DL_DTYPE_F32) { dl__fail("%s: %s must be f32, got %s", op, name, dl_dtype_name(t->dtype)); return 0; }
    ok = t->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[64];
        size_t u = 0;
        want[0] = 0;
        for (i = 0; i < ndim && u < sizeof want; i++)
            u += (size_t)snprintf(want + u, sizeof want - u, i ? ", %d" : "%d", shape[i]);
        dl__fail("%s: %s has shape %s, expected [%s]", op, name, dl_shape_str(t, s, sizeof s), want);
        return 0;
    }
    return 1;
}

/* 1 when x is an f32 CPU tensor with at least min_ndim dimensions. */
static int dl__check_input(const char *op, const dl_tensor *x, int min_ndim) {
    char s[64];
    if (x->device != DL_DEVICE_CPU) { dl__fail("%s: input is not on the CPU", op); return 0; }
    if (x->dtype != DL_DTYPE_F32) { dl__fail("%s: input must be f32, got %s", op, dl_dtype_name(x->dtype)); return 0; }
    if (x->ndim < min_ndim) {
        dl__fail("%s: input %s needs at least %d dimensions", op, dl_shape_str(x, s, sizeof s), min_ndim);
        return 0;
    }
    return 1;
}

/* Product of x's dimensions from..to-1. */
static int dl__dims_prod(const dl_tensor *x, int from, int to) {
    int i, p = 1;
    for (i = from; i < to; i++) p *= x->shape[i];
    return p;
}

/* ---- Batch, layer and instance norm ---- */

/* Training: y = (x - mean_B) / sqrt(var_B + eps) * gamma + beta with the biased batch variance;
   running = (1 - momentum) * running + momentum * (mean_B, var_B * m / (m - 1)).
   Backward (m values per channel): dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
   dgamma = sum(dy * xhat), dbeta = sum(dy). Inference: the running statistics, dx = invstd * dxhat.
   Keras' momentum is 1 - ours (its 0.99 is our 0.01). */
DLDEF dl_tensor *dl_batch_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta,
                               dl_tensor *running_mean, dl_tensor *running_var,
                               int training, float momentum, float eps) {
    const char *op = "dl_batch_norm";
    const float *xs;
    dl__norm c;
    dl_tensor *y;
    int C, N, S, g;
    size_t m;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device || (gamma && gamma->device) || (beta && beta->device) || (running_mean && running_mean->device) ||
        (running_var && running_var->device))
        return dl__cuda_batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps);
#endif
    if (!dl__check_input(op, x, 2)) return NULL;
    N = x->shape[0];
    C = x->shape[1];
    S = dl__dims_prod(x, 2, x->ndim);
    m = (size_t)N * (size_t)S;
    if (!dl__check_shaped(op, "gamma", gamma, 1, &C) || !dl__check_shaped(op, "beta", beta, 1, &C) ||
        !dl__check_shaped(op, "running_mean", running_mean, 1, &C) ||
        !dl__check_shaped(op, "running_var", running_var, 1, &C))
        return NULL;
    if (!(eps >= 0)) return (dl_tensor *)dl__fail("%s: eps must be >= 0, got %g", op, (double)eps);
    if (training && m <= 1) {
        char s[64];
        return (dl_tensor *)dl__fail("%s: expected more than 1 value per channel when training, got input %s", op, dl_shape_str(x, s, sizeof s));
    }
    if (!training && (!running_mean || !running_var))
        return (dl_tensor *)dl__fail("%s: running_mean and running_var are required when not training", op);
    xs = dl_contig_f32(x);
    if (!xs || !dl__norm_init(&c, xs, N, C, S, eps)) return NULL;
    if (!training) {
        for (g = 0; g < C; g++) {
            c.mean[g] = ((const float *)running_mean->data)[g * running_mean->strides[0]];
            c.var[g] = ((const float *)running_var->data)[g * running_var->strides[0]];
            c.invstd[g] = (float)(1.0 / sqrt((double)c.var[g] + (double)eps));
        }
    }
    y = dl__norm_forward(op, &c, x, gamma, beta, training);
    if (y && training) {
        float unbias = (float)((double)m / (double)(m - 1));
        for (g = 0; g < C; g++) {
            if (running_mean) {
                float *r = (float *)running_mean->data + g * running_mean->strides[0];
                *r = (1.0f - momentum) * *r + momentum * c.mean[g];
            }
            if (running_var) {
                float *r = (float *)running_var->data + g * running_var->strides[0];
                *r = (1.0f - momentum) * *r + momentum * c.var[g] * unbias;
            }
        }
    }
    return y;
}

/* y = (x - mean) / sqrt(var + eps) * gamma + beta over each row of the last normalized_ndim axes;
   dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma,
   dgamma = sum over rows of dy * xhat, dbeta = sum over rows of dy. */
DLDEF dl_tensor *dl_layer_norm(dl_tensor *x, int normalized_ndim, dl_tensor *gamma,
                               dl_tensor *beta, float eps) {
    const char *op = "dl_layer_norm";
    const float *xs;
    dl__norm c;
    int lead, B, k;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device || (gamma && gamma->device) || (beta && beta->device)) return dl__cuda_layer_norm(x, normalized_ndim, gamma, beta, eps);
#endif
    if (!dl__check_input(op, x, 1)) return NULL;
    if (normalized_ndim < 1 || normalized_ndim > x->ndim)
        return (dl_tensor *)dl__fail("%s: normalized_ndim %d out of range 1..%d", op, normalized_ndim, x->ndim);
    if (!(eps >= 0)) return (dl_tensor *)dl__fail("%s: eps must be >= 0, got %g", op, (double)eps);
    k = x->ndim - normalized_ndim;
    if (!dl__check_shaped(op, "gamma", gamma, normalized_ndim, x->shape + k) ||
        !dl__check_shaped(op, "beta", beta, normalized_ndim, x->shape + k))
        return NULL;
    lead = dl__dims_prod(x, 0, k);
    B = dl__dims_prod(x, k, x->ndim);
    xs = dl_contig_f32(x);
    if (!xs || !dl__norm_init(&c, xs, 1, lead, B, eps)) return NULL;
    c.per_position = 1;
    return dl__norm_forward(op, &c, x, gamma, beta, 1);
}

/* Batch norm's training formulas with statistics per (n, c) instead of per c. */
DLDEF dl_tensor *dl_instance_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, float eps) {
    const char *op = "dl_instance_norm";
    const float *xs;
    dl__norm c;
    int C, S;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device || (gamma && gamma->device) || (beta && beta->device)) return dl__cuda_instance_norm(x, gamma, beta, eps);
#endif
    if (!dl__check_input(op, x, 3)) return NULL;
    C = x->shape[1];
    S = dl__dims_prod(x, 2, x->ndim);
    if (!dl__check_shaped(op, "gamma", gamma, 1, &C) || !dl__check_shaped(op, "beta", beta, 1, &C)) return NULL;
    if (!(eps >= 0)) return (dl_tensor *)dl__fail("%s: eps must be >= 0, got %g", op, (double)eps);
    if (S <= 1) {
        char s[64];
        return (dl_tensor *)dl__fail("%s: expected more than 1 spatial element, got input %s", op, dl_shape_str(x, s, sizeof s));
    }
    xs = dl_contig_f32(x);
    if (!xs || !dl__norm_init(&c, xs, 1, x->shape[0] * C, S, eps)) return NULL;
    c.period = C;
    return dl__norm_forward(op, &c, x, gamma, beta, 1);
}

/* ---- Dropout ---- */

typedef struct dl__dropout_ctx {
    const uint8_t *keep;
    float scale;
} dl__dropout_ctx;

static void dl__dropout_backward(dl_node *n) {
    const dl__dropout_ctx *c = (const dl__dropout_ctx *)n->ctx;
    float *gx = dl_grad_buf(n->in[0]);
    const float *gy = n->out->grad;
    size_t i;
    float mult[2];
    mult[0] = 0.0f;
    mult[1] = c->scale;
    if (!gx) return;
    for (i = 0; i < n->out->numel; i++) gx[i] += gy[i] * mult[c->keep[i]];   /* torch: dy * mask * scale */
}

/* y = x * keep / (1 - p), keep ~ Bernoulli(1 - p); dx = dy * keep / (1 - p). Keras: the same. */
DLDEF dl_tensor *dl_dropout(dl_tensor *x, float p, int training, dl_rng *rng) {
    const char *op = "dl_dropout";
    const float *xs;
    uint8_t *keep;
    float scale, *ys, mult[2];
    dl_tensor *y;
    dl_node *n;
    size_t i;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_dropout(x, p, training, rng);
#endif
    if (!dl__check_input(op, x, 0)) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) return (dl_tensor *)dl__fail("%s: p must be in [0, 1], got %g", op, (double)p);
    if (!training || p == 0.0f) return x;
    if (!rng) return (dl_tensor *)dl__fail("%s: rng is NULL while training", op);
    xs = dl_contig_f32(x);
    y = dl_tmp_uninit(DL_DTYPE_F32, x->ndim, x->shape);
    keep = (uint8_t *)dl__tmp_alloc(x->numel);
    if (!xs || !y || !keep) return NULL;
    scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    ys = (float *)y->data;
    mult[0] = 0.0f;   /* multiplying (not selecting) as torch does: a dropped inf gives NaN */
    mult[1] = scale;
    for (i = 0; i < x->numel; i++) {
        keep[i] = dl_rng_uniform(rng) >= p; /* P(u >= p) = 1 - p for u uniform in [0, 1) */
        ys[i] = xs[i] * mult[keep[i]];
    }
    n = dl_record("dropout", y, 1, &x, dl__dropout_backward, sizeof(dl__dropout_ctx));
    if (n) {
        dl__dropout_ctx *c = (dl__dropout_ctx *)n->ctx;
        c->keep = keep;
        c->scale = scale;
    }
    return dl__checked(y);
}

/* ---- Embedding ---- */

static void dl__embedding_backward(dl_node *n) {
    const int32_t *idx = (const int32_t *)n->ctx;
    float *gw = dl_grad_buf(n->in[0]);
    const float *gy = n->out->grad;
    int D = n->in[0]->shape[1], d;
    size_t i, rows = n->out->numel / (D ? (size_t)D : 1);
    if (!gw || D == 0) return;
    for (i = 0; i < rows; i++)
        for (d = 0; d < D; d++) gw[(size_t)idx[i] * (size_t)D + (size_t)d] += gy[i * (size_t)D + (size_t)d];
}

/* y[..., :] = weight[indices[...], :];  dweight[v, :] += sum of dy rows whose index is v. */
DLDEF dl_tensor *dl_embedding(dl_tensor *weight, dl_tensor *indices) {
    const char *op = "dl_embedding";
    const float *w;
    int32_t *idx;
    int shape[DL_MAX_DIMS], V, D, i;
    dl_tensor *y;
    dl_node *n;
    size_t r;
    char s[64];
    if (!weight || !indices) return NULL;
#ifdef DL_CUDA
    if (weight->device || indices->device) return dl__cuda_embedding(weight, indices);
#endif
    if (weight->device != DL_DEVICE_CPU || indices->device != DL_DEVICE_CPU) return (dl_tensor *)dl__fail("%s: tensors are not on the CPU", op);
    if (weight->dtype != DL_DTYPE_F32 || weight->ndim != 2)
        return (dl_tensor *)dl__fail("%s: weight must be a 2-d f32 tensor [V, D], got %s %s", op, dl_dtype_name(weight->dtype), dl_shape_str(weight, s, sizeof s));
    if (indices->dtype != DL_DTYPE_I32) return (dl_tensor *)dl__fail("%s: indices must be i32, got %s", op, dl_dtype_name(indices->dtype));
    if (indices->ndim >= DL_MAX_DIMS) return (dl_tensor *)dl__fail("%s: indices have too many dimensions (%d)", op, indices->ndim);
    V = weight->shape[0];
    D = weight->shape[1];
    idx = (int32_t *)dl__tmp_alloc(indices->numel * sizeof(int32_t)); /* contiguous copy, kept for backward */
    if (!idx) return NULL;
    for (r = 0; r < indices->numel; r++) {
        idx[r] = ((const int32_t *)indices->data)[dl__offset_of(indices, r)];
        if (idx[r] < 0 || idx[r] >= V) return (dl_tensor *)dl__fail("%s: index %d out of range for %d rows", op, (int)idx[r], V);
    }
    for (i = 0; i < indices->ndim; i++) shape[i] = indices->shape[i];
    shape[indices->ndim] = D;
    w = dl_contig_f32(weight);
    y = dl_tmp_uninit(DL_DTYPE_F32, indices->ndim + 1, shape);
    if (!w || !y) return NULL;
    for (r = 0; r < indices->numel; r++)
        memcpy((float *)y->data + r * (size_t)D, w + (size_t)idx[r] * (size_t)D, (size_t)D * sizeof(float));
    n = dl_record("embedding", y, 1, &weight, dl__embedding_backward, 0);
    if (n) n->ctx = idx;
    return dl__checked(y);
}

/* ---- Gram matrix ---- */

typedef struct dl__gram_ctx {
    const float *f;   /* x as contiguous [N, C, L] */
    int N, C, L;
} dl__gram_ctx;

static void dl__gram_backward(dl_node *n) {
    const dl__gram_ctx *c = (const dl__gram_ctx *)n->ctx;
    float *gx = dl_grad_buf(n->in[0]), *sym;
    const float *gy = n->out->grad;
    size_t cc = (size_t)c->C * (size_t)c->C, cl = (size_t)c->C * (size_t)c->L;
    int b, i, j;
    if (!gx || c->L == 0) return;
    sym = (float *)dl__tmp_alloc(cc * sizeof(float));
    if (!sym) return;
    for (b = 0; b < c->N; b++) {
        const float *g = gy + (size_t)b * cc;
        for (i = 0; i < c->C; i++)
            for (j = 0; j < c->C; j++) sym[i * c->C + j] = g[i * c->C + j] + g[j * c->C + i];
        dl_sgemm(0, 0, c->C, c->L, c->C, 1.0f / (float)c->L, sym, c->C, c->f + (size_t)b * cl, c->L,
                 1.0f, gx + (size_t)b * cl, c->L);
    }
}

/* G[n] = F F^T / L with F = x[n] as [C, L], L = H*W;  dF = (dG + dG^T) F / L. */
DLDEF dl_tensor *dl_gram(dl_tensor *x) {
    const char *op = "dl_gram";
    const float *f;
    dl_tensor *y;
    dl_node *n;
    int N, C, L, b, shape[3];
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_gram(x);
#endif
    if (!dl__check_input(op, x, 3)) return NULL;
    N = x->shape[0];
    C = x->shape[1];
    L = dl__dims_prod(x, 2, x->ndim);
    f = dl_contig_f32(x);
    shape[0] = N; shape[1] = C; shape[2] = C;
    y = dl_tmp(DL_DTYPE_F32, 3, shape);
    if (!f || !y) return NULL;
    for (b = 0; b < N && L > 0; b++)
        dl_sgemm(0, 1, C, C, L, 1.0f / (float)L, f + (size_t)b * C * L, L, f + (size_t)b * C * L, L,
                 0.0f, (float *)y->data + (size_t)b * C * C, C);
    n = dl_record("gram", y, 1, &x, dl__gram_backward, sizeof(dl__gram_ctx));
    if (n) {
        dl__gram_ctx *c = (dl__gram_ctx *)n->ctx;
        c->f = f; c->N = N; c->C = C; c->L = L;
    }
    return dl__checked(y);
}
/* ==== Convolution, pooling, padding, upsampling (tests: tests/test_ops_conv.c) ===================

   All convolution work is written in terms of one geometry and three per-image products with a
   weight matrix M [rows, K], where K = c*kh*kw and col = im2col(img) is [K, oh*ow]:

       apply:    small  = M @ col(img)                  conv2d forward, conv_transpose2d dX
       adjoint:  img   += col2im(M^T @ small)           conv2d dX,      conv_transpose2d forward
       weights:  dM    += small @ col(img)^T            dW of both

   "img" is the conv input side ([c, h, w]: conv2d's x, conv_transpose2d's output) and "small"
   the conv output side ([rows, oh, ow]: conv2d's y, conv_transpose2d's x). The batch is cut into
   chunks (a count that depends on the shape only, never on the threads), run in parallel; each
   chunk walks its images one by one, or a few side by side when planes are small
   (dl__conv_group), reusing one col buffer, which stays in cache between the im2col and its
   GEMM when it is small. dW and db are summed per chunk and then over chunks in order, so
   results are the same bits for any thread count. A 1x1 stride-1 unpadded conv needs no
   im2col: col is the image itself. */

typedef struct dl__conv_geom {
    int c, h, w;          /* image side: channels, height, width */
    int oh, ow;           /* output side: spatial size of a conv's output */
    int kh, kw, sh, sw, ph, pw, dh, dw;
} dl__conv_geom;

/* Checks t is an f32 CPU tensor with ndim axes (ndim < 0: at least -ndim axes). */
static int dl__conv_check(const dl_tensor *t, const char *op, const char *what, int ndim) {
    char s[64];
    if (t->dtype != DL_DTYPE_F32) { dl__fail("%s: %s must be f32, got %s", op, what, dl_dtype_name(t->dtype)); return 0; }
    if (t->device != DL_DEVICE_CPU) { dl__fail("%s: %s is not on the CPU", op, what); return 0; }
    if ((ndim >= 0 && t->ndim != ndim) || (ndim < 0 && t->ndim < -ndim)) {
        dl__fail("%s: %s must have %s%d axes%s, got %s", op, what, ndim < 0 ? "at least " : "", ndim < 0 ? -ndim : ndim,
                 ndim == 4 ? " [N, C, H, W]" : "", dl_shape_str(t, s, sizeof s));
        return 0;
    }
    return 1;
}

/* Fills g's window from opts (NULL: defaults) and the kernel size. The stride defaults to 1, or
   to the kernel for pools. out_pad receives output_padding; NULL means the op has none. */
static int dl__conv_window(dl__conv_geom *g, const dl_conv_opts *opts, int kh, int kw, int pool, int *out_pad,
                           const char *op) {
    dl_conv_opts o;
    int i;
    if (opts) o = *opts;
    else memset(&o, 0, sizeof o);
    for (i = 0; i < 2; i++)
        if (o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0 || o.output_padding[i] < 0) {
            dl__fail("%s: stride, padding, dilation and output_padding must be >= 0 (0 = default)", op);
            return 0;
        }
    if (kh < 1 || kw < 1) { dl__fail("%s: kernel size must be >= 1, got %dx%d", op, kh, kw); return 0; }
    if (!out_pad && (o.output_padding[0] || o.output_padding[1])) {
        dl__fail("%s: output_padding is only for dl_conv_transpose2d", op);
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

/* (in + 2p - d(k-1) - 1) / s + 1, or 0 when the dilated kernel does not fit the padded input
   (or the sizes are beyond dl__conv_sizes_ok's limits, which then names them). */
static int dl__conv_out_size(int in, int k, int s, int p, int d) {
    long long e = (long long)in + 2LL * p - (long long)d * (k - 1) - 1;
    return e < 0 || e / s + 1 > INT_MAX ? 0 : (int)(e / s + 1);
}

/* The kernels index with int: the padded image side, the dilated kernel, a plane on either side
   and (convolutions, k_cols) the im2col rows c*kh*kw must each fit in an int. 0 + message if not. */
static int dl__conv_sizes_ok(const dl__conv_geom *g, int k_cols, const char *op) {
    long long pad_h = (long long)g->h + 2LL * g->ph, pad_w = (long long)g->w + 2LL * g->pw;
    long long ker_h = (long long)g->dh * (g->kh - 1) + 1, ker_w = (long long)g->dw * (g->kw - 1) + 1;
    if (pad_h > INT_MAX || pad_w > INT_MAX) {
        dl__fail("%s: padded input %lldx%lld is over INT_MAX (input %dx%d, padding %dx%d)", op, pad_h, pad_w, g->h, g->w, g->ph, g->pw);
        return 0;
    }
    if (ker_h > INT_MAX || ker_w > INT_MAX) {
        dl__fail("%s: dilated kernel %lldx%lld is over INT_MAX (kernel %dx%d, dilation %dx%d)", op, ker_h, ker_w, g->kh, g->kw, g->dh, g->dw);
        return 0;
    }
    if ((long long)g->h * g->w > INT_MAX || (long long)g->oh * g->ow > INT_MAX) {
        dl__fail("%s: planes %dx%d -> %dx%d have over INT_MAX pixels", op, g->h, g->w, g->oh, g->ow);
        return 0;
    }
    if (k_cols && (long long)g->c * g->kh * g->kw > INT_MAX) {
        dl__fail("%s: %d channels x kernel %dx%d is over INT_MAX", op, g->c, g->kh, g->kw);
        return 0;
    }
    return 1;
}

/* Sets [lo, hi) to the j in [0, count) with 0 <= off + j*step < size. */
static void dl__conv_valid_range(int off, int step, int size, int count, int *lo, int *hi) {
    int a, b;
    if (step == 1) { /* the common case, without divisions */
        a = off >= 0 ? 0 : -off;
        b = size - off < 0 ? 0 : size - off;
    } else {
        a = off >= 0 ? 0 : (-off + step - 1) / step;
        b = size - 1 - off < 0 ? 0 : (size - 1 - off) / step + 1;
    }
    if (b > count) b = count;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

static int dl__conv_is_identity(const dl__conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->oh == g->h &&
           g->ow == g->w;
}

/* dst[r*ld_dst + j] = src[r*ld_src + j] (add: +=) for r < rows, j < n: the inner copy of
   im2col and col2im. Rows there are short (11 floats for a 13x13 input and a 3x3 kernel) and
   many, so a memcpy call or a scalar loop per row costs more than the data; with AVX-512 each
   row is one or two masked load/store pairs. Exact copies and adds: the kernel does not change
   results. */
static void dl__conv_rows_c(float *dst, size_t ld_dst, const float *src, size_t ld_src, int rows, int n, int add,
                            const float *bias) {
    int r, j;
    for (r = 0; r < rows; r++, dst += ld_dst, src += ld_src)
        if (bias && add) for (j = 0; j < n; j++) dst[j] = dst[j] + src[j] + bias[r];
        else if (bias) for (j = 0; j < n; j++) dst[j] = src[j] + bias[r];
        else if (add) for (j = 0; j < n; j++) dst[j] += src[j];
        else if (dst != src) memcpy(dst, src, sizeof(float) * (size_t)n);
}

#ifdef DL__X86_SIMD
DL__TARGET_AVX512 static void dl__conv_rows_avx512(float *dst, size_t ld_dst, const float *src, size_t ld_src, int rows, int n,
                                                   int add, const float *bias) {
    int r, j, full = n & ~15, span = (n + 15) & ~15;
    __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1u);
    /* A plain copy into a contiguous block (im2col): every row but the last is written with
       whole 16-float stores; what spills past a row lands in the next one, which overwrites
       it. Masked stores cost far more than the few extra floats. Reads stay inside the source
       rows of the block (span <= ld_src + n). */
    if (!add && !bias && tail && rows > 1 && (size_t)ld_dst == (size_t)n && span - n <= n &&
        (size_t)span <= ld_src + (size_t)n && dst != src) {
        for (r = 0; r < rows - 1; r++, dst += ld_dst, src += ld_src)
            for (j = 0; j < span; j += 16) _mm512_storeu_ps(dst + j, _mm512_loadu_ps(src + j));
        for (j = 0; j < full; j += 16) _mm512_storeu_ps(dst + j, _mm512_loadu_ps(src + j));
        _mm512_mask_storeu_ps(dst + full, tail, _mm512_maskz_loadu_ps(tail, src + full));
        return;
    }
    for (r = 0; r < rows; r++, dst += ld_dst, src += ld_src) {
        __m512 b = _mm512_set1_ps(bias ? bias[r] : 0.0f);
        for (j = 0; j < full; j += 16) {
            __m512 v = _mm512_loadu_ps(src + j);
            if (add) v = _mm512_add_ps(_mm512_loadu_ps(dst + j), v);
            if (bias) v = _mm512_add_ps(v, b);
            _mm512_storeu_ps(dst + j, v);
        }
        if (tail) {
            __m512 v = _mm512_maskz_loadu_ps(tail, src + full);
            if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(tail, dst + full), v);
            if (bias) v = _mm512_add_ps(v, b);
            _mm512_mask_storeu_ps(dst + full, tail, v);
        }
    }
}

/* acc[k] += sum of y[k][:] over planes of hw elements, in the order of dl__conv_add_sums. */
DL__TARGET_AVX512 static void dl__conv_add_sums_avx512(const float *y, float *acc, int c, size_t hw) {
    int k, l;
    size_t i;
    float s[16];
    for (k = 0; k < c; k++, y += hw) {
        __m512 v = _mm512_setzero_ps();
        float total = 0.0f;
        for (i = 0; i + 16 <= hw; i += 16) v = _mm512_add_ps(v, _mm512_loadu_ps(y + i));
        for (; i < hw; i++) total += y[i];
        _mm512_storeu_ps(s, v);
        for (l = 0; l < 16; l++) total += s[l];
        acc[k] += total;
    }
}

/* col2im with stride 1 along the width: each image row is loaded once, 16 columns at a time,
   all kh*kw shifted col rows that land on it are summed in registers, and it is stored once.
   (Adding one col row at a time makes each load of img overlap the previous masked store by all
   but one float, a store-forwarding stall per row.) For each image element the terms are added
   in the same (p, q) order as the plain loop, so the results are the same bits. */
DL__TARGET_AVX512 static void dl__conv_col2im_avx512(const dl__conv_geom *g, float *img, const float *col, size_t ldcol) {
    int c, p, q, r, x0, ow = g->ow, sh1 = g->sh == 1;
    if (g->kw <= 16) {   /* the lanes and col offsets of each q depend only on q and x0: found once */
        __mmask16 mq[16];
        ptrdiff_t dq[16];
        for (x0 = 0; x0 < g->w; x0 += 16) {
            int nl = g->w - x0 < 16 ? g->w - x0 : 16, nq = 0;
            __mmask16 m = (__mmask16)((1u << nl) - 1u);
            for (q = 0; q < g->kw; q++) {
                int off = q * g->dw - g->pw, lo = off - x0, hi = ow + off - x0;
                if (lo < 0) lo = 0;
                if (hi > nl) hi = nl;
                if (hi <= lo) continue;   /* skipped in the plain loop too: same order of adds */
                mq[nq] = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
                dq[nq++] = (ptrdiff_t)((size_t)q * ldcol) + x0 - off;
            }
            for (c = 0; c < g->c; c++)
                for (r = 0; r < g->h; r++) {
                    float *row = img + ((size_t)c * g->h + (size_t)r) * g->w + x0;
                    __m512 acc = _mm512_maskz_loadu_ps(m, row);
                    for (p = 0; p < g->kh; p++) {
                        int di = r - (p * g->dh - g->ph), i = sh1 ? di : di / g->sh;
                        const float *ci;
                        if (di < 0 || i >= g->oh || (!sh1 && di % g->sh)) continue;
                        ci = col + (((size_t)c * g->kh + p) * g->kw) * ldcol + (size_t)i * ow;
                        for (q = 0; q < nq; q++) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mq[q], ci + dq[q]));
                    }
                    _mm512_mask_storeu_ps(row, m, acc);
                }
        }
        return;
    }
    for (c = 0; c < g->c; c++)
        for (r = 0; r < g->h; r++) {
            float *row = img + ((size_t)c * g->h + (size_t)r) * g->w;
            for (x0 = 0; x0 < g->w; x0 += 16) {
                int nl = g->w - x0 < 16 ? g->w - x0 : 16;
                __mmask16 m = (__mmask16)((1u << nl) - 1u);
                __m512 acc = _mm512_maskz_loadu_ps(m, row + x0);
                for (p = 0; p < g->kh; p++) {
                    int di = r - (p * g->dh - g->ph), i = sh1 ? di : di / g->sh; /* output row i reads row r */
                    const float *ci;
                    if (di < 0 || i >= g->oh || (!sh1 && di % g->sh)) continue; /* (no divisions when sh == 1) */
                    ci = col + (((size_t)c * g->kh + p) * g->kw) * ldcol + (size_t)i * ow;
                    for (q = 0; q < g->kw; q++) {
                        /* lane l is image column x0 + l, output column j = x0 + l - off */
                        int off = q * g->dw - g->pw, lo = off - x0, hi = ow + off - x0;
                        if (lo < 0) lo = 0;
                        if (hi > nl) hi = nl;
                        if (hi <= lo) continue;
                        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps((__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u)),
                                                                       ci + ((ptrdiff_t)((size_t)q * ldcol) + x0 - off)));
                    }
                }
                _mm512_mask_storeu_ps(row + x0, m, acc);
            }
        }
}
#endif

static int dl__conv_has_avx512(void) {
#ifdef DL__X86_SIMD
    return __builtin_cpu_supports("avx512f") ? 1 : 0;   /* no cache: threads' first calls would race on it */
#else
    return 0;
#endif
}

/* dst = [dst +] src [+ bias[row]] over rows of n floats; dst == src (in place) is allowed. */
static void dl__conv_rows(float *dst, size_t ld_dst, const float *src, size_t ld_src, int rows, int n, int add,
                          const float *bias) {
#ifdef DL__X86_SIMD
    if (dl__conv_has_avx512()) { dl__conv_rows_avx512(dst, ld_dst, src, ld_src, rows, n, add, bias); return; }
#endif
    dl__conv_rows_c(dst, ld_dst, src, ld_src, rows, n, add, bias);
}

/* to_img == 0 (im2col): col[(c*kh + p)*kw + q][i*ow + j] = img[c][i*sh - ph + p*dh][j*sw - pw + q*dw],
   0 outside the image. to_img == 1 (col2im): the adjoint, img[...] += col[...]. ldcol is the row
   stride of col (>= oh*ow), so several images can sit side by side in one col matrix. For each
   (c, p, q) the output rows [i0, i1) and columns [j0, j1) that land inside the image are found
   once; with stride 1 along the width that block is a strided 2-D copy (dl__conv_rows), and
   padding only costs a memset of the row's block before it. */
static void dl__conv_im2col(const dl__conv_geom *g, float *img, float *col, size_t ldcol, int to_img) {
    int c, p, q, i, j, ow = g->ow, hw = g->oh * g->ow;
#ifdef DL__X86_SIMD
    if (to_img && g->sw == 1 && dl__conv_has_avx512()) { dl__conv_col2im_avx512(g, img, col, ldcol); return; }
#endif
    for (c = 0; c < g->c; c++)
        for (p = 0; p < g->kh; p++) {
            int ih_off = p * g->dh - g->ph, i0, i1; /* image row of output row i: i*sh + ih_off */
            dl__conv_valid_range(ih_off, g->sh, g->h, g->oh, &i0, &i1);
            for (q = 0; q < g->kw; q++, col += ldcol) {
                int off = q * g->dw - g->pw, j0, j1; /* image column of output column j: j*sw + off */
                float *out = col + (size_t)i0 * ow, *row;
                dl__conv_valid_range(off, g->sw, g->w, ow, &j0, &j1);
                if (!to_img && (i0 > 0 || i1 < g->oh || j0 > 0 || j1 < ow)) memset(col, 0, sizeof(float) * (size_t)hw);
                if (i1 <= i0 || j1 <= j0) continue;
                row = img + ((size_t)c * g->h + (size_t)(i0 * g->sh + ih_off)) * g->w + off;
                if (g->sw == 1) {
                    if (to_img) dl__conv_rows(row + j0, (size_t)g->sh * g->w, out + j0, (size_t)ow, i1 - i0, j1 - j0, 1, NULL);
                    else dl__conv_rows(out + j0, (size_t)ow, row + j0, (size_t)g->sh * g->w, i1 - i0, j1 - j0, 0, NULL);
                    continue;
                }
                for (i = i0; i < i1; i++, out += ow, row += (size_t)g->sh * g->w)
                    if (to_img) for (j = j0; j < j1; j++) row[j * g->sw] += out[j];
                    else for (j = j0; j < j1; j++) out[j] = row[j * g->sw];
            }
        }
}

/* y[c][:] += b[c] over planes of hw elements. */
static void dl__conv_add_bias(float *y, const float *b, int c, size_t hw) {
    dl__conv_rows(y, hw, y, hw, c, (int)hw, 0, b);
}

/* acc[c] += sum of y[c][:] over planes of hw elements. Sixteen running sums, so the compiler
   can keep them in one vector register (a single running sum is a serial chain of adds). */
static void dl__conv_add_sums(const float *y, float *acc, int c, size_t hw) {
    int k, l;
    size_t i;
#ifdef DL__X86_SIMD
    if (dl__conv_has_avx512()) { dl__conv_add_sums_avx512(y, acc, c, hw); return; }
#endif
    for (k = 0; k < c; k++, y += hw) {
        float s[16] = {0}, total = 0.0f;
        for (i = 0; i + 16 <= hw; i += 16)
            for (l = 0; l < 16; l++) s[l] += y[i + l];
        for (; i < hw; i++) total += y[i];
        for (l = 0; l < 16; l++) total += s[l];
        acc[k] += total;
    }
}

/* One batch of the per-image products; fields left NULL are skipped. */
typedef struct dl__conv_job {
    dl__conv_geom g;
    int n, rows;
    const float *m;           /* [rows, K] */
    const float *img_in;      /* [n, c, h, w]: source of col for apply and weights */
    float *small_out;         /* apply: small_out = M @ col (+ small_out when small_beta is 1) */
    float small_beta;         /* 0 or 1 */
    const float *small_bias;  /* [rows], added to small_out */
    const float *small_in;    /* [n, rows, oh, ow]: input of weights and adjoint */
    float *img_out;           /* adjoint: img_out += col2im(M^T @ small_in) */
    const float *img_bias;    /* [c], added to img_out */
    float *dm;                /* weights: dm += small_in @ col^T, [rows, K] */
    const float *db_src;      /* db[k] += sum over images and pixels of db_src[:, k] */
    int db_c;
    size_t db_hw;
    float *db;
    /* set by dl__conv_run */
    int n_chunks, group;      /* images per GEMM (see dl__conv_group) */
    float *col, *small, *dm_part, *db_part;  /* per chunk: [K, group*oh*ow], [rows, group*oh*ow], [rows, K], [db_c] */
} dl__conv_job;

/* Images per GEMM. With small planes (a 7x7 output has 49 pixels) one image's GEMMs are thin:
   49 columns for apply and adjoint, a 49-long sum for weights, so packing and loading the
   weight matrix costs about as much as the arithmetic. A group of images side by side in col
   ([K, group*oh*ow], the layout im2col and col2im take through ldcol) makes one GEMM of about
   DL__CONV_GROUP_COLS columns instead; "small" goes through a buffer of the same layout
   ([rows, group*oh*ow]), gathered from or scattered to the images. The col of a group is kept
   to DL__CONV_GROUP_FLOATS (4 MB), and a 1x1 stride-1 conv (no col) runs image by image. The
   group depends on the shape only, so results stay the same bits for any thread count. */
#define DL__CONV_GROUP_COLS 256
#define DL__CONV_GROUP_FLOATS ((size_t)1 << 20)
static int dl__conv_group(const dl__conv_geom *g, int n) {
    size_t hw = (size_t)g->oh * g->ow, k = (size_t)g->c * g->kh * g->kw, nb;
    if (dl__conv_is_identity(g) || hw >= DL__CONV_GROUP_COLS || n < 2) return 1;
    nb = (DL__CONV_GROUP_COLS + hw - 1) / hw;
    if (nb * k * hw > DL__CONV_GROUP_FLOATS) nb = DL__CONV_GROUP_FLOATS / (k * hw);
    if (nb > (size_t)n) nb = (size_t)n;
    return nb < 1 ? 1 : (int)nb;
}

static void dl__conv_chunk(void *ctx, int chunk) {
    const dl__conv_job *jb = (const dl__conv_job *)ctx;
    const dl__conv_geom *g = &jb->g;
    int rows = jb->rows, hw = g->oh * g->ow, k = g->c * g->kh * g->kw, nb = jb->group, n, j, m;
    int identity = dl__conv_is_identity(g);
    size_t img_size = (size_t)g->c * g->h * g->w, small_size = (size_t)rows * hw;
    float *col = jb->col ? jb->col + (size_t)chunk * k * hw * nb : NULL;
    float *small = jb->small ? jb->small + (size_t)chunk * small_size * nb : NULL;
    float *dm = jb->dm ? jb->dm_part + (size_t)chunk * rows * k : NULL;
    float *db = jb->db ? jb->db_part + (size_t)chunk * jb->db_c : NULL;
    int n0 = (int)((long long)jb->n * chunk / jb->n_chunks), n1 = (int)((long long)jb->n * (chunk + 1) / jb->n_chunks);
    for (n = n0; n < n1; n += m) {
        /* images [n, n + m), side by side: a matrix of ld columns, image j at column j*hw */
        int ld;
        const float *small_in = jb->small_in ? jb->small_in + n * small_size : NULL;
        m = n1 - n < nb ? n1 - n : nb;
        ld = m * hw;
        if (small_in && m > 1 && (dm || jb->img_out)) {   /* gather [m, rows, hw] -> [rows, m*hw] */
            for (j = 0; j < m; j++) dl__conv_rows(small + (size_t)j * hw, (size_t)ld, small_in + j * small_size, (size_t)hw, rows, hw, 0, NULL);
            small_in = small;
        }
        if (jb->img_in && (jb->small_out || dm)) {
            const float *cols = jb->img_in + n * img_size;
            if (!identity) {
                for (j = 0; j < m; j++) dl__conv_im2col(g, (float *)(cols + j * img_size), col + (size_t)j * hw, (size_t)ld, 0);
                cols = col;
            }
            if (dm) dl_sgemm(0, 1, rows, k, ld, 1.0f, small_in, ld, cols, ld, 1.0f, dm, k);
            if (jb->small_out && m == 1) {
                float *y = jb->small_out + n * small_size;
                dl_sgemm(0, 0, rows, hw, k, 1.0f, jb->m, k, cols, hw, jb->small_beta, y, hw);
                if (jb->small_bias) dl__conv_add_bias(y, jb->small_bias, rows, (size_t)hw);
            } else if (jb->small_out) {   /* into the buffer (small_in is used up), then scattered */
                dl_sgemm(0, 0, rows, ld, k, 1.0f, jb->m, k, cols, ld, 0.0f, small, ld);
                for (j = 0; j < m; j++)
                    dl__conv_rows(jb->small_out + (n + j) * small_size, (size_t)hw, small + (size_t)j * hw, (size_t)ld, rows, hw,
                                  jb->small_beta != 0.0f, jb->small_bias);
            }
        }
        if (jb->img_out) {
            float *x = jb->img_out + n * img_size;
            if (identity) {
                dl_sgemm(1, 0, k, hw, rows, 1.0f, jb->m, k, small_in, hw, 1.0f, x, hw);
            } else {
                dl_sgemm(1, 0, k, ld, rows, 1.0f, jb->m, k, small_in, ld, 0.0f, col, ld);
                for (j = 0; j < m; j++) dl__conv_im2col(g, x + j * img_size, col + (size_t)j * hw, (size_t)ld, 1);
            }
            if (jb->img_bias)
                for (j = 0; j < m; j++) dl__conv_add_bias(x + j * img_size, jb->img_bias, g->c, (size_t)g->h * g->w);
        }
        if (db)
            for (j = 0; j < m; j++) dl__conv_add_sums(jb->db_src + (size_t)(n + j) * jb->db_c * jb->db_hw, db, jb->db_c, jb->db_hw);
    }
}

#define DL__CONV_MAX_CHUNKS 16
#define DL__CONV_SCRATCH_FLOATS ((size_t)1 << 23)  /* per-chunk buffers share about 32 MB */

/* Runs a job over the batch: allocates per-chunk scratch from the arena, runs the chunks in
   parallel, then adds the chunk sums of dW and db into jb->dm and jb->db in chunk order. */
static int dl__conv_run(dl__conv_job *jb) {
    const dl__conv_geom *g = &jb->g;
    size_t k = (size_t)g->c * g->kh * g->kw, hw = (size_t)g->oh * g->ow, per_chunk, i, nb;
    int need_col = !dl__conv_is_identity(g) && (jb->img_out || (jb->img_in && (jb->small_out || jb->dm))), c;
    int need_small;
    jb->group = dl__conv_group(g, jb->n);
    nb = (size_t)jb->group;
    need_small = nb > 1 && ((jb->small_in && (jb->dm || jb->img_out)) || jb->small_out);
    per_chunk = (need_col ? k * hw * nb : 0) + (need_small ? (size_t)jb->rows * hw * nb : 0) +
                (jb->dm ? (size_t)jb->rows * k : 0) + (jb->db ? (size_t)jb->db_c : 0);
    jb->n_chunks = jb->n < DL__CONV_MAX_CHUNKS ? jb->n : DL__CONV_MAX_CHUNKS;
    if (per_chunk && (size_t)jb->n_chunks * per_chunk > DL__CONV_SCRATCH_FLOATS)
        jb->n_chunks = (int)(DL__CONV_SCRATCH_FLOATS / per_chunk);
    if (jb->n_chunks < 1) jb->n_chunks = 1;
    if (jb->n == 0) return 1;
    jb->col = jb->small = jb->dm_part = jb->db_part = NULL;
    if (need_col && !(jb->col = (float *)dl__tmp_alloc(sizeof(float) * k * hw * nb * jb->n_chunks))) return 0;
    if (need_small && !(jb->small = (float *)dl__tmp_alloc(sizeof(float) * jb->rows * hw * nb * jb->n_chunks))) return 0;
    if (jb->dm) {
        size_t bytes = sizeof(float) * jb->rows * k * jb->n_chunks;
        if (!(jb->dm_part = (float *)dl__tmp_alloc(bytes))) return 0;
        memset(jb->dm_part, 0, bytes);
    }
    if (jb->db) {
        size_t bytes = sizeof(float) * jb->db_c * jb->n_chunks;
        if (!(jb->db_part = (float *)dl__tmp_alloc(bytes))) return 0;
        memset(jb->db_part, 0, bytes);
    }
    /* One chunk runs here, so its GEMMs can use the whole pool (batch 1 inference). */
    if (jb->n_chunks == 1) dl__conv_chunk(jb, 0);
    else dl_parallel_for(jb->n_chunks, dl__conv_chunk, jb);
    for (c = 0; c < jb->n_chunks; c++) {
        if (jb->dm) for (i = 0; i < jb->rows * k; i++) jb->dm[i] += jb->dm_part[c * jb->rows * k + i];
        if (jb->db) for (i = 0; i < (size_t)jb->db_c; i++) jb->db[i] += jb->db_part[c * jb->db_c + i];
    }
    return 1;
}

/* What conv backward needs: the geometry and the contiguous x and w seen by the forward. */
typedef struct dl__conv_ctx {
    dl__conv_geom g;
    int n, rows;
    const float *x, *w;
} dl__conv_ctx;

/* Checks the (x, w, b) triple of both convolutions. w_in_axis is the axis of w that must match
   x's channels (1 for conv2d, 0 for conv_transpose2d); b must match the other. */
static int dl__conv_args(dl_tensor *x, dl_tensor *w, dl_tensor *b, int w_in_axis, const char *op) {
    char sx[64], sw[64], sb[64];
    int out_axis = 1 - w_in_axis;
    if (!dl__conv_check(x, op, "x", 4) || !dl__conv_check(w, op, "w", 4) || (b && !dl__conv_check(b, op, "b", 1))) return 0;
    if (w->shape[w_in_axis] != x->shape[1]) {
        dl__fail("%s: x %s has %d channels but w %s expects %d (w is %s)", op, dl_shape_str(x, sx, sizeof sx), x->shape[1],
                 dl_shape_str(w, sw, sizeof sw), w->shape[w_in_axis], w_in_axis ? "[Cout, Cin, kh, kw]" : "[Cin, Cout, kh, kw]");
        return 0;
    }
    if (b && b->shape[0] != w->shape[out_axis]) {
        dl__fail("%s: bias %s must have %d elements, one per output channel of w %s", op, dl_shape_str(b, sb, sizeof sb),
                 w->shape[out_axis], dl_shape_str(w, sw, sizeof sw));
        return 0;
    }
    return 1;
}

/* Records a convolution on the tape, saving what its backward needs: the geometry and the
   contiguous x and w the forward read. Returns y. */
static dl_tensor *dl__conv_record(const char *op, dl_tensor *y, dl_tensor *x, dl_tensor *w, dl_tensor *b,
                                  dl_backward_fn backward, const dl__conv_job *jb, const float *x_data) {
    dl_tensor *in[3];
    dl_node *nd;
    in[0] = x;
    in[1] = w;
    in[2] = b;
    nd = dl_record(op, y, b ? 3 : 2, in, backward, sizeof(dl__conv_ctx));
    if (nd) {
        dl__conv_ctx *c = (dl__conv_ctx *)nd->ctx;
        c->g = jb->g;
        c->n = jb->n;
        c->rows = jb->rows;
        c->x = x_data;
        c->w = jb->m;
    }
    return dl__checked(y);
}

/* conv2d: y = W @ im2col(x) + b.  dW = dy @ im2col(x)^T, dx = col2im(W^T @ dy), db = sum dy. */
static void dl__conv2d_backward(dl_node *nd) {
    const dl__conv_ctx *c = (const dl__conv_ctx *)nd->ctx;
    dl__conv_job jb;
    float *gw = dl_grad_buf(nd->in[1]);
    memset(&jb, 0, sizeof jb);
    jb.g = c->g;
    jb.n = c->n;
    jb.rows = c->rows;
    jb.m = c->w;
    jb.small_in = nd->out->grad;
    jb.img_in = gw ? c->x : NULL;
    jb.dm = gw;
    jb.img_out = dl_grad_buf(nd->in[0]);
    jb.db = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    jb.db_src = nd->out->grad;
    jb.db_c = c->rows;
    jb.db_hw = (size_t)c->g.oh * c->g.ow;
    dl__conv_run(&jb);
}

DLDEF dl_tensor *dl_conv2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts) {
    const char *op = "dl_conv2d";
    dl__conv_job jb;
    dl__conv_geom g;
    dl_tensor *y;
    int shape[4];
    if (!x || !w) return NULL;
#ifdef DL_CUDA
    if (x->device || w->device || (b && b->device)) return dl__cuda_conv2d(x, w, b, opts);
#endif
    if (!dl__conv_args(x, w, b, 1, op) || !dl__conv_window(&g, opts, w->shape[2], w->shape[3], 0, NULL, op)) return NULL;
    g.c = x->shape[1];
    g.h = x->shape[2];
    g.w = x->shape[3];
    g.oh = dl__conv_out_size(g.h, g.kh, g.sh, g.ph, g.dh);
    g.ow = dl__conv_out_size(g.w, g.kw, g.sw, g.pw, g.dw);
    if (!dl__conv_sizes_ok(&g, 1, op)) return NULL;
    if (g.oh < 1 || g.ow < 1)
        return (dl_tensor *)dl__fail("%s: kernel %dx%d (dilation %dx%d) is larger than the padded input %dx%d (padding %dx%d)", op,
                                     g.kh, g.kw, g.dh, g.dw, g.h + 2 * g.ph, g.w + 2 * g.pw, g.ph, g.pw);
    shape[0] = x->shape[0];
    shape[1] = w->shape[0];
    shape[2] = g.oh;
    shape[3] = g.ow;
    if (!(y = dl_tmp_uninit(DL_DTYPE_F32, 4, shape))) return NULL;
    memset(&jb, 0, sizeof jb);
    jb.g = g;
    jb.n = x->shape[0];
    jb.rows = w->shape[0];
    jb.m = dl_contig_f32(w);
    jb.img_in = dl_contig_f32(x);
    jb.small_out = dl_f32(y);
    jb.small_bias = b ? dl_contig_f32(b) : NULL;
    if (!jb.m || !jb.img_in || (b && !jb.small_bias) || !dl__conv_run(&jb)) return NULL;
    return dl__conv_record("conv2d", y, x, w, b, dl__conv2d_backward, &jb, jb.img_in);
}

/* conv_transpose2d: y = col2im(W^T @ x) + b, W viewed as [Cin, Cout*kh*kw].
   dx = W @ im2col(dy), dW = x @ im2col(dy)^T, db = sum dy. */
static void dl__conv_transpose2d_backward(dl_node *nd) {
    const dl__conv_ctx *c = (const dl__conv_ctx *)nd->ctx;
    dl__conv_job jb;
    memset(&jb, 0, sizeof jb);
    jb.g = c->g;
    jb.n = c->n;
    jb.rows = c->rows;
    jb.m = c->w;
    jb.img_in = nd->out->grad;
    jb.small_out = dl_grad_buf(nd->in[0]);
    jb.small_beta = 1.0f;
    jb.small_in = c->x;
    jb.dm = dl_grad_buf(nd->in[1]);
    jb.db = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    jb.db_src = nd->out->grad;
    jb.db_c = c->g.c;
    jb.db_hw = (size_t)c->g.h * c->g.w;
    dl__conv_run(&jb);
}

DLDEF dl_tensor *dl_conv_transpose2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts) {
    const char *op = "dl_conv_transpose2d";
    dl__conv_job jb;
    dl__conv_geom g;
    dl_tensor *y;
    int shape[4], opad[2], i;
    long long size[2];
    if (!x || !w) return NULL;
#ifdef DL_CUDA
    if (x->device || w->device || (b && b->device)) return dl__cuda_conv_transpose2d(x, w, b, opts);
#endif
    if (!dl__conv_args(x, w, b, 0, op) || !dl__conv_window(&g, opts, w->shape[2], w->shape[3], 0, opad, op)) return NULL;
    for (i = 0; i < 2; i++) {
        int s = i ? g.sw : g.sh, d = i ? g.dw : g.dh, p = i ? g.pw : g.ph, k = i ? g.kw : g.kh;
        if (opad[i] >= s && opad[i] >= d)
            return (dl_tensor *)dl__fail("%s: output_padding %d must be smaller than the stride %d or the dilation %d", op,
                                         opad[i], s, d);
        size[i] = (long long)(x->shape[2 + i] - 1) * s - 2LL * p + (long long)d * (k - 1) + opad[i] + 1;
    }
    if (size[0] < 1 || size[1] < 1 || size[0] > 1 << 30 || size[1] > 1 << 30)
        return (dl_tensor *)dl__fail("%s: output size %lldx%lld is not positive (input %dx%d, padding %dx%d)", op, size[0], size[1],
                                     x->shape[2], x->shape[3], g.ph, g.pw);
    g.c = w->shape[1];
    g.h = (int)size[0];
    g.w = (int)size[1];
    g.oh = x->shape[2];
    g.ow = x->shape[3];
    if (!dl__conv_sizes_ok(&g, 1, op)) return NULL;
    shape[0] = x->shape[0];
    shape[1] = g.c;
    shape[2] = g.h;
    shape[3] = g.w;
    if (!(y = dl_tmp(DL_DTYPE_F32, 4, shape))) return NULL;
    memset(&jb, 0, sizeof jb);
    jb.g = g;
    jb.n = x->shape[0];
    jb.rows = x->shape[1];
    jb.m = dl_contig_f32(w);
    jb.small_in = dl_contig_f32(x);
    jb.img_out = dl_f32(y);
    jb.img_bias = b ? dl_contig_f32(b) : NULL;
    if (!jb.m || !jb.small_in || (b && !jb.img_bias) || !dl__conv_run(&jb)) return NULL;
    return dl__conv_record("conv_transpose2d", y, x, w, b, dl__conv_transpose2d_backward, &jb, jb.small_in);
}

/* ---- Per-plane ops: pools, padding, upsampling ----
   These treat [N, C, H, W] as N*C independent planes, run in parallel over ranges of planes
   (each plane's result does not depend on the split). */

typedef void (*dl__conv_planes_fn)(void *ctx, size_t p0, size_t p1);
typedef struct dl__conv_planes_job { dl__conv_planes_fn fn; void *ctx; size_t n; int tasks; } dl__conv_planes_job;

static void dl__conv_planes_task(void *ctx, int t) {
    const dl__conv_planes_job *j = (const dl__conv_planes_job *)ctx;
    j->fn(j->ctx, j->n * (size_t)t / (size_t)j->tasks, j->n * (size_t)(t + 1) / (size_t)j->tasks);
}

static void dl__conv_for_planes(size_t n_planes, size_t work_per_plane, dl__conv_planes_fn fn, void *ctx) {
    dl__conv_planes_job j;
    j.fn = fn;
    j.ctx = ctx;
    j.n = n_planes;
    j.tasks = n_planes * work_per_plane < 32768 ? 1 : 4 * dl_num_threads();
    if ((size_t)j.tasks > n_planes) j.tasks = (int)n_planes;
    if (j.tasks <= 1) fn(ctx, 0, n_planes);
    else dl_parallel_for(j.tasks, dl__conv_planes_task, &j);
}

typedef struct dl__pool2d_ctx {
    dl__conv_geom g;          /* c unused; h, w in; oh, ow out */
    int is_max;
    const float *x;           /* input, [planes, h, w] */
    const float *y;           /* output, [planes, oh, ow] */
    const int *win;           /* [oh + ow][2]: the [lo, hi) tap ranges of each output row, then column */
    const float *gy;          /* backward */
    float *gx;
} dl__pool2d_ctx;

/* The taps of output (i, j) inside the image: rows h0 + p*dh for p in [pa, pb), columns w0 + q*dw
   for q in [qa, qb); returns h0*w + w0, the plane index of tap (0, 0) (may be outside). */
static int dl__pool2d_window(const dl__pool2d_ctx *c, int i, int j, int *pa, int *pb, int *qa, int *qb) {
    const dl__conv_geom *g = &c->g;
    *pa = c->win[2 * i];
    *pb = c->win[2 * i + 1];
    *qa = c->win[2 * (g->oh + j)];
    *qb = c->win[2 * (g->oh + j) + 1];
    return (i * g->sh - g->ph) * g->w + j * g->sw - g->pw;
}

/* The common case, 2x2 windows at stride 2 without padding or dilation, written out. */
static int dl__pool2d_is_2x2(const dl__pool2d_ctx *c) {
    const dl__conv_geom *g = &c->g;
    return c->is_max && g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 &&
           g->dw == 1;
}

static void dl__maxpool2x2_forward(const dl__pool2d_ctx *c, size_t p0, size_t p1) {
    const dl__conv_geom *g = &c->g;
    size_t pl, in_size = (size_t)g->h * g->w, out_size = (size_t)g->oh * g->ow;
    int i, j;
    for (pl = p0; pl < p1; pl++)
        for (i = 0; i < g->oh; i++) {
            const float *r0 = c->x + pl * in_size + (size_t)(2 * i) * g->w, *r1 = r0 + g->w;
            float *y = (float *)c->y + pl * out_size + (size_t)i * g->ow;
            for (j = 0; j < g->ow; j++) {
                float a = r0[2 * j], b = r0[2 * j + 1], d = r1[2 * j], e = r1[2 * j + 1], m = a;
                int nan = (a != a) | (b != b) | (d != d) | (e != e);
                m = b > m ? b : m;
                m = d > m ? d : m;
                m = e > m ? e : m;
                y[j] = nan ? NAN : m;
            }
        }
}

/* max: y = max over the window's taps, NaN if any tap is NaN.  avg: y = sum / (kh*kw). */
static void dl__pool2d_forward_planes(void *ctx, size_t p0, size_t p1) {
    const dl__pool2d_ctx *c = (const dl__pool2d_ctx *)ctx;
    const dl__conv_geom *g = &c->g;
    float inv = 1.0f / (float)(g->kh * g->kw);
    size_t pl, in_size = (size_t)g->h * g->w, out_size = (size_t)g->oh * g->ow;
    int i, j, p, q, pa, pb, qa, qb;
    if (dl__pool2d_is_2x2(c)) { dl__maxpool2x2_forward(c, p0, p1); return; }
    for (pl = p0; pl < p1; pl++) {
        const float *x = c->x + pl * in_size;
        float *y = (float *)c->y + pl * out_size;
        for (i = 0; i < g->oh; i++)
            for (j = 0; j < g->ow; j++, y++) {
                int r = dl__pool2d_window(c, i, j, &pa, &pb, &qa, &qb), nan = 0;
                float best = -INFINITY, sum = 0.0f;
                for (p = pa; p < pb; p++) {
                    const float *row = x + (r + p * g->dh * g->w); /* + q*dw: tap (p, q) */
                    if (c->is_max) {
                        for (q = qa; q < qb; q++) { /* branch-free: compiles to max and or */
                            float v = row[q * g->dw];
                            best = v > best ? v : best;
                            nan |= v != v;
                        }
                    } else {
                        for (q = qa; q < qb; q++) sum += row[q * g->dw];
                    }
                }
                *y = c->is_max ? (nan ? NAN : best) : sum * inv;
            }
    }
}

/* Plane index of the tap of output (i, j) that gets max pooling's gradient, as torch picks it:
   the first tap equal to the max m in row-major scan order, or the last NaN when m is NaN. The
   scan runs backwards with a branch-free select (random data mispredicts every other branch). */
static int dl__pool2d_argmax(const dl__pool2d_ctx *c, const float *x, int i, int j, float m) {
    const dl__conv_geom *g = &c->g;
    int pa, pb, qa, qb, p, q, at = -1, r = dl__pool2d_window(c, i, j, &pa, &pb, &qa, &qb);
    for (p = pb - 1; p >= pa; p--)
        for (q = qb - 1; q >= qa; q--) {
            int k = r + p * g->dh * g->w + q * g->dw;
            at ^= (at ^ k) & -(int)(x[k] == m);
        }
    if (m != m) /* rare: a NaN */
        for (p = pa; p < pb; p++)
            for (q = qa; q < qb; q++) {
                int k = r + p * g->dh * g->w + q * g->dw;
                if (x[k] != x[k]) at = k;
            }
    return at;
}

/* dx at the first tap equal to the max (row-major), found without branches. */
static void dl__maxpool2x2_backward(const dl__pool2d_ctx *c, size_t p0, size_t p1) {
    const dl__conv_geom *g = &c->g;
    size_t pl, in_size = (size_t)g->h * g->w, out_size = (size_t)g->oh * g->ow;
    int i, j, off[4];
    off[0] = 0; off[1] = 1; off[2] = g->w; off[3] = g->w + 1;
    for (pl = p0; pl < p1; pl++)
        for (i = 0; i < g->oh; i++) {
            const float *x = c->x + pl * in_size, *y = c->y + pl * out_size + (size_t)i * g->ow;
            const float *gy = c->gy + pl * out_size + (size_t)i * g->ow;
            float *gx = c->gx + pl * in_size;
            int base = 2 * i * g->w;
            for (j = 0; j < g->ow; j++, base += 2) {
                float m = y[j];
                int e0 = x[base] == m, e1 = x[base + off[1]] == m, e2 = x[base + off[2]] == m;
                if (m != m) { gx[dl__pool2d_argmax(c, x, i, j, m)] += gy[j]; continue; }   /* rare */
                /* the first match: e0 ? 0 : e1 ? 1 : e2 ? 2 : 3, in arithmetic (no branches) */
                gx[base + off[(1 - e0) * (1 + (1 - e1) * (1 + (1 - e2)))]] += gy[j];
            }
        }
}

/* max: dx[argmax] += dy.  avg: dx[window] += dy / (kh*kw). */
static void dl__pool2d_backward_planes(void *ctx, size_t p0, size_t p1) {
    const dl__pool2d_ctx *c = (const dl__pool2d_ctx *)ctx;
    const dl__conv_geom *g = &c->g;
    float inv = 1.0f / (float)(g->kh * g->kw);
    size_t pl, in_size = (size_t)g->h * g->w, out_size = (size_t)g->oh * g->ow;
    int i, j, p, q, pa, pb, qa, qb;
    if (dl__pool2d_is_2x2(c)) { dl__maxpool2x2_backward(c, p0, p1); return; }
    for (pl = p0; pl < p1; pl++) {
        const float *x = c->x + pl * in_size, *y = c->y + pl * out_size, *gy = c->gy + pl * out_size;
        float *gx = c->gx + pl * in_size;
        for (i = 0; i < g->oh; i++)
            for (j = 0; j < g->ow; j++, y++, gy++) {
                int r;
                if (c->is_max) { /* a window wholly in the padding (output -inf) has no tap to credit */
                    int at = dl__pool2d_argmax(c, x, i, j, *y);
                    if (at >= 0) gx[at] += *gy;
                    continue;
                }
                r = dl__pool2d_window(c, i, j, &pa, &pb, &qa, &qb);
                for (p = pa; p < pb; p++)
                    for (q = qa; q < qb; q++) gx[r + p * g->w + q] += *gy * inv;
            }
    }
}

static void dl__pool2d_backward(dl_node *nd) {
    dl__pool2d_ctx c = *(const dl__pool2d_ctx *)nd->ctx;
    dl_tensor *x = nd->in[0];
    c.gx = dl_grad_buf(x);
    c.gy = nd->out->grad;
    if (c.gx)
        dl__conv_for_planes((size_t)x->shape[0] * x->shape[1], (size_t)c.g.oh * c.g.ow * c.g.kh * c.g.kw, dl__pool2d_backward_planes, &c);
}

static dl_tensor *dl__pool2d(dl_tensor *x, int kh, int kw, const dl_conv_opts *opts, int is_max, const char *op) {
    dl__pool2d_ctx c;
    dl__conv_geom *g = &c.g;
    dl_tensor *y;
    dl_node *nd;
    int shape[4], i, *win;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_pool2d(x, kh, kw, opts, is_max);
#endif
    if (!dl__conv_check(x, op, "x", 4) || !dl__conv_window(g, opts, kh, kw, 1, NULL, op)) return NULL;
    if (!is_max && (g->dh != 1 || g->dw != 1)) return (dl_tensor *)dl__fail("%s: dilation is not supported (torch has none)", op);
    for (i = 0; i < 2; i++) {
        int k = i ? g->kw : g->kh, d = i ? g->dw : g->dh, p = i ? g->pw : g->ph;
        if (p > ((long long)(k - 1) * d + 1) / 2)
            return (dl_tensor *)dl__fail("%s: padding %d must be at most half the kernel %d (dilation %d), as in torch", op, p, k, d);
    }
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->oh = dl__conv_out_size(g->h, g->kh, g->sh, g->ph, g->dh);
    g->ow = dl__conv_out_size(g->w, g->kw, g->sw, g->pw, g->dw);
    if (!dl__conv_sizes_ok(g, 0, op)) return NULL;
    if (g->oh < 1 || g->ow < 1)
        return (dl_tensor *)dl__fail("%s: kernel %dx%d (dilation %dx%d) is larger than the padded input %dx%d", op, g->kh, g->kw, g->dh,
                                     g->dw, g->h + 2 * g->ph, g->w + 2 * g->pw);
    if ((long long)g->h * g->w > 0x7fffffffLL) return (dl_tensor *)dl__fail("%s: planes over 2^31 pixels", op);
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = g->oh;
    shape[3] = g->ow;
    if (!(y = dl_tmp_uninit(DL_DTYPE_F32, 4, shape)) || !(c.x = dl_contig_f32(x))) return NULL;
    c.y = dl_f32(y);
    c.is_max = is_max;
    if (!(win = (int *)dl__tmp_alloc(sizeof(int) * 2 * (size_t)(g->oh + g->ow)))) return NULL;
    for (i = 0; i < g->oh; i++) dl__conv_valid_range(i * g->sh - g->ph, g->dh, g->h, g->kh, &win[2 * i], &win[2 * i + 1]);
    for (i = 0; i < g->ow; i++)
        dl__conv_valid_range(i * g->sw - g->pw, g->dw, g->w, g->kw, &win[2 * (g->oh + i)], &win[2 * (g->oh + i) + 1]);
    c.win = win;
    dl__conv_for_planes((size_t)shape[0] * shape[1], (size_t)g->oh * g->ow * g->kh * g->kw, dl__pool2d_forward_planes, &c);
    nd = dl_record(is_max ? "max_pool2d" : "avg_pool2d", y, 1, &x, dl__pool2d_backward, sizeof(dl__pool2d_ctx));
    if (nd) *(dl__pool2d_ctx *)nd->ctx = c;
    return dl__checked(y);
}

DLDEF dl_tensor *dl_max_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts) {
    return dl__pool2d(x, kernel_h, kernel_w, opts, 1, "dl_max_pool2d");
}

DLDEF dl_tensor *dl_avg_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts) {
    return dl__pool2d(x, kernel_h, kernel_w, opts, 0, "dl_avg_pool2d");
}

/* y[n,c] = mean(x[n,c,:,:]): an average pool with the whole plane as its window. */
DLDEF dl_tensor *dl_global_avg_pool2d(dl_tensor *x) {
    int shape[2];
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_global_avg_pool2d(x);
#endif
    if (!dl__conv_check(x, "dl_global_avg_pool2d", "x", 4)) return NULL;
    if (x->shape[2] < 1 || x->shape[3] < 1) return (dl_tensor *)dl__fail("dl_global_avg_pool2d: empty planes");
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    return dl_reshape(dl_avg_pool2d(x, x->shape[2], x->shape[3], NULL), 2, shape);
}

/* ---- Remaps by row and column maps (padding, upsampling) ----
   y[i][j] = x[rmap[i]][cmap[j]] per plane, 0 where a map is -1; backward adds dy back. */

typedef struct dl__remap_ctx {
    size_t planes;
    int h, w, oh, ow;
    const int *rmap, *cmap;
    const float *x;
    float *y;
    const float *gy;
    float *gx;
} dl__remap_ctx;

static void dl__remap_planes(void *ctx, size_t p0, size_t p1, int backward) {
    const dl__remap_ctx *c = (const dl__remap_ctx *)ctx;
    size_t pl, in_size = (size_t)c->h * c->w, out_size = (size_t)c->oh * c->ow;
    int i, j;
    for (pl = p0; pl < p1; pl++) {
        for (i = 0; i < c->oh; i++) {
            size_t o = pl * out_size + (size_t)i * c->ow, r;
            if (c->rmap[i] < 0) {
                if (!backward) memset(c->y + o, 0, sizeof(float) * (size_t)c->ow);
                continue;
            }
            r = pl * in_size + (size_t)c->rmap[i] * c->w;
            if (backward) {
                for (j = 0; j < c->ow; j++)
                    if (c->cmap[j] >= 0) c->gx[r + c->cmap[j]] += c->gy[o + j];
            } else {
                for (j = 0; j < c->ow; j++) c->y[o + j] = c->cmap[j] >= 0 ? c->x[r + c->cmap[j]] : 0.0f;
            }
        }
    }
}
static void dl__remap_forward_planes(void *ctx, size_t p0, size_t p1) { dl__remap_planes(ctx, p0, p1, 0); }
static void dl__remap_backward_planes(void *ctx, size_t p0, size_t p1) { dl__remap_planes(ctx, p0, p1, 1); }

static void dl__remap_backward(dl_node *nd) {
    dl__remap_ctx c = *(const dl__remap_ctx *)nd->ctx;
    c.gx = dl_grad_buf(nd->in[0]);
    c.gy = nd->out->grad;
    if (c.gx) dl__conv_for_planes(c.planes, (size_t)c.oh * c.ow, dl__remap_backward_planes, &c);
}

/* Runs the gather of c (maps already set) on x's last two axes; returns the [..., oh, ow] output. */
static dl_tensor *dl__remap2d(dl_tensor *x, dl__remap_ctx *c, const char *name) {
    int shape[DL_MAX_DIMS], k = x->ndim, i;
    dl_tensor *y;
    dl_node *nd;
    c->planes = 1;
    for (i = 0; i < k - 2; i++) { shape[i] = x->shape[i]; c->planes *= (size_t)x->shape[i]; }
    shape[k - 2] = c->oh;
    shape[k - 1] = c->ow;
    if (!(y = dl_tmp_uninit(DL_DTYPE_F32, k, shape)) || !(c->x = dl_contig_f32(x))) return NULL;
    c->y = dl_f32(y);
    dl__conv_for_planes(c->planes, (size_t)c->oh * c->ow, dl__remap_forward_planes, c);
    nd = dl_record(name, y, 1, &x, dl__remap_backward, sizeof(dl__remap_ctx));
    if (nd) *(dl__remap_ctx *)nd->ctx = *c;
    return dl__checked(y);
}

/* Allocates the maps of a gather from x's last two axes to an oh x ow output. */
static int dl__remap_maps(dl__remap_ctx *c, const dl_tensor *x, int oh, int ow) {
    c->h = x->shape[x->ndim - 2];
    c->w = x->shape[x->ndim - 1];
    c->oh = oh;
    c->ow = ow;
    c->rmap = (int *)dl__tmp_alloc(sizeof(int) * (size_t)(oh + ow));
    c->cmap = c->rmap ? c->rmap + oh : NULL;
    return c->rmap != NULL;
}

/* y[n,c,i,j] = x[n,c,i/sh,j/sw];  dx[n,c,a,b] = sum of dy over its sh x sw block. */
DLDEF dl_tensor *dl_upsample_nearest2d(dl_tensor *x, int scale_h, int scale_w) {
    const char *op = "dl_upsample_nearest2d";
    dl__remap_ctx c;
    int *map, i;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_upsample_nearest2d(x, scale_h, scale_w);
#endif
    if (!dl__conv_check(x, op, "x", 4)) return NULL;
    if (scale_h < 1 || scale_w < 1) return (dl_tensor *)dl__fail("%s: scale factors must be >= 1, got %dx%d", op, scale_h, scale_w);
    if ((long long)x->shape[2] * scale_h > 1 << 30 || (long long)x->shape[3] * scale_w > 1 << 30)
        return (dl_tensor *)dl__fail("%s: output too large", op);
    if (!dl__remap_maps(&c, x, x->shape[2] * scale_h, x->shape[3] * scale_w)) return NULL;
    map = (int *)c.rmap;
    for (i = 0; i < c.oh; i++) map[i] = i / scale_h;
    for (i = 0; i < c.ow; i++) map[c.oh + i] = i / scale_w;
    return dl__remap2d(x, &c, "upsample_nearest2d");
}

/* Source index of output position i along an axis of size n padded by `before`: -1 for zero
   padding outside, or reflected about the edges (torch "reflect"). */
static int dl__pad2d_source(int i, int before, int n, dl_pad_mode mode) {
    int s = i - before;
    if (s >= 0 && s < n) return s;
    if (mode == DL_PAD_ZERO) return -1;
    return s < 0 ? -s : 2 * (n - 1) - s;
}

/* zero: y = x inside, 0 outside.  reflect: y[i] = x[|i - before|] mirrored at both ends.
   dx = sum of dy over the outputs that read each input. */
DLDEF dl_tensor *dl_pad2d(dl_tensor *x, int pad_left, int pad_right, int pad_top, int pad_bottom, dl_pad_mode mode) {
    const char *op = "dl_pad2d";
    dl__remap_ctx c;
    int *map, i, h, w;
    if (!x) return NULL;
#ifdef DL_CUDA
    if (x->device) return dl__cuda_pad2d(x, pad_left, pad_right, pad_top, pad_bottom, mode);
#endif
    if (!dl__conv_check(x, op, "x", -2)) return NULL;
    if (mode != DL_PAD_ZERO && mode != DL_PAD_REFLECT) return (dl_tensor *)dl__fail("%s: unknown mode %d", op, (int)mode);
    if (pad_left < 0 || pad_right < 0 || pad_top < 0 || pad_bottom < 0)
        return (dl_tensor *)dl__fail("%s: pads must be >= 0, got (%d, %d, %d, %d); crop with dl_slice", op, pad_left, pad_right, pad_top,
                                     pad_bottom);
    h = x->shape[x->ndim - 2];
    w = x->shape[x->ndim - 1];
    if (mode == DL_PAD_REFLECT && (pad_top >= h || pad_bottom >= h || pad_left >= w || pad_right >= w))
        return (dl_tensor *)dl__fail("%s: reflect padding (%d, %d, %d, %d) must be smaller than the input %dx%d", op, pad_left, pad_right,
                                     pad_top, pad_bottom, h, w);
    if ((long long)h + pad_top + pad_bottom > 1 << 30 || (long long)w + pad_left + pad_right > 1 << 30)
        return (dl_tensor *)dl__fail("%s: output too large", op);
    if (!dl__remap_maps(&c, x, h + pad_top + pad_bottom, w + pad_left + pad_right)) return NULL;
    map = (int *)c.rmap;
    for (i = 0; i < c.oh; i++) map[i] = dl__pad2d_source(i, pad_top, h, mode);
    for (i = 0; i < c.ow; i++) map[c.oh + i] = dl__pad2d_source(i, pad_left, w, mode);
    return dl__remap2d(x, &c, mode == DL_PAD_ZERO ? "pad2d_zero" : "pad2d_reflect");
}
/* ==== Files: safetensors (tests: tests/test_safetensors.c, tests/fuzz_safetensors.c) =============
   Reading: dl__st_build parses the JSON header twice with the same code: a measuring pass that
   validates everything and counts (tensors, metadata entries, string bytes, converted data
   bytes) without allocating, then one allocation of exactly that size and a filling pass. The
   entries are then checked for duplicates and for tiling the data part, and the tensor data is
   read in file order through a small reader callback (memory or FILE*), converted to dl dtypes. */

#define DL__ST_MAX_HEADER 100000000u  /* the reference reader's limit */
#define DL__ST_MAX_DEPTH 64           /* JSON nesting allowed inside unknown fields */

/* File dtypes dl understands, and what they load as. */
typedef struct dl__st_dtype {
    const char *name;
    int size;                         /* bytes per element in the file */
    dl_dtype to;
} dl__st_dtype;

enum { DL__ST_F32, DL__ST_I32, DL__ST_U8, DL__ST_BOOL, DL__ST_F16, DL__ST_BF16, DL__ST_F64, DL__ST_I64, DL__ST_NDTYPES };

static const dl__st_dtype dl__st_dtypes[DL__ST_NDTYPES] = {
    {"F32", 4, DL_DTYPE_F32}, {"I32", 4, DL_DTYPE_I32}, {"U8", 1, DL_DTYPE_U8}, {"BOOL", 1, DL_DTYPE_U8},
    {"F16", 2, DL_DTYPE_F32}, {"BF16", 2, DL_DTYPE_F32}, {"F64", 8, DL_DTYPE_F32}, {"I64", 8, DL_DTYPE_I32},
};

typedef struct dl__st_entry {
    const char *name;
    uint64_t begin, end;              /* byte range in the data part of the file */
    int file_dtype;                   /* DL__ST_* */
    dl_tensor t;
} dl__st_entry;

typedef struct dl__st_pair { const char *key, *value; } dl__st_pair;

struct dl_safetensors {
    int n, n_meta;
    dl__st_entry *entries;            /* sorted by name */
    dl__st_pair *meta;                /* sorted by key */
};

/* ---- Little-endian bytes, on any host ---- */

static uint32_t dl__st_rd16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t dl__st_rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t dl__st_rd64(const unsigned char *p) { return dl__st_rd32(p) | (uint64_t)dl__st_rd32(p + 4) << 32; }
static void dl__st_wr32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static void dl__st_wr64(unsigned char *p, uint64_t v) { dl__st_wr32(p, (uint32_t)v); dl__st_wr32(p + 4, (uint32_t)(v >> 32)); }
static int dl__st_little_endian(void) { uint32_t one = 1; unsigned char b; memcpy(&b, &one, 1); return b == 1; }

static float dl__st_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE half -> float, exact: rebias the exponent 15 -> 127; subnormals are normalized. */
static float dl__st_f16(uint32_t h) {
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 31u, man = h & 0x3ffu;
    if (exp == 31) return dl__st_bits_f32(sign | 0x7f800000u | man << 13); /* inf, nan */
    if (exp) return dl__st_bits_f32(sign | (exp + 112) << 23 | man << 13);
    if (!man) return dl__st_bits_f32(sign);
    exp = 113;
    while (!(man & 0x400u)) { man <<= 1; exp--; }
    return dl__st_bits_f32(sign | exp << 23 | (man & 0x3ffu) << 13);
}

/* ---- Error messages of the reader: collected here, prefixed by the public function ---- */

typedef struct dl__st_parser {
    const unsigned char *p, *start, *end;  /* JSON cursor, header start and end */
    uint64_t data_size;                    /* bytes after the header */
    dl_safetensors *st;                    /* NULL in the measuring pass */
    int n, n_meta, seen_meta;
    size_t pool_bytes;                     /* measured: bytes of all decoded strings + NULs */
    uint64_t file_bytes;                   /* measured: sum of e - b over tensors */
    size_t out_bytes;                      /* measured: converted data, each tensor 64-aligned */
    char *pool;                            /* filling pass: where strings go */
    unsigned char *data;                   /* filling pass: where tensor data goes */
    char err[400];
} dl__st_parser;

static int dl__st_err(dl__st_parser *ps, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err, sizeof ps->err, fmt, ap);
    va_end(ap);
    return 0;
}

static int dl__st_syntax(dl__st_parser *ps, const char *what) {
    if (ps->p >= ps->end) return dl__st_err(ps, "header: unexpected end of JSON, expected %s", what);
    return dl__st_err(ps, "header byte %zu: expected %s", (size_t)(ps->p - ps->start), what);
}

/* ---- A strict, bounded JSON reader (just what a safetensors header needs) ---- */

static void dl__js_ws(dl__st_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int dl__js_char(dl__st_parser *ps, char c) {
    char what[4] = {'\'', c, '\'', 0};
    dl__js_ws(ps);
    if (ps->p >= ps->end || *ps->p != (unsigned char)c) return dl__st_syntax(ps, what);
    ps->p++;
    return 1;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), 0 if invalid. */
static int dl__utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0], lo = 0x80, hi = 0xbf;
    int n, i;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) { n = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if (end - p < n) return 0;
    for (i = 1; i < n; i++, lo = 0x80, hi = 0xbf)
        if (p[i] < lo || p[i] > hi) return 0;
    return n;
}

static int dl__js_hex4(const unsigned char *p, const unsigned char *end, uint32_t *v) {
    int i;
    *v = 0;
    if (end - p < 4) return 0;
    for (i = 0; i < 4; i++) {
        unsigned c = p[i];
        uint32_t d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
        if (d == 99) return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

/* Parses a JSON string; writes up to cap decoded bytes to out (when out != NULL) and a NUL after
   them; returns the full decoded length in *len. Decoded is never longer than the raw text. */
static int dl__js_str(dl__st_parser *ps, char *out, size_t cap, size_t *len) {
    size_t n = 0;
    dl__js_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"') return dl__st_syntax(ps, "a string");
    ps->p++;
    for (;;) {
        unsigned char buf[4];
        int k, nb;
        uint32_t cp;
        if (ps->p >= ps->end) return dl__st_err(ps, "header: unterminated string");
        if (*ps->p == '"') { ps->p++; break; }
        if (*ps->p < 0x20) return dl__st_err(ps, "header byte %zu: control character in a string", (size_t)(ps->p - ps->start));
        if (*ps->p != '\\') {
            nb = dl__utf8_len(ps->p, ps->end);
            if (!nb) return dl__st_err(ps, "header byte %zu: invalid UTF-8", (size_t)(ps->p - ps->start));
            memcpy(buf, ps->p, (size_t)nb);
            ps->p += nb;
        } else {
            const unsigned char *esc = ps->p;
            if (ps->end - ps->p < 2) return dl__st_err(ps, "header: unterminated string");
            ps->p += 2;
            nb = 1;
            switch (esc[1]) {
            case '"': buf[0] = '"'; break;
            case '\\': buf[0] = '\\'; break;
            case '/': buf[0] = '/'; break;
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u':
                if (!dl__js_hex4(ps->p, ps->end, &cp)) return dl__st_err(ps, "header byte %zu: bad \\u escape", (size_t)(esc - ps->start));
                ps->p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff) return dl__st_err(ps, "header byte %zu: lone surrogate in \\u escape", (size_t)(esc - ps->start));
                if (cp >= 0xd800 && cp <= 0xdbff) { /* a surrogate pair: \uD8xx\uDCxx */
                    uint32_t lo;
                    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || !dl__js_hex4(ps->p + 2, ps->end, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return dl__st_err(ps, "header byte %zu: lone surrogate in \\u escape", (size_t)(esc - ps->start));
                    ps->p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                if (cp == 0) return dl__st_err(ps, "header byte %zu: \\u0000 in a string is not supported", (size_t)(esc - ps->start));
                if (cp < 0x80) buf[0] = (unsigned char)cp;
                else if (cp < 0x800) { nb = 2; buf[0] = (unsigned char)(0xc0 | cp >> 6); buf[1] = (unsigned char)(0x80 | (cp & 63)); }
                else if (cp < 0x10000) { nb = 3; buf[0] = (unsigned char)(0xe0 | cp >> 12); buf[1] = (unsigned char)(0x80 | (cp >> 6 & 63)); buf[2] = (unsigned char)(0x80 | (cp & 63)); }
                else { nb = 4; buf[0] = (unsigned char)(0xf0 | cp >> 18); buf[1] = (unsigned char)(0x80 | (cp >> 12 & 63)); buf[2] = (unsigned char)(0x80 | (cp >> 6 & 63)); buf[3] = (unsigned char)(0x80 | (cp & 63)); }
                break;
            default: return dl__st_err(ps, "header byte %zu: bad escape in a string", (size_t)(esc - ps->start));
            }
        }
        for (k = 0; k < nb; k++, n++)
            if (out && n < cap) out[n] = (char)buf[k];
    }
    if (out) out[n < cap ? n : cap] = 0;
    *len = n;
    return 1;
}

/* A non-negative JSON integer (no sign, fraction, exponent or leading zero) that fits in u64. */
static int dl__js_uint(dl__st_parser *ps, uint64_t *v) {
    dl__js_ws(ps);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return dl__st_syntax(ps, "a non-negative integer");
    *v = 0;
    if (*ps->p == '0') ps->p++;
    else
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
            unsigned d = *ps->p++ - '0';
            if (*v > (UINT64_MAX - d) / 10) return dl__st_err(ps, "header byte %zu: integer too large", (size_t)(ps->p - ps->start));
            *v = *v * 10 + d;
        }
    if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E' || (*ps->p >= '0' && *ps->p <= '9')))
        return dl__st_syntax(ps, "a non-negative integer");
    return 1;
}

/* Skips any JSON value (for fields dl ignores), at most DL__ST_MAX_DEPTH levels deep. */
static int dl__js_skip(dl__st_parser *ps, int depth) {
    size_t len;
    dl__js_ws(ps);
    if (depth > DL__ST_MAX_DEPTH) return dl__st_err(ps, "header: JSON nested deeper than %d levels", DL__ST_MAX_DEPTH);
    if (ps->p >= ps->end) return dl__st_syntax(ps, "a value");
    if (*ps->p == '"') return dl__js_str(ps, NULL, 0, &len);
    if (*ps->p == '{' || *ps->p == '[') {
        char close = *ps->p == '{' ? '}' : ']';
        ps->p++;
        dl__js_ws(ps);
        if (ps->p < ps->end && *ps->p == (unsigned char)close) { ps->p++; return 1; }
        for (;;) {
            if (close == '}' && (!dl__js_str(ps, NULL, 0, &len) || !dl__js_char(ps, ':'))) return 0;
            if (!dl__js_skip(ps, depth + 1)) return 0;
            dl__js_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            return dl__js_char(ps, close);
        }
    }
    {
        static const char *const words[3] = {"true", "false", "null"};
        int i;
        for (i = 0; i < 3; i++) {
            size_t wl = strlen(words[i]);
            if ((size_t)(ps->end - ps->p) >= wl && memcmp(ps->p, words[i], wl) == 0) { ps->p += wl; return 1; }
        }
    }
    if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) { /* number: -?int frac? exp? */
        const unsigned char *q = ps->p;
        int digits = 0;
        if (*q == '-') q++;
        if (q < ps->end && *q == '0') { q++; digits = 1; }
        else while (q < ps->end && *q >= '0' && *q <= '9') { q++; digits++; }
        if (!digits) return dl__st_syntax(ps, "a number");
        if (q < ps->end && *q == '.') {
            q++; digits = 0;
            while (q < ps->end && *q >= '0' && *q <= '9') { q++; digits++; }
            if (!digits) return dl__st_syntax(ps, "a number");
        }
        if (q < ps->end && (*q == 'e' || *q == 'E')) {
            q++; digits = 0;
            if (q < ps->end && (*q == '+' || *q == '-')) q++;
            while (q < ps->end && *q >= '0' && *q <= '9') { q++; digits++; }
            if (!digits) return dl__st_syntax(ps, "a number");
        }
        ps->p = q;
        return 1;
    }
    return dl__st_syntax(ps, "a value");
}

/* After a member of an object: 1 if another follows (','), 2 at the end ('}'), 0 on error. */
static int dl__js_next(dl__st_parser *ps) {
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') { ps->p++; return 1; }
    if (ps->p < ps->end && *ps->p == '}') { ps->p++; return 2; }
    return dl__st_syntax(ps, "',' or '}'");
}

/* '{' then either '}' (returns 2) or the start of the first member (returns 1). */
static int dl__js_open(dl__st_parser *ps) {
    if (!dl__js_char(ps, '{')) return 0;
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') { ps->p++; return 2; }
    return 1;
}

/* ---- The header: {"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets"}, ...} ---- */

/* Decodes a key or string value: into the pool when filling, else into scratch (truncated, for
   messages and comparisons). Counts its bytes in the measuring pass. */
static char *dl__st_string(dl__st_parser *ps, char *scratch, size_t scratch_cap, size_t *len) {
    char *dst = ps->st ? ps->pool : scratch;
    size_t cap = ps->st ? (size_t)-1 : scratch_cap - 1;
    if (!dl__js_str(ps, dst, cap, len)) return NULL;
    if (!ps->st) ps->pool_bytes += *len + 1;
    return dst;
}

static int dl__st_metadata(dl__st_parser *ps) {
    int more;
    dl__js_ws(ps);
    if ((size_t)(ps->end - ps->p) >= 4 && memcmp(ps->p, "null", 4) == 0) { ps->p += 4; return 1; }
    more = dl__js_open(ps);
    while (more == 1) {
        char scratch[64];
        size_t len;
        char *key = dl__st_string(ps, scratch, sizeof scratch, &len), *value;
        if (!key) return 0;
        if (ps->st) { ps->st->meta[ps->n_meta].key = key; ps->pool += len + 1; }
        if (!dl__js_char(ps, ':')) return 0;
        dl__js_ws(ps);
        if (ps->p < ps->end && *ps->p != '"') return dl__st_err(ps, "__metadata__ \"%s\": values must be strings", key);
        value = dl__st_string(ps, scratch, sizeof scratch, &len);
        if (!value) return 0;
        if (ps->st) { ps->st->meta[ps->n_meta].value = value; ps->pool += len + 1; }
        ps->n_meta++;
        more = dl__js_next(ps);
    }
    return more;
}

static int dl__st_shape(dl__st_parser *ps, const char *name, dl_tensor *t) {
    uint64_t d;
    if (!dl__js_char(ps, '[')) return 0;
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') { ps->p++; return 1; }
    for (;;) {
        if (!dl__js_uint(ps, &d)) return 0;
        if (t->ndim == DL_MAX_DIMS) return dl__st_err(ps, "tensor '%s': more than %d dimensions", name, DL_MAX_DIMS);
        if (d > 0x7fffffff) return dl__st_err(ps, "tensor '%s': dimension %llu is too large", name, (unsigned long long)d);
        t->shape[t->ndim++] = (int)d;
        dl__js_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        return dl__js_char(ps, ']');
    }
}

/* Fills e (a scratch entry in the measuring pass) from {"dtype":..., "shape":..., "data_offsets":...};
   other fields are skipped, as the reference reader does. */
static int dl__st_tensor_info(dl__st_parser *ps, const char *name, dl__st_entry *e) {
    int more, seen = 0, i;
    uint64_t numel = 1, nbytes;
    dl_tensor *t = &e->t;
    memset(t, 0, sizeof *t);
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p != '{') return dl__st_err(ps, "tensor '%s': expected an object", name);
    more = dl__js_open(ps);
    while (more == 1) {
        char field[16], value[16];
        size_t len;
        if (!dl__js_str(ps, field, sizeof field - 1, &len) || !dl__js_char(ps, ':')) return 0;
        if (len >= sizeof field - 1) field[0] = 0;
        i = strcmp(field, "dtype") == 0 ? 1 : strcmp(field, "shape") == 0 ? 2 : strcmp(field, "data_offsets") == 0 ? 4 : 0;
        if (i & seen) return dl__st_err(ps, "tensor '%s': duplicate field \"%s\"", name, field);
        seen |= i;
        if (i == 1) {
            if (!dl__js_str(ps, value, sizeof value - 1, &len)) return 0;
            for (e->file_dtype = 0; e->file_dtype < DL__ST_NDTYPES; e->file_dtype++)
                if (len < sizeof value - 1 && strcmp(value, dl__st_dtypes[e->file_dtype].name) == 0) break;
            if (e->file_dtype == DL__ST_NDTYPES)
                return dl__st_err(ps, "tensor '%s': unsupported dtype \"%s\" (dl loads F32, I32, U8, BOOL, F16, BF16, F64, I64)", name, value);
        } else if (i == 2) {
            if (!dl__st_shape(ps, name, t)) return 0;
        } else if (i == 4) {
            if (!dl__js_char(ps, '[') || !dl__js_uint(ps, &e->begin) || !dl__js_char(ps, ',') || !dl__js_uint(ps, &e->end) || !dl__js_char(ps, ']')) return 0;
        } else if (!dl__js_skip(ps, 3)) {
            return 0;
        }
        more = dl__js_next(ps);
    }
    if (!more) return 0;
    if (seen != 7) return dl__st_err(ps, "tensor '%s': missing \"%s\"", name, !(seen & 1) ? "dtype" : !(seen & 2) ? "shape" : "data_offsets");
    /* numel <= e - b <= data size: every product below is bounded before it is formed. */
    for (i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) numel = 0;
    for (i = 0; i < t->ndim && numel; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (numel > ps->data_size / d) { numel = UINT64_MAX; break; }
        numel *= d;
    }
    nbytes = numel == UINT64_MAX ? UINT64_MAX : numel * (uint64_t)dl__st_dtypes[e->file_dtype].size;
    if (e->begin > e->end || e->end > ps->data_size)
        return dl__st_err(ps, "tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes", name,
                          (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)ps->data_size);
    if (nbytes != e->end - e->begin)
        return dl__st_err(ps, "tensor '%s': %s with this shape needs %s%llu bytes, data_offsets give %llu", name,
                          dl__st_dtypes[e->file_dtype].name, nbytes == UINT64_MAX ? "more than " : "",
                          (unsigned long long)(nbytes == UINT64_MAX ? ps->data_size : nbytes), (unsigned long long)(e->end - e->begin));
    ps->file_bytes += nbytes;
    if (ps->file_bytes > ps->data_size) return dl__st_err(ps, "tensor '%s': tensors overlap (more tensor bytes than data bytes)", name);
    if (numel > SIZE_MAX / 8 || ((numel * 4 + 63) & ~(uint64_t)63) > SIZE_MAX / 2 - ps->out_bytes) /* 32-bit hosts */
        return dl__st_err(ps, "tensor '%s' is too large for this machine", name);
    t->dtype = dl__st_dtypes[e->file_dtype].to;
    t->device = DL_DEVICE_CPU;
    t->numel = (size_t)numel;
    dl__contig_strides(t->ndim, t->shape, t->strides);
    if (ps->st) { /* the data pointer: next 64-byte aligned slot */
        t->data = ps->data;
        ps->data += (t->numel * dl_dtype_size(t->dtype) + 63) & ~(size_t)63;
    } else {
        ps->out_bytes += (t->numel * dl_dtype_size(t->dtype) + 63) & ~(size_t)63;
    }
    return 1;
}

static int dl__st_header(dl__st_parser *ps) {
    int more;
    ps->p = ps->start;
    ps->n = ps->n_meta = ps->seen_meta = 0;
    ps->file_bytes = 0;
    if (ps->p >= ps->end || *ps->p != '{') return dl__st_err(ps, "not a safetensors file (the header must start with '{')");
    more = dl__js_open(ps);
    while (more == 1) {
        char scratch[64];
        size_t len;
        dl__st_entry tmp;
        char *key = dl__st_string(ps, scratch, sizeof scratch, &len);
        if (!key || !dl__js_char(ps, ':')) return 0;
        if (len == 12 && memcmp(key, "__metadata__", 12) == 0) {
            if (ps->seen_meta++) return dl__st_err(ps, "duplicate key \"__metadata__\"");
            if (!dl__st_metadata(ps)) return 0;
        } else {
            dl__st_entry *e = ps->st ? &ps->st->entries[ps->n] : &tmp;
            if (!dl__st_tensor_info(ps, key, e)) return 0;
            if (ps->st) { e->name = key; ps->pool += len + 1; }
            ps->n++;
        }
        more = dl__js_next(ps);
    }
    if (!more) return 0;
    dl__js_ws(ps);
    if (ps->p != ps->end) return dl__st_err(ps, "header byte %zu: unexpected data after the JSON object", (size_t)(ps->p - ps->start));
    return 1;
}

static int dl__st_cmp_name(const void *a, const void *b) {
    return strcmp(((const dl__st_entry *)a)->name, ((const dl__st_entry *)b)->name);
}
static int dl__st_cmp_key(const void *a, const void *b) {
    return strcmp(((const dl__st_pair *)a)->key, ((const dl__st_pair *)b)->key);
}
static int dl__st_cmp_offsets(const void *a, const void *b) {
    const dl__st_entry *x = (const dl__st_entry *)a, *y = (const dl__st_entry *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* deterministic order of empty tensors at one offset */
}

static size_t dl__st_round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Parses and validates header bytes [json, json+len) for a file whose data part has data_size
   bytes. Returns st with entries sorted by offset and data not yet read, or NULL with ps->err. */
static dl_safetensors *dl__st_build(dl__st_parser *ps, const unsigned char *json, size_t len, uint64_t data_size) {
    dl_safetensors *st;
    size_t total;
    unsigned char *mem;
    int i;
    memset(ps, 0, sizeof *ps);
    ps->start = json;
    ps->end = json + len;
    ps->data_size = data_size;
    if (!dl__st_header(ps)) return NULL;
    if (ps->file_bytes != data_size) {
        dl__st_err(ps, "tensors cover %llu of the %llu data bytes", (unsigned long long)ps->file_bytes, (unsigned long long)data_size);
        return NULL;
    }
    /* One block: struct, entries, metadata pairs, strings, then 64-byte aligned tensor data. */
    total = dl__st_round16(sizeof(dl_safetensors)) + dl__st_round16((size_t)ps->n * sizeof(dl__st_entry)) +
            dl__st_round16((size_t)ps->n_meta * sizeof(dl__st_pair)) + dl__st_round16(ps->pool_bytes) + 64 + ps->out_bytes;
    mem = (unsigned char *)DL_MALLOC(total);
    if (!mem) { dl__st_err(ps, "out of memory (%zu bytes)", total); return NULL; }
    st = (dl_safetensors *)mem;
    mem += dl__st_round16(sizeof(dl_safetensors));
    st->entries = (dl__st_entry *)mem;
    mem += dl__st_round16((size_t)ps->n * sizeof(dl__st_entry));
    st->meta = (dl__st_pair *)mem;
    mem += dl__st_round16((size_t)ps->n_meta * sizeof(dl__st_pair));
    ps->pool = (char *)mem;
    mem += dl__st_round16(ps->pool_bytes);
    ps->data = (unsigned char *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    ps->st = st;
    if (!dl__st_header(ps)) { DL_FREE(st); return NULL; } /* cannot fail: same bytes as before */
    st->n = ps->n;
    st->n_meta = ps->n_meta;
    /* Duplicates (names or metadata keys), then the tiling of the data part. */
    qsort(st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_name);
    for (i = 1; i < st->n; i++)
        if (strcmp(st->entries[i - 1].name, st->entries[i].name) == 0) {
            dl__st_err(ps, "duplicate tensor name '%s'", st->entries[i].name);
            DL_FREE(st);
            return NULL;
        }
    qsort(st->meta, (size_t)st->n_meta, sizeof(dl__st_pair), dl__st_cmp_key);
    for (i = 1; i < st->n_meta; i++)
        if (strcmp(st->meta[i - 1].key, st->meta[i].key) == 0) {
            dl__st_err(ps, "duplicate __metadata__ key '%s'", st->meta[i].key);
            DL_FREE(st);
            return NULL;
        }
    qsort(st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_offsets);
    {
        uint64_t at = 0;
        for (i = 0; i < st->n; i++) {
            if (st->entries[i].begin != at) {
                dl__st_err(ps, "tensor '%s': data_offsets [%llu, %llu] leave a gap or overlap (expected to start at %llu)",
                           st->entries[i].name, (unsigned long long)st->entries[i].begin,
                           (unsigned long long)st->entries[i].end, (unsigned long long)at);
                DL_FREE(st);
                return NULL;
            }
            at = st->entries[i].end;
        }
    }
    return st;
}

/* Converts n elements of e's file dtype at src (little-endian) into dst; element indices start at
   first (for messages). 0 on an I64 value out of the int32 range. */
static int dl__st_convert(dl__st_parser *ps, const dl__st_entry *e, void *dst, const unsigned char *src, size_t n, size_t first) {
    float *f = (float *)dst;
    int32_t *i32 = (int32_t *)dst;
    size_t i;
    switch (e->file_dtype) {
    case DL__ST_U8: memcpy(dst, src, n); break;
    case DL__ST_BOOL: for (i = 0; i < n; i++) ((uint8_t *)dst)[i] = src[i] != 0; break;
    case DL__ST_F32: for (i = 0; i < n; i++) f[i] = dl__st_bits_f32(dl__st_rd32(src + 4 * i)); break;
    case DL__ST_I32: /* int32_t is two's complement: the bits say it all */
        for (i = 0; i < n; i++) { uint32_t u = dl__st_rd32(src + 4 * i); memcpy(&i32[i], &u, 4); }
        break;
    case DL__ST_F16: for (i = 0; i < n; i++) f[i] = dl__st_f16(dl__st_rd16(src + 2 * i)); break;
    case DL__ST_BF16: for (i = 0; i < n; i++) f[i] = dl__st_bits_f32(dl__st_rd16(src + 2 * i) << 16); break;
    case DL__ST_F64:
        for (i = 0; i < n; i++) {
            uint64_t u = dl__st_rd64(src + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            f[i] = (float)d;
        }
        break;
    case DL__ST_I64:
        for (i = 0; i < n; i++) {
            uint64_t u = dl__st_rd64(src + 8 * i);
            int64_t v;
            memcpy(&v, &u, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return dl__st_err(ps, "tensor '%s': I64 value %lld at index %zu does not fit in int32", e->name, (long long)v, first + i);
            i32[i] = (int32_t)v;
        }
        break;
    }
    return 1;
}

/* The data part comes through read(ctx, buf, n) -> bytes read, in file order. */
typedef size_t (*dl__st_read_fn)(void *ctx, void *buf, size_t n);

static int dl__st_fill(dl__st_parser *ps, dl_safetensors *st, dl__st_read_fn read_fn, void *ctx) {
    unsigned char chunk[8192];
    int i, native = dl__st_little_endian();
    for (i = 0; i < st->n; i++) {
        const dl__st_entry *e = &st->entries[i];
        size_t fsize = (size_t)dl__st_dtypes[e->file_dtype].size, osize = dl_dtype_size(e->t.dtype);
        size_t done = 0, total = e->t.numel;
        if (native && (e->file_dtype == DL__ST_F32 || e->file_dtype == DL__ST_I32 || e->file_dtype == DL__ST_U8)) {
            if (read_fn(ctx, e->t.data, total * fsize) != total * fsize) return dl__st_err(ps, "file is truncated");
            continue;
        }
        while (done < total) {
            size_t k = total - done < sizeof chunk / fsize ? total - done : sizeof chunk / fsize;
            if (read_fn(ctx, chunk, k * fsize) != k * fsize) return dl__st_err(ps, "file is truncated");
            if (!dl__st_convert(ps, e, (unsigned char *)e->t.data + done * osize, chunk, k, done)) return 0;
            done += k;
        }
    }
    qsort(st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_name);
    return 1;
}

typedef struct dl__st_memsrc { const unsigned char *p; size_t left; } dl__st_memsrc;

static size_t dl__st_read_mem(void *ctx, void *buf, size_t n) {
    dl__st_memsrc *m = (dl__st_memsrc *)ctx;
    if (n > m->left) n = m->left;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return n;
}

/* Checks the 8-byte length prefix against the file size; returns the header length or 0 (+ err). */
static size_t dl__st_prefix(dl__st_parser *ps, const unsigned char *first8, uint64_t file_size) {
    uint64_t n = dl__st_rd64(first8);
    /* the first 8 bytes of a file of another kind (text, an image) read as a huge length */
    if (n > DL__ST_MAX_HEADER) {
        dl__st_err(ps, "not a safetensors file (its first 8 bytes, read as the header length %llu, are over the limit of %u bytes)",
                   (unsigned long long)n, DL__ST_MAX_HEADER);
        return 0;
    }
    if (n + 8 > file_size) {
        dl__st_err(ps, "not a safetensors file, or a truncated one (header length %llu is beyond the end of the %llu-byte file)",
                   (unsigned long long)n, (unsigned long long)file_size);
        return 0;
    }
    if (n == 0) { dl__st_err(ps, "not a safetensors file (the header must start with '{', it is empty)"); return 0; }
    return (size_t)n;
}

DLDEF dl_safetensors *dl_safetensors_parse(const void *bytes, size_t size) {
    dl__st_parser ps;
    dl_safetensors *st;
    dl__st_memsrc src;
    size_t n;
    const unsigned char *b = (const unsigned char *)bytes;
    if (!bytes) return (dl_safetensors *)dl__fail("dl_safetensors_parse: bytes is NULL");
    if (size < 8) return (dl_safetensors *)dl__fail("dl_safetensors_parse: %zu bytes is too short for a safetensors file", size);
    ps.err[0] = 0;
    if (!(n = dl__st_prefix(&ps, b, size)) || !(st = dl__st_build(&ps, b + 8, n, size - 8 - n)))
        return (dl_safetensors *)dl__fail("dl_safetensors_parse: %s", ps.err);
    src.p = b + 8 + n;
    src.left = size - 8 - n;
    if (!dl__st_fill(&ps, st, dl__st_read_mem, &src)) {
        DL_FREE(st);
        return (dl_safetensors *)dl__fail("dl_safetensors_parse: %s", ps.err);
    }
    return st;
}

#ifndef DL_NO_STDIO
#if defined(_WIN32)
#define DL__FSEEK _fseeki64
#define DL__FTELL _ftelli64
#else
#define DL__FSEEK fseek
#define DL__FTELL ftell
#endif

static size_t dl__st_read_file(void *ctx, void *buf, size_t n) { return fread(buf, 1, n, (FILE *)ctx); }

DLDEF dl_safetensors *dl_safetensors_load(const char *path) {
    dl__st_parser ps;
    dl_safetensors *st = NULL;
    unsigned char first8[8], *header = NULL;
    long long file_size;
    size_t n = 0;
    FILE *f;
    if (!path) return (dl_safetensors *)dl__fail("dl_safetensors_load: path is NULL");
    f = fopen(path, "rb");
    if (!f) return (dl_safetensors *)dl__fail("dl_safetensors_load: cannot open '%s': %s", path, strerror(errno));
    ps.err[0] = 0;
    if (DL__FSEEK(f, 0, SEEK_END) != 0 || (file_size = (long long)DL__FTELL(f)) < 0 || DL__FSEEK(f, 0, SEEK_SET) != 0)
        dl__st_err(&ps, "cannot determine the file size");
    else if (file_size < 8 || fread(first8, 1, 8, f) != 8)
        dl__st_err(&ps, "%lld bytes is too short for a safetensors file", file_size);
    else if ((n = dl__st_prefix(&ps, first8, (uint64_t)file_size)) != 0) {
        header = (unsigned char *)DL_MALLOC(n);
        if (!header) dl__st_err(&ps, "out of memory (%zu bytes)", n);
        else if (fread(header, 1, n, f) != n) dl__st_err(&ps, "file is truncated");
        else if ((st = dl__st_build(&ps, header, n, (uint64_t)file_size - 8 - n)) != NULL && !dl__st_fill(&ps, st, dl__st_read_file, f)) {
            DL_FREE(st);
            st = NULL;
        }
    }
    DL_FREE(header);
    fclose(f);
    if (!st) return (dl_safetensors *)dl__fail("dl_safetensors_load: '%s': %s", path, ps.err);
    return st;
}
#endif

DLDEF void dl_safetensors_free(dl_safetensors *st) { DL_FREE(st); }

DLDEF int dl_safetensors_num_tensors(const dl_safetensors *st) { return st ? st->n : 0; }
DLDEF int dl_safetensors_num_meta(const dl_safetensors *st) { return st ? st->n_meta : 0; }

DLDEF const char *dl_safetensors_name(const dl_safetensors *st, int i) {
    return st && i >= 0 && i < st->n ? st->entries[i].name : NULL;
}

DLDEF const char *dl_safetensors_meta_key(const dl_safetensors *st, int i) {
    return st && i >= 0 && i < st->n_meta ? st->meta[i].key : NULL;
}

DLDEF dl_tensor *dl_safetensors_get(const dl_safetensors *st, const char *name) {
    dl__st_entry key, *e;
    if (!st || !name) return NULL;
    key.name = name;
    e = (dl__st_entry *)bsearch(&key, st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_name);
    return e ? &e->t : NULL;
}

DLDEF const char *dl_safetensors_meta(const dl_safetensors *st, const char *key) {
    dl__st_pair k;
    const dl__st_pair *p;
    if (!st || !key) return NULL;
    k.key = key;
    p = (const dl__st_pair *)bsearch(&k, st->meta, (size_t)st->n_meta, sizeof(dl__st_pair), dl__st_cmp_key);
    return p ? p->value : NULL;
}

/* ---- Writing ----
   The header text is produced twice by dl__st_header_text: once to measure (out == NULL), once
   into the output. Bytes then go to a sink: memory or a FILE*. */

typedef struct dl__st_out { unsigned char *buf; size_t len; } dl__st_out;

static void dl__st_put(dl__st_out *o, const char *s, size_t n) {
    if (o->buf) memcpy(o->buf + o->len, s, n);
    o->len += n;
}
static void dl__st_puts(dl__st_out *o, const char *s) { dl__st_put(o, s, strlen(s)); }

/* A JSON string escaped as serde_json does (so headers match Python's byte for byte). */
static void dl__st_put_json(dl__st_out *o, const char *s) {
    dl__st_puts(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"') dl__st_puts(o, "\\\"");
        else if (c == '\\') dl__st_puts(o, "\\\\");
        else if (c == '\n') dl__st_puts(o, "\\n");
        else if (c == '\r') dl__st_puts(o, "\\r");
        else if (c == '\t') dl__st_puts(o, "\\t");
        else if (c == '\b') dl__st_puts(o, "\\b");
        else if (c == '\f') dl__st_puts(o, "\\f");
        else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); dl__st_puts(o, esc); }
        else dl__st_put(o, s, 1);
    }
    dl__st_puts(o, "\"");
}

static int dl__st_valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        int k = dl__utf8_len(p, end);
        if (!k) return 0;
        p += k;
    }
    return 1;
}

typedef struct dl__st_item { const char *name; dl_tensor *t; } dl__st_item;

static int dl__st_rank(dl_dtype d) { return d == DL_DTYPE_F32 ? 0 : d == DL_DTYPE_I32 ? 1 : 2; }

/* Python's writer order: dtype alignment descending (F32, I32, U8 for us), then name. */
static int dl__st_cmp_item(const void *a, const void *b) {
    const dl__st_item *x = (const dl__st_item *)a, *y = (const dl__st_item *)b;
    int r = dl__st_rank(x->t->dtype) - dl__st_rank(y->t->dtype);
    return r ? r : strcmp(x->name, y->name);
}
static int dl__st_cmp_item_name(const void *a, const void *b) {
    return strcmp(((const dl__st_item *)a)->name, ((const dl__st_item *)b)->name);
}

static size_t dl__st_header_text(dl__st_out *o, const dl__st_item *items, int n, int n_meta, const char *const *keys, const char *const *values) {
    char num[64];
    size_t offset = 0, start = o->len;
    int i, j;
    dl__st_puts(o, "{");
    if (n_meta > 0) {
        dl__st_puts(o, "\"__metadata__\":{");
        for (i = 0; i < n_meta; i++) {
            if (i) dl__st_puts(o, ",");
            dl__st_put_json(o, keys[i]);
            dl__st_puts(o, ":");
            dl__st_put_json(o, values[i]);
        }
        dl__st_puts(o, n ? "}," : "}");
    }
    for (i = 0; i < n; i++) {
        const dl_tensor *t = items[i].t;
        size_t bytes = t->numel * dl_dtype_size(t->dtype);
        if (i) dl__st_puts(o, ",");
        dl__st_put_json(o, items[i].name);
        dl__st_puts(o, t->dtype == DL_DTYPE_F32 ? ":{\"dtype\":\"F32\",\"shape\":[" : t->dtype == DL_DTYPE_I32 ? ":{\"dtype\":\"I32\",\"shape\":[" : ":{\"dtype\":\"U8\",\"shape\":[");
        for (j = 0; j < t->ndim; j++) {
            snprintf(num, sizeof num, j ? ",%d" : "%d", t->shape[j]);
            dl__st_puts(o, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset, (unsigned long long)(offset + bytes));
        dl__st_puts(o, num);
        offset += bytes;
    }
    dl__st_puts(o, "}");
    while ((o->len - start) % 8) dl__st_puts(o, " ");
    return offset;
}

typedef int (*dl__st_write_fn)(void *ctx, const void *p, size_t n); /* 0 on success */

/* Tensor t's elements in logical order, little-endian: one write when that is its memory, else
   row by row along the last dimension through a small buffer. */
static int dl__st_write_tensor(const dl_tensor *t, dl__st_write_fn write_fn, void *ctx) {
    unsigned char chunk[8192];
    size_t esize = dl_dtype_size(t->dtype), k = 0, row, j, len = t->ndim ? (size_t)t->shape[t->ndim - 1] : 1;
    ptrdiff_t step = t->ndim ? t->strides[t->ndim - 1] * (ptrdiff_t)esize : 0;
#ifdef DL_CUDA
    if (t->device) {   /* read to the host (row-major), then written as a CPU tensor */
        dl_tensor h = *t;
        size_t bytes = t->numel * esize;
        int r;
        if (!(h.data = DL_MALLOC(bytes ? bytes : 1))) return -1;
        h.device = DL_DEVICE_CPU;
        h.flags = 0;
        dl__contig_strides(h.ndim, h.shape, h.strides);
        r = dl_tensor_read(t, h.data) == 0 ? dl__st_write_tensor(&h, write_fn, ctx) : -1;
        DL_FREE(h.data);
        return r;
    }
#endif
    if (dl_is_contiguous(t) && (esize == 1 || dl__st_little_endian())) return write_fn(ctx, t->data, t->numel * esize);
    for (row = 0; len && row < t->numel / len; row++) {
        const unsigned char *src = (const unsigned char *)t->data + dl__offset_of(t, row * len) * (ptrdiff_t)esize;
        for (j = 0; j < len; j++) {
            if (esize == 1) chunk[k] = src[(ptrdiff_t)j * step];
            else { uint32_t v; memcpy(&v, src + (ptrdiff_t)j * step, 4); dl__st_wr32(chunk + k, v); }
            k += esize;
            if (k == sizeof chunk) {
                if (write_fn(ctx, chunk, k)) return -1;
                k = 0;
            }
        }
    }
    return k ? write_fn(ctx, chunk, k) : 0;
}

/* Validates the arguments and builds the header: *header (DL_MALLOC'd, caller frees) of *hlen
   bytes, *items sorted in file order (inside the same allocation), *data_bytes of tensor data. */
static int dl__st_prepare(dl__st_parser *ps, int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                          const char *const *keys, const char *const *values, unsigned char **header, size_t *hlen, dl__st_item **items) {
    dl__st_out o;
    dl__st_item *it;
    int i, j;
    size_t items_bytes;
    if (n < 0 || n_meta < 0 || (n > 0 && (!names || !tensors)) || (n_meta > 0 && (!keys || !values)))
        return dl__st_err(ps, "bad arguments (n %d, n_meta %d, or a NULL array)", n, n_meta);
    for (i = 0; i < n; i++) {
        const dl_tensor *t = tensors[i];
        if (!names[i]) return dl__st_err(ps, "name %d is NULL", i);
        if (!t) return dl__st_err(ps, "tensor '%s' is NULL", names[i]);
#ifndef DL_CUDA
        if (t->device != DL_DEVICE_CPU) return dl__st_err(ps, "tensor '%s' is not on the CPU", names[i]);
#endif
        if (dl_dtype_size(t->dtype) == 0) return dl__st_err(ps, "tensor '%s' has an unknown dtype", names[i]);
        if (!dl__st_valid_utf8(names[i])) return dl__st_err(ps, "name %d is not valid UTF-8", i);
        if (strcmp(names[i], "__metadata__") == 0) return dl__st_err(ps, "\"__metadata__\" cannot name a tensor");
    }
    for (i = 0; i < n_meta; i++) {
        if (!keys[i] || !values[i]) return dl__st_err(ps, "metadata entry %d is NULL", i);
        if (!dl__st_valid_utf8(keys[i]) || !dl__st_valid_utf8(values[i])) return dl__st_err(ps, "metadata entry '%.40s' is not valid UTF-8", keys[i]);
        for (j = 0; j < i; j++)
            if (strcmp(keys[i], keys[j]) == 0) return dl__st_err(ps, "duplicate metadata key '%s'", keys[i]);
    }
    items_bytes = dl__st_round16(sizeof(dl__st_item) * (size_t)(n ? n : 1));
    it = (dl__st_item *)DL_MALLOC(items_bytes);
    if (!it) return dl__st_err(ps, "out of memory");
    for (i = 0; i < n; i++) { it[i].name = names[i]; it[i].t = tensors[i]; }
    qsort(it, (size_t)n, sizeof *it, dl__st_cmp_item_name);
    for (i = 1; i < n; i++)
        if (strcmp(it[i - 1].name, it[i].name) == 0) { dl__st_err(ps, "duplicate tensor name '%s'", it[i].name); DL_FREE(it); return 0; }
    qsort(it, (size_t)n, sizeof *it, dl__st_cmp_item);
    o.buf = NULL;
    o.len = 0;
    dl__st_header_text(&o, it, n, n_meta, keys, values);
    *hlen = o.len;
    o.buf = (unsigned char *)DL_MALLOC(8 + o.len);
    if (!o.buf) { DL_FREE(it); return dl__st_err(ps, "out of memory"); }
    dl__st_wr64(o.buf, (uint64_t)*hlen);
    o.len = 8;
    dl__st_header_text(&o, it, n, n_meta, keys, values);
    *header = o.buf;
    *items = it;
    return 1;
}

/* Writes the whole file through write(); returns its size, 0 on error. */
static size_t dl__st_write_all(dl__st_parser *ps, int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                               const char *const *keys, const char *const *values, dl__st_write_fn write_fn, void *ctx, int measure_only) {
    unsigned char *header = NULL;
    dl__st_item *items = NULL;
    size_t hlen = 0, size;
    int i, ok = 1;
    if (!dl__st_prepare(ps, n, names, tensors, n_meta, keys, values, &header, &hlen, &items)) return 0;
    size = 8 + hlen;
    for (i = 0; i < n; i++) size += items[i].t->numel * dl_dtype_size(items[i].t->dtype);
    if (!measure_only) {
        ok = write_fn(ctx, header, 8 + hlen) == 0;
        for (i = 0; i < n && ok; i++) ok = dl__st_write_tensor(items[i].t, write_fn, ctx) == 0;
        if (!ok) dl__st_err(ps, "write failed");
    }
    DL_FREE(header);
    DL_FREE(items);
    return ok ? size : 0;
}

static int dl__st_write_mem(void *ctx, const void *p, size_t n) {
    dl__st_out *o = (dl__st_out *)ctx;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

DLDEF size_t dl_safetensors_serialize(int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                                      const char *const *meta_keys, const char *const *meta_values, void *out, size_t capacity) {
    dl__st_parser ps;
    dl__st_out o;
    size_t size = dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, NULL, NULL, 1);
    if (!size) { dl__fail("dl_safetensors_serialize: %s", ps.err); return 0; }
    if (!out || capacity < size) return size;
    o.buf = (unsigned char *)out;
    o.len = 0;
    return dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, dl__st_write_mem, &o, 0);
}

#ifndef DL_NO_STDIO
/* ---- Files written whole: a temporary file next to the target, renamed over it ---- */

#if defined(__unix__) || defined(__APPLE__)
#define DL__POSIX_IO 1
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#else
#include <errno.h>
#endif

struct dl_file_writer {
#ifdef DL__POSIX_IO
    int fd;
#else
    FILE *f;
#endif
    int failed;          /* a write failed: the message is set, commit will fail */
    char *path, *tmp;    /* inside this allocation */
};

static unsigned dl__file_counter; /* names temporaries apart within a process (a race only makes open retry) */

DLDEF dl_file_writer *dl_file_writer_open(const char *path) {
    size_t len;
    dl_file_writer *w;
    int attempt;
    if (!path || !*path) return (dl_file_writer *)dl__fail("dl_file_writer_open: empty path");
    len = strlen(path);
    w = (dl_file_writer *)DL_MALLOC(sizeof *w + 2 * len + 64);
    if (!w) return (dl_file_writer *)dl__fail("dl_file_writer_open: out of memory");
    w->failed = 0;
    w->path = (char *)(w + 1);
    w->tmp = w->path + len + 1;
    memcpy(w->path, path, len + 1);
    for (attempt = 0; attempt < 100; attempt++) { /* a name nobody else holds, created exclusively */
        unsigned n = dl__file_counter++;
#ifdef DL__POSIX_IO
        snprintf(w->tmp, len + 63, "%s.tmp-%ld-%u", path, (long)getpid(), n);
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (w->fd >= 0) return w;
#else
        snprintf(w->tmp, len + 63, "%s.tmp-%u-%u", path, (unsigned)(size_t)w & 0xffffu, n);
        w->f = fopen(w->tmp, "wbx"); /* C11 exclusive mode; a C99 library may ignore the x */
        if (w->f) return w;
#endif
        if (errno != EEXIST) break;
    }
    dl__fail("cannot open '%s' for writing (a temporary file next to it): %s", path, strerror(errno));
    DL_FREE(w);
    return NULL;
}

DLDEF int dl_file_writer_write(dl_file_writer *w, const void *p, size_t n) {
    const char *c = (const char *)p;
    if (!w) { dl__fail("dl_file_writer_write: NULL writer"); return -1; }
    if (w->failed) return -1;
#ifdef DL__POSIX_IO
    while (n > 0) { /* write may take fewer bytes than asked, or be interrupted */
        ssize_t k = write(w->fd, c, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            dl__fail("cannot write '%s': %s", w->path, k < 0 ? strerror(errno) : "no progress");
            w->failed = 1;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
#else
    if (n && fwrite(c, 1, n, w->f) != n) {
        dl__fail("cannot write '%s': %s", w->path, strerror(errno));
        w->failed = 1;
        return -1;
    }
#endif
    return 0;
}

DLDEF void dl_file_writer_abort(dl_file_writer *w) {
    if (!w) return;
#ifdef DL__POSIX_IO
    if (w->fd >= 0) close(w->fd);
#else
    if (w->f) fclose(w->f);
#endif
    remove(w->tmp);
    DL_FREE(w);
}

DLDEF int dl_file_writer_commit(dl_file_writer *w) {
    int ok;
    if (!w) { dl__fail("dl_file_writer_commit: NULL writer"); return -1; }
    if (w->failed) { dl_file_writer_abort(w); return -1; } /* keeps the write's message */
#ifdef DL__POSIX_IO
    ok = fsync(w->fd) == 0 || errno == EINVAL || errno == EROFS; /* EINVAL, EROFS: fsync does not apply (a pipe, /dev/null) */
    if (!ok) dl__fail("cannot write '%s': fsync: %s", w->path, strerror(errno));
    if (close(w->fd) != 0 && ok) { ok = 0; dl__fail("cannot write '%s': close: %s", w->path, strerror(errno)); }
    w->fd = -1;
#else
    ok = fflush(w->f) == 0;
    if (!ok) dl__fail("cannot write '%s': %s", w->path, strerror(errno));
    if (fclose(w->f) != 0 && ok) { ok = 0; dl__fail("cannot write '%s': %s", w->path, strerror(errno)); }
    w->f = NULL;
#ifdef _WIN32
    if (ok) remove(w->path); /* rename does not replace an existing file there */
#endif
#endif
    if (ok && rename(w->tmp, w->path) != 0) { ok = 0; dl__fail("cannot write '%s': rename: %s", w->path, strerror(errno)); }
    if (!ok) remove(w->tmp);
    DL_FREE(w);
    return ok ? 0 : -1;
}

static int dl__st_write_file(void *ctx, const void *p, size_t n) { return dl_file_writer_write((dl_file_writer *)ctx, p, n); }

#ifdef DL_HAVE_PNG
static void dl__png_sink(void *ctx, void *data, int size) { dl_file_writer_write((dl_file_writer *)ctx, data, (size_t)size); }

DLDEF int dl_png_save(const char *path, const unsigned char *pixels, int w, int h, int channels) {
    dl_file_writer *f;
    int ok;
    if (!path || !pixels) { dl__fail("dl_png_save: NULL argument"); return -1; }
    if (w <= 0 || h <= 0 || (channels != 1 && channels != 3 && channels != 4) || w > INT_MAX / 4 / channels) {
        dl__fail("dl_png_save: '%s': bad picture size %d x %d x %d", path, w, h, channels);
        return -1;
    }
    if (!(f = dl_file_writer_open(path))) ok = 0;
    else {   /* stb encodes into the writer; commit renames the whole file into place */
        ok = stbi_write_png_to_func(dl__png_sink, f, w, h, channels, pixels, w * channels) != 0;
        if (!ok) dl__fail("cannot encode '%s' as PNG", path); /* a failed write is caught by commit */
        if (ok) ok = dl_file_writer_commit(f) == 0;
        else dl_file_writer_abort(f);
    }
    if (!ok) {
        char why[512];
        snprintf(why, sizeof why, "%s", dl_error());
        dl__fail("dl_png_save: %s", why);
        return -1;
    }
    return 0;
}
#endif

DLDEF int dl_safetensors_save(const char *path, int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                              const char *const *meta_keys, const char *const *meta_values) {
    dl__st_parser ps;
    dl_file_writer *w;
    size_t size;
    if (!path) { dl__fail("dl_safetensors_save: path is NULL"); return -1; }
    /* Validate before touching the file, so that a bad call leaves an existing file intact. */
    if (!dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, NULL, NULL, 1)) {
        dl__fail("dl_safetensors_save: %s", ps.err);
        return -1;
    }
    /* The whole file goes to a temporary renamed over path: a failure leaves the old file whole. */
    if (!(w = dl_file_writer_open(path))) {
        char why[sizeof dl__error_msg];
        snprintf(why, sizeof why, "%s", dl_error());
        dl__fail("dl_safetensors_save: %s", why);
        return -1;
    }
    size = dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, dl__st_write_file, w, 0);
    if (!size) { /* the writer's message says why (path and strerror), else the serializer's */
        char why[sizeof dl__error_msg];
        snprintf(why, sizeof why, "%s", w->failed ? dl_error() : ps.err);
        dl_file_writer_abort(w);
        dl__fail("dl_safetensors_save: %s", why);
        return -1;
    }
    if (dl_file_writer_commit(w) != 0) {
        char why[sizeof dl__error_msg];
        snprintf(why, sizeof why, "%s", dl_error());
        dl__fail("dl_safetensors_save: %s", why);
        return -1;
    }
    return 0;
}
#endif

#endif /* DL_TENSOR_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the dl authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
