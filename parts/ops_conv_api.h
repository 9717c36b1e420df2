/* ---- Convolution, pooling, padding, upsampling (NCHW, PyTorch semantics) ---------------------

   Images are [N, C, H, W] f32 tensors on the CPU (inputs may be any strided view). Every op
   returns a new arena tensor, or NULL with dl_error() set (NULL inputs give NULL and keep the
   first message). Window geometry is given by one options struct for all ops; pass NULL, or a
   zero-initialised struct, for the defaults:

       dl_conv2d(x, w, b, NULL);                                        stride 1, no padding
       dl_conv_opts o = {{2, 2}, {1, 1}};  dl_conv2d(x, w, b, &o);       stride 2, padding 1
       dl_max_pool2d(x, 2, 2, NULL);                                    2x2 windows, stride 2

   Output size along each axis (floor division, as torch with ceil_mode=False):
       conv / pool:      out = (in + 2*padding - dilation*(k-1) - 1) / stride + 1
       conv_transpose:   out = (in-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1
   Padding is symmetric, as in torch. Keras' padding="same" with stride 1 and an odd kernel is
   padding = k/2; for other "same" cases (asymmetric) use dl_pad2d first. */

typedef struct dl_conv_opts {
    int stride[2];          /* [h, w]; 0 means 1 for convolutions, the kernel size for pools */
    int padding[2];         /* [h, w] zeros (-inf for max pooling) added on both sides; 0 default */
    int dilation[2];        /* [h, w] spacing of kernel taps; 0 means 1. Not for avg_pool2d */
    int output_padding[2];  /* [h, w] conv_transpose2d only: extra rows/columns at the end */
} dl_conv_opts;

/* y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x[n,c, i*s-pad+p*d, j*s-pad+q*d]  (zero outside)
   x [N, Cin, H, W], w [Cout, Cin, kh, kw] (torch layout; Keras stores [kh, kw, Cin, Cout]),
   b [Cout] or NULL for no bias. No groups. */
DLDEF dl_tensor *dl_conv2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts);

/* The adjoint (gradient w.r.t. the input) of dl_conv2d, plus a bias: every input pixel scatters
   w[c,:,:,:] * x[n,c,i,j] into the output. x [N, Cin, H, W], w [Cin, Cout, kh, kw] (torch
   layout), b [Cout] or NULL. output_padding must be smaller than the stride or the dilation. */
DLDEF dl_tensor *dl_conv_transpose2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts);

/* y = max over each window (padding counts as -inf; a NaN in a window wins). The gradient goes to
   the first maximum in row-major scan order of the window, as in torch. kernel_h x kernel_w
   windows; padding must be at most half the kernel, as in torch. */
DLDEF dl_tensor *dl_max_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts);

/* y = sum over each window / (kernel_h * kernel_w): zeros of the padding count in the mean
   (torch's default count_include_pad=True; Keras pools only valid pixels). No dilation. */
DLDEF dl_tensor *dl_avg_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts);

/* [N, C, H, W] -> [N, C]: y[n,c] = mean over h,w of x[n,c,h,w] (Keras GlobalAveragePooling2D). */
DLDEF dl_tensor *dl_global_avg_pool2d(dl_tensor *x);

/* y[n,c,i,j] = x[n,c, i/scale_h, j/scale_w]: each pixel repeated scale_h x scale_w times
   (torch Upsample(scale_factor, mode="nearest") with integer factors; Keras UpSampling2D). */
DLDEF dl_tensor *dl_upsample_nearest2d(dl_tensor *x, int scale_h, int scale_w);

/* Pads the last two axes: [N, C, H, W] -> [N, C, top+H+bottom, left+W+right] (any tensor with at
   least 2 dims works; the leading dims are kept). DL_PAD_ZERO adds zeros (Keras ZeroPadding2D);
   DL_PAD_REFLECT mirrors without repeating the edge (torch "reflect": x = [1 2 3], pad 2 ->
   [3 2 1 2 3 2 1]), which needs each pad < the size of its axis. Pads must be >= 0. Note the
   argument order (left, right, top, bottom) is torch's F.pad order. */
typedef enum dl_pad_mode { DL_PAD_ZERO = 0, DL_PAD_REFLECT = 1 } dl_pad_mode;
DLDEF dl_tensor *dl_pad2d(dl_tensor *x, int pad_left, int pad_right, int pad_top, int pad_bottom, dl_pad_mode mode);
