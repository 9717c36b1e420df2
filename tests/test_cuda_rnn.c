/* tests/test_cuda_rnn.c - dl_nn.h's recurrent layers (SimpleRNN, LSTM, GRU) with their weights on the GPU against the same layers on the CPU: outputs,
   the input's gradient and every weight gradient, after a few steps of the fused cells.

   Built like tests/test_cuda.c: with dl_cuda.cu's CPU emulation by tests/run.sh, and against the
   nvcc build by tools/gpu_check.sh (DL_TEST_CUDA_LINKED), where it skips without a GPU. */
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_nn.h"
#include "cuda_test.h"   /* dl_cuda.cu (emulated unless DL_TEST_CUDA_LINKED), REQUIRE_GPU, rand_t, parity */

static dl_layer *make_layer(int kind, int units, int seq) {
    return kind == 0 ? dl_SimpleRNN(units, seq) : kind == 1 ? dl_LSTM(units, seq) : dl_GRU(units, seq);
}

/* Two copies of one model (same seed), the second with its weights moved to the GPU; the
   same input and output weighting on both; outputs and gradients compared. */
static void rnn_parity(int kind, int seq) {
    static const char *const kinds[3] = {"SimpleRNN", "LSTM", "GRU"};
    dl_model *a, *b;
    dl_tensor *x, *dxg, *w, *ya, *yb, *la, *lb;
    dl_rng r;
    float *ha = NULL, *hb = NULL;
    int li, j;
    a = dl_sequential(make_layer(kind, 6, seq));
    b = dl_sequential(make_layer(kind, 6, seq));
    dl_nn_seed(5); /* the weights are drawn when a model is built */
    CHECK(a && dl_model_build(a, 2, DL_SHAPE(4, 3)) == 0, "build: %s", dl_error());
    dl_nn_seed(5);
    CHECK(b && dl_model_build(b, 2, DL_SHAPE(4, 3)) == 0, "build: %s", dl_error());
    for (li = 0; li < dl_model_num_layers(b); li++) {
        dl_layer *l = dl_model_layer(b, li);
        for (j = 0; j < l->n_params; j++)
            CHECK(dl_tensor_move(l->params[j], DL_DEVICE_CUDA) == 0, "move: %s", dl_error());
    }
    dl_rng_seed(&r, 9);
    x = dl_tensor_new(DL_DTYPE_F32, 3, DL_SHAPE(2, 4, 3));
    dl_fill_uniform(x, -1, 1, &r);
    dl_set_requires_grad(x, 1);
    dxg = dl_tensor_clone_to(x, DL_DEVICE_CUDA);
    dl_set_requires_grad(dxg, 1);
    dl_arena_reset(dl_arena_current());
    ya = dl_model_call(a, x, 1);
    yb = dl_model_call(b, dxg, 1);
    CHECK(ya && yb, "%s forward: %s", kinds[kind], dl_error());
    if (!ya || !yb) goto done;
    CHECK(yb->device == DL_DEVICE_CUDA && dl_same_shape(ya, yb), "%s: a GPU output of the same shape", kinds[kind]);
    w = dl_tensor_new(DL_DTYPE_F32, ya->ndim, ya->shape);
    dl_fill_uniform(w, -1, 1, &r);
    la = dl_sum_all(dl_mul(ya, w));
    lb = dl_sum_all(dl_mul(yb, dl_to_device(w, DL_DEVICE_CUDA)));
    CHECK(la && lb && dl_backward(la) == 0 && dl_backward(lb) == 0, "%s backward: %s", kinds[kind], dl_error());
    ha = (float *)malloc(ya->numel * sizeof(float));
    hb = (float *)malloc(ya->numel * sizeof(float));
    CHECK(dl_tensor_read(ya, ha) == 0 && dl_tensor_read(yb, hb) == 0, "read");
    CHECK_ALL_NEAR(hb, ha, ya->numel, 1e-4);
    CHECK(dl_tensor_move(dxg, DL_DEVICE_CPU) == 0 && x->grad && dxg->grad, "input gradients");
    if (x->grad && dxg->grad) CHECK_ALL_NEAR(dxg->grad, x->grad, x->numel, 1e-4);
    for (li = 0; li < dl_model_num_layers(b); li++) {
        dl_layer *la_ = dl_model_layer(a, li), *lb_ = dl_model_layer(b, li);
        for (j = 0; j < lb_->n_params; j++) {
            dl_tensor *p = lb_->params[j], *q = la_->params[j];
            CHECK(dl_tensor_move(p, DL_DEVICE_CPU) == 0, "move back");
            CHECK((p->grad == NULL) == (q->grad == NULL), "%s weight %d: a gradient on one side only", kinds[kind], j);
            if (p->grad && q->grad) CHECK_ALL_NEAR(p->grad, q->grad, q->numel, 1e-4);
        }
    }
    dl_tensor_free(w);
done:
    free(ha);
    free(hb);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(dxg);
    dl_model_free(a);
    dl_model_free(b);
}

static void test_simple_rnn(void) {
    REQUIRE_GPU();
    rnn_parity(0, 0);
    rnn_parity(0, 1);
}

static void test_lstm(void) {
    REQUIRE_GPU();
    rnn_parity(1, 0);
}

static void test_lstm_sequences(void) {
    REQUIRE_GPU();
    rnn_parity(1, 1); /* every step's h: dl_concat on the GPU */
}

static void test_gru(void) {
    REQUIRE_GPU();
    rnn_parity(2, 0);
}

int main(void) {
    RUN(test_simple_rnn);
    RUN(test_lstm);
    RUN(test_lstm_sequences);
    RUN(test_gru);
    dl_arena_free_default();
    return test_summary();
}
