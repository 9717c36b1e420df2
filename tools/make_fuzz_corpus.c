/* Writes the seed corpus of tests/fuzz_model.c into the folder given (one valid model file per
   kind of architecture, small so that the fuzzer mutates them quickly):
     cc -std=c99 -I. tools/make_fuzz_corpus.c -o build/make_fuzz_corpus -lm -lpthread
     ./build/make_fuzz_corpus tests/fuzz_corpus/fuzz_model */
#include <stdio.h>

#define DL_IMPLEMENTATION
#include "../dl_nn.h"

static int save(dl_model *m, const char *dir, const char *name) {
    char path[512];
    if (!m) { fprintf(stderr, "%s: %s\n", name, dl_error()); return 1; }
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    if (dl_model_save(m, path, 1) != 0) { fprintf(stderr, "%s: %s\n", path, dl_error()); dl_model_free(m); return 1; }
    dl_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    dl_model *m;
    dl_sym *in, *h, *s, *out, *pair[2];
    int bad = 0;
    dl_nn_seed(1);
    /* Sequential MLP, compiled, with one Adam step of state */
    m = dl_sequential(dl_Dense(3, DL_ACT_RELU), dl_Dropout(0.25f), dl_Dense(2, DL_ACT_LINEAR));
    if (m && dl_model_build(m, 1, DL_SHAPE(2)) == 0 &&
        dl_compile(m, dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-3, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, DL_METRIC_ACCURACY) == 0) {
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 2)), *y = dl_tmp(DL_DTYPE_I32, 1, DL_SHAPE(2));
        dl_train_on_batch(m, x, y);
    }
    bad |= save(m, dir, "sequential_mlp");
    /* functional: a skip connection through Add, then LayerNormalization */
    in = dl_Input(1, DL_SHAPE(3));
    h = dl_apply(dl_Dense(3, DL_ACT_TANH), in);
    pair[0] = h; pair[1] = in;
    s = dl_apply_n(dl_Add(), 2, pair);
    out = dl_apply(dl_LayerNormalization(0), s);
    out = dl_apply(dl_Dense(1, DL_ACT_SIGMOID), out);
    bad |= save(out ? dl_model_new(1, &in, 1, &out) : NULL, dir, "functional_skip");
    dl_sym_free_unused();
    /* conv: Conv2D, BatchNormalization, MaxPool2D, Conv2DTranspose, Flatten, Dense */
    m = dl_sequential(dl_Conv2D(2, 3, 1, DL_PADDING_SAME, DL_ACT_RELU), dl_BatchNormalization(0, 0), dl_MaxPool2D(2, 0),
                      dl_Conv2DTranspose(1, 2, 2, DL_PADDING_VALID, DL_ACT_LINEAR), dl_Flatten(), dl_Dense(2, DL_ACT_LINEAR));
    if (m && dl_model_build(m, 3, DL_SHAPE(1, 4, 4)) != 0) { dl_model_free(m); m = NULL; }
    bad |= save(m, dir, "conv");
    /* recurrent: Embedding, LSTM, GRU */
    m = dl_sequential(dl_Embedding(5, 2), dl_LSTM(2, 1), dl_GRU(2, 0), dl_Dense(1, DL_ACT_LINEAR));
    if (m && dl_model_build_ids(m, 1, DL_SHAPE(3)) != 0) { dl_model_free(m); m = NULL; }
    bad |= save(m, dir, "rnn");
    /* GAN / CycleGAN layers: every padding, instance norm, LeakyReLU (a real 0 too), upsampling */
    m = dl_sequential(dl_ReflectionPad2D(1), dl_Conv2D(2, 3, 1, DL_PADDING_VALID, DL_ACT_LINEAR), dl_InstanceNormalization(0),
                      dl_LeakyReLU(0.2f), dl_ZeroPadding2D_sides(1, 0, 0, 1), dl_UpSampling2D(2),
                      dl_Conv2DTranspose(1, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR), dl_LeakyReLU((float)DL_ZERO));
    if (m && dl_model_build(m, 3, DL_SHAPE(1, 3, 3)) != 0) { dl_model_free(m); m = NULL; }
    bad |= save(m, dir, "gan");
    dl_arena_free_default();
    return bad;
}
