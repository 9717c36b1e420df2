/* examples/mnist_mlp.c - classify Fashion-MNIST clothes with a multilayer perceptron, Keras style.

   The "basic classification" lesson of Keras / TensorFlow, line for line:

       model = keras.Sequential([layers.Flatten(), layers.Dense(128, activation="relu"),
                                 layers.Dropout(0.2), layers.Dense(10)])
       lr = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=10 * 1875)
       model.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"],
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
       model.fit(train_images, train_labels, epochs=10)          # batch 32
       model.evaluate(test_images, test_labels)

   and then what you do with a trained model: print its summary, save it (a safetensors file),
   load it back, check that the loaded copy predicts exactly the same numbers (bit for bit), and
   look at a few test images, drawn as text, with the predicted and the true class.

   Build and run (from the repository root; or just: make demo):
       cc -std=c99 -O2 -I. examples/mnist_mlp.c -o build/mnist_mlp -lm -lpthread
       ./build/mnist_mlp
   On an NVIDIA GPU (README, "GPU"): dl_cuda.cu built by nvcc, this file with DL_CUDA, then --device cuda:
       nvcc -O2 -I. -c dl_cuda.cu -o build/dl_cuda.o
       cc -std=c99 -O2 -DDL_CUDA -I. examples/mnist_mlp.c build/dl_cuda.o -o build/mnist_mlp_cuda \
          -L/usr/local/cuda/lib64 -lcudart -lcublas -lm -lpthread -lstdc++
       ./build/mnist_mlp_cuda --device cuda

   Flags:
       --data DIR    Fashion-MNIST's four IDX files (train-images-idx3-ubyte[.gz], ...). Default:
                     /usr/share/datasets/fashion-mnist (Debian: apt-get install
                     dataset-fashion-mnist: 60000 training, 10000 test images) when it exists,
                     else data/fashion-mnist, the 3000/1000-image subset shipped in this repository
       --epochs N    training epochs (default 10)
       --seed S      initial weights, dropout masks and shuffling (default 1)
       --threads T   threads for the matrix products (default: DL_NUM_THREADS or all CPUs)
       --save PATH   where to save the model (default build/mnist_mlp.safetensors; when build/
                     is not writable, mnist_mlp.safetensors in the current directory)
       --show N      test images to draw (default 4; 0 for none)
       --lr-decay D  1 (default): the learning rate follows a cosine from 1e-3 down to 0 over the
                     whole run, batch by batch (Keras' CosineDecay); 0: a constant 1e-3, the
                     tutorial's plain "adam"
       --device D    cpu (default) or cuda: the model (weights, optimizer state) on the GPU, the
                     data on the host, each batch copied over (dl_model_move). Needs the CUDA
                     build above; without it, or without a usable GPU, the program says why and
                     exits with status 1

   Expected result: on the full data set 0.884-0.888 test accuracy after 10 epochs (seeds 1-4;
   with --lr-decay 0, the tutorial's constant rate, 0.878-0.886, and PyTorch with that recipe
   0.877-0.882), about 0.2 s an epoch on one or two cores; on the shipped subset about 0.83. The last line is "test_accuracy=0.XXXX". Returns
   non-zero, with the reason, if anything fails (including a reloaded model that does not
   predict identically). */
#define DL_IMPLEMENTATION
#include "dl_nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FULL_DIR "/usr/share/datasets/fashion-mnist"
#define SUBSET_DIR "data/fashion-mnist"

static const char *const class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* 1 when dir holds Fashion-MNIST's test labels (plain or gzip'd): enough to pick a default. */
static int has_fashion_mnist(const char *dir) {
    static const char *const names[2] = {"t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"};
    char path[1024];
    int i;
    for (i = 0; i < 2; i++) {
        FILE *f;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((f = fopen(path, "rb")) != NULL) { fclose(f); return 1; }
    }
    return 0;
}

static int argmax10(const float *v) {
    int i, best = 0;
    for (i = 1; i < 10; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Draws test images first..first+n-1, two side by side: 28x28 pixels as 28 characters by 14
   lines (two pixel rows averaged per line, since characters are about twice as tall as wide). */
static void show_images(const dl_dataset *test, const float *logits, int n) {
    static const char ramp[] = " .:-=+*#%@";
    const float *px = dl_f32(test->x);
    const int32_t *labels = dl_i32(test->y);
    int first, k, r, c;
    for (first = 0; first < n; first += 2) {
        int count = n - first < 2 ? n - first : 2;
        printf("\n");
        for (r = 0; r < 28; r += 2) {
            for (k = 0; k < count; k++) {
                const float *img = px + (size_t)(first + k) * 784;
                printf(k ? "    |" : "|");
                for (c = 0; c < 28; c++) {
                    float v = 0.5f * (img[r * 28 + c] + img[(r + 1) * 28 + c]);   /* in [0, 1] */
                    int level = (int)(v * 9.999f);
                    putchar(ramp[level < 0 ? 0 : level > 9 ? 9 : level]);
                }
                printf("|");
            }
            printf("\n");
        }
        for (r = 0; r < 2; r++) {   /* two caption lines under each picture, 30 characters wide */
            for (k = 0; k < count; k++) {
                int i = first + k, pred = argmax10(logits + (size_t)i * 10);
                char caption[64];
                if (r == 0)
                    snprintf(caption, sizeof caption, " pred: %s%s", class_names[pred], pred == labels[i] ? "" : "  (wrong)");
                else snprintf(caption, sizeof caption, " true: %s", class_names[labels[i]]);
                printf(k + 1 < count ? "%-34s" : "%s", caption);
            }
            printf("\n");
        }
    }
    printf("\n");
}

int main(int argc, char **argv) {
    const char *data = NULL, *save = NULL, *device_name = "cpu";
    int epochs = 10, seed = 1, threads = 0, show = 4, lr_decay = 1, i, ok = 0;
    dl_device device = DL_DEVICE_CPU;
    dl_callback *schedule = NULL;
    dl_dataset *train = NULL, *test = NULL;
    dl_model *model = NULL, *loaded = NULL;
    dl_tensor *p1 = NULL, *p2 = NULL;
    dl_fit_opts fit;
    dl_logs logs;
    double accuracy;
    time_t t0;

    for (i = 1; i < argc; i += 2) {   /* --flag value pairs */
        const char *flag = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) flag = "";   /* a flag without its value: the usage message below */
        if (strcmp(flag, "--data") == 0) data = val;
        else if (strcmp(flag, "--epochs") == 0) epochs = atoi(val);
        else if (strcmp(flag, "--seed") == 0) seed = atoi(val);
        else if (strcmp(flag, "--threads") == 0) threads = atoi(val);
        else if (strcmp(flag, "--save") == 0) save = val;
        else if (strcmp(flag, "--show") == 0) show = atoi(val);
        else if (strcmp(flag, "--lr-decay") == 0) lr_decay = atoi(val);
        else if (strcmp(flag, "--device") == 0 && (strcmp(val, "cpu") == 0 || strcmp(val, "cuda") == 0)) device_name = val;
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--seed S] [--threads T] [--save PATH] [--show N] "
                    "[--lr-decay 0|1] [--device cpu|cuda]\n", argv[0]);
            return 2;
        }
    }
    if (threads > 0) dl_set_num_threads(threads);
    if (strcmp(device_name, "cuda") == 0) {   /* fails with the reason: no DL_CUDA build, no driver, no GPU */
        device = DL_DEVICE_CUDA;
        if (dl_cuda_init() != 0) { fprintf(stderr, "error: --device cuda: %s\n", dl_error()); return 1; }
    }

    /* The data: x f32 [N, 1, 28, 28] with pixels in [0, 1], y i32 [N] class labels. */
    if (!data) data = has_fashion_mnist(FULL_DIR) ? FULL_DIR : SUBSET_DIR;
    train = dl_fashion_mnist_load(data, 1);
    test = dl_fashion_mnist_load(data, 0);
    if (!train || !test) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    printf("Fashion-MNIST from %s: %d training and %d test images\n", data, train->n, test->n);
    if (train->n < 60000)
        printf("note: this is a subset of Fashion-MNIST (expect ~0.83 rather than ~0.88 test accuracy);\n"
               "      the full set: apt-get install dataset-fashion-mnist, or --data DIR\n");
    if (show > test->n) show = test->n;

    /* The model. dl_nn_seed fixes the initial weights and the dropout masks (Keras:
       keras.utils.set_random_seed). The last layer outputs logits; the loss applies softmax. */
    dl_nn_seed((uint64_t)seed);
    model = dl_sequential(dl_Flatten(), dl_Dense(128, DL_ACT_RELU), dl_Dropout(0.2f), dl_Dense(10, DL_ACT_LINEAR));
    if (!model) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    /* Adam with Keras' defaults: lr 1e-3, betas 0.9 and 0.999, epsilon 1e-7. */
    if (dl_compile(model, dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-3, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, DL_METRIC_ACCURACY) != 0 ||
        dl_model_build(model, 3, DL_SHAPE(1, 28, 28)) != 0) {   /* weights now, for the summary */
        fprintf(stderr, "error: %s\n", dl_error());
        goto done;
    }
    dl_model_print_summary(model);
    if (device != DL_DEVICE_CPU) {   /* the weights to the GPU; fit copies each batch there */
        if (dl_model_move(model, device) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
        printf("training on the %s\n", dl_device_name(device));
    }

    /* Training: a progress bar on a terminal, one line per epoch otherwise. */
    memset(&fit, 0, sizeof fit);
    fit.epochs = epochs;
    fit.batch_size = 32;
    fit.seed = (uint64_t)seed;   /* the shuffle order of every epoch */
    if (lr_decay) {   /* cosine decay to 0, set before every batch from the optimizer's step count */
        dl_lr_schedule cosine;
        memset(&cosine, 0, sizeof cosine);
        cosine.kind = DL_LR_COSINE;
        cosine.base_lr = 1e-3;
        cosine.t_max = (long)epochs * ((train->n + 31) / 32);
        if (!(schedule = dl_lr_scheduler(&cosine, 1))) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
        fit.callbacks = &schedule;
        fit.n_callbacks = 1;
    }
    t0 = time(NULL);
    if (!dl_fit(model, train, &fit)) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    printf("trained %d epochs in %.0f s\n", epochs, difftime(time(NULL), t0));

    if (dl_evaluate(model, test, 256, &logs) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    accuracy = dl_logs_get(&logs, "accuracy");
    printf("test loss %.4f, test accuracy %.4f\n", dl_logs_get(&logs, "loss"), accuracy);

    /* Save (weights, architecture, optimizer state) and load back as a new model. */
    if (!save) {
        FILE *f = fopen("build/mnist_mlp.safetensors", "ab");   /* can we write into build/? */
        save = f ? "build/mnist_mlp.safetensors" : "mnist_mlp.safetensors";
        if (f) fclose(f);
    }
    if (dl_model_save(model, save, 1) != 0 || !(loaded = dl_model_load(save))) {
        fprintf(stderr, "error: %s\n", dl_error());
        goto done;
    }
    if (device != DL_DEVICE_CPU && dl_model_move(loaded, device) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    printf("saved to %s and loaded back\n", save);

    /* The loaded model must give the same logits, bit for bit, on the whole test set. */
    p1 = dl_predict(model, test->x, 256);   /* owned [N, 10] */
    p2 = dl_predict(loaded, test->x, 256);
    if (!p1 || !p2) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    if (p1->numel != p2->numel || memcmp(p1->data, p2->data, p1->numel * sizeof(float)) != 0) {
        fprintf(stderr, "error: the loaded model predicts differently from the saved one\n");
        goto done;
    }
    printf("the loaded model predicts bit-identically on all %d test images\n", test->n);

    if (show > 0) show_images(test, dl_f32(p2), show);
    printf("test_accuracy=%.4f\n", accuracy);
    ok = 1;

done:
    dl_callback_free(schedule);
    dl_tensor_free(p1);
    dl_tensor_free(p2);
    dl_model_free(model);
    dl_model_free(loaded);
    dl_dataset_free(train);
    dl_dataset_free(test);
    dl_arena_free_default();
    dl_threads_shutdown();
    return ok ? 0 : 1;
}
