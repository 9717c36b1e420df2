/* examples/gan_eval.c - how good are generated Fashion-MNIST images? Inception score and
   Frechet distance, measured by a Fashion-MNIST classifier.

   The Inception score (Salimans et al. 2016) and the Frechet Inception Distance (Heusel et al.
   2017) use Google's Inception network trained on ImageNet; for 28x28 clothes the same formulas
   run on a classifier of those clothes (as the GAN literature does for MNIST):
       score     exp(mean KL(p(y|x) || p(y))) on the classifier's softmax: from 1 to 10; high
                 when each image is clearly one class and all classes appear
       distance  the Frechet distance between Gaussians fitted to the classifier's penultimate
                 features of the images and of the 10000 real test images: 0 for the same
                 distribution, lower is better
   The classifier is examples/mnist_cnn.c's network with a 128-feature layer before its last
   Dense, trained once and saved:
       make build/mnist_cnn build/gan_eval
       ./build/mnist_cnn --features 128 --epochs 15 --save build/fmnist_classifier.safetensors
       ./build/gan_eval --classifier build/fmnist_classifier.safetensors --baselines \
                        --images build/dcgan.out/samples.safetensors
   Images: safetensors files with a tensor "images", f32 [N, 1, 28, 28] in [0, 1], as
   examples/gan_mnist.c and examples/dcgan.c write them (--samples N). --baselines also measures
   the first 10000 real training images and 10000 images of uniform noise.

   Flags:
       --classifier PATH  the classifier (required; see above)
       --data DIR         Fashion-MNIST (default: Debian's dataset-fashion-mnist when installed,
                          else data/fashion-mnist); its training images give the classifier's
                          input standardization (as mnist_cnn trained it) and the baselines
       --images PATH      a file of images to measure (may be given several times)
       --baselines        also measure real training images and uniform noise
       --seed S           the noise baseline (default 1)
       --threads T        threads (default: DL_NUM_THREADS or all CPUs)

   Output: one line per set, "NAME: inception_score=... frechet_distance=... (N images)"; the
   last line is the metric line of the last set measured: frechet_distance=... inception_score=... */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DL_IMPLEMENTATION
#include "dl_gan.h"

#define FULL_DIR "/usr/share/datasets/fashion-mnist"
#define SUBSET_DIR "data/fashion-mnist"
#define MAX_FEATURES 512

static int has_fashion_mnist(const char *dir) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if ((f = fopen(path, "rb")) == NULL) {
        snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
        f = fopen(path, "rb");
    }
    if (f) fclose(f);
    return f != NULL;
}

/* The classifier on images in [0, 1] (standardized here, as mnist_cnn trained it): *probs
   [N, 10] (softmax) and *feats [N, D] (the input of its last layer), both owned. */
static int classify(dl_model *m, const dl_tensor *images, float mean, float std, dl_tensor **probs, dl_tensor **feats) {
    const int n = images->shape[0], last = dl_model_num_layers(m) - 1;
    int i0, i, c, d = 0, grad = dl_no_grad(1);
    *probs = *feats = NULL;
    for (i0 = 0; i0 < n; i0 += 500) {
        int b = n - i0 < 500 ? n - i0 : 500;
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(b, 1, 28, 28)), *p;
        size_t j;
        for (j = 0; j < x->numel; j++) dl_f32(x)[j] = (dl_f32(images)[(size_t)i0 * 784 + j] - mean) / std;
        for (i = 0; x && i < last; i++) x = dl_layer_call(dl_model_layer(m, i), x, 0);
        if (!x || x->ndim != 2 || !(p = dl_layer_call(dl_model_layer(m, last), x, 0)) || p->ndim != 2) goto fail;
        if (!*feats) {
            d = x->shape[1];
            if (d > MAX_FEATURES) {
                dl_set_error("the classifier's last layer has %d inputs; train it with mnist_cnn --features 128", d);
                goto fail;
            }
            *feats = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(n, d));
            *probs = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(n, p->shape[1]));
            if (!*feats || !*probs) goto fail;
        }
        p = dl_softmax(p, -1);
        c = p->shape[1];
        memcpy(dl_f32(*feats) + (size_t)i0 * d, dl_f32(x), (size_t)b * d * sizeof(float));
        memcpy(dl_f32(*probs) + (size_t)i0 * c, dl_f32(p), (size_t)b * c * sizeof(float));
        dl_arena_reset(dl_arena_current());
    }
    dl_no_grad(grad);
    return 0;
fail:
    dl_no_grad(grad);
    dl_tensor_free(*probs);
    dl_tensor_free(*feats);
    *probs = *feats = NULL;
    return -1;
}

/* Prints one set's line; 0 on success. */
static int measure(const char *name, dl_model *m, const dl_tensor *images, float mean, float std, const dl_tensor *ref_feats,
                   double *is, double *fd) {
    dl_tensor *probs, *feats;
    if (images->dtype != DL_DTYPE_F32 || images->ndim != 4 || images->shape[1] != 1 || images->shape[2] != 28 ||
        images->shape[3] != 28 || images->shape[0] < 2) {
        dl_set_error("%s: images must be f32 [N, 1, 28, 28] with N >= 2", name);
        return -1;
    }
    if (classify(m, images, mean, std, &probs, &feats) != 0) return -1;
    *is = dl_inception_score(probs);
    *fd = dl_frechet_distance(feats, ref_feats);
    dl_tensor_free(probs);
    dl_tensor_free(feats);
    if (isnan(*is) || isnan(*fd)) return -1;
    printf("%s: inception_score=%.4f frechet_distance=%.4f (%d images)\n", name, *is, *fd, images->shape[0]);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *data = NULL, *classifier = NULL, *image_files[16];
    int n_files = 0, baselines = 0, seed = 1, threads = 0, i, ok = 0;
    float mean, std;
    double is = 0, fd = 0;
    dl_dataset *train = NULL, *test = NULL;
    dl_model *m = NULL;
    dl_tensor *ref_probs = NULL, *ref_feats = NULL;

    for (i = 1; i < argc; i++) {
        const char *flag = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "--baselines") == 0) { baselines = 1; continue; }
        if (!val) flag = "";
        i++;
        if (strcmp(flag, "--classifier") == 0) classifier = val;
        else if (strcmp(flag, "--data") == 0) data = val;
        else if (strcmp(flag, "--images") == 0 && n_files < 16) image_files[n_files++] = val;
        else if (strcmp(flag, "--seed") == 0) seed = atoi(val);
        else if (strcmp(flag, "--threads") == 0) threads = atoi(val);
        else {
            fprintf(stderr, "usage: %s --classifier PATH [--data DIR] [--images PATH]... [--baselines] [--seed S] [--threads T]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!classifier || (n_files == 0 && !baselines)) {
        fprintf(stderr, "gan_eval: give --classifier (mnist_cnn --features 128 --save PATH makes one) and --images or --baselines\n");
        return 2;
    }
    if (threads > 0) dl_set_num_threads(threads);
    if (!data) data = has_fashion_mnist(FULL_DIR) ? FULL_DIR : SUBSET_DIR;
    if (!(m = dl_model_load(classifier)) || !(train = dl_fashion_mnist_load(data, 1)) || !(test = dl_fashion_mnist_load(data, 0)) ||
        dl_dataset_mean_std(train, &mean, &std) != 0)
        goto fail;
    if (classify(m, test->x, mean, std, &ref_probs, &ref_feats) != 0) goto fail;
    printf("reference: the %d test images of %s, %d features; their inception_score=%.4f\n", test->n, data, ref_feats->shape[1],
           dl_inception_score(ref_probs));
    if (baselines) {
        int n = train->n < 10000 ? train->n : 10000;
        /* owned copies: classify resets the arena as it goes */
        dl_tensor *real = dl_tensor_clone(dl_slice(train->x, 0, 0, n, 1)), *noise = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(10000, 1, 28, 28));
        dl_rng r;
        int bad;
        dl_rng_seed(&r, (uint64_t)seed);
        if (noise) dl_fill_uniform(noise, 0.0f, 1.0f, &r);
        bad = !real || !noise || measure("real training images", m, real, mean, std, ref_feats, &is, &fd) != 0 ||
              measure("uniform noise", m, noise, mean, std, ref_feats, &is, &fd) != 0;
        dl_tensor_free(real);
        dl_tensor_free(noise);
        if (bad) goto fail;
        dl_arena_reset(dl_arena_current());
    }
    for (i = 0; i < n_files; i++) {
        dl_safetensors *st = dl_safetensors_load(image_files[i]);
        const dl_tensor *images = st ? dl_safetensors_get(st, "images") : NULL;
        int r;
        if (!images) {
            if (st) dl_set_error("%s has no tensor \"images\"", image_files[i]);
            dl_safetensors_free(st);
            goto fail;
        }
        r = measure(image_files[i], m, images, mean, std, ref_feats, &is, &fd);
        dl_safetensors_free(st);
        if (r != 0) goto fail;
    }
    printf("frechet_distance=%.4f inception_score=%.4f\n", fd, is);
    ok = 1;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", dl_error());
done:
    dl_tensor_free(ref_probs);
    dl_tensor_free(ref_feats);
    dl_model_free(m);
    dl_dataset_free(train);
    dl_dataset_free(test);
    dl_arena_free_default();
    dl_threads_shutdown();
    return ok ? 0 : 1;
}
