#!/usr/bin/env python3
"""Writes VGG19's convolution weights to a safetensors file that dl_vgg19_load (dl_gan.h) reads,
for examples/style_transfer.c. Run it once on a machine that has the weights; dl never
downloads anything.

    python3 tools/vgg19_to_safetensors.py --torch vgg19-dcbb9e9d.pth vgg19.safetensors
    python3 tools/vgg19_to_safetensors.py --torchvision vgg19.safetensors
    python3 tools/vgg19_to_safetensors.py --keras-h5 vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 vgg19.safetensors
    python3 tools/vgg19_to_safetensors.py --keras vgg19.safetensors

Sources:
  --torch PATH     a torchvision vgg19 state dict saved with torch.save (torchvision keeps it in
                   ~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth once it has fetched it);
                   needs torch
  --torchvision    torchvision.models.vgg19 with its ImageNet weights (torchvision fetches them
                   itself if they are not cached); needs torchvision
  --keras-h5 PATH  Keras' VGG19 weights file (include_top or notop), read with h5py
  --keras          tf.keras.applications.VGG19(weights="imagenet"); needs TensorFlow

The file holds torchvision's names features.{0,2,5,7,10,12,14,16,19,21,23,25,28,30,32,34}.weight
[out, in, 3, 3] and .bias [out] as F32, and __metadata__ "preprocess": "torch" for torchvision
(inputs (x - mean) / std with ImageNet's mean and std) or "caffe" for Keras (255 x - mean, the
mean of Keras' preprocess_input). Keras' kernels [3, 3, in, out] are transposed to [out, in, 3, 3]
and the first layer's input channels reversed, since Keras' VGG19 takes BGR images and dl feeds
RGB: the network computes the same function of the same picture. The classifier layers are
left out (style transfer needs the features only). Written by hand (the safetensors format),
so no safetensors package is needed.
"""
import argparse
import sys

import numpy as np
from fixture_io import save_safetensors

CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
KERAS_NAMES = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
               "block3_conv3", "block3_conv4", "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
               "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"]
CHANNELS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def check(tensors):
    for i, idx in enumerate(CONV_INDEX):
        w, b = tensors["features.%d.weight" % idx], tensors["features.%d.bias" % idx]
        want = (CHANNELS[i], 3 if i == 0 else CHANNELS[i - 1], 3, 3)
        if tuple(w.shape) != want or tuple(b.shape) != (CHANNELS[i],):
            sys.exit("features.%d: shape %s / %s, expected %s: not VGG19" % (idx, w.shape, b.shape, want))


def from_torch_state(sd):
    out = {}
    for idx in CONV_INDEX:
        for part in ("weight", "bias"):
            name = "features.%d.%s" % (idx, part)
            if name not in sd:
                sys.exit("no %s in the state dict: not torchvision's vgg19" % name)
            out[name] = sd[name].detach().float().cpu().numpy()
    return out


def from_keras_kernels(kernels):
    """kernels: 16 (kernel [3, 3, in, out], bias [out]) pairs in Keras' order."""
    out = {}
    for i, (k, b) in enumerate(kernels):
        w = np.transpose(np.asarray(k, dtype=np.float32), (3, 2, 0, 1))   # -> [out, in, 3, 3]
        if i == 0:
            w = w[:, ::-1, :, :]                                          # BGR -> RGB inputs
        out["features.%d.weight" % CONV_INDEX[i]] = w
        out["features.%d.bias" % CONV_INDEX[i]] = np.asarray(b, dtype=np.float32)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--torch", metavar="PATH")
    src.add_argument("--torchvision", action="store_true")
    src.add_argument("--keras-h5", metavar="PATH")
    src.add_argument("--keras", action="store_true")
    ap.add_argument("out")
    a = ap.parse_args()
    if a.torch or a.torchvision:
        import torch
        if a.torch:
            sd = torch.load(a.torch, map_location="cpu")
        else:
            import torchvision
            sd = torchvision.models.vgg19(weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1).state_dict()
        tensors, pre = from_torch_state(sd), "torch"
    elif a.keras_h5:
        import h5py
        with h5py.File(a.keras_h5, "r") as f:
            g0 = f["model_weights"] if "model_weights" in f else f
            kernels = []
            for name in KERAS_NAMES:
                g = g0[name]
                names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
                kernels.append((g[names[0]][()], g[names[1]][()]))
        tensors, pre = from_keras_kernels(kernels), "caffe"
    else:
        import tensorflow as tf
        model = tf.keras.applications.VGG19(include_top=False, weights="imagenet")
        tensors, pre = from_keras_kernels([model.get_layer(n).get_weights() for n in KERAS_NAMES]), "caffe"
    check(tensors)
    save_safetensors(a.out, tensors, {"preprocess": pre, "source": "vgg19_to_safetensors.py"})
    print("wrote %s: 16 convolutions, preprocess=%s" % (a.out, pre))


if __name__ == "__main__":
    main()
