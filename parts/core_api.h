/* ---- Basic types ------------------------------------------------------------------------- */

#define DL_MAX_DIMS 8          /* tensors have 0..DL_MAX_DIMS dimensions */

typedef enum dl_dtype { DL_F32 = 0, DL_I32 = 1, DL_U8 = 2 } dl_dtype;
typedef enum dl_device { DL_CPU = 0, DL_CUDA = 1 } dl_device;

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

/* ---- Arenas ------------------------------------------------------------------------------
   Everything that lives one step (op outputs, temporaries, the autograd tape) is bump-
   allocated from the thread's current arena; dl_arena_reset frees all of it at once and keeps
   the memory, so a steady-state step calls malloc zero times. If no arena has been set, a
   per-thread default arena is created on first use (freed by dl_arena_free_default). */
DLDEF dl_arena *dl_arena_new(size_t initial_bytes);     /* owned by caller: dl_arena_free */
DLDEF void dl_arena_free(dl_arena *a);
DLDEF void dl_arena_reset(dl_arena *a);                 /* everything allocated from a is gone */
DLDEF dl_arena *dl_arena_use(dl_arena *a);              /* make a current; returns the previous */
DLDEF dl_arena *dl_arena_current(void);
DLDEF void dl_arena_free_default(void);
DLDEF void *dl_arena_alloc(dl_arena *a, size_t bytes);  /* 64-byte aligned; NULL + error if out of memory */
DLDEF size_t dl_arena_used(const dl_arena *a);          /* bytes in use since last reset */
DLDEF size_t dl_arena_capacity(const dl_arena *a);      /* bytes held */

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
#define DL_SHAPE(...) ((const int[]){__VA_ARGS__})   /* C only: dl_tmp(DL_F32, 2, DL_SHAPE(3, 4)) */

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
DLDEF int dl_copy(dl_tensor *dst, const dl_tensor *src);  /* same shape and dtype, any strides; 0 on success */
DLDEF char *dl_shape_str(const dl_tensor *t, char *buf, size_t size);  /* "[2, 3]" */

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

/* Writing an op (this is how every built-in op is written too):
     1. check inputs (return NULL on NULL inputs and set errors on bad shapes);
     2. allocate the output with dl_tmp / dl_tmp_uninit and compute it;
     3. dl_node *n = dl_record("my_op", out, n_in, inputs, my_op_backward, sizeof(my_ctx));
        n is NULL when no input needs a gradient: skip saving state then.
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
   defaults (1e-3, 1e-2). Returns 1 if |analytic - numeric| <= tol * (1 + |numeric|) for
   every element, else 0 with the worst element described in dl_error(). */
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
DLDEF void dl_rng_permutation(dl_rng *r, int *out, int n); /* a random permutation of 0..n-1 */
DLDEF void dl_fill_uniform(dl_tensor *t, dl_rng *r, float lo, float hi);
DLDEF void dl_fill_normal(dl_tensor *t, dl_rng *r, float mean, float std);
DLDEF void dl_fill_truncated_normal(dl_tensor *t, dl_rng *r, float mean, float std); /* resampled beyond 2 std */
DLDEF void dl_fill_bernoulli(dl_tensor *t, dl_rng *r, float p);  /* 1 with probability p, else 0 */
/* Initializers with Keras' definitions; fan_in/fan_out are given explicitly (for a conv:
   in_channels*kh*kw and out_channels*kh*kw). */
DLDEF void dl_init_glorot_uniform(dl_tensor *t, dl_rng *r, int fan_in, int fan_out);  /* U(+-sqrt(6/(in+out))) */
DLDEF void dl_init_glorot_normal(dl_tensor *t, dl_rng *r, int fan_in, int fan_out);   /* TN, std sqrt(2/(in+out)) */
DLDEF void dl_init_he_uniform(dl_tensor *t, dl_rng *r, int fan_in);                   /* U(+-sqrt(6/in)) */
DLDEF void dl_init_he_normal(dl_tensor *t, dl_rng *r, int fan_in);                    /* TN, std sqrt(2/in) */
