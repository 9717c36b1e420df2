/* torch_parity.c - the dl half of tools/torch_parity.py (a developer tool, not run by CI).

   Reads a safetensors file of cases written by torch_parity.py, runs each case through dl
   (forward, then dl_backward_grad with the given upstream gradient) and writes the outputs and
   input gradients to another safetensors file, which the Python script compares with PyTorch.

       cc -O2 -I. tools/torch_parity.c -o build/torch_parity -lm -lpthread
       build/torch_parity cases.safetensors results.safetensors [only_case_index]

   Case format: metadata "cNNNNN" = "op;mask;arg arg ..." where mask has one character per
   input: '0' no gradient, '1' gradient, '2' gradient and the input is stored with its last two
   axes swapped (the op gets dl_transpose of it, a strided view), '3' like '2' without gradient.
   Tensors: "cNNNNN.iK" inputs, "cNNNNN.gout" the upstream gradient (absent for error cases).
   Results: "cNNNNN.out", "cNNNNN.gK", for batch_norm "cNNNNN.rm"/"cNNNNN.rv"; metadata
   "cNNNNN" = "ok", "null:<dl_error()>" or "bwfail:<dl_error()>"; "cNNNNN.gK" = "nograd" when
   the input's grad buffer was never allocated (written as zeros). */
#define DL_IMPLEMENTATION
#include "dl_tensor.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define MAXIN 16
#define MAXOUT 200000

static double A[64];
static int NA;
static dl_tensor *IN[MAXIN];   /* owned clones of the stored inputs */
static dl_tensor *V[MAXIN];    /* what the op sees (maybe a transposed view) */
static int NIN;

static const char *out_names[MAXOUT];
static dl_tensor *out_tensors[MAXOUT];
static int n_out;
static const char *mkeys[MAXOUT], *mvals[MAXOUT];
static int n_meta;

static char *dupstr(const char *s) { size_t n = strlen(s) + 1; char *p = (char *)malloc(n); memcpy(p, s, n); return p; }
static void put_tensor(const char *name, dl_tensor *t) { out_names[n_out] = dupstr(name); out_tensors[n_out++] = t; }
static void put_meta(const char *k, const char *v) { mkeys[n_meta] = dupstr(k); mvals[n_meta++] = dupstr(v); }
static dl_tensor *tr(dl_tensor *t) { return dl_transpose(t, t->ndim - 2, t->ndim - 1); }

static dl_tensor *run_op(const char *op) {
#define IS(s) (!strcmp(op, s))
    dl_conv_opts o;
    memset(&o, 0, sizeof o);
    if (IS("add")) return dl_add(V[0], V[1]);
    if (IS("sub")) return dl_sub(V[0], V[1]);
    if (IS("mul")) return dl_mul(V[0], V[1]);
    if (IS("div")) return dl_div(V[0], V[1]);
    if (IS("minimum")) return dl_minimum(V[0], V[1]);
    if (IS("maximum")) return dl_maximum(V[0], V[1]);
    if (IS("add_scalar")) return dl_add_scalar(V[0], (float)A[0]);
    if (IS("mul_scalar")) return dl_mul_scalar(V[0], (float)A[0]);
    if (IS("rsub_scalar")) return dl_rsub_scalar((float)A[0], V[0]);
    if (IS("neg")) return dl_neg(V[0]);
    if (IS("pow")) return dl_pow(V[0], (float)A[0]);
    if (IS("exp")) return dl_exp(V[0]);
    if (IS("log")) return dl_log(V[0]);
    if (IS("sqrt")) return dl_sqrt(V[0]);
    if (IS("abs")) return dl_abs(V[0]);
    if (IS("clamp")) return dl_clamp(V[0], (float)A[0], (float)A[1]);
    if (IS("sum") || IS("mean") || IS("max") || IS("var")) {
        int axes[16], i, naxes = (int)A[0], keep = (int)A[1], corr = (int)A[2];
        for (i = 0; i < naxes && i < 16; i++) axes[i] = (int)A[3 + i];
        if (IS("sum")) return dl_sum(V[0], naxes, axes, keep);
        if (IS("mean")) return dl_mean(V[0], naxes, axes, keep);
        if (IS("max")) return dl_max(V[0], naxes, axes, keep);
        return dl_var(V[0], naxes, axes, corr, keep);
    }
    if (IS("sum_all")) return dl_sum_all(V[0]);
    if (IS("mean_all")) return dl_mean_all(V[0]);
    if (IS("argmax")) return dl_argmax(V[0], (int)A[0], (int)A[1]);
    if (IS("softmax")) return dl_softmax(V[0], (int)A[0]);
    if (IS("log_softmax")) return dl_log_softmax(V[0], (int)A[0]);
    if (IS("matmul")) return dl_matmul(V[0], V[1]);
    if (IS("matmul_t")) return dl_matmul_t(V[0], V[1], (int)A[0], (int)A[1]);
    if (IS("linear")) return dl_linear(V[0], A[1] != 0 ? dl_transpose(V[1], 0, 1) : V[1], A[0] != 0 ? V[2] : NULL);
    if (IS("relu")) return dl_relu(V[0]);
    if (IS("leaky_relu")) return dl_leaky_relu(V[0], (float)A[0]);
    if (IS("elu")) return dl_elu(V[0], (float)A[0]);
    if (IS("gelu")) return dl_gelu(V[0]);
    if (IS("gelu_tanh")) return dl_gelu_tanh(V[0]);
    if (IS("sigmoid")) return dl_sigmoid(V[0]);
    if (IS("tanh")) return dl_tanh(V[0]);
    if (IS("softplus")) return dl_softplus(V[0]);
    if (IS("cross_entropy")) return dl_cross_entropy(V[0], V[1]);
    if (IS("bce_with_logits")) return dl_bce_with_logits(V[0], V[1]);
    if (IS("mse")) return dl_mse(V[0], V[1]);
    if (IS("l1")) return dl_l1(V[0], V[1]);
    if (IS("huber")) return dl_huber(V[0], V[1], (float)A[0]);
    if (IS("conv2d") || IS("conv_transpose2d")) {
        o.stride[0] = (int)A[1]; o.stride[1] = (int)A[2];
        o.padding[0] = (int)A[3]; o.padding[1] = (int)A[4];
        o.dilation[0] = (int)A[5]; o.dilation[1] = (int)A[6];
        o.output_padding[0] = (int)A[7]; o.output_padding[1] = (int)A[8];
        if (IS("conv2d")) return dl_conv2d(V[0], V[1], A[0] != 0 ? V[2] : NULL, &o);
        return dl_conv_transpose2d(V[0], V[1], A[0] != 0 ? V[2] : NULL, &o);
    }
    if (IS("max_pool2d") || IS("avg_pool2d")) {
        o.stride[0] = (int)A[2]; o.stride[1] = (int)A[3];
        o.padding[0] = (int)A[4]; o.padding[1] = (int)A[5];
        o.dilation[0] = (int)A[6]; o.dilation[1] = (int)A[7];
        if (IS("max_pool2d")) return dl_max_pool2d(V[0], (int)A[0], (int)A[1], &o);
        return dl_avg_pool2d(V[0], (int)A[0], (int)A[1], &o);
    }
    if (IS("global_avg_pool2d")) return dl_global_avg_pool2d(V[0]);
    if (IS("upsample_nearest2d")) return dl_upsample_nearest2d(V[0], (int)A[0], (int)A[1]);
    if (IS("pad2d")) return dl_pad2d(V[0], (int)A[0], (int)A[1], (int)A[2], (int)A[3], (dl_pad_mode)(int)A[4]);
    if (IS("batch_norm")) /* x, gamma, beta, running_mean, running_var; flags: training momentum eps hasg hasb hasrun */
        return dl_batch_norm(V[0], A[3] != 0 ? V[1] : NULL, A[4] != 0 ? V[2] : NULL,
                             A[5] != 0 ? V[3] : NULL, A[5] != 0 ? V[4] : NULL, (int)A[0], (float)A[1], (float)A[2]);
    if (IS("layer_norm")) return dl_layer_norm(V[0], (int)A[0], A[2] != 0 ? V[1] : NULL, A[3] != 0 ? V[2] : NULL, (float)A[1]);
    if (IS("instance_norm")) return dl_instance_norm(V[0], A[1] != 0 ? V[1] : NULL, A[2] != 0 ? V[2] : NULL, (float)A[0]);
    if (IS("embedding")) return dl_embedding(V[0], V[1]);
    if (IS("gather")) return dl_gather(V[0], (int)A[0], V[1]);
    if (IS("index_select")) return dl_index_select(V[0], (int)A[0], V[1]);
    if (IS("concat")) return dl_concat(NIN, V, (int)A[0]);
    if (IS("one_hot")) return dl_one_hot(V[0], (int)A[0]);
    if (IS("gram")) return dl_gram(V[0]);
    if (IS("broadcast_to")) { int s[8], i; for (i = 0; i < (int)A[0]; i++) s[i] = (int)A[1 + i]; return dl_broadcast_to(V[0], (int)A[0], s); }
    dl_set_error("torch_parity: unknown op '%s'", op);
    return NULL;
#undef IS
}

int main(int argc, char **argv) {
    dl_safetensors *st;
    int nm, c, only = -1;
    if (argc < 3) { fprintf(stderr, "usage: %s cases.safetensors results.safetensors [case]\n", argv[0]); return 2; }
    if (argc > 3) only = atoi(argv[3]);
    st = dl_safetensors_load(argv[1]);
    if (!st) { fprintf(stderr, "load: %s\n", dl_error()); return 1; }
    nm = dl_safetensors_num_meta(st);
    for (c = 0; c < nm; c++) {
        const char *key = dl_safetensors_meta_key(st, c), *spec = dl_safetensors_meta(st, key);
        char op[64], mask[MAXIN + 1], name[96], msg[1200];
        const char *p, *q;
        dl_tensor *gout, *out;
        int k, idx;
        if (key[0] != 'c') continue;
        idx = atoi(key + 1);
        if (only >= 0 && idx != only) continue;
        /* parse "op;mask;args" */
        p = strchr(spec, ';');
        if (!p) continue;
        memcpy(op, spec, (size_t)(p - spec)); op[p - spec] = 0;
        q = strchr(p + 1, ';');
        memcpy(mask, p + 1, (size_t)(q - p - 1)); mask[q - p - 1] = 0;
        NA = 0;
        {
            char *e; const char *s = q + 1;
            for (;;) { double v = strtod(s, &e); if (e == s) break; A[NA++] = v; s = e; }
        }
        NIN = (int)strlen(mask);
        dl_arena_reset(dl_arena_current());
        dl_clear_error();
        for (k = 0; k < NIN; k++) {
            snprintf(name, sizeof name, "%s.i%d", key, k);
            IN[k] = dl_tensor_clone(dl_safetensors_get(st, name));
            if (!IN[k]) { fprintf(stderr, "%s: missing %s\n", key, name); return 1; }
            if (mask[k] == '1' || mask[k] == '2') dl_set_requires_grad(IN[k], 1);
            V[k] = (mask[k] == '2' || mask[k] == '3') ? tr(IN[k]) : IN[k];
        }
        out = run_op(op);
        if (!out) {
            snprintf(msg, sizeof msg, "null:%s", dl_error());
            put_meta(key, msg);
        } else {
            snprintf(name, sizeof name, "%s.gout", key);
            gout = dl_safetensors_get(st, name);
            snprintf(name, sizeof name, "%s.out", key);
            put_tensor(name, dl_tensor_clone(out));
            if (gout && out->dtype == DL_DTYPE_F32 && out->requires_grad) {
                if (dl_backward_grad(out, dl_f32(gout)) != 0) {
                    snprintf(msg, sizeof msg, "bwfail:%s", dl_error());
                    put_meta(key, msg);
                    goto done;
                }
            }
            put_meta(key, "ok");
            for (k = 0; k < NIN; k++) {
                if (mask[k] != '1' && mask[k] != '2') continue;
                snprintf(name, sizeof name, "%s.g%d", key, k);
                if (IN[k]->grad) put_tensor(name, dl_tensor_from(DL_DTYPE_F32, IN[k]->ndim, IN[k]->shape, IN[k]->grad));
                else { put_tensor(name, dl_tensor_new(DL_DTYPE_F32, IN[k]->ndim, IN[k]->shape)); put_meta(name, "nograd"); }
            }
            if (!strcmp(op, "batch_norm") && NIN >= 5) {
                snprintf(name, sizeof name, "%s.rm", key); put_tensor(name, dl_tensor_clone(IN[3]));
                snprintf(name, sizeof name, "%s.rv", key); put_tensor(name, dl_tensor_clone(IN[4]));
            }
        }
    done:
        for (k = 0; k < NIN; k++) dl_tensor_free(IN[k]);
    }
    if (dl_safetensors_save(argv[2], n_out, out_names, out_tensors, n_meta, mkeys, mvals) != 0) {
        fprintf(stderr, "save: %s\n", dl_error());
        return 1;
    }
    dl_safetensors_free(st);
    return 0;
}
