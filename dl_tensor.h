/* dl_tensor.h - tensors, eager autograd and fast CPU kernels.  (core skeleton, being written) */
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
