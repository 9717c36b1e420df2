/* dl_gan.h - v0.2.0 - generative models for dl, in C99: GAN training steps (non-saturating
   BCE, LSGAN, WGAN-GP), the Keras lesson's frozen-discriminator recipe, CycleGAN's parts,
   pictures of training (sample grids and loss curves as PNG), whole-run checkpoints, and
   neural style transfer (Gatys et al.) on VGG19 features.
   Part of dl, a family of single-file deep-learning libraries; needs dl_nn.h.

   Do this:
       #define DL_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation. Every
   other file includes it plainly. It includes dl_nn.h (and so dl_tensor.h and dl_optim.h) from
   its own folder itself when that was not included before. Link with -lm -lpthread. PNG
   output needs stb_image_write.h (Debian: libstb-dev, <stb/stb_image_write.h>) included
   before this file, in the implementation file too.

   (Documentation of the whole header is written as its parts land; see the sections.)

   REVISION HISTORY
       0.2.0  first version

   LICENSE: MIT, see the end of the file.
*/
#ifndef DL_GAN_H
#define DL_GAN_H

#ifndef DL_NN_H   /* the prerequisites, from this file's folder, unless already included */
#include "dl_nn.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==== GAN TRAINING ========================================================================== */

/* ==== PICTURES ============================================================================== */

/* ==== CYCLEGAN ============================================================================== */

/* ==== STYLE TRANSFER ========================================================================
   (declarations of the style-transfer part go here, and only here) */

/* ==== END OF STYLE TRANSFER declarations ==== */

#ifdef __cplusplus
}
#endif
#endif /* DL_GAN_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL_IMPLEMENTATION_ELSEWHERE) && !defined(DL__NN_IMPLEMENTED)
#include "dl_nn.h"   /* its implementation too, also when it was first included plainly */
#endif

#if defined(DL_IMPLEMENTATION) && !defined(DL__GAN_IMPLEMENTED) && !defined(DL_IMPLEMENTATION_ELSEWHERE)
#define DL__GAN_IMPLEMENTED

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifndef DL_NO_STDIO
#include <stdio.h>
#endif

/* ==== GAN TRAINING: implementation ========================================================== */

/* ==== PICTURES: implementation ============================================================== */

/* ==== CYCLEGAN: implementation ============================================================== */

/* ==== STYLE TRANSFER: implementation ========================================================
   (the style-transfer part's implementation goes here, and only here) */

/* ==== END OF STYLE TRANSFER implementation ==== */

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
