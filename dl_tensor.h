/* dl_tensor.h - tensors, eager autograd and fast CPU kernels.  (core skeleton, being written) */
#ifndef DL_TENSOR_H
#define DL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifndef DLDEF
#ifdef DL_STATIC
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
#include "parts/ops_conv_impl.h"
#include "parts/safetensors_impl.h"

#endif /* DL_TENSOR_IMPLEMENTATION */
