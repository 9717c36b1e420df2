/* Convolution, pooling, padding and upsampling of dl_tensor.h: values against PyTorch, gradient
   checks over many configurations, determinism across thread counts, and bad inputs.

   The reference constants below were printed by PyTorch 1.13 (CPU) with this script; its
   inputs are the patterns that pattern() below builds, so every number is a short binary
   fraction and the comparisons are nearly exact:

       import torch, torch.nn.functional as F
       torch.set_printoptions(precision=8)
       def pat(shape, a, m, div=8.0):
           n = 1
           for s in shape: n *= s
           return torch.tensor([((i * a) % m - m // 2) / div for i in range(n)], dtype=torch.float32).reshape(shape)
       def lit(x):
           s = "%.8g" % x
           return s + (".0f" if "." not in s and "e" not in s else "f")
       def dump(name, t):
           v = t.detach().flatten().tolist()
           print("static const float %s[%d] = {" % (name, len(v)))
           for i in range(0, len(v), 8):
               print("    " + ", ".join(lit(x) for x in v[i:i+8]) + ",")
           print("};")
       # conv2d: x [2,3,5,6], w [4,3,3,2], b [4], stride (2,1), padding (1,0), dilation (1,2)
       x = pat([2,3,5,6], 37, 23).requires_grad_(); w = pat([4,3,3,2], 53, 17).requires_grad_(); b = pat([4], 5, 7, 4.0).requires_grad_()
       y = F.conv2d(x, w, b, stride=(2,1), padding=(1,0), dilation=(1,2))
       dump("conv2d_y", y)
       g = pat(list(y.shape), 29, 13)
       y.backward(g)
       dump("conv2d_dx", x.grad); dump("conv2d_dw", w.grad); dump("conv2d_db", b.grad)
       # conv_transpose2d: x [1,2,3,3], w [2,2,3,2], b [2], stride (2,1), padding (1,0), output_padding (1,0), dilation (1,2)
       x = pat([1,2,3,3], 37, 23).requires_grad_(); w = pat([2,2,3,2], 53, 17).requires_grad_(); b = pat([2], 5, 7, 4.0).requires_grad_()
       y = F.conv_transpose2d(x, w, b, stride=(2,1), padding=(1,0), output_padding=(1,0), dilation=(1,2))
       dump("convt_y", y)
       g = pat(list(y.shape), 29, 13)
       y.backward(g)
       dump("convt_dx", x.grad); dump("convt_dw", w.grad); dump("convt_db", b.grad)
       # pools: x [1,2,5,5], kernel 3, stride 2, padding 1
       x = pat([1,2,5,5], 37, 23)
       dump("maxpool_y", F.max_pool2d(x, 3, 2, 1))
       dump("avgpool_y", F.avg_pool2d(x, 3, 2, 1))
       # max pool with dilation 2, kernel (2,3), stride 1, padding (1,1)
       dump("maxpool_dil_y", F.max_pool2d(x, (2,3), 1, (1,1), dilation=2))
       # avg pool kernel (2,3) stride (1,2) padding (1,1)
       dump("avgpool2_y", F.avg_pool2d(x, (2,3), (1,2), (1,1)))
       # reflect pad: x [1,1,3,4], pad (left 2, right 3, top 1, bottom 2)
       x = pat([1,1,3,4], 37, 23).requires_grad_()
       y = F.pad(x, (2,3,1,2), mode="reflect")
       dump("reflect_y", y)
       g = pat(list(y.shape), 29, 13); y.backward(g); dump("reflect_dx", x.grad)
       # max pool ties: gradient to first max
       x = torch.tensor([[[[1., 1., 0., 2.], [1., 1., 2., 1.], [3., 3., 3., 3.], [3., 3., 3., 3.]]]], requires_grad=True)
       y = F.max_pool2d(x, 2); y.sum().backward()
       dump("tie_y", y); dump("tie_dx", x.grad)
*/
#include <limits.h>
#include <stdlib.h>
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

static const float conv2d_y[96] = {
    -0.625f, 2.09375f, 0.140625f, -2.890625f, -3.171875f, -0.96875f, -1.640625f, 1.28125f,
    -0.796875f, -1.015625f, -0.15625f, -2.171875f, 3.53125f, -0.96875f, 2.078125f, 3.328125f,
    -2.078125f, 4.15625f, -3.984375f, 3.6875f, -1.875f, 0.515625f, 3.265625f, -2.25f,
    1.15625f, -0.734375f, -1.1875f, 1.953125f, 2.578125f, 0.625f, -2.765625f, -2.5625f,
    -1.25f, 0.03125f, 0.953125f, 0.4375f, 0.109375f, 0.828125f, -3.125f, 1.90625f,
    -2.328125f, -0.25f, 1.109375f, -6.15625f, 2.03125f, -3.90625f, 1.296875f, -0.328125f,
    -0.3125f, -1.90625f, -0.625f, 2.09375f, 1.765625f, 3.609375f, -3.171875f, -0.96875f,
    -4.3125f, 0.859375f, -0.796875f, -1.015625f, 0.671875f, -2.03125f, 3.53125f, -0.96875f,
    5.578125f, -0.046875f, -2.078125f, 4.15625f, -3.78125f, 3.28125f, -1.875f, 0.515625f,
    -0.09375f, -0.1875f, 1.15625f, -0.734375f, 0.734375f, -0.140625f, 2.578125f, 0.625f,
    -0.21875f, -1.09375f, -1.25f, 0.03125f, 0.46875f, -3.125f, 0.109375f, 0.828125f,
    -1.453125f, 2.421875f, -2.328125f, -0.25f, -0.109375f, -2.8125f, 2.03125f, -3.90625f,
};
static const float conv2d_dx[180] = {
    0.1875f, 0.40625f, 0.3125f, -0.09375f, 0.0625f, -0.5625f, -0.9375f, -0.09375f,
    -0.90625f, -0.90625f, -0.09375f, -0.9375f, -0.5625f, 0.0625f, -0.09375f, 0.3125f,
    0.40625f, 0.1875f, -0.8125f, 0.4375f, 0.3125f, 1.125f, 1.0f, 0.5625f,
    -0.5f, 0.125f, -0.09375f, 0.3125f, 0.34375f, 0.125f, -1.171875f, -0.078125f,
    0.9375f, 1.484375f, 0.453125f, -0.09375f, 1.21875f, 1.15625f, 1.59375f, -1.015625f,
    -1.34375f, -0.4375f, 0.5625f, -1.390625f, -1.140625f, 0.21875f, 0.09375f, -0.046875f,
    0.15625f, 0.5f, 0.703125f, -1.09375f, -1.171875f, 0.140625f, 0.671875f, -1.28125f,
    -0.78125f, 0.578125f, 0.34375f, 0.203125f, 0.390625f, -0.296875f, -1.359375f, -0.921875f,
    0.046875f, 1.171875f, -1.40625f, 0.28125f, 1.4375f, 2.328125f, 1.125f, 0.328125f,
    0.890625f, 0.609375f, 1.0f, -1.203125f, -1.546875f, -0.015625f, 0.0625f, -1.296875f,
    -1.296875f, 0.40625f, 0.375f, -0.015625f, 0.78125f, 0.5f, 0.921875f, -1.28125f,
    -1.515625f, 0.015625f, 0.125f, 0.34375f, 0.3125f, -0.09375f, 0.125f, -0.5f,
    0.5625f, 1.0f, 1.125f, 0.3125f, 0.4375f, -0.8125f, 0.1875f, 0.40625f,
    0.3125f, -0.09375f, 0.0625f, -0.5625f, -0.9375f, -0.09375f, -0.90625f, -0.90625f,
    -0.09375f, -0.9375f, -0.5625f, 0.0625f, -0.09375f, 0.3125f, 0.40625f, 0.1875f,
    -1.28125f, -0.1875f, 0.578125f, 1.125f, 0.203125f, -0.34375f, 0.453125f, -0.015625f,
    -1.171875f, -1.140625f, 0.109375f, 0.609375f, -1.171875f, -0.078125f, 0.9375f, 1.484375f,
    0.453125f, -0.09375f, 1.21875f, 1.15625f, 1.59375f, -1.015625f, -1.34375f, -0.4375f,
    0.5625f, -1.390625f, -1.140625f, 0.21875f, 0.09375f, -0.046875f, 0.5f, -0.1875f,
    -1.28125f, -0.84375f, 0.015625f, 1.140625f, -1.25f, 0.03125f, 0.515625f, 0.59375f,
    0.046875f, -1.15625f, 0.390625f, -0.296875f, -1.359375f, -0.921875f, 0.046875f, 1.171875f,
    -1.40625f, 0.28125f, 1.4375f, 2.328125f, 1.125f, 0.328125f, 0.890625f, 0.609375f,
    1.0f, -1.203125f, -1.546875f, -0.015625f,
};
static const float conv2d_dw[72] = {
    2.546875f, 1.03125f, 1.3125f, 2.40625f, 0.90625f, -2.828125f, -1.140625f, -2.296875f,
    2.265625f, 1.203125f, -0.84375f, 0.453125f, -3.03125f, 0.84375f, 1.0625f, -3.59375f,
    -0.796875f, 0.859375f, -0.046875f, 3.0625f, -1.8125f, -4.203125f, 1.96875f, 2.859375f,
    2.03125f, 0.828125f, -4.25f, 1.625f, 1.3125f, -2.109375f, 1.234375f, -4.28125f,
    1.578125f, 2.78125f, -2.21875f, -0.609375f, -0.609375f, -2.21875f, 2.78125f, 1.578125f,
    -4.28125f, 1.234375f, -2.109375f, 1.3125f, 1.625f, -4.25f, 0.828125f, 2.03125f,
    2.859375f, 1.96875f, -4.203125f, -1.8125f, 3.0625f, -0.046875f, 0.859375f, -0.796875f,
    -3.59375f, 1.0625f, 0.84375f, -3.03125f, 0.453125f, -0.84375f, 1.203125f, 2.265625f,
    -2.296875f, -1.140625f, -2.828125f, 0.90625f, 2.40625f, 1.3125f, 1.03125f, 2.546875f,
};
static const float conv2d_db[4] = {
    -1.125f, -0.375f, 0.375f, 1.125f,
};
static const float convt_y[60] = {
    -0.0625f, -1.359375f, 0.203125f, -1.546875f, -0.171875f, -1.6875f, -1.765625f, -0.125f,
    0.71875f, -0.609375f, -1.4375f, -0.21875f, -0.640625f, 0.0625f, -0.359375f, -1.5625f,
    0.875f, -1.46875f, -1.46875f, -2.078125f, -1.375f, -0.15625f, -2.203125f, -0.125f,
    -1.265625f, -1.625f, -0.09375f, 0.046875f, -1.65625f, -0.09375f, -0.875f, 1.15625f,
    0.796875f, 0.171875f, 1.15625f, 2.234375f, -1.015625f, 1.921875f, -0.921875f, 0.09375f,
    1.625f, 0.0625f, -1.65625f, 0.609375f, 1.59375f, 0.75f, 0.015625f, 2.40625f,
    0.328125f, 2.0625f, 1.25f, -0.3125f, 1.28125f, 1.046875f, -0.484375f, -0.0625f,
    1.078125f, -0.984375f, 1.109375f, -0.109375f,
};
static const float convt_dx[18] = {
    1.640625f, -0.5f, -0.8125f, -0.578125f, -0.671875f, 0.046875f, 0.515625f, -0.1875f,
    -0.6875f, -1.25f, -0.328125f, 1.0f, 0.34375f, 0.1875f, 0.84375f, 0.203125f,
    -0.5625f, -1.125f,
};
static const float convt_dw[24] = {
    -0.1875f, 1.5f, -0.96875f, 0.625f, -0.234375f, 1.5625f, -0.265625f, 1.421875f,
    -3.0625f, 0.5625f, -1.109375f, 1.703125f, 0.125f, -0.5f, 1.21875f, -0.796875f,
    -0.0625f, -1.875f, 0.09375f, -0.53125f, 1.25f, 1.265625f, 1.1875f, -1.84375f,
};
static const float convt_db[2] = {
    -0.75f, 0.375f,
};
static const float maxpool_y[18] = {
    0.5f, 1.125f, 1.125f, 0.75f, 1.375f, 1.375f, 0.875f, 1.375f,
    1.375f, 1.125f, 1.125f, 0.625f, 1.375f, 1.375f, 0.875f, 1.375f,
    1.375f, 1.0f,
};
static const float avgpool_y[18] = {
    -0.19444445f, 0.18055555f, 0.22222222f, -0.16666667f, 0.45833334f, 0.45833334f, -0.027777778f, 0.11111111f,
    0.069444448f, 0.083333336f, -0.041666668f, -0.1388889f, 0.25f, 0.125f, -0.083333336f, -0.069444448f,
    -0.11111111f, 0.027777778f,
};
static const float maxpool_dil_y[30] = {
    1.125f, 0.0f, 1.125f, 1.25f, 0.125f, 1.25f, 1.375f, 0.25f,
    1.375f, 1.25f, 0.375f, 1.25f, 1.375f, 0.25f, 1.375f, 1.125f,
    0.625f, 1.125f, 1.25f, 0.75f, 1.25f, 1.375f, 0.875f, 1.375f,
    1.25f, 1.0f, 1.25f, 1.375f, 0.875f, 1.375f,
};
static const float avgpool2_y[36] = {
    -0.16666667f, 0.10416666f, 0.14583333f, -0.29166666f, 0.27083334f, 0.33333334f, -0.20833333f, 0.39583334f,
    0.41666666f, -0.125f, 0.52083331f, 0.5f, -0.041666668f, 0.16666667f, 0.10416666f, 0.0f,
    -0.125f, -0.16666667f, 0.041666668f, -0.0625f, -0.125f, 0.125f, -0.0625f, -0.20833333f,
    0.20833333f, 0.0625f, -0.125f, 0.29166666f, 0.1875f, -0.041666668f, -0.10416666f, -0.16666667f,
    0.041666668f, -0.27083334f, -0.29166666f, 0.041666668f,
};
static const float reflect_y[54] = {
    0.5f, -1.25f, -0.125f, -1.25f, 0.5f, -0.625f, 0.5f, -1.25f,
    -0.125f, -0.75f, 0.375f, -1.375f, 0.375f, -0.75f, 1.0f, -0.75f,
    0.375f, -1.375f, 0.5f, -1.25f, -0.125f, -1.25f, 0.5f, -0.625f,
    0.5f, -1.25f, -0.125f, -1.125f, 0.0f, 1.125f, 0.0f, -1.125f,
    0.625f, -1.125f, 0.0f, 1.125f, 0.5f, -1.25f, -0.125f, -1.25f,
    0.5f, -0.625f, 0.5f, -1.25f, -0.125f, -0.75f, 0.375f, -1.375f,
    0.375f, -0.75f, 1.0f, -0.75f, 0.375f, -1.375f,
};
static const float reflect_dx[12] = {
    1.125f, -0.5f, -1.25f, -0.25f, 0.125f, 1.375f, -1.375f, -0.75f,
    -0.25f, 1.375f, -0.625f, -0.125f,
};
static const float tie_y[4] = {
    1.0f, 2.0f, 3.0f, 3.0f,
};
static const float tie_dx[16] = {
    1.0f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f,
    1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
};

/* ((i*a) % m - m/2) / div for i = 0.., the pat() of the script above; arena tensor. */
static dl_tensor *pattern(int ndim, const int *shape, int a, int m, float div) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, ndim, shape);
    size_t i;
    for (i = 0; t && i < t->numel; i++) dl_f32(t)[i] = (float)((long)(i * (size_t)a) % m - m / 2) / div;
    return t;
}

/* A persistent tensor of uniform(-1, 1) values that requires a gradient. */
static dl_tensor *param(dl_rng *r, int ndim, const int *shape) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, ndim, shape);
    dl_fill_uniform(t, -1.0f, 1.0f, r);
    dl_set_requires_grad(t, 1);
    return t;
}

/* Seeds d(out) with pattern(29, 13) and runs backward. */
static void backward_with_pattern(dl_tensor *y) {
    dl_tensor *g = pattern(y->ndim, y->shape, 29, 13, 8.0f);
    CHECK(dl_backward_grad(y, dl_f32(g)) == 0, "%s", dl_error());
}

static dl_conv_opts opts(int sh, int sw, int ph, int pw, int dh, int dw, int oph, int opw) {
    dl_conv_opts o;
    o.stride[0] = sh; o.stride[1] = sw;
    o.padding[0] = ph; o.padding[1] = pw;
    o.dilation[0] = dh; o.dilation[1] = dw;
    o.output_padding[0] = oph; o.output_padding[1] = opw;
    return o;
}

static void test_conv2d_vs_torch(void) {
    dl_tensor *x = pattern(4, DL_SHAPE(2, 3, 5, 6), 37, 23, 8.0f);
    dl_tensor *w = pattern(4, DL_SHAPE(4, 3, 3, 2), 53, 17, 8.0f);
    dl_tensor *b = pattern(1, DL_SHAPE(4), 5, 7, 4.0f);
    dl_conv_opts o = opts(2, 1, 1, 0, 1, 2, 0, 0);
    dl_tensor *y;
    dl_set_requires_grad(x, 1);
    dl_set_requires_grad(w, 1);
    dl_set_requires_grad(b, 1);
    y = dl_conv2d(x, w, b, &o);
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 4 && y->shape[2] == 3 && y->shape[3] == 4, "%s", dl_error());
    if (!y) return;
    CHECK_ALL_NEAR(dl_f32(y), conv2d_y, 96, 1e-6);
    backward_with_pattern(y);
    CHECK_ALL_NEAR(x->grad, conv2d_dx, 180, 1e-6);
    CHECK_ALL_NEAR(w->grad, conv2d_dw, 72, 1e-6);
    CHECK_ALL_NEAR(b->grad, conv2d_db, 4, 1e-6);
    dl_arena_reset(dl_arena_current());
}

static void test_conv_transpose2d_vs_torch(void) {
    dl_tensor *x = pattern(4, DL_SHAPE(1, 2, 3, 3), 37, 23, 8.0f);
    dl_tensor *w = pattern(4, DL_SHAPE(2, 2, 3, 2), 53, 17, 8.0f);
    dl_tensor *b = pattern(1, DL_SHAPE(2), 5, 7, 4.0f);
    dl_conv_opts o = opts(2, 1, 1, 0, 1, 2, 1, 0);
    dl_tensor *y;
    dl_set_requires_grad(x, 1);
    dl_set_requires_grad(w, 1);
    dl_set_requires_grad(b, 1);
    y = dl_conv_transpose2d(x, w, b, &o);
    CHECK(y && y->shape[0] == 1 && y->shape[1] == 2 && y->shape[2] == 6 && y->shape[3] == 5, "%s", dl_error());
    if (!y) return;
    CHECK_ALL_NEAR(dl_f32(y), convt_y, 60, 1e-6);
    backward_with_pattern(y);
    CHECK_ALL_NEAR(x->grad, convt_dx, 18, 1e-6);
    CHECK_ALL_NEAR(w->grad, convt_dw, 24, 1e-6);
    CHECK_ALL_NEAR(b->grad, convt_db, 2, 1e-6);
    dl_arena_reset(dl_arena_current());
}

static void test_pools_vs_torch(void) {
    dl_tensor *x = pattern(4, DL_SHAPE(1, 2, 5, 5), 37, 23, 8.0f), *y;
    dl_conv_opts o = opts(2, 2, 1, 1, 0, 0, 0, 0);
    y = dl_max_pool2d(x, 3, 3, &o);
    CHECK(y && y->shape[2] == 3 && y->shape[3] == 3, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), maxpool_y, 18, 0);
    y = dl_avg_pool2d(x, 3, 3, &o);
    CHECK(y && y->shape[2] == 3 && y->shape[3] == 3, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), avgpool_y, 18, 1e-6);
    o = opts(1, 1, 1, 1, 2, 2, 0, 0);
    y = dl_max_pool2d(x, 2, 3, &o);
    CHECK(y && y->shape[2] == 5 && y->shape[3] == 3, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), maxpool_dil_y, 30, 0);
    o = opts(1, 2, 1, 1, 0, 0, 0, 0);
    y = dl_avg_pool2d(x, 2, 3, &o);
    CHECK(y && y->shape[2] == 6 && y->shape[3] == 3, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), avgpool2_y, 36, 1e-6);
    /* Global average pooling: [N, C] of plane means. */
    y = dl_global_avg_pool2d(x);
    CHECK(y && y->ndim == 2 && y->shape[0] == 1 && y->shape[1] == 2, "%s", dl_error());
    if (y) {
        double s0 = 0, s1 = 0;
        int i;
        for (i = 0; i < 25; i++) { s0 += dl_f32(x)[i]; s1 += dl_f32(x)[25 + i]; }
        CHECK_NEAR(dl_f32(y)[0], s0 / 25, 1e-6);
        CHECK_NEAR(dl_f32(y)[1], s1 / 25, 1e-6);
    }
    dl_arena_reset(dl_arena_current());
}

/* A window wholly in the padding (allowed: pad <= half the dilated kernel, as torch) outputs
   -inf and credits no input: its backward wrote to gx[-1] before (found by ASan). */
static void test_max_pool_empty_window(void) {
    dl_conv_opts o = opts(1, 1, 2, 2, 3, 3, 0, 0);
    dl_tensor *x = dl_full(4, DL_SHAPE(1, 1, 1, 1), 2.0f), *y;
    dl_set_requires_grad(x, 1);
    y = dl_max_pool2d(x, 2, 2, &o);
    CHECK(y != NULL, "%s", dl_error());
    if (!y) return;
    CHECK(y->numel == 4 && dl_f32(y)[0] == -INFINITY && dl_f32(y)[3] == -INFINITY, "every window is empty: -inf");
    CHECK(dl_backward(dl_sum_all(y)) == 0 && x->grad && x->grad[0] == 0.0f, "no gradient reaches the input");
}

static void test_max_pool_ties(void) {
    static const float xs[16] = {1, 1, 0, 2, 1, 1, 2, 1, 3, 3, 3, 3, 3, 3, 3, 3};
    dl_tensor *x = dl_tmp_from(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 4, 4), xs), *y;
    float ones[4] = {1, 1, 1, 1};
    dl_set_requires_grad(x, 1);
    y = dl_max_pool2d(x, 2, 2, NULL);
    CHECK(y && y->numel == 4, "%s", dl_error());
    if (!y) return;
    CHECK_ALL_NEAR(dl_f32(y), tie_y, 4, 0);
    dl_backward_grad(y, ones);
    CHECK_ALL_NEAR(x->grad, tie_dx, 16, 0);
    /* torch: a NaN wins and the last NaN of the window gets the gradient; among equal maxima the
       first; a window of -inf (with padding) sends it to its first tap inside the image. */
    {
        static const float xn[8] = {NAN, 1, 5, -INFINITY, NAN, 0, 5, -INFINITY};
        static const float want_gx[8] = {0, 0, 1, 0, 1, 0, 0, 0};
        static const float want_inf[9] = {4, 2, 2, 2, 1, 1, 2, 1, 1};
        dl_conv_opts o = opts(1, 1, 1, 1, 0, 0, 0, 0);
        dl_tensor *xi = dl_full(4, DL_SHAPE(1, 1, 3, 3), -INFINITY);
        x = dl_tmp_from(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 2, 4), xn);
        dl_set_requires_grad(x, 1);
        y = dl_max_pool2d(x, 2, 2, NULL);
        CHECK(y && dl_f32(y)[0] != dl_f32(y)[0] && dl_f32(y)[1] == 5.0f, "NaN propagates");
        if (y) dl_backward_grad(y, ones);
        if (y) CHECK_ALL_NEAR(x->grad, want_gx, 8, 0);
        dl_set_requires_grad(xi, 1);
        y = dl_max_pool2d(xi, 2, 2, &o);
        CHECK(y && y->numel == 16 && dl_f32(y)[5] == -INFINITY, "%s", dl_error());
        if (y) dl_backward_grad(y, dl_f32(dl_full(4, y->shape, 1.0f)));
        if (y) CHECK_ALL_NEAR(xi->grad, want_inf, 9, 0);
    }
    dl_arena_reset(dl_arena_current());
}

static void test_reflect_pad_vs_torch(void) {
    dl_tensor *x = pattern(4, DL_SHAPE(1, 1, 3, 4), 37, 23, 8.0f), *y;
    dl_set_requires_grad(x, 1);
    y = dl_pad2d(x, 2, 3, 1, 2, DL_PAD_REFLECT);
    CHECK(y && y->shape[2] == 6 && y->shape[3] == 9, "%s", dl_error());
    if (!y) return;
    CHECK_ALL_NEAR(dl_f32(y), reflect_y, 54, 0);
    backward_with_pattern(y);
    CHECK_ALL_NEAR(x->grad, reflect_dx, 12, 1e-6);
    /* Zero padding and upsampling by hand. */
    {
        static const float xs[4] = {1, 2, 3, 4};
        static const float up[12] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4};
        dl_tensor *s = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(2, 2), xs);
        y = dl_pad2d(s, 1, 0, 1, 1, DL_PAD_ZERO); /* -> [4, 3] */
        CHECK(y && y->shape[0] == 4 && y->shape[1] == 3, "%s", dl_error());
        if (y) {
            static const float want[12] = {0, 0, 0, 0, 1, 2, 0, 3, 4, 0, 0, 0};
            CHECK_ALL_NEAR(dl_f32(y), want, 12, 0);
        }
        y = dl_upsample_nearest2d(dl_reshape(s, 4, DL_SHAPE(1, 1, 4, 1)), 1, 3);
        CHECK(y && y->shape[2] == 4 && y->shape[3] == 3, "%s", dl_error());
        if (y) CHECK_ALL_NEAR(dl_f32(y), up, 12, 0);
    }
    dl_arena_reset(dl_arena_current());
}

/* ---- Gradient checks ---- */

typedef struct conv_case {
    dl_conv_opts o;
    int transpose, use_bias, view; /* view: feed x through a transposed view of its storage */
} conv_case;

static dl_tensor *f_conv(dl_tensor **in, void *user) {
    const conv_case *c = (const conv_case *)user;
    dl_tensor *x = c->view ? dl_transpose(in[0], 2, 3) : in[0];
    dl_tensor *b = c->use_bias ? in[2] : NULL;
    return c->transpose ? dl_conv_transpose2d(x, in[1], b, &c->o) : dl_conv2d(x, in[1], b, &c->o);
}

/* x is stored [n, cin, w, h] when view is set (the op sees its transpose). */
static void gradcheck_conv(const char *what, int n, int cin, int h, int w, int cout, int kh, int kw, conv_case c) {
    dl_rng r;
    dl_tensor *in[3];
    int ok;
    int xs[4], ws[4];
    xs[0] = n; xs[1] = cin; xs[2] = c.view ? w : h; xs[3] = c.view ? h : w;
    ws[0] = c.transpose ? cin : cout; ws[1] = c.transpose ? cout : cin; ws[2] = kh; ws[3] = kw;
    dl_rng_seed(&r, 11);
    in[0] = param(&r, 4, xs);
    in[1] = param(&r, 4, ws);
    in[2] = param(&r, 1, &cout);
    ok = dl_gradcheck(f_conv, &c, c.use_bias ? 3 : 2, in, 0, 0) == 0;
    CHECK(ok, "%s: %s", what, dl_error());
    dl_tensor_free(in[0]);
    dl_tensor_free(in[1]);
    dl_tensor_free(in[2]);
}

static void test_conv2d_gradcheck(void) {
    conv_case c;
    memset(&c, 0, sizeof c);
    c.use_bias = 1;
    gradcheck_conv("3x3 defaults, bias", 2, 3, 5, 5, 4, 3, 3, c);
    c.o = opts(2, 2, 1, 1, 0, 0, 0, 0);
    c.use_bias = 0;
    gradcheck_conv("stride 2, padding 1, no bias", 2, 2, 6, 5, 3, 3, 3, c);
    c.o = opts(1, 2, 1, 2, 2, 2, 0, 0);
    c.use_bias = 1;
    gradcheck_conv("dilation 2, 3x2 kernel, padding (1, 2) > kernel", 1, 2, 7, 6, 2, 3, 2, c);
    memset(&c.o, 0, sizeof c.o);
    gradcheck_conv("Cin = 1", 2, 1, 6, 6, 3, 3, 3, c);
    gradcheck_conv("1x1 kernel (no im2col)", 2, 3, 4, 5, 2, 1, 1, c);
    c.o = opts(2, 1, 0, 0, 0, 0, 0, 0);
    gradcheck_conv("1x1 kernel, stride 2", 2, 3, 5, 4, 2, 1, 1, c);
    c.o = opts(1, 2, 1, 0, 1, 1, 0, 0);
    c.view = 1;
    gradcheck_conv("transposed-view input", 2, 2, 5, 6, 3, 2, 3, c);
    c.view = 0;
    memset(&c.o, 0, sizeof c.o);
    gradcheck_conv("batch 18: several chunks", 18, 1, 3, 3, 2, 2, 2, c);
}

static void test_conv_transpose2d_gradcheck(void) {
    conv_case c;
    memset(&c, 0, sizeof c);
    c.transpose = 1;
    c.use_bias = 1;
    gradcheck_conv("3x3 defaults, bias", 2, 3, 3, 4, 2, 3, 3, c);
    c.o = opts(2, 2, 1, 1, 0, 0, 1, 1);
    c.use_bias = 0;
    gradcheck_conv("stride 2, padding 1, output_padding 1", 2, 2, 3, 3, 3, 3, 3, c);
    c.o = opts(1, 1, 0, 1, 2, 2, 1, 0);
    c.use_bias = 1;
    gradcheck_conv("dilation 2, output_padding 1 < dilation, 2x3 kernel", 1, 2, 3, 3, 2, 2, 3, c);
    memset(&c.o, 0, sizeof c.o);
    gradcheck_conv("Cin = 1", 2, 1, 3, 3, 2, 3, 3, c);
    gradcheck_conv("1x1 kernel", 2, 3, 3, 4, 2, 1, 1, c);
    c.o = opts(2, 3, 1, 0, 0, 0, 0, 2);
    c.view = 1;
    gradcheck_conv("transposed-view input, stride (2, 3)", 2, 2, 3, 4, 2, 3, 2, c);
}

typedef struct pool_case { int kind, kh, kw, view; dl_conv_opts o; } pool_case;

static dl_tensor *f_pool(dl_tensor **in, void *user) {
    const pool_case *c = (const pool_case *)user;
    dl_tensor *x = c->view ? dl_transpose(in[0], 2, 3) : in[0];
    switch (c->kind) {
    case 0: return dl_max_pool2d(x, c->kh, c->kw, &c->o);
    case 1: return dl_avg_pool2d(x, c->kh, c->kw, &c->o);
    case 2: return dl_global_avg_pool2d(x);
    case 3: return dl_upsample_nearest2d(x, c->kh, c->kw);
    case 4: return dl_pad2d(x, 1, 2, 2, 0, DL_PAD_ZERO);
    default: return dl_pad2d(x, 2, 1, 1, 2, DL_PAD_REFLECT);
    }
}

static void gradcheck_pool(const char *what, int kind, int kh, int kw, dl_conv_opts o, int view) {
    dl_rng r;
    dl_tensor *x;
    pool_case c;
    c.kind = kind;
    c.kh = kh;
    c.kw = kw;
    c.o = o;
    c.view = view;
    dl_rng_seed(&r, 5);
    x = param(&r, 4, DL_SHAPE(2, 2, 5, 6));
    CHECK(dl_gradcheck(f_pool, &c, 1, &x, 0, 0) == 0, "%s: %s", what, dl_error());
    dl_tensor_free(x);
}

static void test_pool_pad_upsample_gradcheck(void) {
    dl_conv_opts none;
    memset(&none, 0, sizeof none);
    gradcheck_pool("max 2x2", 0, 2, 2, none, 0);
    gradcheck_pool("max 3x2 stride 1 padding 1 dilation (1,2)", 0, 3, 2, opts(1, 1, 1, 1, 1, 2, 0, 0), 0);
    gradcheck_pool("max 2x3 on a transposed view", 0, 2, 3, opts(1, 2, 0, 1, 0, 0, 0, 0), 1);
    gradcheck_pool("avg 2x2", 1, 2, 2, none, 0);
    gradcheck_pool("avg 3x3 stride 2 padding 1", 1, 3, 3, opts(2, 2, 1, 1, 0, 0, 0, 0), 0);
    gradcheck_pool("avg 2x3 overlapping, transposed view", 1, 2, 3, opts(1, 1, 1, 0, 0, 0, 0, 0), 1);
    gradcheck_pool("global avg", 2, 0, 0, none, 0);
    gradcheck_pool("global avg, transposed view", 2, 0, 0, none, 1);
    gradcheck_pool("upsample 2x3", 3, 2, 3, none, 0);
    gradcheck_pool("upsample 1x2, transposed view", 3, 1, 2, none, 1);
    gradcheck_pool("zero pad", 4, 0, 0, none, 0);
    gradcheck_pool("reflect pad", 5, 0, 0, none, 0);
    gradcheck_pool("reflect pad, transposed view", 5, 0, 0, none, 1);
}

/* ---- Batches of images per GEMM (dl__conv_group): against a direct loop ----
   With planes under 256 pixels, the convolutions put several images side by side in one GEMM
   (gathering and scattering the small side). These batches are big enough to give every chunk
   several images: whole groups, a partial last group, and one group per chunk. The reference is
   the definition of the convolution as a direct loop in double; backward runs twice, so the
   second pass must add to the gradients of the first (conv_transpose2d's dx is written by the
   scatter with add). */

/* Direct conv2d (transpose = 0) or conv_transpose2d (1) and their gradients for seed g, in
   double. conv2d: x [n, ci, h, w], w [co, ci, kh, kw], y [n, co, oh, ow]. conv_transpose2d:
   x [n, ci, h, w] is the small side, w [ci, co, kh, kw], y [n, co, oh, ow] the big side. */
static void direct_conv(int transpose, int n, int ci, int h, int w, int co, int kh, int kw, dl_conv_opts o, int oh, int ow,
                        const float *x, const float *wt, const float *b, const float *g, double *y, double *dx, double *dw,
                        double *db) {
    int in, a, c, i, j, p, q;
    int sh = o.stride[0] ? o.stride[0] : 1, sw = o.stride[1] ? o.stride[1] : 1;
    int dh = o.dilation[0] ? o.dilation[0] : 1, dww = o.dilation[1] ? o.dilation[1] : 1;
    /* conv2d walks y's pixels (i, j) and x's (r, s); the transpose walks x's (i, j) and y's (r, s) */
    int sm_h = transpose ? h : oh, sm_w = transpose ? w : ow, bg_h = transpose ? oh : h, bg_w = transpose ? ow : w;
    memset(y, 0, sizeof(double) * (size_t)n * co * oh * ow);
    memset(dx, 0, sizeof(double) * (size_t)n * ci * h * w);
    memset(dw, 0, sizeof(double) * (size_t)co * ci * kh * kw);
    memset(db, 0, sizeof(double) * (size_t)co);
    for (in = 0; in < n; in++)
        for (a = 0; a < co; a++)
            for (i = 0; i < oh; i++)
                for (j = 0; j < ow; j++) {
                    size_t yi = (((size_t)in * co + a) * oh + i) * ow + j;
                    y[yi] += b[a];
                    db[a] += g[yi];
                }
    for (in = 0; in < n; in++)
        for (a = 0; a < co; a++)
            for (c = 0; c < ci; c++)
                for (i = 0; i < sm_h; i++)
                    for (j = 0; j < sm_w; j++)
                        for (p = 0; p < kh; p++)
                            for (q = 0; q < kw; q++) {
                                int r = i * sh - o.padding[0] + p * dh, s = j * sw - o.padding[1] + q * dww;
                                size_t wi, xi, yi;
                                if (r < 0 || r >= bg_h || s < 0 || s >= bg_w) continue;
                                wi = transpose ? (((size_t)c * co + a) * kh + p) * kw + q : (((size_t)a * ci + c) * kh + p) * kw + q;
                                xi = transpose ? (((size_t)in * ci + c) * h + i) * w + j : (((size_t)in * ci + c) * h + r) * w + s;
                                yi = transpose ? (((size_t)in * co + a) * oh + r) * ow + s : (((size_t)in * co + a) * oh + i) * ow + j;
                                y[yi] += (double)x[xi] * wt[wi];
                                dx[xi] += (double)g[yi] * wt[wi];
                                dw[wi] += (double)g[yi] * x[xi];
                            }
}

static void check_near_double(const char *what, const char *name, const float *got, const double *want, size_t n, double scale) {
    size_t i, bad = 0, first = 0;
    for (i = 0; i < n; i++)
        if (fabs(got[i] - scale * want[i]) > 1e-4 * (1.0 + fabs(scale * want[i]))) {
            if (!bad) first = i;
            bad++;
        }
    CHECK(bad == 0, "%s: %s: %zu of %zu differ, first [%zu] %g vs %g", what, name, bad, n, first, bad ? got[first] : 0.0,
          bad ? scale * want[first] : 0.0);
}

static void grouped_case(const char *what, int transpose, int n, int ci, int h, int w, int co, int k, dl_conv_opts o) {
    dl_rng r;
    dl_tensor *x, *wt, *b, *y, *g;
    int ws[4], pass;
    size_t ny;
    double *ry, *rdx, *rdw, *rdb;
    ws[0] = transpose ? ci : co; ws[1] = transpose ? co : ci; ws[2] = k; ws[3] = k;
    dl_rng_seed(&r, 21);
    x = param(&r, 4, DL_SHAPE(n, ci, h, w));
    wt = param(&r, 4, ws);
    b = param(&r, 1, &co);
    y = transpose ? dl_conv_transpose2d(x, wt, b, &o) : dl_conv2d(x, wt, b, &o);
    CHECK(y != NULL, "%s: %s", what, dl_error());
    if (!y) return;
    ny = y->numel;
    g = dl_tmp(DL_DTYPE_F32, 4, y->shape);
    dl_fill_uniform(g, -1.0f, 1.0f, &r);
    ry = (double *)malloc(sizeof(double) * ny);
    rdx = (double *)malloc(sizeof(double) * x->numel);
    rdw = (double *)malloc(sizeof(double) * wt->numel);
    rdb = (double *)malloc(sizeof(double) * (size_t)co);
    direct_conv(transpose, n, ci, h, w, co, k, k, o, y->shape[2], y->shape[3], dl_f32(x), dl_f32(wt), dl_f32(b), dl_f32(g), ry,
                rdx, rdw, rdb);
    check_near_double(what, "y", dl_f32(y), ry, ny, 1.0);
    for (pass = 1; pass <= 2; pass++) {
        CHECK(dl_backward_grad(y, dl_f32(g)) == 0, "%s: %s", what, dl_error());
        check_near_double(what, pass == 1 ? "dx" : "dx, second pass", x->grad, rdx, x->numel, pass);
        check_near_double(what, pass == 1 ? "dw" : "dw, second pass", wt->grad, rdw, wt->numel, pass);
        check_near_double(what, pass == 1 ? "db" : "db, second pass", b->grad, rdb, (size_t)co, pass);
    }
    free(ry);
    free(rdx);
    free(rdw);
    free(rdb);
    dl_tensor_free(x);
    dl_tensor_free(wt);
    dl_tensor_free(b);
    dl_arena_reset(dl_arena_current());
}

static void test_grouped_images_vs_direct(void) {
    int t, prev = dl_num_threads();
    for (t = 1; t <= 2; t++) {
        dl_set_num_threads(t);
        /* 10x10 output: groups of 3, chunks of 4-5 images (a whole group and a partial one) */
        grouped_case("conv2d 3x3 same, batch 70", 0, 70, 3, 10, 10, 5, 3, opts(1, 1, 1, 1, 0, 0, 0, 0));
        /* 5x4 output, stride 2, dilation: one group per chunk of 2-3 images */
        grouped_case("conv2d stride 2, dilation (1, 2), batch 37", 0, 37, 2, 9, 8, 4, 3, opts(2, 2, 1, 1, 1, 2, 0, 0));
        /* the DCGAN generator's shapes, smaller: 7x7 input, 5x5 kernel, stride 1 and 2 */
        grouped_case("conv_transpose2d 7x7 -> 7x7, kernel 5, batch 50", 1, 50, 8, 7, 7, 4, 5, opts(1, 1, 2, 2, 0, 0, 0, 0));
        grouped_case("conv_transpose2d 5x5 -> 10x10, stride 2, output_padding 1, batch 70", 1, 70, 4, 5, 5, 3, 5,
                     opts(2, 2, 2, 2, 0, 0, 1, 1));
        /* a 1x1 kernel with stride 2 has a col (not the identity): grouped too */
        grouped_case("conv_transpose2d 1x1 stride 2, batch 40", 1, 40, 3, 4, 4, 2, 1, opts(2, 2, 0, 0, 0, 0, 0, 0));
    }
    dl_set_num_threads(prev);
}

static void test_conv_transpose2d_grouped_gradcheck(void) {
    conv_case c;
    memset(&c, 0, sizeof c);
    c.transpose = 1;
    c.use_bias = 1;
    c.o = opts(2, 2, 1, 1, 0, 0, 1, 1);
    /* 40 images over 16 chunks: 2-3 images per GEMM */
    gradcheck_conv("batch 40, stride 2, output_padding 1: grouped images", 40, 2, 2, 2, 2, 3, 3, c);
    c.transpose = 0;
    c.o = opts(1, 1, 1, 1, 0, 0, 0, 0);
    gradcheck_conv("conv2d batch 40: grouped images", 40, 2, 3, 3, 2, 3, 3, c);
}

/* ---- Threads: the same bits for 1 and 2 threads; big enough to use several chunks ---- */

static void conv_step(dl_tensor *x, dl_tensor *w, dl_tensor *b, float *out, size_t *n_out) {
    dl_conv_opts o = opts(1, 1, 1, 1, 0, 0, 0, 0);
    dl_tensor *y = dl_max_pool2d(dl_conv2d(x, w, b, &o), 2, 2, NULL);
    dl_tensor *z = dl_conv_transpose2d(y, w, NULL, NULL); /* w [8, 3, 3, 3] read as [Cin, Cout, kh, kw] */
    CHECK(z != NULL, "%s", dl_error());
    if (!z) return;
    dl_zero_grad(x);
    dl_zero_grad(w);
    dl_zero_grad(b);
    backward_with_pattern(z);
    memcpy(out, dl_f32(z), sizeof(float) * z->numel);
    memcpy(out + z->numel, x->grad, sizeof(float) * x->numel);
    memcpy(out + z->numel + x->numel, w->grad, sizeof(float) * w->numel);
    memcpy(out + z->numel + x->numel + w->numel, b->grad, sizeof(float) * b->numel);
    *n_out = z->numel + x->numel + w->numel + b->numel;
}

static void test_threads_same_bits(void) {
    dl_rng r;
    dl_tensor *x, *w, *b;
    static float a1[40000], a2[40000];
    size_t n1 = 0, n2 = 0;
    int prev = dl_num_threads();
    dl_rng_seed(&r, 9);
    x = param(&r, 4, DL_SHAPE(40, 3, 10, 10));
    w = param(&r, 4, DL_SHAPE(8, 3, 3, 3));
    b = param(&r, 1, DL_SHAPE(8));
    dl_set_num_threads(1);
    conv_step(x, w, b, a1, &n1);
    dl_arena_reset(dl_arena_current());
    dl_set_num_threads(2);
    conv_step(x, w, b, a2, &n2);
    dl_arena_reset(dl_arena_current());
    dl_set_num_threads(prev);
    CHECK(n1 == n2 && n1 > 0 && n1 <= 40000, "sizes %zu %zu", n1, n2);
    CHECK(memcmp(a1, a2, sizeof(float) * n1) == 0, "1 and 2 threads give different bits");
    dl_tensor_free(x);
    dl_tensor_free(w);
    dl_tensor_free(b);
}

/* ---- Bad inputs ---- */

#define CHECK_FAILS(expr, word)                                                                  \
    do {                                                                                         \
        dl_clear_error();                                                                        \
        CHECK((expr) == NULL, "%s should fail", #expr);                                          \
        CHECK(strstr(dl_error(), word) != NULL, "message of %s: '%s'", #expr, dl_error());        \
    } while (0)

/* Absurd sizes are rejected with a message, never wrapped into a wrong output size. */
static void test_absurd_sizes(void) {
    dl_tensor *x = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 4, 4));
    dl_tensor *w = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 3, 3));
    dl_tensor *x2 = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 2, 2));
    dl_conv_opts o;
    o = opts(1, 1, INT_MAX, 0, 0, 0, 0, 0); /* padding INT_MAX: (4 + 2p - 3) / 1 + 1 wraps an int */
    CHECK_FAILS(dl_conv2d(x, w, NULL, &o), "dl_conv2d: padded input");
    o = opts(1, 1, 0, 0, INT_MAX, 1, 0, 0); /* dilation INT_MAX: d * (k - 1) overflows */
    CHECK_FAILS(dl_conv2d(x, w, NULL, &o), "dl_conv2d: dilated kernel");
    o = opts(50000, 50000, 0, 0, 0, 0, 0, 0); /* 2x2 input, stride 50000: planes of 50003^2 floats */
    CHECK_FAILS(dl_conv_transpose2d(x2, w, NULL, &o), "over INT_MAX pixels");
    o = opts(1, 1, 1, 1, INT_MAX, INT_MAX, 0, 0); /* the pooling check (k - 1) * d + 1 overflowed */
    CHECK_FAILS(dl_max_pool2d(x, 3, 3, &o), "dl_max_pool2d");
    o = opts(1, 1, 0, 0, 0, 0, 0, 0);
    CHECK_FAILS(dl_max_pool2d(x, INT_MAX, 1, &o), "dl_max_pool2d");
    CHECK_FAILS(dl_upsample_nearest2d(x, INT_MAX, 1), "too large");
    CHECK_FAILS(dl_pad2d(x, INT_MAX, INT_MAX, 0, 0, DL_PAD_ZERO), "too large");
    dl_clear_error();
    dl_arena_reset(dl_arena_current());
}

static void test_errors(void) {
    dl_tensor *x = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 3, 4, 4));
    dl_tensor *w = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 3, 3, 3));
    dl_tensor *wt = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(3, 2, 3, 3));
    dl_tensor *xi = dl_tmp(DL_DTYPE_I32, 4, DL_SHAPE(1, 3, 4, 4));
    dl_tensor *x3 = dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(3, 4, 4));
    dl_conv_opts o;
    CHECK_FAILS(dl_conv2d(x, dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 2, 3, 3)), NULL, NULL), "dl_conv2d: x [1, 3, 4, 4] has 3 channels");
    CHECK_FAILS(dl_conv2d(x, dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 3, 5, 3)), NULL, NULL), "larger than the padded input");
    CHECK_FAILS(dl_conv2d(x, w, dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(3)), NULL), "bias");
    CHECK_FAILS(dl_conv2d(xi, w, NULL, NULL), "dl_conv2d: x must be f32");
    CHECK_FAILS(dl_conv2d(x3, w, NULL, NULL), "dl_conv2d: x must have 4 axes");
    o = opts(-1, 1, 0, 0, 0, 0, 0, 0);
    CHECK_FAILS(dl_conv2d(x, w, NULL, &o), "dl_conv2d: stride");
    o = opts(2, 2, 0, 0, 0, 0, 1, 1);
    CHECK_FAILS(dl_conv2d(x, w, NULL, &o), "output_padding is only");
    CHECK_FAILS(dl_conv_transpose2d(x, w, NULL, NULL), "dl_conv_transpose2d: x [1, 3, 4, 4] has 3 channels but w [2, 3, 3, 3] expects 2");
    o = opts(2, 2, 0, 0, 0, 0, 2, 0);
    CHECK_FAILS(dl_conv_transpose2d(x, wt, NULL, &o), "output_padding 2 must be smaller");
    o = opts(1, 1, 0, 0, 2, 2, 2, 0);
    CHECK_FAILS(dl_conv_transpose2d(x, wt, NULL, &o), "output_padding 2 must be smaller than the stride 1 or the dilation 2");
    o = opts(1, 1, 3, 3, 0, 0, 0, 0);
    CHECK_FAILS(dl_conv_transpose2d(dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 3, 1, 1)), wt, NULL, &o), "not positive");
    o = opts(0, 0, 2, 2, 0, 0, 0, 0);
    CHECK_FAILS(dl_max_pool2d(x, 3, 3, &o), "dl_max_pool2d: padding 2 must be at most half");
    CHECK_FAILS(dl_max_pool2d(x, 5, 5, NULL), "dl_max_pool2d: kernel 5x5");
    CHECK_FAILS(dl_avg_pool2d(x, 0, 2, NULL), "dl_avg_pool2d: kernel size");
    o = opts(0, 0, 0, 0, 2, 2, 0, 0);
    CHECK_FAILS(dl_avg_pool2d(x, 2, 2, &o), "dl_avg_pool2d: dilation");
    CHECK_FAILS(dl_global_avg_pool2d(x3), "dl_global_avg_pool2d");
    CHECK_FAILS(dl_upsample_nearest2d(x, 0, 2), "dl_upsample_nearest2d: scale");
    CHECK_FAILS(dl_pad2d(x, 4, 0, 0, 0, DL_PAD_REFLECT), "dl_pad2d: reflect padding");
    CHECK_FAILS(dl_pad2d(x, -1, 0, 0, 0, DL_PAD_ZERO), "dl_pad2d: pads must be >= 0");
    CHECK_FAILS(dl_pad2d(dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(4)), 1, 0, 0, 0, DL_PAD_ZERO), "dl_pad2d: x must have at least 2 axes");
    /* NULL inputs give NULL and keep the earlier message. */
    dl_set_error("earlier");
    CHECK(dl_conv2d(NULL, w, NULL, NULL) == NULL && dl_conv2d(x, NULL, NULL, NULL) == NULL, "NULL");
    CHECK(dl_conv_transpose2d(NULL, wt, NULL, NULL) == NULL && dl_max_pool2d(NULL, 2, 2, NULL) == NULL, "NULL");
    CHECK(dl_avg_pool2d(NULL, 2, 2, NULL) == NULL && dl_global_avg_pool2d(NULL) == NULL, "NULL");
    CHECK(dl_upsample_nearest2d(NULL, 2, 2) == NULL && dl_pad2d(NULL, 1, 1, 1, 1, DL_PAD_ZERO) == NULL, "NULL");
    CHECK(strcmp(dl_error(), "earlier") == 0, "message kept: %s", dl_error());
    dl_clear_error();
    dl_arena_reset(dl_arena_current());
}

int main(void) {
    RUN(test_conv2d_vs_torch);
    RUN(test_conv_transpose2d_vs_torch);
    RUN(test_pools_vs_torch);
    RUN(test_max_pool_ties);
    RUN(test_max_pool_empty_window);
    RUN(test_reflect_pad_vs_torch);
    RUN(test_conv2d_gradcheck);
    RUN(test_conv_transpose2d_gradcheck);
    RUN(test_pool_pad_upsample_gradcheck);
    RUN(test_grouped_images_vs_direct);
    RUN(test_conv_transpose2d_grouped_gradcheck);
    RUN(test_threads_same_bits);
    RUN(test_errors);
    RUN(test_absurd_sizes);
    dl_arena_free_default();
    return test_summary();
}
