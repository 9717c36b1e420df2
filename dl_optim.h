/* dl_optim.h - v0.2.0 - optimizers, learning-rate schedules and gradient clipping, in C99.
   Part of dl, a family of single-file deep-learning libraries; needs dl_tensor.h.

   Do this:
       #define DL_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation. Every
   other file includes it plainly. It includes dl_tensor.h (from its own folder) itself when
   that was not included before, so the order of includes does not matter.

   EXAMPLE: the loop of dl_tensor.h's example, with Adam and a cosine schedule

       dl_tensor *params[2] = {w, b};                       // persistent, requires_grad
       dl_optim *opt = dl_adam(0.05);                        // yours: dl_optim_free
       if (!opt || dl_optim_add_params(opt, 2, params) != 0) { puts(dl_error()); return 1; }
       for (int step = 0; step < 500; step++) {
           dl_arena_reset(dl_arena_current());
           dl_optim_zero_grad(opt);
           dl_backward(dl_mse(dl_linear(x, w, b), y));
           dl_optim_set_lr(opt, dl_lr_cosine(0.05, 500, 0.0, step));
           dl_optim_step(opt);                              // no allocation
       }
       dl_optim_save(opt, "opt.safetensors");               // resume later with dl_optim_load

   CONTENTS
       optimizers   dl_optim_new(kind, &opts) with a dl_optim_opts whose zero fields take
                    PyTorch's defaults, and dl_sgd / dl_rmsprop / dl_adagrad / dl_adam / dl_adamw
                    (lr) for the rest at its defaults: SGD (momentum, Nesterov, weight decay),
                    RMSprop (plain, centered, momentum), Adagrad, Adam, AdamW; step, zero_grad,
                    lr get/set
       clipping     dl_clip_grad_norm (global L2 norm), dl_clip_grad_value, and the same applied
                    by the optimizer itself before every step (dl_optim_set_clip)
       schedules    pure functions of the step/epoch number (exact on resume): step,
                    exponential, cosine annealing, linear warm-up; dl_lr_schedule combines a
                    linear warm-up with one of them (for a fit() loop)
       state        dl_optim_save / dl_optim_load (safetensors file), dl_optim_serialize /
                    dl_optim_parse (the same bytes in memory): training resumes bit-identically;
                    dl_optim_state_meta / _tensor list that file's entries (to embed them)
       L-BFGS       dl_lbfgs_new / _add_params / _step(closure): torch.optim.LBFGS without a
                    line search, a separate type since each step calls the loss many times

   SEMANTICS: those of torch.optim (PyTorch 1.13, foreach=False, maximize=False), checked
   against it in tests/test_optim.c. Hyperparameters are doubles, like Python floats; the
   scalar factors (1 - beta, lr / (1 - beta1^t), ...) are computed in double and rounded to
   float where PyTorch does, and multiply-adds are fused as in PyTorch's kernels, so the tests'
   three steps of every optimizer give PyTorch's bits exactly. Where Keras differs:
       SGD      PyTorch (and dl): v = mu*v + g; p -= lr*v (the first v is g itself); Nesterov:
                p -= lr*(g + mu*v). Keras: v = mu*v - lr*g; p += v (same path while lr is
                constant; differs when lr changes). Weight decay here is L2 added to the
                gradient (coupled), as PyTorch.
       RMSprop  PyTorch's alpha (default 0.99) is Keras' rho (default 0.9). PyTorch adds eps
                outside the root: p -= lr * g / (sqrt(s) + eps), default 1e-8; Keras adds it
                inside: p -= lr * g / sqrt(s + eps), default 1e-7, and its momentum buffer
                accumulates lr * g / sqrt(...) (lr inside, so lr changes act differently).
       Adagrad  PyTorch: initial accumulator 0, p -= lr * g / (sqrt(s) + eps), eps 1e-10;
                Keras 3: initial 0.1, p -= lr * g / sqrt(s + eps), eps 1e-7.
       Adam     PyTorch: p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), eps default 1e-8.
                Keras: p -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps), eps default 1e-7:
                Keras' eps is the paper's "epsilon hat", added before v's bias correction, so
                the two agree only where eps is negligible next to sqrt(v).
       AdamW    decoupled: p *= 1 - lr*wd before the Adam step (PyTorch default wd 0.01, Keras
                0.004).
       clipping Keras' clipnorm clips each tensor's norm separately, global_clipnorm clips the
                global norm: dl_optim_set_clip's max_norm is the global one, as
                torch.nn.utils.clip_grad_norm_.

   CONFIGURATION (define before including, in the implementation file)
       DL_OPTIM_NO_FMA  compute a*b + c with two roundings instead of fmaf. By default updates
                        use fmaf, as PyTorch's kernels effectively do, and match its bits. fmaf
                        is an instruction where the target has FMA (-mfma); elsewhere, on x86-64
                        Linux with gcc >= 6 or clang >= 14, the update loops are built twice and
                        the FMA version is picked at load time (4M-parameter momentum SGD: 3.2 ms
                        a step instead of 13.6 ms with libm's fmaf).
       dl_tensor.h's DL_MALLOC/DL_FREE, DL_STATIC and DL_NO_STDIO (no dl_optim_save/load) apply.

   OWNERSHIP
       dl_optim_new and its shortcuts (dl_sgd, ..., dl_adamw) return an optimizer you own:
       dl_optim_free.
       It borrows the parameters given to dl_optim_add_params (they must outlive it) and owns
       its state buffers, which are allocated there, once: dl_optim_step never allocates.
       Parameters are persistent (dl_tensor_new), contiguous f32 tensors with requires_grad, on
       the CPU or, in a DL_CUDA build, all on the GPU (dl_cuda.cu: each update is one kernel with
       the CPU's formulas, the state is made on the parameters' device; dl_optim_move);
       their .grad is what the backward pass accumulated (params whose grad is NULL are skipped,
       and their per-parameter step count does not advance, as in PyTorch).

   ERRORS
       Constructors return NULL and set dl_error() for bad hyperparameters (a NaN, infinite or
       negative value, a beta or alpha outside [0, 1), Nesterov without momentum, a field the
       kind does not use); dl_optim_set_lr refuses a NaN, infinite or negative rate.
       Functions returning int give 0 on success, -1 + dl_error() on failure. A failed
       dl_optim_load changes nothing: the file is validated (format, optimizer kind,
       hyperparameters, parameter count, every state tensor's name, dtype and shape) first.
       Nothing here calls exit or abort.

   NOT HERE
       AMSGrad, Adadelta, Adamax, NAdam, RAdam, L-BFGS's line search, sparse gradients, per-parameter-group
       hyperparameters (make one optimizer per group), plateau schedules (ReduceLROnPlateau needs
       a metric: the caller's loop decides), L-BFGS on the GPU, one optimizer for
       parameters on two devices.

   REVISION HISTORY (CHANGELOG.md has the details)
       0.2.0  dl_optim_new(kind, &opts) with zero-means-default dl_optim_opts, dl_adam(lr)
              and friends as shortcuts (they took every hyperparameter in a row);
              dl_optim_get_kind -> dl_optim_type, dl_optim_param_count -> dl_optim_num_params;
              dl_optim_set_lr returns int and refuses non-finite rates
       0.1.0  SGD, RMSprop, Adagrad, Adam, AdamW with PyTorch's bits, schedules, clipping, state

   LICENSE: MIT, see the end of the file.
*/
#ifndef DL_OPTIM_H
#define DL_OPTIM_H

#ifndef DL_TENSOR_H   /* the prerequisite, from this file's folder, unless already included */
#include "dl_tensor.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Optimizers ----------------------------------------------------------------------------
   One constructor for every kind, with an options struct in which 0 means "the default" (the
   defaults are PyTorch's, whose update rules these are; see SEMANTICS above for Keras'), and a
   shortcut per kind for the common case of a learning rate alone:

       dl_optim *opt = dl_adam(1e-3);                        // the rest at its defaults
       dl_optim_opts o = {0};                                // C and C++ alike
       o.lr = 2.5e-4; o.alpha = 0.95; o.eps = 0.01; o.centered = 1;
       dl_optim *rms = dl_optim_new(DL_OPTIM_RMSPROP, &o);

   Hyperparameters are doubles so that 0.99 means what it means in Python. */
typedef struct dl_optim dl_optim;
typedef enum dl_optim_kind {
    DL_OPTIM_SGD = 0, DL_OPTIM_RMSPROP = 1, DL_OPTIM_ADAGRAD = 2, DL_OPTIM_ADAM = 3, DL_OPTIM_ADAMW = 4
} dl_optim_kind;

/* Every field 0 = its default, in brackets; DL_ZERO (-1, dl_tensor.h) asks for a real 0 where
   the default is not 0 (e.g. eps = DL_ZERO). A field that the kind does not use must stay 0
   (dl_optim_new says which one was set).
     SGD      g += wd*p; v = momentum*v + g (v = g at a parameter's first step);
              g = nesterov ? g + momentum*v : v; p -= lr*g
     RMSprop  s = alpha*s + (1-alpha)*g^2; centered: a = alpha*a + (1-alpha)*g,
              d = sqrt(s - a^2) + eps, else d = sqrt(s) + eps; momentum > 0: b = momentum*b + g/d,
              p -= lr*b; else p -= lr*g/d
     Adagrad  s += g^2 (s starts at initial_accumulator); p -= lr*g/(sqrt(s) + eps)
     Adam     m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; p -= lr/(1-b1^t) * m/(sqrt(v)/sqrt(1-b2^t) + eps)
     AdamW    p *= 1 - lr*weight_decay, then Adam */
typedef struct dl_optim_opts {
    double lr;                  /* [SGD 1e-2 (Keras'; PyTorch 1.13 has none), RMSprop 1e-2, Adagrad 1e-2, Adam/AdamW 1e-3] */
    double momentum;            /* SGD, RMSprop [0] */
    double weight_decay;        /* SGD: L2 added to the gradient [0]; AdamW: decoupled [1e-2] */
    int nesterov;               /* SGD; needs momentum > 0 [0] */
    double alpha;               /* RMSprop's smoothing constant, Keras' rho [0.99] */
    int centered;               /* RMSprop [0] */
    double initial_accumulator; /* Adagrad [0] */
    double beta1, beta2;        /* Adam, AdamW [0.9, 0.999] */
    double eps;                 /* RMSprop, Adagrad, Adam, AdamW [1e-8; Adagrad 1e-10] */
    double max_norm;            /* clip the global gradient norm before each step, as dl_optim_set_clip [0: off] */
    double clip_value;          /* clamp every gradient element to [-clip_value, clip_value] [0: off] */
} dl_optim_opts;

/* A new optimizer of `kind` (NULL opts = every default); yours: dl_optim_free. NULL + dl_error()
   for a non-finite or negative value, a beta or alpha outside [0, 1), Nesterov without momentum,
   or a field the kind does not use. */
DLDEF dl_optim *dl_optim_new(dl_optim_kind kind, const dl_optim_opts *opts);
DLDEF dl_optim *dl_sgd(double lr);       /* dl_optim_new(DL_OPTIM_SGD, {.lr = lr}); and so on */
DLDEF dl_optim *dl_rmsprop(double lr);
DLDEF dl_optim *dl_adagrad(double lr);
DLDEF dl_optim *dl_adam(double lr);
DLDEF dl_optim *dl_adamw(double lr);     /* weight decay 1e-2 */
DLDEF void dl_optim_free(dl_optim *opt);                 /* NULL is fine; the parameters stay */

/* Registers n parameters (borrowed) and allocates their state. May be called again to add
   more (they start from step 0). 0 on success; -1 + dl_error() for a NULL, non-f32,
   non-contiguous or duplicate tensor, one without requires_grad, a GPU tensor in a build
   without DL_CUDA, or one on another device than the others (nothing is added then). */
DLDEF int dl_optim_add_params(dl_optim *opt, int n, dl_tensor *const *params);
/* One update of every parameter that has a gradient; clips first if dl_optim_set_clip asked for
   it (modifying the gradients in place). Never allocates. 0 on success. */
DLDEF int dl_optim_step(dl_optim *opt);
DLDEF void dl_optim_zero_grad(dl_optim *opt);            /* sets every parameter's grad to zeros */
DLDEF double dl_optim_lr(const dl_optim *opt);
DLDEF int dl_optim_set_lr(dl_optim *opt, double lr);    /* -1 + dl_error() (lr unchanged) unless finite and >= 0 */
DLDEF long dl_optim_steps(const dl_optim *opt);          /* dl_optim_step calls so far (restored by load) */
DLDEF dl_optim_kind dl_optim_type(const dl_optim *opt);
DLDEF const char *dl_optim_kind_name(dl_optim_kind kind); /* "sgd", "rmsprop", "adagrad", "adam", "adamw" */
DLDEF int dl_optim_num_params(const dl_optim *opt);    /* parameters added so far */
/* Clipping done by dl_optim_step before the update: max_norm > 0 scales all gradients like
   dl_clip_grad_norm (global norm over this optimizer's parameters), then clip_value > 0 clamps
   them like dl_clip_grad_value. 0 turns either off (the default). 0 on success. */
DLDEF int dl_optim_set_clip(dl_optim *opt, double max_norm, double clip_value);
/* Moves the optimizer's state (its buffers, made on the parameters' device by add_params) to
   device, in place, as dl_tensor_move; the parameters themselves are the caller's to move
   (dl_model_move moves a model's weights and its optimizer together). dl_optim_step refuses
   parameters that are not on the optimizer's device. 0, or -1 + dl_error() with nothing moved
   (no GPU; a build without DL_CUDA, where only DL_DEVICE_CPU works). */
DLDEF int dl_optim_move(dl_optim *opt, dl_device device);

/* ---- Gradient clipping (on .grad, in place; tensors with a NULL grad are skipped) ----------- */
/* torch.nn.utils.clip_grad_norm_: total = L2 norm of all gradients together; every gradient is
   multiplied by min(1, max_norm / (total + 1e-6)). Returns total (before clipping); -1 + error
   for max_norm < 0 or a NULL tensor. */
DLDEF float dl_clip_grad_norm(int n, dl_tensor *const *params, double max_norm);
/* torch.nn.utils.clip_grad_value_: every gradient element clamped to [-clip, clip] (NaN stays
   NaN). Does nothing for clip < 0 or NaN, or a NULL list; NULL tensors are skipped. */
DLDEF void dl_clip_grad_value(int n, dl_tensor *const *params, double clip);

/* ---- Learning-rate schedules ----------------------------------------------------------------
   Pure functions of t, the number of scheduler steps taken (PyTorch's last_epoch: 0 before the
   first scheduler.step()), so resuming needs only t. Values are the closed forms of PyTorch's
   schedulers (which update recursively; the two agree to float rounding). */
DLDEF double dl_lr_step(double base, long step_size, double gamma, long t);   /* StepLR: base * gamma^floor(t/step_size) */
DLDEF double dl_lr_exponential(double base, double gamma, long t);           /* ExponentialLR: base * gamma^t */
/* CosineAnnealingLR: min_lr + (base - min_lr) * (1 + cos(pi * t / t_max)) / 2 (t_max >= 1). */
DLDEF double dl_lr_cosine(double base, long t_max, double min_lr, long t);
/* LinearLR: base * (start + (end - start) * min(t, total) / total), e.g. a warm-up from
   base*start_factor to base over total steps with end_factor = 1. */
DLDEF double dl_lr_linear(double base, double start_factor, double end_factor, long total, long t);

/* A schedule as data, for a training loop that owns the step counter: a linear warm-up from
   base_lr*warmup_start to base_lr over `warmup` steps, then `kind` run on t - warmup (as
   PyTorch's SequentialLR([LinearLR, X], milestones=[warmup])). Zero-init is a constant lr. */
typedef enum dl_lr_kind { DL_LR_CONSTANT = 0, DL_LR_STEP, DL_LR_EXPONENTIAL, DL_LR_COSINE } dl_lr_kind;
typedef struct dl_lr_schedule {
    dl_lr_kind kind;
    double base_lr;
    long step_size;      /* DL_LR_STEP */
    double gamma;        /* DL_LR_STEP, DL_LR_EXPONENTIAL */
    long t_max;          /* DL_LR_COSINE */
    double min_lr;       /* DL_LR_COSINE */
    long warmup;         /* 0: none */
    double warmup_start; /* factor at t = 0 of the warm-up (e.g. 0.1) */
} dl_lr_schedule;
DLDEF double dl_lr_at(const dl_lr_schedule *s, long t);   /* the lr for step t; base_lr if s is invalid */

/* ---- Saving and restoring state -------------------------------------------------------------
   A safetensors file: "__metadata__" holds format "dl_optim", version, kind, every
   hyperparameter ("%.17g"), lr, steps, the parameter count and each parameter's step count
   ("state.<i>.step"); the buffers are F32 tensors named "state.<i>.<buffer>" with PyTorch's
   names (momentum_buffer, square_avg, grad_avg, sum, exp_avg, exp_avg_sq), in the parameter's
   shape. Loading needs an optimizer of the same kind and hyperparameters (lr excepted: it is
   restored) with the same parameter shapes, added in the same order; the parameters' values are
   not stored (save the model for those). */
#ifndef DL_NO_STDIO
DLDEF int dl_optim_save(const dl_optim *opt, const char *path);   /* 0 on success */
DLDEF int dl_optim_load(dl_optim *opt, const char *path);         /* 0 on success; on failure opt is unchanged */
#endif
/* The same bytes in memory: returns the size; writes when out != NULL and capacity >= size. 0 on error. */
DLDEF size_t dl_optim_serialize(const dl_optim *opt, void *out, size_t capacity);
DLDEF int dl_optim_parse(dl_optim *opt, const void *bytes, size_t size);
/* What that file holds, item by item, to embed it in another file (dl_model_save does, with a
   prefix) without writing it out and parsing it back. dl_optim_state_meta: the i-th metadata
   entry (i from 0) into key and value (always NUL-ended); 0, or -1 past the last one or when a
   buffer is too small (48 bytes are always enough). dl_optim_state_tensor: the i-th state
   tensor (borrowed, owned by opt) with its name into name; NULL past the last one. */
DLDEF int dl_optim_state_meta(const dl_optim *opt, int i, char *key, size_t key_size, char *value, size_t value_size);
DLDEF dl_tensor *dl_optim_state_tensor(const dl_optim *opt, int i, char *name, size_t name_size);

/* ---- L-BFGS (torch.optim.LBFGS, without a line search) ----------------------------------------
   Limited-memory BFGS (Nocedal 1980; Liu and Nocedal 1989): each update steps along -H g, where
   H, an estimate of the inverse Hessian, is built from the last history_size pairs of parameter
   and gradient changes (the two-loop recursion). A step needs the loss more than once, so it
   takes a closure that computes it; this is the optimizer of Gatys et al.'s style transfer.

       static float closure(void *user) {            // dl_lbfgs_step zeroes the grads first
           dl_arena_reset(dl_arena_current());
           dl_tensor *loss = dl_mse(dl_linear(x, w, b), y);
           if (!loss || dl_backward(loss) != 0) return NAN;
           return dl_item(loss);
       }
       dl_lbfgs *opt = dl_lbfgs_new(NULL);           // yours: dl_lbfgs_free
       dl_lbfgs_add_params(opt, 2, params);
       for (int i = 0; i < 10; i++) dl_lbfgs_step(opt, closure, NULL);

   One dl_lbfgs_step is one optimizer.step(closure) of PyTorch 1.13: up to max_iter updates,
   stopping early as PyTorch does (max |g| <= tolerance_grad, a step or loss change below
   tolerance_change, max_eval closure calls, or no descent direction). Without a line search
   (PyTorch's default) the first step's first update is scaled by min(1, 1 / sum|g|) * lr, the
   others by lr, and each update costs one closure call. With DL_LINE_SEARCH_STRONG_WOLFE
   (PyTorch's line_search_fn="strong_wolfe", after minFunc) every update searches along the
   direction, starting from that step size, for a point with sufficient decrease (c1 = 1e-4)
   and a flat enough slope (c2 = 0.9), by bracketing and cubic interpolation, in at most 25
   closure calls. State (the history) carries over from step to step. The history vectors are
   allocated as they are first needed, up to 2 * (history_size + 1) vectors of the parameters'
   total size (and 5 more with the line search). Checked against torch.optim.LBFGS's iterates,
   both ways, in tests/test_gan_style.c. */
typedef struct dl_lbfgs dl_lbfgs;
typedef enum dl_line_search {
    DL_LINE_SEARCH_NONE = 0,          /* fixed steps of lr (PyTorch's line_search_fn=None) */
    DL_LINE_SEARCH_STRONG_WOLFE = 1   /* PyTorch's line_search_fn="strong_wolfe" */
} dl_line_search;
/* Every field 0 = the default in brackets (PyTorch's); DL_ZERO asks for a real 0. */
typedef struct dl_lbfgs_opts {
    double lr;                /* [1]; DL_ZERO for 0 */
    int max_iter;             /* updates per dl_lbfgs_step [20] */
    int max_eval;             /* closure calls per step [max_iter * 5 / 4] */
    double tolerance_grad;    /* stop when max |g| <= this [1e-7]; DL_ZERO for 0 */
    double tolerance_change;  /* stop when max |step| or |loss change| is below this [1e-9]; DL_ZERO for 0 */
    int history_size;         /* pairs kept [100] */
    dl_line_search line_search; /* [DL_LINE_SEARCH_NONE] */
} dl_lbfgs_opts;
/* Computes the loss and its gradients (dl_backward) at the current parameters and returns the
   loss; NaN (with dl_error() set) on failure. The grads are zero when it is called. */
typedef float (*dl_lbfgs_closure)(void *user);
DLDEF dl_lbfgs *dl_lbfgs_new(const dl_lbfgs_opts *opts);  /* yours: dl_lbfgs_free; NULL + dl_error() for bad opts */
DLDEF void dl_lbfgs_free(dl_lbfgs *opt);                  /* NULL is fine; the parameters stay */
/* Registers n parameters (borrowed; f32, contiguous, requires_grad, distinct), once, before the
   first step. 0, or -1 + dl_error(). */
DLDEF int dl_lbfgs_add_params(dl_lbfgs *opt, int n, dl_tensor *const *params);
/* One step (see above). Returns the loss of the first closure call, as PyTorch; NaN + dl_error()
   if the closure failed, or for a bad call or out of memory. */
DLDEF float dl_lbfgs_step(dl_lbfgs *opt, dl_lbfgs_closure closure, void *user);
DLDEF long dl_lbfgs_evals(const dl_lbfgs *opt);           /* closure calls so far (PyTorch's func_evals) */
DLDEF long dl_lbfgs_iters(const dl_lbfgs *opt);           /* updates so far (PyTorch's n_iter) */

#ifdef __cplusplus
}
#endif
#endif /* DL_OPTIM_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL_IMPLEMENTATION_ELSEWHERE) && !defined(DL__TENSOR_IMPLEMENTED)
#include "dl_tensor.h"   /* its implementation too, also when it was first included plainly */
#endif

#if defined(DL_IMPLEMENTATION) && !defined(DL__OPTIM_IMPLEMENTED) && !defined(DL_IMPLEMENTATION_ELSEWHERE)
#define DL__OPTIM_IMPLEMENTED

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DL__OPT_MAXBUF 3

/* a*b + c rounded once, as PyTorch's CPU kernels compute `x + alpha*y` (fused by the compiler
   in its AVX2/AVX-512 builds): this is what makes the results equal PyTorch's bits. */
#ifdef DL_OPTIM_NO_FMA
#define DL__FMAF(a, b, c) ((a) * (b) + (c))
#else
#define DL__FMAF(a, b, c) fmaf(a, b, c)
#endif

/* Without -mfma, fmaf is a libm call per element. On x86-64 Linux, gcc and clang can build
   each update loop twice, plain and with FMA instructions, and pick one at load time (ifunc):
   the same bits either way, at the speed of the hardware instruction where there is one.
   Not under ThreadSanitizer, whose runtime is not ready when ifunc resolvers run (the program
   crashes at load time): there the loops call fmaf, with the same bits. */
#if defined(__SANITIZE_THREAD__)
#define DL__OPTIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DL__OPTIM_TSAN 1
#endif
#endif
#if !defined(DL_OPTIM_NO_FMA) && !defined(__FMA__) && !defined(DL__OPTIM_TSAN) && defined(__x86_64__) && defined(__linux__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6) || (defined(__clang__) && __clang_major__ >= 14))
#define DL__OPTIM_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define DL__OPTIM_FMA_CLONES
#endif

typedef struct dl__optim_param {
    dl_tensor *p;                     /* borrowed */
    dl_tensor *buf[DL__OPT_MAXBUF];   /* owned state, in the order of dl__optim_bufnames */
    long step;                        /* updates of this parameter (PyTorch's state['step']) */
} dl__optim_param;

struct dl_optim {
    dl_optim_kind kind;
    double lr, momentum, weight_decay, alpha, eps, beta1, beta2, initial_acc;
    int nesterov, centered;
    double max_norm, clip_value;
    long steps;
    int n, cap;
    dl__optim_param *ps;
#ifdef DL_CUDA
    dl_device device;                 /* where the parameters and the state are */
#endif
};

static const char *const dl__optim_names[5] = {"sgd", "rmsprop", "adagrad", "adam", "adamw"};

DLDEF const char *dl_optim_kind_name(dl_optim_kind kind) {
    return (int)kind >= 0 && (int)kind < 5 ? dl__optim_names[kind] : "unknown";
}

/* The state buffers a kind keeps, by PyTorch's names; NULL for an unused slot. */
static void dl__optim_bufnames(const dl_optim *o, const char *names[DL__OPT_MAXBUF]) {
    names[0] = names[1] = names[2] = NULL;
    switch (o->kind) {
    case DL_OPTIM_SGD: if (o->momentum != 0) names[0] = "momentum_buffer"; break;
    case DL_OPTIM_RMSPROP:
        names[0] = "square_avg";
        if (o->momentum > 0) names[1] = "momentum_buffer";
        if (o->centered) names[2] = "grad_avg";
        break;
    case DL_OPTIM_ADAGRAD: names[0] = "sum"; break;
    case DL_OPTIM_ADAM: case DL_OPTIM_ADAMW: names[0] = "exp_avg"; names[1] = "exp_avg_sq"; break;
    }
}

static int dl__optim_bad(double v) { return !(v - v == 0); }  /* NaN or infinite */

static int dl__optim_unit(const char *fn, const char *what, double v) { /* v in [0, 1) */
    if (dl__optim_bad(v) || v < 0 || v >= 1) { dl_set_error("%s: invalid %s %g (need 0 <= %s < 1)", fn, what, v, what); return 0; }
    return 1;
}
static int dl__optim_nonneg(const char *fn, const char *what, double v) {
    if (dl__optim_bad(v) || v < 0) { dl_set_error("%s: invalid %s %g (need a finite value >= 0)", fn, what, v); return 0; }
    return 1;
}

/* Builds an optimizer from complete hyperparameters (no defaults filled in here: dl_optim_new
   does that, and dl_optim_parse passes a file's exact values). */
static dl_optim *dl__optim_make(dl_optim_kind kind, const char *fn, const dl_optim_opts *h) {
    dl_optim *o;
    if ((int)kind < 0 || (int)kind > DL_OPTIM_ADAMW) { dl_set_error("%s: unknown optimizer kind %d", fn, (int)kind); return NULL; }
    if (!dl__optim_nonneg(fn, "learning rate", h->lr) || !dl__optim_nonneg(fn, "eps", h->eps) ||
        !dl__optim_nonneg(fn, "momentum", h->momentum) || !dl__optim_nonneg(fn, "weight_decay", h->weight_decay) ||
        !dl__optim_nonneg(fn, "initial_accumulator", h->initial_accumulator) ||
        !dl__optim_nonneg(fn, "max_norm", h->max_norm) || !dl__optim_nonneg(fn, "clip_value", h->clip_value))
        return NULL;
    if (kind == DL_OPTIM_RMSPROP && !dl__optim_unit(fn, "alpha", h->alpha)) return NULL;
    if ((kind == DL_OPTIM_ADAM || kind == DL_OPTIM_ADAMW) &&
        (!dl__optim_unit(fn, "beta1", h->beta1) || !dl__optim_unit(fn, "beta2", h->beta2))) return NULL;
    if (kind == DL_OPTIM_SGD && h->nesterov && h->momentum <= 0) { dl_set_error("%s: Nesterov momentum needs momentum > 0", fn); return NULL; }
    o = (dl_optim *)DL_MALLOC(sizeof(dl_optim));
    if (!o) { dl_set_error("%s: out of memory", fn); return NULL; }
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->lr = h->lr;
    o->momentum = h->momentum;
    o->weight_decay = h->weight_decay;
    o->nesterov = h->nesterov != 0;
    o->alpha = h->alpha;
    o->centered = h->centered != 0;
    o->initial_acc = h->initial_accumulator;
    o->beta1 = h->beta1;
    o->beta2 = h->beta2;
    o->eps = kind == DL_OPTIM_SGD ? 0 : h->eps;
    o->max_norm = h->max_norm;
    o->clip_value = h->clip_value;
    return o;
}

DLDEF dl_optim *dl_optim_new(dl_optim_kind kind, const dl_optim_opts *opts) {
    /* Which fields each kind reads: SGD, RMSprop, Adagrad, Adam, AdamW. */
    static const char *const fields[5] = {
        "lr momentum weight_decay nesterov", "lr momentum alpha centered eps", "lr initial_accumulator eps",
        "lr beta1 beta2 eps", "lr weight_decay beta1 beta2 eps"};
    static const double lr0[5] = {1e-2, 1e-2, 1e-2, 1e-3, 1e-3};
    dl_optim_opts h;
    const char *used;
    if ((int)kind < 0 || (int)kind > DL_OPTIM_ADAMW) { dl_set_error("dl_optim_new: unknown optimizer kind %d", (int)kind); return NULL; }
    memset(&h, 0, sizeof h);
    if (opts) h = *opts;
    used = fields[kind];
#define DL__OPT_UNUSED(f)                                                                              \
    if (h.f != 0 && !strstr(used, #f)) {                                                               \
        dl_set_error("dl_optim_new: %s does not use " #f " (it takes: %s)", dl_optim_kind_name(kind), used); \
        return NULL;                                                                                   \
    }
    DL__OPT_UNUSED(momentum) DL__OPT_UNUSED(weight_decay) DL__OPT_UNUSED(nesterov) DL__OPT_UNUSED(alpha)
    DL__OPT_UNUSED(centered) DL__OPT_UNUSED(initial_accumulator) DL__OPT_UNUSED(beta1) DL__OPT_UNUSED(beta2)
    DL__OPT_UNUSED(eps)
#undef DL__OPT_UNUSED
#define DL__OPT_DEFAULT(f, v) if (h.f == 0) h.f = (v); else if (h.f == DL_ZERO) h.f = 0;
    DL__OPT_DEFAULT(lr, lr0[kind])
    if (kind == DL_OPTIM_RMSPROP) { DL__OPT_DEFAULT(alpha, 0.99) }
    if (kind == DL_OPTIM_ADAM || kind == DL_OPTIM_ADAMW) { DL__OPT_DEFAULT(beta1, 0.9) DL__OPT_DEFAULT(beta2, 0.999) }
    if (kind == DL_OPTIM_ADAMW) { DL__OPT_DEFAULT(weight_decay, 1e-2) }
    if (kind != DL_OPTIM_SGD) { DL__OPT_DEFAULT(eps, kind == DL_OPTIM_ADAGRAD ? 1e-10 : 1e-8) }
#undef DL__OPT_DEFAULT
    return dl__optim_make(kind, "dl_optim_new", &h);
}

static dl_optim *dl__optim_lr_only(dl_optim_kind kind, double lr) {
    dl_optim_opts o;
    memset(&o, 0, sizeof o);
    o.lr = lr;
    if (lr == 0) { dl_set_error("dl_%s: learning rate 0 (need > 0)", dl_optim_kind_name(kind)); return NULL; }
    return dl_optim_new(kind, &o);
}
DLDEF dl_optim *dl_sgd(double lr) { return dl__optim_lr_only(DL_OPTIM_SGD, lr); }
DLDEF dl_optim *dl_rmsprop(double lr) { return dl__optim_lr_only(DL_OPTIM_RMSPROP, lr); }
DLDEF dl_optim *dl_adagrad(double lr) { return dl__optim_lr_only(DL_OPTIM_ADAGRAD, lr); }
DLDEF dl_optim *dl_adam(double lr) { return dl__optim_lr_only(DL_OPTIM_ADAM, lr); }
DLDEF dl_optim *dl_adamw(double lr) { return dl__optim_lr_only(DL_OPTIM_ADAMW, lr); }

DLDEF void dl_optim_free(dl_optim *o) {
    int i, k;
    if (!o) return;
    for (i = 0; i < o->n; i++)
        for (k = 0; k < DL__OPT_MAXBUF; k++) dl_tensor_free(o->ps[i].buf[k]);
    DL_FREE(o->ps);
    DL_FREE(o);
}

DLDEF int dl_optim_add_params(dl_optim *o, int n, dl_tensor *const *params) {
    const char *names[DL__OPT_MAXBUF];
    dl__optim_param *ps;
    int i, j, k;
    if (!o || n < 0 || (n > 0 && !params)) { dl_set_error("dl_optim_add_params: NULL optimizer or parameter list"); return -1; }
    for (i = 0; i < n; i++) {
        dl_tensor *t = params[i];
        if (!t) { dl_set_error("dl_optim_add_params: parameter %d is NULL", i); return -1; }
#ifdef DL_CUDA
        if (t->dtype != DL_DTYPE_F32 || !dl_is_contiguous(t)) {
            dl_set_error("dl_optim_add_params: parameter %d must be a contiguous f32 tensor", i);
            return -1;
        }
        if (t->device != (o->n ? o->device : params[0]->device)) {
            dl_set_error("dl_optim_add_params: parameter %d is on the %s, the optimizer's parameters on the %s: one optimizer per "
                         "device", i, dl_device_name(t->device), dl_device_name(o->n ? o->device : params[0]->device));
            return -1;
        }
#else
        if (t->dtype != DL_DTYPE_F32 || t->device != DL_DEVICE_CPU || !dl_is_contiguous(t)) {
            dl_set_error("dl_optim_add_params: parameter %d must be a contiguous f32 CPU tensor", i);
            return -1;
        }
#endif
        if (!t->requires_grad) { dl_set_error("dl_optim_add_params: parameter %d does not require a gradient", i); return -1; }
        for (j = 0; j < o->n; j++)
            if (o->ps[j].p == t) { dl_set_error("dl_optim_add_params: parameter %d is already in the optimizer", i); return -1; }
        for (j = 0; j < i; j++)
            if (params[j] == t) { dl_set_error("dl_optim_add_params: parameter %d appears twice", i); return -1; }
    }
    if (o->n + n > o->cap) {
        int cap = o->n + n;
        ps = (dl__optim_param *)DL_MALLOC((size_t)cap * sizeof *ps + 1);
        if (!ps) { dl_set_error("dl_optim_add_params: out of memory"); return -1; }
        if (o->n) memcpy(ps, o->ps, (size_t)o->n * sizeof *ps);
        DL_FREE(o->ps);
        o->ps = ps;
        o->cap = cap;
    }
    dl__optim_bufnames(o, names);
    for (i = 0; i < n; i++) {
        dl__optim_param *q = &o->ps[o->n + i];
        memset(q, 0, sizeof *q);
        q->p = params[i];
        for (k = 0; k < DL__OPT_MAXBUF; k++) {
            if (!names[k]) continue;
            q->buf[k] = dl_tensor_new(DL_DTYPE_F32, params[i]->ndim, params[i]->shape);
#ifdef DL_CUDA
            if (q->buf[k] && params[i]->device && dl_tensor_move(q->buf[k], params[i]->device) != 0) {
                char msg[400];
                int m;
                snprintf(msg, sizeof msg, "%.380s", dl_error());
                for (j = 0; j <= i; j++)
                    for (m = 0; m < DL__OPT_MAXBUF; m++) { dl_tensor_free(o->ps[o->n + j].buf[m]); o->ps[o->n + j].buf[m] = NULL; }
                dl_set_error("dl_optim_add_params: optimizer state on the %s: %s", dl_device_name(params[i]->device), msg);
                return -1;
            }
#endif
            if (!q->buf[k]) {
                int m;
                for (j = 0; j <= i; j++)
                    for (m = 0; m < DL__OPT_MAXBUF; m++) { dl_tensor_free(o->ps[o->n + j].buf[m]); o->ps[o->n + j].buf[m] = NULL; }
                dl_set_error("dl_optim_add_params: out of memory for optimizer state");
                return -1;
            }
            if (o->kind == DL_OPTIM_ADAGRAD) dl_fill(q->buf[k], (float)o->initial_acc);
        }
    }
#ifdef DL_CUDA
    if (o->n == 0 && n > 0) o->device = params[0]->device;
#endif
    o->n += n;
    return 0;
}

DLDEF void dl_optim_zero_grad(dl_optim *o) {
    int i;
    if (!o) return;
    for (i = 0; i < o->n; i++) dl_zero_grad(o->ps[i].p);
}

DLDEF double dl_optim_lr(const dl_optim *o) { return o ? o->lr : 0; }
DLDEF int dl_optim_set_lr(dl_optim *o, double lr) {
    if (!o) { dl_set_error("dl_optim_set_lr: NULL optimizer"); return -1; }
    if (!dl__optim_nonneg("dl_optim_set_lr", "learning rate", lr)) return -1;
    o->lr = lr;
    return 0;
}
DLDEF long dl_optim_steps(const dl_optim *o) { return o ? o->steps : 0; }
DLDEF dl_optim_kind dl_optim_type(const dl_optim *o) { return o ? o->kind : DL_OPTIM_SGD; }
DLDEF int dl_optim_num_params(const dl_optim *o) { return o ? o->n : 0; }

DLDEF int dl_optim_set_clip(dl_optim *o, double max_norm, double clip_value) {
    if (!o) { dl_set_error("dl_optim_set_clip: NULL optimizer"); return -1; }
    if (dl__optim_bad(max_norm) || max_norm < 0 || dl__optim_bad(clip_value) || clip_value < 0) {
        dl_set_error("dl_optim_set_clip: invalid max_norm %g or clip_value %g (need >= 0)", max_norm, clip_value);
        return -1;
    }
    o->max_norm = max_norm;
    o->clip_value = clip_value;
    return 0;
}

/* ---- Clipping ---- */

/* The global L2 norm, accumulated in double in a fixed order (same bits on every run). */
static float dl__grad_norm(int n, dl_tensor *const *ts, size_t stride) {
    double total = 0;
    int i;
    size_t j;
    for (i = 0; i < n; i++) {
        const dl_tensor *t = *(dl_tensor *const *)((const char *)ts + (size_t)i * stride);
        if (!t || !t->grad) continue;
        for (j = 0; j < t->numel; j++) total += (double)t->grad[j] * t->grad[j];
    }
    return (float)sqrt(total);
}
static void dl__grad_scale(int n, dl_tensor *const *ts, size_t stride, float total, double max_norm) {
    /* torch: clip_coef = max_norm / (total + 1e-6), clamped to 1, multiplied in always (float). */
    float coef = (float)max_norm / (total + 1e-6f);
    int i;
    size_t j;
    if (coef > 1.0f) coef = 1.0f;
    for (i = 0; i < n; i++) {
        dl_tensor *t = *(dl_tensor *const *)((const char *)ts + (size_t)i * stride);
        if (!t || !t->grad) continue;
        for (j = 0; j < t->numel; j++) t->grad[j] *= coef;
    }
}
static void dl__grad_clamp(int n, dl_tensor *const *ts, size_t stride, double clip) {
    float c = (float)clip;
    int i;
    size_t j;
    for (i = 0; i < n; i++) {
        dl_tensor *t = *(dl_tensor *const *)((const char *)ts + (size_t)i * stride);
        if (!t || !t->grad) continue;
        for (j = 0; j < t->numel; j++) {
            float g = t->grad[j];
            t->grad[j] = g < -c ? -c : g > c ? c : g;   /* NaN stays NaN, as torch.clamp */
        }
    }
}

DLDEF float dl_clip_grad_norm(int n, dl_tensor *const *params, double max_norm) {
    float total;
    int i;
    if (n < 0 || (n > 0 && !params) || dl__optim_bad(max_norm) || max_norm < 0) {
        dl_set_error("dl_clip_grad_norm: invalid arguments (n %d, max_norm %g)", n, max_norm);
        return -1;
    }
    for (i = 0; i < n; i++)
        if (!params[i]) { dl_set_error("dl_clip_grad_norm: parameter %d is NULL", i); return -1; }
#ifdef DL_CUDA
    {
        int gpu = 0, cpu = 0;
        for (i = 0; i < n; i++)
            if (params[i]->grad) { if (params[i]->device) gpu++; else cpu++; }
        if (gpu && cpu) { dl_set_error("dl_clip_grad_norm: gradients on the CPU and on the GPU: clip each device's apart"); return -1; }
        if (gpu) return dl__cuda_clip_grad_norm(n, params, sizeof(dl_tensor *), max_norm, &total) == 0 ? total : -1.0f;
    }
#endif
    total = dl__grad_norm(n, params, sizeof(dl_tensor *));
    dl__grad_scale(n, params, sizeof(dl_tensor *), total, max_norm);
    return total;
}

DLDEF void dl_clip_grad_value(int n, dl_tensor *const *params, double clip) {
    if (n <= 0 || !params || dl__optim_bad(clip) || clip < 0) return;
#ifdef DL_CUDA
    {   /* each tensor where it is */
        int i;
        for (i = 0; i < n; i++) {
            if (!params[i]) continue;
            if (!params[i]->device) dl__grad_clamp(1, params + i, sizeof(dl_tensor *), clip);
            else if (params[i]->grad) dl__cuda_clip_grad_value(params[i]->grad, params[i]->numel, (float)clip);
        }
        return;
    }
#endif
    dl__grad_clamp(n, params, sizeof(dl_tensor *), clip);
}

/* ---- The update rules (PyTorch 1.13's _single_tensor_* loops, element by element) ----
   Scalars are rounded to float where PyTorch passes a Python float to a float tensor op;
   a + s*b, a + s*b*c and a + s*b/c are evaluated in that order, as PyTorch's CPU kernels do. */

DL__OPTIM_FMA_CLONES static void dl__sgd_update(const dl_optim *o, dl__optim_param *q) {
    float *p = dl_f32(q->p), *g = q->p->grad, *v = q->buf[0] ? dl_f32(q->buf[0]) : NULL;
    float wd = (float)o->weight_decay, mu = (float)o->momentum, neg_lr = (float)-o->lr;
    float damp = (float)(1.0 - 0.0); /* dampening 0 */
    size_t i, n = q->p->numel;
    for (i = 0; i < n; i++) {
        float d = g[i];
        if (o->weight_decay != 0) d = DL__FMAF(wd, p[i], d);
        if (v) {
            if (q->step == 0) v[i] = d;
            else v[i] = DL__FMAF(damp, d, v[i] * mu);
            d = o->nesterov ? DL__FMAF(mu, v[i], d) : v[i];
        }
        p[i] = DL__FMAF(neg_lr, d, p[i]);
    }
}

/* RMSprop's update of elements [i, n) in plain C (FMA clone where available). */
DL__OPTIM_FMA_CLONES static void dl__rmsprop_scalar(const dl_optim *o, dl__optim_param *q, size_t i) {
    float *p = dl_f32(q->p), *g = q->p->grad, *s = dl_f32(q->buf[0]);
    float *b = q->buf[1] ? dl_f32(q->buf[1]) : NULL, *a = q->buf[2] ? dl_f32(q->buf[2]) : NULL;
    float alpha = (float)o->alpha, one_m = (float)(1.0 - o->alpha), eps = (float)o->eps;
    float mu = (float)o->momentum, neg_lr = (float)-o->lr;
    size_t n = q->p->numel;
    for (; i < n; i++) {
        float gi = g[i], d;
        s[i] = DL__FMAF(one_m * gi, gi, s[i] * alpha);
        if (a) {
            a[i] = DL__FMAF(one_m, gi, a[i] * alpha);
            d = sqrtf(DL__FMAF(-1.0f * a[i], a[i], s[i]));
        } else {
            d = sqrtf(s[i]);
        }
        d = d + eps;
        if (b) {
            b[i] = b[i] * mu + 1.0f * gi / d;
            p[i] = DL__FMAF(neg_lr, b[i], p[i]);
        } else {
            p[i] = p[i] + neg_lr * gi / d;
        }
    }
}

/* RMSprop without momentum (plain or centered) on 16 or 8 lanes, with the scalar loop's bits
   (see DL__ADAM_SIMD below); a = NULL when not centered. Returns the elements done. */
#if defined(DL__X86_SIMD) && !defined(DL_OPTIM_NO_FMA)
#define DL__RMSPROP_SIMD(NAME, TARGET, VEC, W, SET1, LOAD, STORE, MUL, ADD, DIV, SQRT, FMADD, FNMADD)            \
    TARGET static size_t NAME(float *p, const float *g, float *s, float *a, size_t n, const float *k) {           \
        VEC alpha = SET1(k[0]), one_m = SET1(k[1]), eps = SET1(k[2]), neg_lr = SET1(k[3]);                      \
        size_t i;                                                                                               \
        for (i = 0; i + W <= n; i += W) {                                                                       \
            VEC gi = LOAD(g + i), si = FMADD(MUL(one_m, gi), gi, MUL(LOAD(s + i), alpha)), d;                   \
            STORE(s + i, si);                                                                                   \
            if (a) {                                                                                            \
                VEC ai = FMADD(one_m, gi, MUL(LOAD(a + i), alpha));                                             \
                STORE(a + i, ai);                                                                               \
                d = SQRT(FNMADD(ai, ai, si));                                                                   \
            } else {                                                                                            \
                d = SQRT(si);                                                                                   \
            }                                                                                                   \
            STORE(p + i, ADD(LOAD(p + i), DIV(MUL(neg_lr, gi), ADD(d, eps))));                                  \
        }                                                                                                       \
        return i;                                                                                               \
    }
#define DL__SQRT512(v) _mm512_maskz_sqrt_ps((__mmask16)0xFFFF, v)   /* g++ warns about _mm512_sqrt_ps */
DL__RMSPROP_SIMD(dl__rmsprop_avx512, DL__TARGET_AVX512, __m512, 16, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
                 _mm512_mul_ps, _mm512_add_ps, _mm512_div_ps, DL__SQRT512, _mm512_fmadd_ps, _mm512_fnmadd_ps)
DL__RMSPROP_SIMD(dl__rmsprop_avx2, DL__TARGET_AVX2, __m256, 8, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
                 _mm256_mul_ps, _mm256_add_ps, _mm256_div_ps, _mm256_sqrt_ps, _mm256_fmadd_ps, _mm256_fnmadd_ps)
static int dl__optim_simd(void);
#endif

static void dl__rmsprop_update(const dl_optim *o, dl__optim_param *q) {
    size_t i = 0;
#if defined(DL__X86_SIMD) && !defined(DL_OPTIM_NO_FMA)
    if (!q->buf[1]) {   /* no momentum buffer */
        float k[4];
        float *a = q->buf[2] ? dl_f32(q->buf[2]) : NULL;
        k[0] = (float)o->alpha; k[1] = (float)(1.0 - o->alpha); k[2] = (float)o->eps; k[3] = (float)-o->lr;
        if (dl__optim_simd() == 2) i = dl__rmsprop_avx512(dl_f32(q->p), q->p->grad, dl_f32(q->buf[0]), a, q->p->numel, k);
        else if (dl__optim_simd() == 1) i = dl__rmsprop_avx2(dl_f32(q->p), q->p->grad, dl_f32(q->buf[0]), a, q->p->numel, k);
    }
#endif
    dl__rmsprop_scalar(o, q, i);
}

DL__OPTIM_FMA_CLONES static void dl__adagrad_update(const dl_optim *o, dl__optim_param *q) {
    float *p = dl_f32(q->p), *g = q->p->grad, *s = dl_f32(q->buf[0]);
    float eps = (float)o->eps, neg_clr = (float)-o->lr; /* lr_decay 0: clr = lr */
    size_t i, n = q->p->numel;
    for (i = 0; i < n; i++) {
        float gi = g[i];
        s[i] = DL__FMAF(1.0f * gi, gi, s[i]);
        p[i] = p[i] + neg_clr * gi / (sqrtf(s[i]) + eps);
    }
}

/* Adam's update of elements [i, n) in plain C (FMA clone where available). */
DL__OPTIM_FMA_CLONES static void dl__adam_scalar(float *p, const float *g, float *m, float *v, size_t i, size_t n,
                                                 const float *k, int adamw) {
    /* k: b1, b2, 1-b1, 1-b2, -lr/bc1, sqrt(bc2), eps, 1-lr*wd */
    for (; i < n; i++) {
        float gi = g[i];
        if (adamw) p[i] = p[i] * k[7];
        m[i] = DL__FMAF(k[2], gi, m[i] * k[0]);
        v[i] = DL__FMAF(k[3] * gi, gi, v[i] * k[1]);
        p[i] = p[i] + k[4] * m[i] / (sqrtf(v[i]) / k[5] + k[6]);
    }
}

/* The same operations on 16 or 8 lanes: IEEE sqrt, division and fused multiply-add give each
   element the bits of the scalar loop (which compilers do not vectorize at -O2). */
#if defined(DL__X86_SIMD) && !defined(DL_OPTIM_NO_FMA)
#define DL__ADAM_SIMD(NAME, TARGET, VEC, W, SET1, LOAD, STORE, MUL, ADD, DIV, SQRT, FMADD)              \
    TARGET static size_t NAME(float *p, const float *g, float *m, float *v, size_t n, const float *k, int adamw) { \
        VEC b1 = SET1(k[0]), b2 = SET1(k[1]), c1 = SET1(k[2]), c2 = SET1(k[3]), step = SET1(k[4]);              \
        VEC bc2 = SET1(k[5]), eps = SET1(k[6]), decay = SET1(k[7]);                                             \
        size_t i;                                                                                               \
        for (i = 0; i + W <= n; i += W) {                                                                       \
            VEC gi = LOAD(g + i), pi = LOAD(p + i), mi, vi;                                                     \
            if (adamw) pi = MUL(pi, decay);                                                                     \
            mi = FMADD(c1, gi, MUL(LOAD(m + i), b1));                                                           \
            vi = FMADD(MUL(c2, gi), gi, MUL(LOAD(v + i), b2));                                                  \
            STORE(m + i, mi);                                                                                   \
            STORE(v + i, vi);                                                                                   \
            STORE(p + i, ADD(pi, DIV(MUL(step, mi), ADD(DIV(SQRT(vi), bc2), eps))));                            \
        }                                                                                                       \
        return i;                                                                                               \
    }
DL__ADAM_SIMD(dl__adam_avx512, DL__TARGET_AVX512, __m512, 16, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
              _mm512_mul_ps, _mm512_add_ps, _mm512_div_ps, DL__SQRT512, _mm512_fmadd_ps)
DL__ADAM_SIMD(dl__adam_avx2, DL__TARGET_AVX2, __m256, 8, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
              _mm256_mul_ps, _mm256_add_ps, _mm256_div_ps, _mm256_sqrt_ps, _mm256_fmadd_ps)
/* Not cached in a static: two threads' first calls would race on it (__builtin_cpu_supports
   only reads what the startup code filled in). */
static int dl__optim_simd(void) {   /* 2: AVX-512, 1: AVX2+FMA, 0: neither */
    return __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
}
#endif

/* One Adam update of a parameter, cut into chunks that threads share: every element's update
   is independent, so any split gives the same bits. */
#define DL__ADAM_CHUNK 16384   /* elements per task (a multiple of every SIMD width) */
typedef struct dl__adam_job {
    float *p, *m, *v, k[8];
    const float *g;
    size_t n;
    int adamw;
} dl__adam_job;

static void dl__adam_task(void *ctx, int task) {
    const dl__adam_job *j = (const dl__adam_job *)ctx;
    size_t lo = (size_t)task * DL__ADAM_CHUNK, n = j->n - lo < DL__ADAM_CHUNK ? j->n - lo : DL__ADAM_CHUNK, i = 0;
    float *p = j->p + lo, *m = j->m + lo, *v = j->v + lo;
    const float *g = j->g + lo;
#if defined(DL__X86_SIMD) && !defined(DL_OPTIM_NO_FMA)
    if (dl__optim_simd() == 2) i = dl__adam_avx512(p, g, m, v, n, j->k, j->adamw);
    else if (dl__optim_simd() == 1) i = dl__adam_avx2(p, g, m, v, n, j->k, j->adamw);
#endif
    dl__adam_scalar(p, g, m, v, i, n, j->k, j->adamw);
}

static void dl__adam_update(const dl_optim *o, dl__optim_param *q) {
    dl__adam_job j;
    double t = (double)q->step; /* already incremented */
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    int tasks;
    j.p = dl_f32(q->p); j.g = q->p->grad; j.m = dl_f32(q->buf[0]); j.v = dl_f32(q->buf[1]);
    j.n = q->p->numel;
    j.adamw = o->kind == DL_OPTIM_ADAMW;
    j.k[0] = (float)o->beta1; j.k[1] = (float)o->beta2;
    j.k[2] = (float)(1.0 - o->beta1); j.k[3] = (float)(1.0 - o->beta2);
    j.k[4] = (float)-(o->lr / bc1); j.k[5] = (float)sqrt(bc2); j.k[6] = (float)o->eps;
    j.k[7] = (float)(1.0 - o->lr * o->weight_decay);
    tasks = (int)((j.n + DL__ADAM_CHUNK - 1) / DL__ADAM_CHUNK);
    if (tasks <= 1) dl__adam_task(&j, 0);
    else dl_parallel_for(tasks, dl__adam_task, &j);
}

#ifdef DL_CUDA
/* dl_optim_step with the parameters on the GPU: the same clipping, step counters and float
   constants as the CPU loops above, each parameter's update one kernel (dl_cuda.cu). */
static int dl__optim_step_device(dl_optim *o) {
    int i, k;
    if (o->max_norm > 0 && dl__cuda_clip_grad_norm(o->n, &o->ps[0].p, sizeof(dl__optim_param), o->max_norm, NULL) != 0) return -1;
    if (o->clip_value > 0)
        for (i = 0; i < o->n; i++)
            if (o->ps[i].p->grad && dl__cuda_clip_grad_value(o->ps[i].p->grad, o->ps[i].p->numel, (float)o->clip_value) != 0) return -1;
    for (i = 0; i < o->n; i++) {
        dl__optim_param *q = &o->ps[i];
        dl__cuda_optim_args a;
        if (!q->p->grad) continue;
        memset(&a, 0, sizeof a);
        a.kind = o->kind == DL_OPTIM_ADAMW ? (int)DL_OPTIM_ADAM : (int)o->kind;
        a.n = q->p->numel;
        a.p = (float *)q->p->data;
        a.g = q->p->grad;
        for (k = 0; k < DL__OPT_MAXBUF; k++) a.buf[k] = q->buf[k] ? (float *)q->buf[k]->data : NULL;
#ifdef DL_OPTIM_NO_FMA
        a.flags |= DL__OPTF_NOFMA;
#endif
        switch (o->kind) {
        case DL_OPTIM_SGD:   /* as dl__sgd_update; the step counts after the update */
            a.k[0] = (float)o->weight_decay; a.k[1] = (float)o->momentum; a.k[2] = (float)-o->lr; a.k[3] = (float)(1.0 - 0.0);
            if (o->weight_decay != 0) a.flags |= DL__OPTF_WD;
            if (q->step == 0) a.flags |= DL__OPTF_FIRST;
            if (o->nesterov) a.flags |= DL__OPTF_NESTEROV;
            break;
        case DL_OPTIM_RMSPROP:   /* as dl__rmsprop_scalar */
            q->step++;
            a.k[0] = (float)o->alpha; a.k[1] = (float)(1.0 - o->alpha); a.k[2] = (float)o->eps; a.k[3] = (float)o->momentum;
            a.k[4] = (float)-o->lr;
            break;
        case DL_OPTIM_ADAGRAD:   /* as dl__adagrad_update */
            q->step++;
            a.k[0] = (float)o->eps; a.k[1] = (float)-o->lr;
            break;
        case DL_OPTIM_ADAM: case DL_OPTIM_ADAMW: {   /* as dl__adam_update */
            double t, bc1, bc2;
            q->step++;
            t = (double)q->step;
            bc1 = 1.0 - pow(o->beta1, t);
            bc2 = 1.0 - pow(o->beta2, t);
            a.k[0] = (float)o->beta1; a.k[1] = (float)o->beta2;
            a.k[2] = (float)(1.0 - o->beta1); a.k[3] = (float)(1.0 - o->beta2);
            a.k[4] = (float)-(o->lr / bc1); a.k[5] = (float)sqrt(bc2); a.k[6] = (float)o->eps;
            a.k[7] = (float)(1.0 - o->lr * o->weight_decay);
            if (o->kind == DL_OPTIM_ADAMW) a.flags |= DL__OPTF_ADAMW;
            break;
        }
        }
        if (dl__cuda_optim_update(&a) != 0) return -1;
        if (o->kind == DL_OPTIM_SGD) q->step++;
    }
    o->steps++;
    return 0;
}
#endif

DLDEF int dl_optim_move(dl_optim *o, dl_device device) {
    if (!o) { dl_set_error("dl_optim_move: NULL optimizer"); return -1; }
#ifdef DL_CUDA
    {
        int i, k, j, m;
        if (device == o->device) return 0;
        for (i = 0; i < o->n; i++)
            for (k = 0; k < DL__OPT_MAXBUF; k++) {
                char msg[400];
                if (!o->ps[i].buf[k] || dl_tensor_move(o->ps[i].buf[k], device) == 0) continue;
                snprintf(msg, sizeof msg, "%.380s", dl_error());
                for (j = 0; j <= i; j++)   /* put back what moved */
                    for (m = 0; m < (j < i ? DL__OPT_MAXBUF : k); m++)
                        if (o->ps[j].buf[m]) dl_tensor_move(o->ps[j].buf[m], o->device);
                dl_set_error("dl_optim_move: %s", msg);
                return -1;
            }
        if (o->n == 0 && device != DL_DEVICE_CPU && dl_cuda_init() != 0) {
            char msg[400];
            snprintf(msg, sizeof msg, "%.380s", dl_error());
            dl_set_error("dl_optim_move: %s", msg);
            return -1;
        }
        if (device != DL_DEVICE_CPU && device != DL_DEVICE_CUDA) { dl_set_error("dl_optim_move: unknown device %d", (int)device); return -1; }
        o->device = device;
        return 0;
    }
#else
    if (device == DL_DEVICE_CPU) return 0;
    if (device != DL_DEVICE_CUDA) { dl_set_error("dl_optim_move: unknown device %d", (int)device); return -1; }
    {
        char msg[400];
        dl_cuda_init();   /* fails, and says why: no DL_CUDA in this build */
        snprintf(msg, sizeof msg, "%.380s", dl_error());
        dl_set_error("dl_optim_move: %s", msg);
        return -1;
    }
#endif
}

DLDEF int dl_optim_step(dl_optim *o) {
    int i;
    if (!o) { dl_set_error("dl_optim_step: NULL optimizer"); return -1; }
    if (o->n == 0) { o->steps++; return 0; }
#ifdef DL_CUDA
    for (i = 0; i < o->n; i++)
        if (o->ps[i].p->device != o->device) {
            dl_set_error("dl_optim_step: parameter %d is on the %s and the optimizer's state on the %s: move them together "
                         "(dl_optim_move, or dl_model_move for a model)", i, dl_device_name(o->ps[i].p->device), dl_device_name(o->device));
            return -1;
        }
    if (o->device) return dl__optim_step_device(o);
#endif
    if (o->max_norm > 0) {
        float total = dl__grad_norm(o->n, &o->ps[0].p, sizeof(dl__optim_param));
        dl__grad_scale(o->n, &o->ps[0].p, sizeof(dl__optim_param), total, o->max_norm);
    }
    if (o->clip_value > 0) dl__grad_clamp(o->n, &o->ps[0].p, sizeof(dl__optim_param), o->clip_value);
    for (i = 0; i < o->n; i++) {
        dl__optim_param *q = &o->ps[i];
        if (!q->p->grad) continue;
        switch (o->kind) {
        case DL_OPTIM_SGD: dl__sgd_update(o, q); q->step++; break;
        case DL_OPTIM_RMSPROP: q->step++; dl__rmsprop_update(o, q); break;
        case DL_OPTIM_ADAGRAD: q->step++; dl__adagrad_update(o, q); break;
        case DL_OPTIM_ADAM: case DL_OPTIM_ADAMW: q->step++; dl__adam_update(o, q); break;
        }
    }
    o->steps++;
    return 0;
}

/* ---- Schedules ---- */

DLDEF double dl_lr_step(double base, long step_size, double gamma, long t) {
    if (step_size < 1 || t < 0) return base;
    return base * pow(gamma, (double)(t / step_size));
}
DLDEF double dl_lr_exponential(double base, double gamma, long t) {
    return t < 0 ? base : base * pow(gamma, (double)t);
}
DLDEF double dl_lr_cosine(double base, long t_max, double min_lr, long t) {
    const double pi = 3.14159265358979323846;
    if (t_max < 1 || t < 0) return base;
    return min_lr + (base - min_lr) * (1.0 + cos(pi * (double)t / (double)t_max)) / 2.0;
}
DLDEF double dl_lr_linear(double base, double start_factor, double end_factor, long total, long t) {
    if (total < 1 || t >= total) return base * end_factor;
    if (t < 0) t = 0;
    return base * (start_factor + (end_factor - start_factor) * (double)t / (double)total);
}
DLDEF double dl_lr_at(const dl_lr_schedule *s, long t) {
    if (!s) return 0;
    if (t < 0) t = 0;
    if (s->warmup > 0) {
        if (t < s->warmup) return dl_lr_linear(s->base_lr, s->warmup_start, 1.0, s->warmup, t);
        t -= s->warmup;
    }
    switch (s->kind) {
    case DL_LR_STEP: return dl_lr_step(s->base_lr, s->step_size, s->gamma, t);
    case DL_LR_EXPONENTIAL: return dl_lr_exponential(s->base_lr, s->gamma, t);
    case DL_LR_COSINE: return dl_lr_cosine(s->base_lr, s->t_max, s->min_lr, t);
    default: return s->base_lr;
    }
}

/* ---- State files ---- */

#define DL__OPT_NHYPER 12
/* Every hyperparameter as a metadata string, plus the counters. Returns the number of entries
   written into keys/values (text lives in buf, DL__OPT_NHYPER * 32 bytes). */
static int dl__optim_hyper(const dl_optim *o, const char **keys, const char **values, char *buf) {
    static const char *const k[DL__OPT_NHYPER] = {"format", "version", "kind", "momentum", "weight_decay",
        "nesterov", "alpha", "centered", "eps", "beta1", "beta2", "initial_accumulator"};
    int i;
    for (i = 0; i < DL__OPT_NHYPER; i++) { keys[i] = k[i]; values[i] = buf + 32 * i; }
    snprintf(buf + 32 * 0, 32, "dl_optim");
    snprintf(buf + 32 * 1, 32, "1");
    snprintf(buf + 32 * 2, 32, "%s", dl_optim_kind_name(o->kind));
    snprintf(buf + 32 * 3, 32, "%.17g", o->momentum);
    snprintf(buf + 32 * 4, 32, "%.17g", o->weight_decay);
    snprintf(buf + 32 * 5, 32, "%d", o->nesterov);
    snprintf(buf + 32 * 6, 32, "%.17g", o->alpha);
    snprintf(buf + 32 * 7, 32, "%d", o->centered);
    snprintf(buf + 32 * 8, 32, "%.17g", o->eps);
    snprintf(buf + 32 * 9, 32, "%.17g", o->beta1);
    snprintf(buf + 32 * 10, 32, "%.17g", o->beta2);
    snprintf(buf + 32 * 11, 32, "%.17g", o->initial_acc);
    return DL__OPT_NHYPER;
}

/* Everything dl_safetensors_save/serialize needs, in one allocation. */
typedef struct dl__optim_file {
    int n_t, n_meta;
    const char **names, **keys, **values;
    dl_tensor **ts;
    char *text;
} dl__optim_file;

static int dl__optim_file_make(const dl_optim *o, dl__optim_file *f, void **mem) {
    const char *bn[DL__OPT_MAXBUF];
    int nb = 0, k, i, m, t;
    size_t ntext, bytes;
    char *text;
    dl__optim_bufnames(o, bn);
    for (k = 0; k < DL__OPT_MAXBUF; k++) nb += bn[k] != NULL;
    f->n_t = o->n * nb;
    f->n_meta = DL__OPT_NHYPER + 5 + o->n;   /* + lr, steps, n_params, max_norm, clip_value, per-param steps */
    ntext = (size_t)DL__OPT_NHYPER * 32 + 5 * 32 + (size_t)o->n * (48 + 32) + (size_t)f->n_t * 48;
    bytes = (size_t)(f->n_t * 2 + f->n_meta * 2 + 1) * sizeof(char *) + (size_t)f->n_t * sizeof(dl_tensor *) + ntext;
    *mem = DL_MALLOC(bytes);
    if (!*mem) { dl_set_error("dl_optim_save: out of memory"); return -1; }
    f->names = (const char **)*mem;
    f->keys = f->names + f->n_t;
    f->values = f->keys + f->n_meta;
    f->ts = (dl_tensor **)(f->values + f->n_meta + 1);
    text = (char *)(f->ts + f->n_t);
    m = dl__optim_hyper(o, f->keys, f->values, text);
    text += DL__OPT_NHYPER * 32;
    f->keys[m] = "lr"; snprintf(text, 32, "%.17g", o->lr); f->values[m++] = text; text += 32;
    f->keys[m] = "steps"; snprintf(text, 32, "%ld", o->steps); f->values[m++] = text; text += 32;
    f->keys[m] = "n_params"; snprintf(text, 32, "%d", o->n); f->values[m++] = text; text += 32;
    f->keys[m] = "max_norm"; snprintf(text, 32, "%.17g", o->max_norm); f->values[m++] = text; text += 32;
    f->keys[m] = "clip_value"; snprintf(text, 32, "%.17g", o->clip_value); f->values[m++] = text; text += 32;
    for (i = 0, t = 0; i < o->n; i++) {
        snprintf(text, 48, "state.%d.step", i); f->keys[m] = text; text += 48;
        snprintf(text, 32, "%ld", o->ps[i].step); f->values[m++] = text; text += 32;
        for (k = 0; k < DL__OPT_MAXBUF; k++) {
            if (!bn[k]) continue;
            snprintf(text, 48, "state.%d.%s", i, bn[k]);
            f->names[t] = text; text += 48;
            f->ts[t++] = o->ps[i].buf[k];
        }
    }
    return 0;
}

DLDEF size_t dl_optim_serialize(const dl_optim *o, void *out, size_t capacity) {
    dl__optim_file f;
    void *mem;
    size_t r;
    if (!o) { dl_set_error("dl_optim_serialize: NULL optimizer"); return 0; }
    if (dl__optim_file_make(o, &f, &mem) != 0) return 0;
    r = dl_safetensors_serialize(f.n_t, f.names, f.ts, f.n_meta, f.keys, f.values, out, capacity);
    DL_FREE(mem);
    return r;
}

#ifndef DL_NO_STDIO
DLDEF int dl_optim_save(const dl_optim *o, const char *path) {
    dl__optim_file f;
    void *mem;
    int r;
    if (!o || !path) { dl_set_error("dl_optim_save: NULL argument"); return -1; }
    if (dl__optim_file_make(o, &f, &mem) != 0) return -1;
    r = dl_safetensors_save(path, f.n_t, f.names, f.ts, f.n_meta, f.keys, f.values);
    DL_FREE(mem);
    return r;
}
#endif

DLDEF int dl_optim_state_meta(const dl_optim *o, int i, char *key, size_t ks, char *value, size_t vs) {
    const char *keys[DL__OPT_NHYPER], *values[DL__OPT_NHYPER];
    char buf[DL__OPT_NHYPER * 32];
    int nk, nv;
    if (!o || i < 0 || !key || !value || !ks || !vs) return -1;
    if (i < DL__OPT_NHYPER) {
        dl__optim_hyper(o, keys, values, buf);
        nk = snprintf(key, ks, "%s", keys[i]);
        nv = snprintf(value, vs, "%s", values[i]);
    } else if (i < DL__OPT_NHYPER + 5) {   /* the same order as dl__optim_file_make */
        static const char *const k[5] = {"lr", "steps", "n_params", "max_norm", "clip_value"};
        int j = i - DL__OPT_NHYPER;
        nk = snprintf(key, ks, "%s", k[j]);
        if (j == 1) nv = snprintf(value, vs, "%ld", o->steps);
        else if (j == 2) nv = snprintf(value, vs, "%d", o->n);
        else nv = snprintf(value, vs, "%.17g", j == 0 ? o->lr : j == 3 ? o->max_norm : o->clip_value);
    } else if (i < DL__OPT_NHYPER + 5 + o->n) {
        int p = i - DL__OPT_NHYPER - 5;
        nk = snprintf(key, ks, "state.%d.step", p);
        nv = snprintf(value, vs, "%ld", o->ps[p].step);
    } else return -1;
    return nk < 0 || (size_t)nk >= ks || nv < 0 || (size_t)nv >= vs ? -1 : 0;
}

DLDEF dl_tensor *dl_optim_state_tensor(const dl_optim *o, int i, char *name, size_t size) {
    const char *bn[DL__OPT_MAXBUF];
    int nb = 0, k, p, j, r;
    if (!o || i < 0 || !name || !size) return NULL;
    dl__optim_bufnames(o, bn);
    for (k = 0; k < DL__OPT_MAXBUF; k++) nb += bn[k] != NULL;
    if (!nb || i >= o->n * nb) return NULL;
    p = i / nb;   /* parameter p's buffers in dl__optim_bufnames order, as dl__optim_file_make */
    for (k = 0, j = i % nb; k < DL__OPT_MAXBUF; k++)
        if (bn[k] && j-- == 0) break;
    r = snprintf(name, size, "state.%d.%s", p, bn[k]);
    return r < 0 || (size_t)r >= size ? NULL : o->ps[p].buf[k];
}

/* A non-negative decimal integer filling the whole string; -1 if not. */
static long dl__optim_parse_long(const char *s) {
    long v = 0;
    if (!s || !*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (0x7fffffffL - 9) / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Validate st against o (everything), then copy the state in. */
static int dl__optim_restore(dl_optim *o, const dl_safetensors *st, const char *fn) {
    const char *keys[DL__OPT_NHYPER], *values[DL__OPT_NHYPER], *bn[DL__OPT_MAXBUF], *s;
    char buf[DL__OPT_NHYPER * 32], name[64];
    double lr;
    char *end;
    long steps;
    int i, k, nb = 0;
    if (!st) return -1;   /* the loader's message stands */
    dl__optim_hyper(o, keys, values, buf);
    for (i = 0; i < DL__OPT_NHYPER; i++) {
        s = dl_safetensors_meta(st, keys[i]);
        if (!s || strcmp(s, values[i]) != 0) {
            if (i < 2) dl_set_error("%s: not a dl_optim state file (metadata %s is %s)", fn, keys[i], s ? s : "missing");
            else dl_set_error("%s: the file's %s is %s, the optimizer's is %s", fn, keys[i], s ? s : "missing", values[i]);
            return -1;
        }
    }
    s = dl_safetensors_meta(st, "n_params");
    if (dl__optim_parse_long(s) != o->n) {
        dl_set_error("%s: the file has %s parameters, the optimizer %d", fn, s ? s : "no count of", o->n);
        return -1;
    }
    s = dl_safetensors_meta(st, "lr");
    lr = s ? strtod(s, &end) : -1;
    if (!s || end == s || *end || !(lr >= 0) || lr > DBL_MAX) { dl_set_error("%s: bad or missing lr (%s)", fn, s ? s : "none"); return -1; }
    steps = dl__optim_parse_long(dl_safetensors_meta(st, "steps"));
    if (steps < 0) { dl_set_error("%s: bad or missing steps", fn); return -1; }
    for (k = 0; k < 2; k++) {   /* clipping settings must match too */
        double want = k ? o->clip_value : o->max_norm;
        char w[32];
        snprintf(w, sizeof w, "%.17g", want);
        s = dl_safetensors_meta(st, k ? "clip_value" : "max_norm");
        if (!s || strcmp(s, w) != 0) { dl_set_error("%s: the file's %s is %s, the optimizer's is %s", fn, k ? "clip_value" : "max_norm", s ? s : "missing", w); return -1; }
    }
    dl__optim_bufnames(o, bn);
    for (k = 0; k < DL__OPT_MAXBUF; k++) nb += bn[k] != NULL;
    if (dl_safetensors_num_tensors(st) != o->n * nb) {
        dl_set_error("%s: the file has %d tensors, expected %d", fn, dl_safetensors_num_tensors(st), o->n * nb);
        return -1;
    }
    for (i = 0; i < o->n; i++) {
        snprintf(name, sizeof name, "state.%d.step", i);
        if (dl__optim_parse_long(dl_safetensors_meta(st, name)) < 0) { dl_set_error("%s: bad or missing %s", fn, name); return -1; }
        for (k = 0; k < DL__OPT_MAXBUF; k++) {
            dl_tensor *t;
            if (!bn[k]) continue;
            snprintf(name, sizeof name, "state.%d.%s", i, bn[k]);
            t = dl_safetensors_get(st, name);
            if (!t) { dl_set_error("%s: %s is missing", fn, name); return -1; }
            if (t->dtype != DL_DTYPE_F32 || !dl_same_shape(t, o->ps[i].p)) {
                char a[64], b[64];
                dl_set_error("%s: %s is %s %s, the parameter is f32 %s", fn, name, dl_dtype_name(t->dtype),
                             dl_shape_str(t, a, sizeof a), dl_shape_str(o->ps[i].p, b, sizeof b));
                return -1;
            }
        }
    }
    /* All checked: copy. */
    for (i = 0; i < o->n; i++) {
        snprintf(name, sizeof name, "state.%d.step", i);
        o->ps[i].step = dl__optim_parse_long(dl_safetensors_meta(st, name));
        for (k = 0; k < DL__OPT_MAXBUF; k++) {
            if (!bn[k]) continue;
            snprintf(name, sizeof name, "state.%d.%s", i, bn[k]);
#ifdef DL_CUDA
            if (o->ps[i].buf[k]->device) {   /* host file -> device state */
                if (dl_copy(o->ps[i].buf[k], dl_safetensors_get(st, name)) != 0) return -1;
                continue;
            }
#endif
            memcpy(dl_f32(o->ps[i].buf[k]), dl_f32(dl_safetensors_get(st, name)), o->ps[i].p->numel * sizeof(float));
        }
    }
    o->lr = lr;
    o->steps = steps;
    return 0;
}

DLDEF int dl_optim_parse(dl_optim *o, const void *bytes, size_t size) {
    dl_safetensors *st;
    int r;
    if (!o || !bytes) { dl_set_error("dl_optim_parse: NULL argument"); return -1; }
    st = dl_safetensors_parse(bytes, size);
    r = dl__optim_restore(o, st, "dl_optim_parse");
    dl_safetensors_free(st);
    return r;
}

#ifndef DL_NO_STDIO
DLDEF int dl_optim_load(dl_optim *o, const char *path) {
    dl_safetensors *st;
    int r;
    if (!o || !path) { dl_set_error("dl_optim_load: NULL argument"); return -1; }
    st = dl_safetensors_load(path);
    r = dl__optim_restore(o, st, "dl_optim_load");
    dl_safetensors_free(st);
    return r;
}
#endif

/* ---- L-BFGS: torch/optim/lbfgs.py (1.13) without line search, step by step. Vectors are the
   parameters flattened in the order added; dot products are summed in double and rounded to
   float, where PyTorch's are float tensors. ---- */
struct dl_lbfgs {
    double lr, tol_grad, tol_change;
    int max_iter, max_eval, history;
    int n_params;
    dl_tensor **params;           /* borrowed */
    size_t numel;                 /* all parameters together */
    float *g, *prev_g, *d, *q;    /* flat gradient, the previous one, direction, work */
    dl_line_search line_search;
    float *ls_x, *ls_g, *ls_gprev, *ls_bg[2]; /* line search: start point, gradients at the
                                                 trial point, the previous one, the bracket's */
    float **old_dirs, **old_stps; /* ring of history + 1 slots for y and s (allocated as needed):
                                     the n_old pairs kept start at first_old, and the slot after
                                     them is free for the next pair */
    float *ro, *al;
    int n_old, first_old, n_alloc;
    float t, h_diag, prev_loss;
    int have_prev;
    long n_iter, func_evals;
};

DLDEF dl_lbfgs *dl_lbfgs_new(const dl_lbfgs_opts *opts) {
    dl_lbfgs_opts o;
    dl_lbfgs *l;
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    if (!(o.lr >= 0 || o.lr == DL_ZERO) || !isfinite(o.lr) || o.max_iter < 0 || o.max_eval < 0 || o.history_size < 0 || o.history_size > 1000000 ||
        !(o.tolerance_grad >= 0 || o.tolerance_grad == DL_ZERO) || !(o.tolerance_change >= 0 || o.tolerance_change == DL_ZERO) ||
        (o.line_search != DL_LINE_SEARCH_NONE && o.line_search != DL_LINE_SEARCH_STRONG_WOLFE)) {
        dl_set_error("dl_lbfgs_new: lr, tolerances, max_iter, max_eval and history_size must be >= 0 (and finite), "
                     "line_search NONE or STRONG_WOLFE");
        return NULL;
    }
    l = (dl_lbfgs *)DL_MALLOC(sizeof *l);
    if (!l) { dl_set_error("dl_lbfgs_new: out of memory"); return NULL; }
    memset(l, 0, sizeof *l);
    l->lr = o.lr == DL_ZERO ? 0.0 : o.lr == 0 ? 1.0 : o.lr;
    l->max_iter = o.max_iter == 0 ? 20 : o.max_iter;
    l->max_eval = o.max_eval == 0 ? l->max_iter * 5 / 4 : o.max_eval;
    l->tol_grad = o.tolerance_grad == DL_ZERO ? 0.0 : o.tolerance_grad == 0 ? 1e-7 : o.tolerance_grad;
    l->tol_change = o.tolerance_change == DL_ZERO ? 0.0 : o.tolerance_change == 0 ? 1e-9 : o.tolerance_change;
    l->history = o.history_size == 0 ? 100 : o.history_size;
    l->line_search = o.line_search;
    return l;
}

DLDEF void dl_lbfgs_free(dl_lbfgs *l) {
    int i;
    if (!l) return;
    for (i = 0; i < l->n_alloc; i++) { DL_FREE(l->old_dirs[i]); DL_FREE(l->old_stps[i]); }
    DL_FREE(l->old_dirs); DL_FREE(l->old_stps); DL_FREE(l->ro); DL_FREE(l->al);
    DL_FREE(l->g); DL_FREE(l->prev_g); DL_FREE(l->d); DL_FREE(l->q);
    DL_FREE(l->ls_x); DL_FREE(l->ls_g); DL_FREE(l->ls_gprev); DL_FREE(l->ls_bg[0]); DL_FREE(l->ls_bg[1]);
    DL_FREE(l->params);
    DL_FREE(l);
}

DLDEF int dl_lbfgs_add_params(dl_lbfgs *l, int n, dl_tensor *const *params) {
    int i, j;
    size_t total = 0, bytes;
    if (!l || n <= 0 || !params) { dl_set_error("dl_lbfgs_add_params: need an optimizer and n > 0 parameters"); return -1; }
    if (l->params) { dl_set_error("dl_lbfgs_add_params: parameters were added already (once, before the first step)"); return -1; }
    for (i = 0; i < n; i++) {
        dl_tensor *p = params[i];
        if (!p || p->dtype != DL_DTYPE_F32 || !dl_is_contiguous(p) || p->device != DL_DEVICE_CPU || !p->requires_grad) {
            dl_set_error("dl_lbfgs_add_params: parameter %d must be a contiguous f32 CPU tensor with requires_grad", i);
            return -1;
        }
        for (j = 0; j < i; j++)
            if (params[j] == p) { dl_set_error("dl_lbfgs_add_params: parameter %d is given twice", i); return -1; }
        total += p->numel;
    }
    if (total == 0 || total > ((size_t)-1) / 4 / sizeof(float)) { dl_set_error("dl_lbfgs_add_params: bad total size"); return -1; }
    bytes = total * sizeof(float);
    l->params = (dl_tensor **)DL_MALLOC((size_t)n * sizeof *l->params);
    l->g = (float *)DL_MALLOC(bytes); l->prev_g = (float *)DL_MALLOC(bytes);
    l->d = (float *)DL_MALLOC(bytes); l->q = (float *)DL_MALLOC(bytes);
    l->old_dirs = (float **)DL_MALLOC(((size_t)l->history + 1) * sizeof(float *));
    l->old_stps = (float **)DL_MALLOC(((size_t)l->history + 1) * sizeof(float *));
    l->ro = (float *)DL_MALLOC(((size_t)l->history + 1) * sizeof(float));
    l->al = (float *)DL_MALLOC(((size_t)l->history + 1) * sizeof(float));
    if (l->line_search) {
        l->ls_x = (float *)DL_MALLOC(bytes); l->ls_g = (float *)DL_MALLOC(bytes);
        l->ls_gprev = (float *)DL_MALLOC(bytes);
        l->ls_bg[0] = (float *)DL_MALLOC(bytes); l->ls_bg[1] = (float *)DL_MALLOC(bytes);
    }
    if (!l->params || !l->g || !l->prev_g || !l->d || !l->q || !l->old_dirs || !l->old_stps || !l->ro || !l->al ||
        (l->line_search && (!l->ls_x || !l->ls_g || !l->ls_gprev || !l->ls_bg[0] || !l->ls_bg[1]))) {
        DL_FREE(l->ls_x); DL_FREE(l->ls_g); DL_FREE(l->ls_gprev); DL_FREE(l->ls_bg[0]); DL_FREE(l->ls_bg[1]);
        l->ls_x = l->ls_g = l->ls_gprev = l->ls_bg[0] = l->ls_bg[1] = NULL;
        DL_FREE(l->params); DL_FREE(l->g); DL_FREE(l->prev_g); DL_FREE(l->d); DL_FREE(l->q);
        DL_FREE(l->old_dirs); DL_FREE(l->old_stps); DL_FREE(l->ro); DL_FREE(l->al);
        l->params = NULL; l->g = l->prev_g = l->d = l->q = NULL; l->old_dirs = l->old_stps = NULL;
        l->ro = l->al = NULL;
        dl_set_error("dl_lbfgs_add_params: out of memory");
        return -1;
    }
    memcpy(l->params, params, (size_t)n * sizeof *l->params);
    l->n_params = n;
    l->numel = total;
    return 0;
}

DLDEF long dl_lbfgs_evals(const dl_lbfgs *l) { return l ? l->func_evals : 0; }
DLDEF long dl_lbfgs_iters(const dl_lbfgs *l) { return l ? l->n_iter : 0; }

static float dl__lbfgs_dot(const float *a, const float *b, size_t n) {
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)a[i] * b[i];
    return (float)s;
}

/* Zeroes the grads, calls the closure, gathers the flat gradient into g (a missing grad is 0). */
static float dl__lbfgs_eval(dl_lbfgs *l, dl_lbfgs_closure closure, void *user, float *g) {
    float loss;
    size_t off = 0;
    int i;
    for (i = 0; i < l->n_params; i++) dl_zero_grad(l->params[i]);
    loss = closure(user);
    l->func_evals++;
    for (i = 0; i < l->n_params; i++) {
        dl_tensor *p = l->params[i];
        if (p->grad) memcpy(g + off, p->grad, p->numel * sizeof(float));
        else memset(g + off, 0, p->numel * sizeof(float));
        off += p->numel;
    }
    return loss;
}

static float dl__lbfgs_abs_max(const float *v, size_t n) {
    float m = 0;
    size_t i;
    for (i = 0; i < n; i++) if (fabsf(v[i]) > m || v[i] != v[i]) m = v[i] != v[i] ? v[i] : fabsf(v[i]);
    return m;
}

/* p += t d, parameter by parameter. */
static void dl__lbfgs_add(dl_lbfgs *l, float t, const float *d) {
    size_t off = 0, j;
    int i;
    for (i = 0; i < l->n_params; i++) {
        float *p = (float *)l->params[i]->data;
        for (j = 0; j < l->params[i]->numel; j++) p[j] = DL__FMAF(t, d[off + j], p[j]);
        off += l->params[i]->numel;
    }
}

/* Parameters <-> a flat vector. */
static void dl__lbfgs_params(dl_lbfgs *l, float *v, int to_params) {
    size_t off = 0;
    int i;
    for (i = 0; i < l->n_params; i++) {
        size_t bytes = l->params[i]->numel * sizeof(float);
        if (to_params) memcpy(l->params[i]->data, v + off, bytes);
        else memcpy(v + off, l->params[i]->data, bytes);
        off += l->params[i]->numel;
    }
}

/* PyTorch's _directional_evaluate: the loss and gradient (into g) at x + t d; then back to x. */
static float dl__lbfgs_dir_eval(dl_lbfgs *l, dl_lbfgs_closure closure, void *user, double t, float *g) {
    float f;
    dl__lbfgs_add(l, (float)t, l->d);
    f = dl__lbfgs_eval(l, closure, user, g);
    dl__lbfgs_params(l, l->ls_x, 1);
    return f;
}

/* Python's max(a, b) and min(a, b): the first unless the second is strictly beyond it. */
static double dl__lbfgs_max(double a, double b) { return b > a ? b : a; }
static double dl__lbfgs_min(double a, double b) { return b < a ? b : a; }

/* torch/optim/lbfgs.py's _cubic_interpolate: the minimizer of the cubic through (x1, f1) and
   (x2, f2) with slopes g1, g2, clamped to [lo, hi] (bounded) or to [x1, x2]; the middle of the
   interval when the cubic has no minimum. */
static double dl__lbfgs_cubic(double x1, double f1, double g1, double x2, double f2, double g2, int bounded,
                              double lo, double hi) {
    double d1, d2sq, d2, m;
    if (!bounded) { lo = x1 <= x2 ? x1 : x2; hi = x1 <= x2 ? x2 : x1; }
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
    d2sq = d1 * d1 - g1 * g2;
    if (d2sq >= 0) {
        d2 = sqrt(d2sq);
        if (x1 <= x2) m = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2));
        else m = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
        return dl__lbfgs_min(dl__lbfgs_max(m, lo), hi);
    }
    return (lo + hi) / 2.0;
}

/* torch/optim/lbfgs.py's _strong_wolfe along l->d from the parameters (saved in l->ls_x) with
   loss f, gradient l->g and slope gtd, first trying step *t. On return *t is the step taken,
   *f_out its loss and l->g its gradient (the parameters are at the start point still).
   Returns the closure calls made, or -1 if one failed. */
static int dl__lbfgs_strong_wolfe(dl_lbfgs *l, dl_lbfgs_closure closure, void *user, double *t_io, double f,
                                  double gtd, float *f_out) {
    const double c1 = 1e-4, c2 = 0.9;
    const int max_ls = 25;
    size_t n = l->numel, bytes = n * sizeof(float);
    double t = *t_io, d_norm = dl__lbfgs_abs_max(l->d, n), t_prev = 0, f_prev = f, gtd_prev = gtd, f_new, gtd_new;
    double br[2], bf[2], bgtd[2] = {0, 0};
    float *bg[2];
    int evals = 1, ls_iter = 0, done = 0, nb = 0, low, high, insuf = 0;
    bg[0] = l->ls_bg[0];
    bg[1] = l->ls_bg[1];
    memcpy(l->ls_gprev, l->g, bytes);                      /* g_prev = g (a clone) */
    f_new = dl__lbfgs_dir_eval(l, closure, user, t, l->ls_g);
    if (f_new != f_new) return -1;
    gtd_new = dl__lbfgs_dot(l->ls_g, l->d, n);
    /* bracket an interval containing a point that satisfies the strong Wolfe conditions */
    while (ls_iter < max_ls) {
        /* in PyTorch's order: too high (bracket), the conditions hold (done), uphill (bracket) */
        int too_high = f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= f_prev);
        if (!too_high && fabs(gtd_new) <= -c2 * gtd) {
            br[0] = t; bf[0] = f_new;
            memcpy(bg[0], l->ls_g, bytes);
            nb = 1;
            done = 1;
            break;
        }
        if (too_high || gtd_new >= 0) {
            br[0] = t_prev; br[1] = t; bf[0] = f_prev; bf[1] = f_new; bgtd[0] = gtd_prev; bgtd[1] = gtd_new;
            memcpy(bg[0], l->ls_gprev, bytes);
            memcpy(bg[1], l->ls_g, bytes);
            nb = 2;
            break;
        }
        {   /* interpolate, within [t + 0.01 (t - t_prev), 10 t] */
            double tmp = t;
            t = dl__lbfgs_cubic(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, 1, t + 0.01 * (t - t_prev), t * 10);
            t_prev = tmp;
        }
        f_prev = f_new;
        memcpy(l->ls_gprev, l->ls_g, bytes);
        gtd_prev = gtd_new;
        f_new = dl__lbfgs_dir_eval(l, closure, user, t, l->ls_g);
        if (f_new != f_new) return -1;
        evals++;
        gtd_new = dl__lbfgs_dot(l->ls_g, l->d, n);
        ls_iter++;
    }
    if (ls_iter == max_ls) {   /* the bracket [0, t] (its slopes are not needed: no zoom follows) */
        br[0] = 0; br[1] = t; bf[0] = f; bf[1] = f_new;
        memcpy(bg[0], l->g, bytes);
        memcpy(bg[1], l->ls_g, bytes);
        nb = 2;
    }
    /* zoom: shrink the bracket until a point satisfies the conditions */
    low = nb == 1 || bf[0] <= bf[1] ? 0 : 1;
    high = 1 - low;
    while (!done && ls_iter < max_ls) {
        double bmax, bmin, eps;
        if (fabs(br[1] - br[0]) * d_norm < l->tol_change) break;
        t = dl__lbfgs_cubic(br[0], bf[0], bgtd[0], br[1], bf[1], bgtd[1], 0, 0, 0);
        bmax = dl__lbfgs_max(br[0], br[1]);
        bmin = dl__lbfgs_min(br[0], br[1]);
        eps = 0.1 * (bmax - bmin);
        if (dl__lbfgs_min(bmax - t, t - bmin) < eps) {   /* close to an end of the bracket */
            if (insuf || t >= bmax || t <= bmin) {
                t = fabs(t - bmax) < fabs(t - bmin) ? bmax - eps : bmin + eps;
                insuf = 0;
            } else {
                insuf = 1;
            }
        } else {
            insuf = 0;
        }
        f_new = dl__lbfgs_dir_eval(l, closure, user, t, l->ls_g);
        if (f_new != f_new) return -1;
        evals++;
        gtd_new = dl__lbfgs_dot(l->ls_g, l->d, n);
        ls_iter++;
        if (f_new > f + c1 * t * gtd || f_new >= bf[low]) {   /* not low enough: the new high */
            br[high] = t; bf[high] = f_new; bgtd[high] = gtd_new;
            memcpy(bg[high], l->ls_g, bytes);
            low = bf[0] <= bf[1] ? 0 : 1;
            high = 1 - low;
        } else {
            if (fabs(gtd_new) <= -c2 * gtd) {
                done = 1;
            } else if (gtd_new * (br[high] - br[low]) >= 0) {   /* the old low becomes the high */
                br[high] = br[low]; bf[high] = bf[low]; bgtd[high] = bgtd[low];
                memcpy(bg[high], bg[low], bytes);
            }
            br[low] = t; bf[low] = f_new; bgtd[low] = gtd_new;
            memcpy(bg[low], l->ls_g, bytes);
        }
    }
    *t_io = br[low];
    *f_out = (float)bf[low];
    memcpy(l->g, bg[low], bytes);
    return evals;
}

DLDEF float dl_lbfgs_step(dl_lbfgs *l, dl_lbfgs_closure closure, void *user) {
    size_t n, j;
    float loss, orig_loss, gtd;
    int n_iter = 0, current_evals = 1, opt_cond;
    if (!l || !closure) { dl_set_error("dl_lbfgs_step: need an optimizer and a closure"); return NAN; }
    if (!l->params) { dl_set_error("dl_lbfgs_step: no parameters (dl_lbfgs_add_params)"); return NAN; }
    n = l->numel;
    orig_loss = loss = dl__lbfgs_eval(l, closure, user, l->g);
    if (loss != loss) return NAN;
    opt_cond = dl__lbfgs_abs_max(l->g, n) <= l->tol_grad;
    if (opt_cond) return orig_loss;
    while (n_iter < l->max_iter) {
        n_iter++;
        l->n_iter++;
        if (l->n_iter == 1) {
            for (j = 0; j < n; j++) l->d[j] = -l->g[j];
            l->n_old = l->first_old = 0;
            l->h_diag = 1.0f;
        } else {
            /* y = g - prev_g into the ring's free slot, s = t d; kept when y.s > 1e-10 */
            int cap = l->history + 1, slot = (l->first_old + l->n_old) % cap, k, i;
            float *y, *s, ys;
            if (slot >= l->n_alloc) {                                  /* slots fill in order */
                l->old_dirs[slot] = (float *)DL_MALLOC(n * sizeof(float));
                l->old_stps[slot] = (float *)DL_MALLOC(n * sizeof(float));
                if (!l->old_dirs[slot] || !l->old_stps[slot]) {
                    DL_FREE(l->old_dirs[slot]); DL_FREE(l->old_stps[slot]);
                    dl_set_error("dl_lbfgs_step: out of memory for the history");
                    return NAN;
                }
                l->n_alloc++;
            }
            y = l->old_dirs[slot];
            s = l->old_stps[slot];
            for (j = 0; j < n; j++) { y[j] = l->g[j] - l->prev_g[j]; s[j] = l->d[j] * l->t; }
            ys = dl__lbfgs_dot(y, s, n);
            if (ys > 1e-10f) {
                if (l->n_old == l->history) l->first_old = (l->first_old + 1) % cap;   /* drop the oldest */
                else l->n_old++;
                l->ro[slot] = 1.0f / ys;
                l->h_diag = ys / dl__lbfgs_dot(y, y, n);
            }
            /* two-loop recursion: d = -H g, newest pair first, then oldest first */
            for (j = 0; j < n; j++) l->q[j] = -l->g[j];
            for (k = l->n_old - 1; k >= 0; k--) {
                i = (l->first_old + k) % cap;
                l->al[i] = dl__lbfgs_dot(l->old_stps[i], l->q, n) * l->ro[i];
                for (j = 0; j < n; j++) l->q[j] = DL__FMAF(-l->al[i], l->old_dirs[i][j], l->q[j]);
            }
            for (j = 0; j < n; j++) l->d[j] = l->q[j] * l->h_diag;
            for (k = 0; k < l->n_old; k++) {
                float be;
                i = (l->first_old + k) % cap;
                be = dl__lbfgs_dot(l->old_dirs[i], l->d, n) * l->ro[i];
                for (j = 0; j < n; j++) l->d[j] = DL__FMAF(l->al[i] - be, l->old_stps[i][j], l->d[j]);
            }
        }
        memcpy(l->prev_g, l->g, n * sizeof(float));
        l->prev_loss = loss;
        if (l->n_iter == 1) {
            double sum = 0;
            float inv;
            for (j = 0; j < n; j++) sum += fabsf(l->g[j]);
            inv = 1.0f / (float)sum;
            l->t = (float)((inv < 1.0f ? inv : 1.0f) * l->lr);
        } else {
            l->t = (float)l->lr;
        }
        gtd = dl__lbfgs_dot(l->g, l->d, n);
        if (gtd > -l->tol_change) break;
        if (l->line_search == DL_LINE_SEARCH_STRONG_WOLFE) {
            double t = l->t;
            int evals;
            dl__lbfgs_params(l, l->ls_x, 0);
            evals = dl__lbfgs_strong_wolfe(l, closure, user, &t, loss, gtd, &loss);
            if (evals < 0) return NAN;
            l->t = (float)t;
            dl__lbfgs_add(l, l->t, l->d);
            opt_cond = dl__lbfgs_abs_max(l->g, n) <= l->tol_grad;
            current_evals += evals;
        } else {
            dl__lbfgs_add(l, l->t, l->d);
            if (n_iter != l->max_iter) {
                loss = dl__lbfgs_eval(l, closure, user, l->g);
                if (loss != loss) return NAN;
                opt_cond = dl__lbfgs_abs_max(l->g, n) <= l->tol_grad;
                current_evals++;
            }
        }
        if (n_iter == l->max_iter) break;
        if (current_evals >= l->max_eval) break;
        if (opt_cond) break;
        if (dl__lbfgs_abs_max(l->d, n) * fabsf(l->t) <= l->tol_change) break;
        if (fabsf(loss - l->prev_loss) < l->tol_change) break;
    }
    return orig_loss;
}

#endif /* DL_IMPLEMENTATION */

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
