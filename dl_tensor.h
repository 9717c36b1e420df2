/* dl_tensor.h - v0.1 - tensors, eager autograd and fast CPU kernels, in C99.
   Part of dl, a family of single-file deep-learning libraries: dl_tensor.h is the base that
   dl_optim.h, dl_nn.h, dl_gan.h and dl_rl.h build on.

   Do this:
       #define DL_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.
   Every other file includes it plainly. Link with -lm, plus -lpthread unless DL_NO_THREADS.

   EXAMPLE: fit y = 2x + 1 by gradient descent

       float xs[4] = {0, 1, 2, 3}, ys[4] = {1, 3, 5, 7};
       dl_tensor *x = dl_tensor_from(DL_F32, 2, DL_SHAPE(4, 1), xs);    // yours: dl_tensor_free
       dl_tensor *y = dl_tensor_from(DL_F32, 2, DL_SHAPE(4, 1), ys);
       dl_tensor *w = dl_tensor_new(DL_F32, 2, DL_SHAPE(1, 1)), *b = dl_tensor_new(DL_F32, 1, DL_SHAPE(1));
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
                    errors, autograd (tape, backward, no-grad, detach, gradcheck, your own ops),
                    random numbers (xoshiro256**) and Keras' initializers
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
   Ops follow PyTorch's semantics (arguments, ties, gradients at kinks); comments name the
   places where Keras differs.

   CONFIGURATION (define before including, in the implementation file; DL_STATIC and
   DL_NO_STDIO before every include)
       DL_MALLOC(n), DL_REALLOC(p, n), DL_FREE(p)   all three or none (default: libc)
       DL_ASSERT(c)     internal invariants only (default: assert); never used on user input
       DL_STATIC        every function static, for a private copy in one file
       DL_NO_STDIO      leaves out dl_safetensors_load/save (the in-memory versions remain)
       DL_NO_THREADS    no pthreads: every kernel runs on the calling thread
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
       Functions that can fail return NULL (or non-zero) and set a message for dl_error()
       that names the function and the shapes. An op given a NULL input returns NULL and
       keeps the first message, so one check at the end of a computation is enough. Nothing
       here calls exit or abort on bad input; loaders validate every field before use.

   THREADS
       GEMM and convolutions split work over output blocks, never over a sum, and chunk sizes
       depend only on shapes: results are bit-identical for any thread count. Arenas, the
       error message and no-grad mode are per thread; a tape belongs to the thread that made it.

   NOT HERE
       layers, models and optimizers (dl_nn.h, dl_optim.h); GPU execution (dl_cuda.cu, planned;
       the device field is there for it); half-precision compute (f16/bf16 files load as f32);
       grouped/depthwise convolution.

   LICENSE: MIT, see the end of the file.
*/
#ifndef DL_TENSOR_H
#define DL_TENSOR_H

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

#include "parts/core_api.h"
#include "parts/gemm_api.h"
#include "parts/ops_math_api.h"
#include "parts/ops_nn_api.h"
#include "parts/ops_norm_api.h"
#include "parts/ops_conv_api.h"
#include "parts/safetensors_api.h"

#ifdef __cplusplus
}
#endif
#endif /* DL_TENSOR_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL_TENSOR_IMPLEMENTATION)
#define DL_TENSOR_IMPLEMENTATION
#endif

#if defined(DL_TENSOR_IMPLEMENTATION) && !defined(DL__TENSOR_IMPLEMENTED)
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

#include "parts/core_impl.h"
#include "parts/gemm_impl.h"
#include "parts/ops_math_impl.h"
#include "parts/ops_nn_impl.h"
#include "parts/ops_norm_impl.h"
#include "parts/ops_conv_impl.h"
#include "parts/safetensors_impl.h"

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
