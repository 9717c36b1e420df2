/* examples/style_transfer.c - paint a photo in the style of a painting (Gatys et al. 2016).

   The neural style transfer lesson (TensorFlow's tutorial, tensorflow.org/tutorials/generative/
   style_transfer) in C: the picture itself is the trained tensor. It starts as the content photo;
   each step moves its pixels so that its VGG19 features at block5_conv2 stay close to the
   photo's (content loss) while the Gram matrices of its features at block1_conv1 ...
   block5_conv1 approach the painting's (style loss), plus a total-variation penalty that keeps
   it smooth. Adam as the tutorial, or L-BFGS as the paper (--optimizer lbfgs). PNG snapshots are
   written to the --out folder as it goes, and the loss curves (losses.png) at the end.

   Weights: VGG19 trained on ImageNet is what gives the familiar look. Convert it once, on a
   machine that has it, with tools/vgg19_to_safetensors.py (torchvision's or Keras' weights) and
   pass --weights vgg19.safetensors (or leave that file in the current folder). Nothing is
   downloaded. Without a weights file (a fresh machine, CI) the example still runs, on a VGG19
   with random He-normal weights, and says so (weights=random in its last line): random
   convolutional features still carry texture statistics (Ustyuzhaninov et al. 2017, He et al.
   2016), so the colours and brush-stroke textures of the painting move into the photo, though
   less cleanly than with trained weights.

   Build and run (from the repository root; needs Debian's libstb-dev for <stb/stb_image.h>):
       make build/style_transfer && ./build/style_transfer
       ./build/style_transfer --weights vgg19.safetensors --steps 1000 --out build/style
       ./build/style_transfer --optimizer lbfgs --steps 20

   Flags:
       --content PATH     the photo (default data/style/chelsea.png)
       --style PATH       the painting (default data/style/starry_night.png)
       --weights PATH     a VGG19 weights file (default vgg19.safetensors if present, else random)
       --steps N          optimizer steps (default 200 Adam steps; an L-BFGS step is 20 updates)
       --seed S           the random weights (default 1)
       --out DIR          where the PNGs go (default build/style_transfer.out)
       --every N          write a PNG every N steps (default: steps / 4), and the last
       --size S           shrink the images so that the longer side is at most S pixels (default 128)
       --optimizer adam|lbfgs
       --line-search none|strong_wolfe   for L-BFGS (default none)
       --lr X, --style-weight X, --content-weight X, --tv-weight X
                          (defaults: the tutorial's 0.02, 1e-2, 1e4, 30 for Keras' weights;
                          1e3, 300, 5e-2 for torchvision's and random weights: see below)
       --width K          random weights only: channels / K (default 1), for quick runs
       --threads T        threads for the convolutions (default: DL_NUM_THREADS or all CPUs)

   The last line is the metric line:
       loss_ratio=R style_loss=S content_loss=C tv_loss=V total_loss=T weights=random|FILE
   with R the total loss at the end over the total loss at the start (the losses are weighted,
   as printed by the tutorial).

   On the weights' scale: the tutorial feeds Keras' VGG19 pixels in 0..255 less the ImageNet
   mean, torchvision's normalization gives inputs some 58 times smaller (255 x 0.226), and the
   style loss grows as the 4th power of the features' scale, the content loss as the square.
   So the tutorial's weights are kept for Keras' files only; the others were picked by running
   this example on the shipped pictures with random weights (style and content visible after
   150 steps). With torchvision's trained weights, expect to tune --style-weight. */
#define _POSIX_C_SOURCE 200809L   /* mkdir */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__has_include)
#if __has_include(<stb/stb_image.h>) && __has_include(<stb/stb_image_write.h>)
#define HAVE_STB 1
#endif
#endif

#ifdef HAVE_STB
/* stb's headers are not written for -Wextra; keep their warnings out of ours. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

#define DL_IMPLEMENTATION
#include "dl_gan.h"

#ifndef HAVE_STB
int main(void) {
    fprintf(stderr, "style_transfer: built without <stb/stb_image.h> and <stb/stb_image_write.h>;\n"
                    "install them (Debian: apt-get install libstb-dev) and rebuild\n");
    return 1;
}
#else

/* Reads an image as f32 [1, 3, H, W] in [0, 1], shrunk (bilinear) so that max(H, W) <= size.
   Yours: dl_tensor_free. NULL after printing why. */
static dl_tensor *load_image(const char *path, int size) {
    int w, h, comp, ow, oh, c, y, x, shape[4];
    unsigned char *px = stbi_load(path, &w, &h, &comp, 3);
    dl_tensor *t;
    float scale;
    if (!px) { fprintf(stderr, "error: cannot read %s: %s\n", path, stbi_failure_reason()); return NULL; }
    scale = (w > h ? w : h) > size ? (float)size / (float)(w > h ? w : h) : 1.0f;
    ow = (int)(w * scale + 0.5f);
    oh = (int)(h * scale + 0.5f);
    if (ow < 16 || oh < 16) {
        fprintf(stderr, "error: %s is %dx%d after shrinking; VGG19 needs 16x16 or more\n", path, ow, oh);
        stbi_image_free(px);
        return NULL;
    }
    shape[0] = 1; shape[1] = 3; shape[2] = oh; shape[3] = ow;
    t = dl_tensor_new(DL_DTYPE_F32, 4, shape);
    for (c = 0; t && c < 3; c++)
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {   /* the source point under this pixel's centre */
                float sy = ((float)y + 0.5f) / scale - 0.5f, sx = ((float)x + 0.5f) / scale - 0.5f, fy, fx, v;
                int y0, x0, y1, x1;
                if (sy < 0) sy = 0;
                if (sx < 0) sx = 0;
                y0 = (int)sy; x0 = (int)sx;
                y1 = y0 + 1 < h ? y0 + 1 : h - 1; x1 = x0 + 1 < w ? x0 + 1 : w - 1;
                fy = sy - (float)y0; fx = sx - (float)x0;
                v = (1 - fy) * ((1 - fx) * px[(y0 * w + x0) * 3 + c] + fx * px[(y0 * w + x1) * 3 + c]) +
                    fy * ((1 - fx) * px[(y1 * w + x0) * 3 + c] + fx * px[(y1 * w + x1) * 3 + c]);
                dl_f32(t)[((size_t)c * oh + y) * ow + x] = v / 255.0f;
            }
    stbi_image_free(px);
    if (!t) fprintf(stderr, "error: %s\n", dl_error());
    return t;
}

static int save_png(const dl_tensor *img, const char *path) {
    int h = img->shape[2], w = img->shape[3], c, i, ok;
    unsigned char *px = (unsigned char *)malloc((size_t)h * w * 3);
    if (!px) return -1;
    for (c = 0; c < 3; c++)
        for (i = 0; i < h * w; i++) {
            float v = dl_f32(img)[(size_t)c * h * w + i] * 255.0f + 0.5f;
            px[i * 3 + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    ok = stbi_write_png(path, w, h, 3, px, w * 3);
    free(px);
    if (!ok) { fprintf(stderr, "error: cannot write %s\n", path); return -1; }
    return 0;
}

static int make_dirs(const char *dir) {   /* mkdir -p */
    char path[1024];
    size_t i, n = strlen(dir);
    if (n == 0 || n >= sizeof path) return -1;
    memcpy(path, dir, n + 1);
    for (i = 1; i <= n; i++)
        if (path[i] == '/' || path[i] == 0) {
            char keep = path[i];
            path[i] = 0;
            if (mkdir(path, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "error: cannot create %s: %s\n", path, strerror(errno));
                return -1;
            }
            path[i] = keep;
        }
    return 0;
}

int main(int argc, char **argv) {
    const char *content_path = "data/style/chelsea.png", *style_path = "data/style/starry_night.png";
    const char *weights = NULL, *out = "build/style_transfer.out", *optimizer = "adam", *line_search = "none";
    int steps = -1, seed = 1, every = 0, size = 128, width = 1, threads = 0, i, rc = 1;
    double lr = 0, style_weight = 0, content_weight = 0, tv_weight = 0;
    dl_vgg19 *net = NULL;
    dl_tensor *content = NULL, *style = NULL;
    dl_style_transfer *st = NULL;
    dl_style_transfer_opts so;
    dl_style_losses first, now;
    double *curve = NULL;   /* total, style, content, tv per step: the loss-curve picture */
    char path[1200];
    FILE *probe;
    memset(&first, 0, sizeof first);
    for (i = 1; i < argc; i += 2) {   /* every flag takes a value */
        const char *flag = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        if (strcmp(flag, "--content") == 0) content_path = v;
        else if (strcmp(flag, "--style") == 0) style_path = v;
        else if (strcmp(flag, "--weights") == 0) weights = v;
        else if (strcmp(flag, "--steps") == 0) steps = atoi(v);
        else if (strcmp(flag, "--seed") == 0) seed = atoi(v);
        else if (strcmp(flag, "--out") == 0) out = v;
        else if (strcmp(flag, "--every") == 0) every = atoi(v);
        else if (strcmp(flag, "--size") == 0) size = atoi(v);
        else if (strcmp(flag, "--optimizer") == 0) optimizer = v;
        else if (strcmp(flag, "--line-search") == 0) line_search = v;
        else if (strcmp(flag, "--lr") == 0) lr = atof(v);
        else if (strcmp(flag, "--style-weight") == 0) style_weight = atof(v);
        else if (strcmp(flag, "--content-weight") == 0) content_weight = atof(v);
        else if (strcmp(flag, "--tv-weight") == 0) tv_weight = atof(v);
        else if (strcmp(flag, "--width") == 0) width = atoi(v);
        else if (strcmp(flag, "--threads") == 0) threads = atoi(v);
        else goto usage;
    }
    if (strcmp(optimizer, "adam") != 0 && strcmp(optimizer, "lbfgs") != 0) goto usage;
    if (strcmp(line_search, "none") != 0 && strcmp(line_search, "strong_wolfe") != 0) goto usage;
    if (steps < 0) steps = strcmp(optimizer, "adam") == 0 ? 200 : 10;
    if (every <= 0) every = steps / 4 > 0 ? steps / 4 : 1;
    if (threads > 0) dl_set_num_threads(threads);

    /* the network: the weights file, or random weights (and say so) */
    if (!weights && (probe = fopen("vgg19.safetensors", "rb")) != NULL) { fclose(probe); weights = "vgg19.safetensors"; }
    if (weights) {
        if (!(net = dl_vgg19_load(weights))) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
        fprintf(stderr, "style_transfer: VGG19 weights from %s (%s preprocessing)\n", weights,
                net->preprocess == DL_VGG_PREPROCESS_CAFFE ? "Keras/caffe" : "torchvision");
    } else {
        dl_vgg_opts vo;
        dl_rng rng;
        memset(&vo, 0, sizeof vo);
        vo.width_div = width;
        dl_rng_seed(&rng, (uint64_t)seed);
        if (!(net = dl_vgg19_new(&vo, &rng))) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
        fprintf(stderr, "style_transfer: no VGG19 weights file (make one with tools/vgg19_to_safetensors.py and pass "
                        "--weights); using RANDOM weights (seed %d, width 1/%d): textures and colours transfer, "
                        "less cleanly than with ImageNet weights\n", seed, width);
    }
    if (!(content = load_image(content_path, size)) || !(style = load_image(style_path, size))) goto done;
    if (make_dirs(out) != 0) goto done;

    memset(&so, 0, sizeof so);
    so.optimizer = strcmp(optimizer, "adam") == 0 ? DL_STYLE_OPTIMIZER_ADAM : DL_STYLE_OPTIMIZER_LBFGS;
    so.line_search = strcmp(line_search, "none") == 0 ? DL_LINE_SEARCH_NONE : DL_LINE_SEARCH_STRONG_WOLFE;
    if (net->preprocess != DL_VGG_PREPROCESS_CAFFE) {   /* unit-size inputs: see the top comment */
        so.style_weight = 1e3;
        so.content_weight = 300;
        so.tv_weight = 5e-2;
    }
    if (style_weight > 0) so.style_weight = style_weight;
    if (content_weight > 0) so.content_weight = content_weight;
    if (tv_weight > 0) so.tv_weight = tv_weight;
    so.lr = lr;
    if (!(st = dl_style_transfer_new(net, content, style, &so))) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    snprintf(path, sizeof path, "%s/content.png", out);
    if (save_png(content, path) != 0) goto done;
    snprintf(path, sizeof path, "%s/style.png", out);
    if (save_png(style, path) != 0) goto done;

    if (!(curve = (double *)malloc(4 * (size_t)(steps > 0 ? steps : 1) * sizeof *curve))) goto done;
    for (i = 1; i <= steps; i++) {
        dl_style_losses l;
        if (dl_style_transfer_step(st, &l) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
        if (i == 1) first = l;
        curve[i - 1] = l.total;
        curve[steps + i - 1] = l.style;
        curve[2 * steps + i - 1] = l.content;
        curve[3 * steps + i - 1] = l.tv;
        if (i % every == 0 || i == steps) {
            snprintf(path, sizeof path, "%s/step_%05d.png", out, i);
            if (save_png(dl_style_transfer_image(st), path) != 0) goto done;
            fprintf(stderr, "step %d: style %.4g content %.4g tv %.4g total %.4g -> %s\n", i, l.style, l.content, l.tv,
                    l.total, path);
        }
    }
    if (steps > 0) {   /* the loss curves, as the tutorial plots them */
        static const char *names[4] = {"total", "style", "content", "total variation"};
        dl_plot_series s[4];
        unsigned char *rgb = (unsigned char *)calloc(640 * 360 * 3, 1);
        int k;
        memset(s, 0, sizeof s);
        for (k = 0; k < 4; k++) { s[k].name = names[k]; s[k].y = curve + (size_t)k * steps; s[k].n = steps; }
        snprintf(path, sizeof path, "%s/losses.png", out);
        if (!rgb || dl_plot_draw(rgb, 640, 360, 0, 0, 640, 360, "weighted losses against steps", 4, s) != 0 ||
            dl_png_save(path, rgb, 640, 360, 3) != 0) {
            fprintf(stderr, "error: %s\n", dl_error());
            free(rgb);
            goto done;
        }
        free(rgb);
    }
    if (dl_style_transfer_losses(st, &now) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    if (steps == 0) first = now;
    printf("loss_ratio=%.4f style_loss=%.6g content_loss=%.6g tv_loss=%.6g total_loss=%.6g weights=%s\n",
           first.total > 0 ? now.total / first.total : 1.0, now.style, now.content, now.tv, now.total,
           weights ? weights : "random");
    rc = 0;
done:
    free(curve);
    dl_style_transfer_free(st);
    dl_vgg19_free(net);
    dl_tensor_free(content);
    dl_tensor_free(style);
    return rc;
usage:
    fprintf(stderr, "usage: %s [--content PATH] [--style PATH] [--weights PATH] [--steps N] [--seed S] [--out DIR] "
                    "[--every N] [--size S] [--optimizer adam|lbfgs] [--line-search none|strong_wolfe] [--lr X] [--style-weight X] "
                    "[--content-weight X] [--tv-weight X] [--width K] [--threads T]\n", argv[0]);
    return 2;
}
#endif
