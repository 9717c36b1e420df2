#!/usr/bin/env python3
"""Writes the PyTorch references of tests/test_gan_style.c (run from the repository root):

    /usr/bin/python3 tools/make_vgg_fixture.py        (needs torch; Debian: python3-torch)

tests/data/vgg_parity.safetensors
    A reduced-width VGG19 (torchvision's vgg19().features layout and names, every channel count
    divided by WIDTH_DIV = 32: 2, 2, 4, 4, 8 x 4, 16 x 8) with seeded random weights
    (He-normal, small random biases) under the names features.{0,2,...,34}.weight/.bias, as
    tools/vgg19_to_safetensors.py writes the real one; three images in [0, 1]: "image"
    [1, 3, 32, 40], "content" [1, 3, 32, 40] and "style" [1, 3, 24, 32]; and PyTorch's results
    for image, fed through torchvision's ImageNet normalization:
      feat.relu1_1 ... feat.relu5_1, feat.relu5_2   the ReLU outputs
      style_loss    mean over relu1_1..relu5_1 of mean((gram(F) - gram(S))^2), gram = F F^T / (H W)
                    (the TensorFlow tutorial's normalization), S the style image's features
      content_loss  mean((F - C)^2) at relu5_2, C the content image's features
      tv            tf.image.total_variation(image): sum of |vertical| + |horizontal| differences
      grad          d(style_loss + content_loss + TV_SCALE * tv) / d(image), TV_SCALE = 1e-3

tests/data/vgg_lbfgs.safetensors
    torch.optim.LBFGS (lr 1, max_iter 4, history_size 100, no line search) on the Rosenbrock
    function from (-1.5, 2): "rosen.x" [STEPS + 1, 2] the iterates after 0..STEPS calls of
    optimizer.step, "rosen.loss" [STEPS] what each step returned; and the same for the quadratic
    0.5 x^T A x - b^T x in 6 dimensions ("quad.A", "quad.b", "quad.x", "quad.loss"), with
    max_iter 4 and history_size 3 so that the history wraps; and with the strong-Wolfe line
    search, Rosenbrock from (0, 0) (one step of max_iter 20: the zoom phase runs) and
    sum(exp(x)) - [2 3 4 5] . x from 0 ("wolfe_exp": lr 0.3, max_iter 2, max_eval 20, two
    steps: the first trial step is short, so the bracketing phase extrapolates), each with
    "<name>.evals", PyTorch's func_evals after the last step. (Cases were chosen where the
    cubic interpolation is not near its no-minimum branch, whose choice a rounding can flip.) L-BFGS on Rosenbrock amplifies
    rounding (with max_iter 20, float32 and float64 runs part after the first step), so the
    script checks that its float32 iterates agree with float64 ones to 2e-5: then a float32
    implementation that follows the same steps must land within the test's 1e-4.

The files are written by hand (the safetensors format: an 8-byte little-endian header size, a
JSON header, then little-endian f32 data), so only torch is needed.
"""

import torch
from fixture_io import save_safetensors

WIDTH_DIV = 32
TV_SCALE = 1e-3
STEPS = 4
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
RELU_AT = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29, "relu5_2": 31}  # index in features


def vgg19_features(k):
    """torchvision.models.vgg19().features with channels / k (same module indices)."""
    layers, c = [], 3
    for v in CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(c, v // k, 3, padding=1), torch.nn.ReLU(inplace=False)]
            c = v // k
    return torch.nn.Sequential(*layers)


def features(net, x, names):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h, out = (x - mean) / std, {}
    for i, layer in enumerate(net):
        h = layer(h)
        for n in names:
            if RELU_AT[n] == i:
                out[n] = h
        if len(out) == len(names):
            break
    return out


def gram(f):
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def vgg_parity():
    torch.manual_seed(10)
    net = vgg19_features(WIDTH_DIV)
    tensors = {}
    for i, layer in enumerate(net):
        if isinstance(layer, torch.nn.Conv2d):
            fan_in = layer.in_channels * 9
            with torch.no_grad():
                layer.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                layer.bias.uniform_(-0.05, 0.05)
            tensors["features.%d.weight" % i] = layer.weight
            tensors["features.%d.bias" % i] = layer.bias
    image = torch.rand(1, 3, 32, 40, requires_grad=True)
    content = torch.rand(1, 3, 32, 40)
    style = torch.rand(1, 3, 24, 32)
    style_names = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    f = features(net, image, style_names + ["relu5_2"])
    s = features(net, style, style_names)
    c = features(net, content, ["relu5_2"])
    style_loss = sum(torch.mean((gram(f[n]) - gram(s[n])) ** 2) for n in style_names) / len(style_names)
    content_loss = torch.mean((f["relu5_2"] - c["relu5_2"]) ** 2)
    tv = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().sum() + (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().sum()
    (style_loss + content_loss + TV_SCALE * tv).backward()
    tensors.update({"image": image, "content": content, "style": style, "grad": image.grad,
                    "style_loss": style_loss.reshape(1), "content_loss": content_loss.reshape(1), "tv": tv.reshape(1)})
    for n, t in f.items():
        tensors["feat." + n] = t
    save_safetensors("tests/data/vgg_parity.safetensors", tensors,
                     {"preprocess": "torch", "width_div": str(WIDTH_DIV), "tv_scale": repr(TV_SCALE)})


def lbfgs_run(x0, f, steps, **kw):
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], **kw)

    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    xs, losses = [x.detach().clone()], []
    for _ in range(steps):
        losses.append(float(opt.step(closure)))
        xs.append(x.detach().clone())
    return torch.stack(xs), torch.tensor(losses), torch.tensor([float(opt.state[x]["func_evals"])])


def rosen(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def expo(x):
    return torch.exp(x).sum() - (torch.arange(2.0, 6.0, dtype=x.dtype) * x).sum()


def vgg_lbfgs():
    torch.manual_seed(11)
    m = torch.randn(6, 6)
    a = m @ m.T + torch.eye(6)
    b = torch.randn(6)

    def quad(x):
        return 0.5 * x @ (a.to(x.dtype) @ x) - b.to(x.dtype) @ x

    out = {"quad.A": a, "quad.b": b}
    cases = [  # name, function, start, steps, LBFGS arguments (tests/test_gan_style.c uses the same)
        ("rosen", rosen, [-1.5, 2.0], STEPS, dict(lr=1, max_iter=4, history_size=100)),
        ("quad", quad, [0.0] * 6, STEPS, dict(lr=1, max_iter=4, history_size=3)),
        ("wolfe_rosen", rosen, [0.0, 0.0], 1, dict(lr=1, max_iter=20, line_search_fn="strong_wolfe")),
        ("wolfe_exp", expo, [0.0] * 4, 2, dict(lr=0.3, max_iter=2, max_eval=20, line_search_fn="strong_wolfe")),
    ]
    for name, f, x0, steps, kw in cases:
        x, loss, evals = lbfgs_run(torch.tensor(x0), f, steps, **kw)
        x64, _, evals64 = lbfgs_run(torch.tensor(x0, dtype=torch.float64), f, steps, **kw)
        assert (x.double() - x64).abs().max() < 2e-5 and evals == evals64, name + ": too sensitive to rounding"
        out.update({name + ".x": x, name + ".loss": loss, name + ".evals": evals})
    save_safetensors("tests/data/vgg_lbfgs.safetensors", out)


if __name__ == "__main__":
    vgg_parity()
    vgg_lbfgs()
