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
   Neural style transfer (Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural
   Networks", CVPR 2016) as TensorFlow's tutorial writes it
   (tensorflow.org/tutorials/generative/style_transfer): the image itself is the trained tensor;
   its VGG19 features at block5_conv2 should match a content photo's, and the Gram matrices of
   its features at block1_conv1 ... block5_conv1 a painting's.

   VGG19 here is its 16 convolutions (3x3, padding 1, each followed by a ReLU) and the 2x2 max
   pools between blocks: torchvision's vgg19().features. Layer i (0..15) is the ReLU output of
   the i-th convolution; it has two names, Keras' ("block5_conv2") and the paper's ("relu5_2").

       dl_vgg19 *net = dl_vgg19_load("vgg19.safetensors");   // tools/vgg19_to_safetensors.py
       if (!net) net = dl_vgg19_new(NULL, &rng);             // random weights (see below)
       dl_style_transfer *st = dl_style_transfer_new(net, content, style, NULL);
       for (int i = 0; i < 1000; i++) dl_style_transfer_step(st, &losses);
       dl_tensor *picture = dl_style_transfer_image(st);     // [1, 3, H, W] in [0, 1]

   Weights files: safetensors with torchvision's state-dict names features.{0,2,5,7,10,12,14,
   16,19,21,23,25,28,30,32,34}.weight [out, in, 3, 3] and .bias [out], f32 (other tensors, such
   as classifier.*, are ignored), and an optional __metadata__ "preprocess": "torch" (the
   default) or "caffe"; see dl_vgg_preprocess. Nothing is downloaded: the weights are written
   once by tools/vgg19_to_safetensors.py on a machine that has torchvision's or Keras' VGG19.
   A width divisor k gives the same network with 64/k ... 512/k channels (k a divisor of 64):
   the loader takes k from features.0.weight and checks every other shape against it.

   Random weights: without a weights file dl_vgg19_new draws He-normal weights (std
   sqrt(2 / (9 in)), zero biases), which keep the activations' scale from layer to layer, so
   that every layer's Gram matrix carries information. Random convolutional features are known
   to synthesize textures (Ustyuzhaninov, Brendel, Gatys, Bethge, "What does it take to
   generate natural textures?", ICLR 2017; He, Wang, Hopcroft, "A Powerful Generative Model
   Using Random Weights for the Deep Image Representation", NIPS 2016); trained ImageNet
   weights give the familiar look of style transfer.

   Images are f32 [N, 3, H, W], RGB in [0, 1]; each function preprocesses them as the weights'
   source expects. The features of the deepest requested layer need H and W >= 16 (4 pools).

   Losses, as the TF tutorial (its defaults are this section's defaults; they suit Keras'
   weights, fed 0..255 pixels: torchvision's and random weights see inputs about 58 times
   smaller, which scales the style term by ~58^4 and the content term by ~58^2, so they need
   other weights; examples/style_transfer.c has values for random weights):
       style   = style_weight / L_s * sum_l mean((gram(F_l) - gram(S_l))^2), gram as dl_gram
                 (F F^T / (H W), the tutorial's normalization)
       content = content_weight / L_c * sum_l mean((F_l - C_l)^2)
       tv      = tv_weight * sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|  (tf.image.total_variation)
   Errors: NULL / -1 and dl_error(), as everywhere. Ownership is written at each function. */

#define DL_VGG19_NUM_LAYERS 16   /* conv+ReLU layers; features.{0,2,...,34} */

/* How images in [0, 1] are fed to the network. */
typedef enum dl_vgg_preprocess {
    DL_VGG_PREPROCESS_TORCH = 0,  /* (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] per RGB
                                     channel: torchvision's weights */
    DL_VGG_PREPROCESS_CAFFE = 1   /* 255 x - [123.68, 116.779, 103.939] per RGB channel: Keras'
                                     preprocess_input ("caffe"); the converter flips conv1_1's
                                     input channels from Keras' BGR to RGB */
} dl_vgg_preprocess;

/* VGG19's convolutions; the tensors are owned by the struct (dl_vgg19_free). Read-only to the
   caller: none requires a gradient, so the network stays fixed while an image is trained. */
typedef struct dl_vgg19 {
    int width_div;                          /* channels are VGG19's / width_div */
    dl_vgg_preprocess preprocess;
    int random;                             /* 1: made by dl_vgg19_new, 0: loaded */
    dl_tensor *w[DL_VGG19_NUM_LAYERS];      /* [out, in, 3, 3] */
    dl_tensor *b[DL_VGG19_NUM_LAYERS];      /* [out] */
} dl_vgg19;

typedef struct dl_vgg_opts {
    int width_div;                  /* channels 64/k ... 512/k; k must divide 64 [1] */
    dl_vgg_preprocess preprocess;   /* [DL_VGG_PREPROCESS_TORCH] */
} dl_vgg_opts;

/* A VGG19 with random He-normal weights and zero biases, drawn from rng in the order
   features.0, 2, ..., 34. Yours: dl_vgg19_free. */
DLDEF dl_vgg19 *dl_vgg19_new(const dl_vgg_opts *opts, dl_rng *rng);
#ifndef DL_NO_STDIO
/* Reads a weights file (see above); every name, dtype and shape is checked. Yours:
   dl_vgg19_free; NULL + dl_error() for a missing, truncated or wrong file. */
DLDEF dl_vgg19 *dl_vgg19_load(const char *path);
#endif
DLDEF dl_vgg19 *dl_vgg19_parse(const void *bytes, size_t size);  /* the same from memory; yours */
DLDEF void dl_vgg19_free(dl_vgg19 *net);                         /* NULL is fine */

/* 0..15 for "block5_conv2" (Keras) or "relu5_2" (the paper); -1 + dl_error() if unknown. */
DLDEF int dl_vgg19_find_layer(const char *name);
DLDEF const char *dl_vgg19_layer_name(int layer);  /* Keras' name of layer 0..15; NULL if out of range */

/* image [N, 3, H, W] in [0, 1] -> the network's input (see dl_vgg_preprocess); arena. */
DLDEF dl_tensor *dl_vgg19_preprocess(const dl_vgg19 *net, dl_tensor *image);
/* One forward pass of image ([N, 3, H, W] in [0, 1]; preprocessed here) up to the deepest of
   the n requested layers; out[i] = the ReLU output of layers[i] (arena; in any order, repeats
   allowed). Differentiable with respect to image. 0, or -1 + dl_error() (out all NULL). */
DLDEF int dl_vgg19_features(const dl_vgg19 *net, dl_tensor *image, int n, const int *layers,
                            dl_tensor **out);

/* sum_l mean((gram(features[l]) - target_grams[l])^2) / n: features[l] [N, C, H, W] and
   target_grams[l] [N, C, C] (from dl_gram of the style image's features). 0-d, arena. */
DLDEF dl_tensor *dl_style_loss(int n, dl_tensor *const *features, dl_tensor *const *target_grams);
/* sum_l mean((features[l] - targets[l])^2) / n; 0-d, arena. */
DLDEF dl_tensor *dl_content_loss(int n, dl_tensor *const *features, dl_tensor *const *targets);
/* tf.image.total_variation summed over the batch: the sum of |differences| of vertically and
   of horizontally neighbouring pixels of x [N, C, H, W] (H, W >= 1). 0-d, arena. */
DLDEF dl_tensor *dl_total_variation(dl_tensor *x);

typedef enum dl_style_optimizer {
    DL_STYLE_OPTIMIZER_ADAM = 0,   /* the TF tutorial's: one update per step */
    DL_STYLE_OPTIMIZER_LBFGS = 1   /* the paper's: one dl_lbfgs_step (up to lbfgs_iters updates) per step */
} dl_style_optimizer;

/* Every field 0 = the default in brackets (the TF tutorial's); DL_ZERO asks for a real 0. */
typedef struct dl_style_transfer_opts {
    double style_weight;          /* [1e-2]; DL_ZERO for none */
    double content_weight;        /* [1e4]; DL_ZERO for none */
    double tv_weight;             /* [30]; DL_ZERO for none */
    const char *style_layers;     /* comma-separated names ["block1_conv1,block2_conv1,block3_conv1,block4_conv1,block5_conv1"] */
    const char *content_layers;   /* ["block5_conv2"] */
    dl_style_optimizer optimizer; /* [DL_STYLE_OPTIMIZER_ADAM] */
    double lr;                    /* Adam [0.02] (the tutorial's), L-BFGS [1]; DL_ZERO for 0 */
    double beta1;                 /* Adam [0.99]; DL_ZERO for 0 */
    double eps;                   /* Adam [0.1]; DL_ZERO for 0. PyTorch's eps, outside the root (Keras puts it
                                     before the bias correction: the same where it does not dominate) */
    int lbfgs_iters;              /* L-BFGS updates per step (its max_iter) [20] */
    dl_line_search line_search;   /* L-BFGS [DL_LINE_SEARCH_NONE, as PyTorch's style transfer
                                     tutorial; DL_LINE_SEARCH_STRONG_WOLFE is steadier] */
} dl_style_transfer_opts;

typedef struct dl_style_losses {
    float style, content, tv, total;   /* weighted, as in the formulas above */
} dl_style_losses;

typedef struct dl_style_transfer dl_style_transfer;
/* net: borrowed (keep it alive). content, style: [1, 3, H, W] in [0, 1] (sizes may differ),
   copied. The trained image starts as a copy of content. Yours: dl_style_transfer_free. */
DLDEF dl_style_transfer *dl_style_transfer_new(dl_vgg19 *net, dl_tensor *content, dl_tensor *style,
                                               const dl_style_transfer_opts *opts);
/* One optimizer step on the image, which is then clamped to [0, 1]. losses (may be NULL): the
   losses at the image before the step. Uses its own arena (the current one is left alone).
   0, or -1 + dl_error(). */
DLDEF int dl_style_transfer_step(dl_style_transfer *st, dl_style_losses *losses);
/* The losses at the image as it is now (no step). 0, or -1 + dl_error(). */
DLDEF int dl_style_transfer_losses(dl_style_transfer *st, dl_style_losses *losses);
DLDEF dl_tensor *dl_style_transfer_image(const dl_style_transfer *st);  /* [1, 3, H, W]; borrowed */
DLDEF void dl_style_transfer_free(dl_style_transfer *st);              /* NULL is fine */

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

/* torchvision's vgg19().features: conv i is features.dl__vgg_index[i]; a 2x2 max pool follows
   the convs marked in dl__vgg_pool_after (the last block's pool is never needed here). */
static const int dl__vgg_index[DL_VGG19_NUM_LAYERS] = {0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34};
static const int dl__vgg_channels[DL_VGG19_NUM_LAYERS] = {64, 64, 128, 128, 256, 256, 256, 256,
                                                           512, 512, 512, 512, 512, 512, 512, 512};
static const int dl__vgg_pool_after[DL_VGG19_NUM_LAYERS] = {0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
static const char *const dl__vgg_keras_names[DL_VGG19_NUM_LAYERS] = {
    "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
    "block3_conv3", "block3_conv4", "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"};
static const char *const dl__vgg_paper_names[DL_VGG19_NUM_LAYERS] = {
    "relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu3_4",
    "relu4_1", "relu4_2", "relu4_3", "relu4_4", "relu5_1", "relu5_2", "relu5_3", "relu5_4"};

/* Re-sets dl_error() as "<prefix>: <the old message>[ (<suffix>)]". */
static void dl__style_wrap(const char *prefix, const char *suffix) {
    char msg[400];
    size_t n = strlen(dl_error());
    if (n >= sizeof msg) n = sizeof msg - 1;
    memcpy(msg, dl_error(), n);
    msg[n] = 0;
    if (prefix && suffix) dl_set_error("%s: %s (%.200s)", prefix, msg, suffix);
    else if (prefix) dl_set_error("%s: %s", prefix, msg);
    else if (suffix) dl_set_error("%s (%.200s)", msg, suffix);
}

static int dl__vgg_in_channels(int i, int k) { return i == 0 ? 3 : dl__vgg_channels[i - 1] / k; }

DLDEF void dl_vgg19_free(dl_vgg19 *net) {
    int i;
    if (!net) return;
    for (i = 0; i < DL_VGG19_NUM_LAYERS; i++) { dl_tensor_free(net->w[i]); dl_tensor_free(net->b[i]); }
    DL_FREE(net);
}

/* A network with zeroed tensors of width divisor k, or NULL + error (naming op). */
static dl_vgg19 *dl__vgg19_alloc(const char *op, int k, dl_vgg_preprocess pre) {
    dl_vgg19 *net;
    int i;
    if (k <= 0 || 64 % k != 0) return (dl_vgg19 *)dl__fail("%s: width_div must divide 64, got %d", op, k);
    if (pre != DL_VGG_PREPROCESS_TORCH && pre != DL_VGG_PREPROCESS_CAFFE)
        return (dl_vgg19 *)dl__fail("%s: unknown preprocess %d", op, (int)pre);
    net = (dl_vgg19 *)DL_MALLOC(sizeof(*net));
    if (!net) return (dl_vgg19 *)dl__fail("%s: out of memory", op);
    memset(net, 0, sizeof(*net));
    net->width_div = k;
    net->preprocess = pre;
    for (i = 0; i < DL_VGG19_NUM_LAYERS; i++) {
        int ws[4], bs[1];
        ws[0] = bs[0] = dl__vgg_channels[i] / k;
        ws[1] = dl__vgg_in_channels(i, k);
        ws[2] = ws[3] = 3;
        net->w[i] = dl_tensor_new(DL_DTYPE_F32, 4, ws);
        net->b[i] = dl_tensor_new(DL_DTYPE_F32, 1, bs);
        if (!net->w[i] || !net->b[i]) {
            dl_vgg19_free(net);
            return (dl_vgg19 *)dl__fail("%s: out of memory", op);
        }
    }
    return net;
}

DLDEF dl_vgg19 *dl_vgg19_new(const dl_vgg_opts *opts, dl_rng *rng) {
    dl_vgg19 *net;
    int i;
    if (!rng) return (dl_vgg19 *)dl__fail("dl_vgg19_new: rng is NULL");
    net = dl__vgg19_alloc("dl_vgg19_new", opts && opts->width_div ? opts->width_div : 1,
                          opts ? opts->preprocess : DL_VGG_PREPROCESS_TORCH);
    if (!net) return NULL;
    net->random = 1;
    for (i = 0; i < DL_VGG19_NUM_LAYERS; i++)   /* He et al. 2015: std sqrt(2 / fan_in) */
        dl_fill_normal(net->w[i], 0.0f, (float)sqrt(2.0 / (9.0 * net->w[i]->shape[1])), rng);
    return net;
}

/* A network from a loaded file (which stays the caller's), or NULL + error. */
static dl_vgg19 *dl__vgg19_from(const dl_safetensors *st) {
    dl_tensor *w0;
    dl_vgg19 *net;
    const char *pre = dl_safetensors_meta(st, "preprocess");
    dl_vgg_preprocess p = DL_VGG_PREPROCESS_TORCH;
    int i, k;
    char name[32];
    if (pre && strcmp(pre, "caffe") == 0) p = DL_VGG_PREPROCESS_CAFFE;
    else if (pre && strcmp(pre, "torch") != 0)
        return (dl_vgg19 *)dl__fail("dl_vgg19_load: unknown preprocess \"%.40s\" (\"torch\" or \"caffe\")", pre);
    w0 = dl_safetensors_get(st, "features.0.weight");
    if (!w0) return (dl_vgg19 *)dl__fail("dl_vgg19_load: no tensor features.0.weight");
    if (w0->ndim != 4 || w0->shape[0] <= 0 || 64 % w0->shape[0] != 0)
        return (dl_vgg19 *)dl__fail("dl_vgg19_load: features.0.weight must be [64/k, 3, 3, 3] for k dividing 64");
    k = 64 / w0->shape[0];
    net = dl__vgg19_alloc("dl_vgg19_load", k, p);
    if (!net) return NULL;
    for (i = 0; i < 2 * DL_VGG19_NUM_LAYERS; i++) {
        dl_tensor *want = i % 2 ? net->b[i / 2] : net->w[i / 2], *got;
        char ws[64], gs[64];
        sprintf(name, "features.%d.%s", dl__vgg_index[i / 2], i % 2 ? "bias" : "weight");
        got = dl_safetensors_get(st, name);
        if (!got) { dl_set_error("dl_vgg19_load: no tensor %s", name); break; }
        if (got->dtype != DL_DTYPE_F32) {
            dl_set_error("dl_vgg19_load: %s must be f32, got %s", name, dl_dtype_name(got->dtype));
            break;
        }
        if (!dl_same_shape(got, want)) {
            dl_set_error("dl_vgg19_load: %s has shape %s, expected %s (width 1/%d)", name,
                         dl_shape_str(got, gs, sizeof gs), dl_shape_str(want, ws, sizeof ws), k);
            break;
        }
        if (dl_copy(want, got) != 0) break;
    }
    if (i < 2 * DL_VGG19_NUM_LAYERS) { dl_vgg19_free(net); return NULL; }
    return net;
}

DLDEF dl_vgg19 *dl_vgg19_parse(const void *bytes, size_t size) {
    dl_safetensors *st = dl_safetensors_parse(bytes, size);
    dl_vgg19 *net;
    if (!st) { dl__style_wrap("dl_vgg19_parse", NULL); return NULL; }
    net = dl__vgg19_from(st);
    dl_safetensors_free(st);
    return net;
}

#ifndef DL_NO_STDIO
DLDEF dl_vgg19 *dl_vgg19_load(const char *path) {
    dl_safetensors *st = path ? dl_safetensors_load(path) : NULL;
    dl_vgg19 *net;
    if (!path) return (dl_vgg19 *)dl__fail("dl_vgg19_load: path is NULL");
    if (!st) { dl__style_wrap("dl_vgg19_load", NULL); return NULL; }
    net = dl__vgg19_from(st);
    dl_safetensors_free(st);
    if (!net) dl__style_wrap(NULL, path);
    return net;
}
#endif

DLDEF int dl_vgg19_find_layer(const char *name) {
    int i;
    for (i = 0; name && i < DL_VGG19_NUM_LAYERS; i++)
        if (strcmp(name, dl__vgg_keras_names[i]) == 0 || strcmp(name, dl__vgg_paper_names[i]) == 0) return i;
    dl_set_error("dl_vgg19_find_layer: no layer \"%.40s\" (block1_conv1 ... block5_conv4, or relu1_1 ... relu5_4)",
                 name ? name : "(null)");
    return -1;
}

DLDEF const char *dl_vgg19_layer_name(int layer) {
    return layer >= 0 && layer < DL_VGG19_NUM_LAYERS ? dl__vgg_keras_names[layer] : NULL;
}

DLDEF dl_tensor *dl_vgg19_preprocess(const dl_vgg19 *net, dl_tensor *image) {
    static const float mean_t[3] = {0.485f, 0.456f, 0.406f}, std_t[3] = {0.229f, 0.224f, 0.225f};
    static const float mean_c[3] = {123.68f, 116.779f, 103.939f};
    const int cs[4] = {1, 3, 1, 1};
    if (!image) return NULL;
    if (!net) return (dl_tensor *)dl__fail("dl_vgg19_preprocess: net is NULL");
    if (image->ndim != 4 || image->shape[1] != 3)
        return (dl_tensor *)dl__fail("dl_vgg19_preprocess: image must be [N, 3, H, W]");
    if (net->preprocess == DL_VGG_PREPROCESS_CAFFE)
        return dl_sub(dl_mul_scalar(image, 255.0f), dl_tmp_from(DL_DTYPE_F32, 4, cs, mean_c));
    return dl_div(dl_sub(image, dl_tmp_from(DL_DTYPE_F32, 4, cs, mean_t)), dl_tmp_from(DL_DTYPE_F32, 4, cs, std_t));
}

DLDEF int dl_vgg19_features(const dl_vgg19 *net, dl_tensor *image, int n, const int *layers, dl_tensor **out) {
    dl_conv_opts pad;
    dl_tensor *x;
    int i, j, deepest = -1;
    if (!out || n <= 0 || !layers) { dl_set_error("dl_vgg19_features: need n > 0 layers and an out array"); return -1; }
    for (i = 0; i < n; i++) out[i] = NULL;
    if (!net || !image) { dl_set_error("dl_vgg19_features: %s is NULL", net ? "image" : "net"); return -1; }
    for (i = 0; i < n; i++) {
        if (layers[i] < 0 || layers[i] >= DL_VGG19_NUM_LAYERS) {
            dl_set_error("dl_vgg19_features: layer %d is not in 0..15", layers[i]);
            return -1;
        }
        if (layers[i] > deepest) deepest = layers[i];
    }
    memset(&pad, 0, sizeof pad);
    pad.padding[0] = pad.padding[1] = 1;
    x = dl_vgg19_preprocess(net, image);
    for (i = 0; i <= deepest && x; i++) {
        x = dl_relu(dl_conv2d(x, net->w[i], net->b[i], &pad));
        for (j = 0; j < n; j++)
            if (layers[j] == i) out[j] = x;
        if (dl__vgg_pool_after[i] && i < deepest) x = dl_max_pool2d(x, 2, 2, NULL);
    }
    if (!x) {
        for (i = 0; i < n; i++) out[i] = NULL;
        dl__style_wrap("dl_vgg19_features", NULL);
        return -1;
    }
    return 0;
}

DLDEF dl_tensor *dl_style_loss(int n, dl_tensor *const *features, dl_tensor *const *target_grams) {
    dl_tensor *total = NULL;
    int l;
    if (n <= 0 || !features || !target_grams) return (dl_tensor *)dl__fail("dl_style_loss: need n > 0 layers");
    for (l = 0; l < n; l++) {
        dl_tensor *t = dl_mse(dl_gram(features[l]), target_grams[l]);
        total = l == 0 ? t : dl_add(total, t);
    }
    return dl_mul_scalar(total, 1.0f / (float)n);
}

DLDEF dl_tensor *dl_content_loss(int n, dl_tensor *const *features, dl_tensor *const *targets) {
    dl_tensor *total = NULL;
    int l;
    if (n <= 0 || !features || !targets) return (dl_tensor *)dl__fail("dl_content_loss: need n > 0 layers");
    for (l = 0; l < n; l++) {
        dl_tensor *t = dl_mse(features[l], targets[l]);
        total = l == 0 ? t : dl_add(total, t);
    }
    return dl_mul_scalar(total, 1.0f / (float)n);
}

DLDEF dl_tensor *dl_total_variation(dl_tensor *x) {
    dl_tensor *dv, *dh;
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[2] < 1 || x->shape[3] < 1)
        return (dl_tensor *)dl__fail("dl_total_variation: x must be [N, C, H, W] with H, W >= 1");
    if (x->shape[2] == 1) dv = dl_scalar(0.0f);
    else dv = dl_sum_all(dl_abs(dl_sub(dl_slice(x, 2, 1, x->shape[2], 1), dl_slice(x, 2, 0, x->shape[2] - 1, 1))));
    if (x->shape[3] == 1) dh = dl_scalar(0.0f);
    else dh = dl_sum_all(dl_abs(dl_sub(dl_slice(x, 3, 1, x->shape[3], 1), dl_slice(x, 3, 0, x->shape[3] - 1, 1))));
    return dl_add(dv, dh);
}

struct dl_style_transfer {
    dl_vgg19 *net;                                  /* borrowed */
    double style_weight, content_weight, tv_weight;
    int n_style, n_content;
    int layers[2 * DL_VGG19_NUM_LAYERS];            /* style layers, then content layers */
    dl_tensor *targets[2 * DL_VGG19_NUM_LAYERS];    /* style Grams, then content features; owned */
    dl_tensor *image;                               /* owned, requires_grad */
    dl_optim *adam;
    dl_lbfgs *lbfgs;
    dl_arena *arena;
    dl_style_losses last;                           /* of the latest evaluation */
    dl_style_losses first;                          /* of a step's first evaluation */
    int evals;                                      /* evaluations in this step */
};

/* Names in a comma-separated list -> layer indices; count or -1. */
static int dl__style_parse_layers(const char *list, int *idx, int max) {
    int n = 0;
    const char *p = list;
    while (*p) {
        char name[32];
        size_t len = strcspn(p, ",");
        int i;
        if (len == 0 || len >= sizeof name || n == max) {
            dl_set_error("dl_style_transfer_new: bad layer list \"%.60s\"", list);
            return -1;
        }
        memcpy(name, p, len);
        name[len] = 0;
        if ((i = dl_vgg19_find_layer(name)) < 0) return -1;
        idx[n++] = i;
        p += len;
        if (*p == ',') p++;
    }
    if (n == 0) dl_set_error("dl_style_transfer_new: empty layer list");
    return n ? n : -1;
}

static double dl__style_opt(double v, double def) { return v == DL_ZERO ? 0.0 : v == 0 ? def : v; }

/* The weighted losses at the current image, in the current arena; the total, or NULL. */
static dl_tensor *dl__style_eval(dl_style_transfer *st) {
    dl_tensor *f[2 * DL_VGG19_NUM_LAYERS], *ls, *lc, *lt, *total;
    if (dl_vgg19_features(st->net, st->image, st->n_style + st->n_content, st->layers, f) != 0) return NULL;
    ls = dl_mul_scalar(dl_style_loss(st->n_style, f, st->targets), (float)st->style_weight);
    lc = dl_mul_scalar(dl_content_loss(st->n_content, f + st->n_style, st->targets + st->n_style),
                       (float)st->content_weight);
    lt = dl_mul_scalar(dl_total_variation(st->image), (float)st->tv_weight);
    total = dl_add(dl_add(ls, lc), lt);
    if (!total) return NULL;
    st->last.style = dl_item(ls);
    st->last.content = dl_item(lc);
    st->last.tv = dl_item(lt);
    st->last.total = dl_item(total);
    return total;
}

static void dl__style_clamp(dl_style_transfer *st) {
    float *p = dl_f32(st->image);
    size_t i;
    for (i = 0; i < st->image->numel; i++) p[i] = p[i] < 0.0f ? 0.0f : p[i] > 1.0f ? 1.0f : p[i];
}

DLDEF void dl_style_transfer_free(dl_style_transfer *st) {
    int i;
    if (!st) return;
    for (i = 0; i < 2 * DL_VGG19_NUM_LAYERS; i++) dl_tensor_free(st->targets[i]);
    dl_tensor_free(st->image);
    dl_optim_free(st->adam);
    dl_lbfgs_free(st->lbfgs);
    dl_arena_free(st->arena);
    DL_FREE(st);
}

DLDEF dl_style_transfer *dl_style_transfer_new(dl_vgg19 *net, dl_tensor *content, dl_tensor *style,
                                               const dl_style_transfer_opts *opts) {
    const char *op = "dl_style_transfer_new";
    dl_style_transfer_opts o;
    dl_style_transfer *st;
    dl_arena *prev;
    dl_tensor *f[2 * DL_VGG19_NUM_LAYERS];
    int i, ns, nc, ok, old_grad;
    if (!net || !content || !style) return (dl_style_transfer *)dl__fail("%s: net, content and style are needed", op);
    if (content->ndim != 4 || content->shape[0] != 1 || content->shape[1] != 3 || content->dtype != DL_DTYPE_F32 ||
        style->ndim != 4 || style->shape[0] != 1 || style->shape[1] != 3 || style->dtype != DL_DTYPE_F32)
        return (dl_style_transfer *)dl__fail("%s: content and style must be f32 [1, 3, H, W]", op);
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    if (o.optimizer != DL_STYLE_OPTIMIZER_ADAM && o.optimizer != DL_STYLE_OPTIMIZER_LBFGS)
        return (dl_style_transfer *)dl__fail("%s: unknown optimizer %d", op, (int)o.optimizer);
    if (o.lbfgs_iters < 0) return (dl_style_transfer *)dl__fail("%s: lbfgs_iters must be >= 0", op);
    if (!(o.style_weight >= 0 || o.style_weight == DL_ZERO) || !(o.content_weight >= 0 || o.content_weight == DL_ZERO) ||
        !(o.tv_weight >= 0 || o.tv_weight == DL_ZERO) || !(o.lr >= 0 || o.lr == DL_ZERO) ||
        !(o.beta1 >= 0 || o.beta1 == DL_ZERO) || !(o.eps >= 0 || o.eps == DL_ZERO))
        return (dl_style_transfer *)dl__fail("%s: weights, lr, beta1 and eps must be >= 0 (or DL_ZERO)", op);
    st = (dl_style_transfer *)DL_MALLOC(sizeof(*st));
    if (!st) return (dl_style_transfer *)dl__fail("%s: out of memory", op);
    memset(st, 0, sizeof(*st));
    st->net = net;
    st->style_weight = dl__style_opt(o.style_weight, 1e-2);
    st->content_weight = dl__style_opt(o.content_weight, 1e4);
    st->tv_weight = dl__style_opt(o.tv_weight, 30.0);
    ns = dl__style_parse_layers(o.style_layers ? o.style_layers : "block1_conv1,block2_conv1,block3_conv1,block4_conv1,block5_conv1",
                                st->layers, DL_VGG19_NUM_LAYERS);
    nc = ns < 0 ? -1 : dl__style_parse_layers(o.content_layers ? o.content_layers : "block5_conv2",
                                               st->layers + ns, DL_VGG19_NUM_LAYERS);
    if (ns < 0 || nc < 0) { dl_style_transfer_free(st); return NULL; }
    st->n_style = ns;
    st->n_content = nc;
    st->arena = dl_arena_new(0);
    st->image = dl_tensor_clone(content);
    if (!st->arena || !st->image) { dl_style_transfer_free(st); return (dl_style_transfer *)dl__fail("%s: out of memory", op); }
    /* the targets: the style image's Grams and the content image's features, kept */
    prev = dl_arena_use(st->arena);
    old_grad = dl_no_grad(1);
    ok = dl_vgg19_features(net, style, ns, st->layers, f) == 0;
    for (i = 0; ok && i < ns; i++) ok = (st->targets[i] = dl_tensor_clone(dl_gram(f[i]))) != NULL;
    dl_arena_reset(st->arena);
    ok = ok && dl_vgg19_features(net, content, nc, st->layers + ns, f) == 0;
    for (i = 0; ok && i < nc; i++) ok = (st->targets[ns + i] = dl_tensor_clone(f[i])) != NULL;
    dl_arena_reset(st->arena);
    dl_no_grad(old_grad);
    dl_arena_use(prev);
    if (!ok) { dl__style_wrap(op, NULL); dl_style_transfer_free(st); return NULL; }
    dl_set_requires_grad(st->image, 1);
    if (o.optimizer == DL_STYLE_OPTIMIZER_ADAM) {
        dl_optim_opts ao;
        memset(&ao, 0, sizeof ao);
        ao.lr = dl__style_opt(o.lr, 0.02);
        ao.beta1 = dl__style_opt(o.beta1, 0.99);
        ao.eps = dl__style_opt(o.eps, 0.1);
        if (ao.lr == 0) ao.lr = DL_ZERO;      /* dl_optim_opts' own way to say a real 0 */
        if (ao.beta1 == 0) ao.beta1 = DL_ZERO;
        if (ao.eps == 0) ao.eps = DL_ZERO;
        st->adam = dl_optim_new(DL_OPTIM_ADAM, &ao);
        ok = st->adam && dl_optim_add_params(st->adam, 1, &st->image) == 0;
    } else {
        dl_lbfgs_opts lo;
        memset(&lo, 0, sizeof lo);
        lo.lr = dl__style_opt(o.lr, 1.0);
        if (lo.lr == 0) lo.lr = DL_ZERO;
        lo.max_iter = o.lbfgs_iters;
        lo.line_search = o.line_search;
        st->lbfgs = dl_lbfgs_new(&lo);
        ok = st->lbfgs && dl_lbfgs_add_params(st->lbfgs, 1, &st->image) == 0;
    }
    if (!ok) { dl__style_wrap(op, NULL); dl_style_transfer_free(st); return NULL; }
    return st;
}

/* L-BFGS' closure: the total loss at the image, with its gradient in image->grad. */
static float dl__style_closure(void *user) {
    dl_style_transfer *st = (dl_style_transfer *)user;
    dl_tensor *loss;
    dl_arena_reset(st->arena);
    dl_zero_grad(st->image);
    loss = dl__style_eval(st);
    if (!loss || dl_backward(loss) != 0) return NAN;
    if (st->evals++ == 0) st->first = st->last;
    return st->last.total;
}

DLDEF int dl_style_transfer_step(dl_style_transfer *st, dl_style_losses *losses) {
    dl_arena *prev;
    int rc = 0;
    if (!st) { dl_set_error("dl_style_transfer_step: st is NULL"); return -1; }
    prev = dl_arena_use(st->arena);
    if (st->adam) {
        dl_tensor *loss;
        dl_arena_reset(st->arena);
        dl_optim_zero_grad(st->adam);
        loss = dl__style_eval(st);
        if (!loss || dl_backward(loss) != 0 || dl_optim_step(st->adam) != 0) rc = -1;
        if (losses && rc == 0) *losses = st->last;
    } else {
        float l0;
        st->evals = 0;
        l0 = dl_lbfgs_step(st->lbfgs, dl__style_closure, st);
        if (l0 != l0) rc = -1;
        if (losses && rc == 0) *losses = st->first;
    }
    dl_arena_reset(st->arena);
    dl_arena_use(prev);
    if (rc != 0) { dl__style_wrap("dl_style_transfer_step", NULL); return -1; }
    dl__style_clamp(st);
    return 0;
}

DLDEF int dl_style_transfer_losses(dl_style_transfer *st, dl_style_losses *losses) {
    dl_arena *prev;
    int old_grad, rc;
    if (!st) { dl_set_error("dl_style_transfer_losses: st is NULL"); return -1; }
    prev = dl_arena_use(st->arena);
    old_grad = dl_no_grad(1);
    dl_arena_reset(st->arena);
    rc = dl__style_eval(st) ? 0 : -1;
    dl_arena_reset(st->arena);
    dl_no_grad(old_grad);
    dl_arena_use(prev);
    if (rc != 0) { dl__style_wrap("dl_style_transfer_losses", NULL); return -1; }
    if (losses) *losses = st->last;
    return 0;
}

DLDEF dl_tensor *dl_style_transfer_image(const dl_style_transfer *st) { return st ? st->image : NULL; }

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
