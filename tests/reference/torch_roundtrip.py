#!/usr/bin/env python3
"""PyTorch round trip of a torchvision resnet18 through resblocks (CTest "reference:torch_roundtrip").

    /usr/bin/python3 tests/reference/torch_roundtrip.py build/examples/torch_roundtrip

1. builds torchvision.models.resnet18(num_classes=10), randomises its parameters and BatchNorm
   statistics (running_mean, running_var, num_batches_tracked), and saves the state_dict as
   safetensors (written here by hand: Debian 12 has no safetensors package);
2. runs the resblocks program (examples/torch_roundtrip.cpp): it loads the file, predicts on images
   given in NCHW order, writes the (n, 10) logits and saves its weights;
3. torch loads that file with model.load_state_dict(...) unmodified (strict) into a fresh resnet18:
   every tensor equals the original, and the three predictions (torch before, resblocks, torch after
   the round trip) agree to 1e-5 (times max(1, max |logit|)).

Exits 0 on success, 1 on a mismatch, 77 (CTest's SKIP_RETURN_CODE) when torch or torchvision is
missing: on Debian, `apt-get install python3-torch python3-torchvision` (or RESBLOCKS_CI_TORCH=1 .ci/deps).
"""

import os
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:
    print("torch_roundtrip.py: SKIPPED: %s (%s has no torch/torchvision; on Debian: apt-get install "
          "python3-torch python3-torchvision)" % (e, sys.executable))
    sys.exit(SKIP)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_safetensors_fixtures import read_safetensors, safetensors_bytes  # noqa: E402

TOLERANCE = 1e-5


def randomised_resnet18(seed):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bn1.weight") or name.endswith("bn2.weight") or ".downsample.1.weight" in name:
                p.copy_(0.5 + torch.rand_like(p))  # BatchNorm gamma
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.mul_(1.0 + 0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
            elif name.endswith("num_batches_tracked"):
                b.fill_(int(torch.randint(1, 1000, ())))
    return model.eval()


def close(a, b):
    return float((a - b).abs().max()) <= TOLERANCE * max(1.0, float(b.abs().max()))


def main():
    if len(sys.argv) != 2:
        print("usage: torch_roundtrip.py path/to/torch_roundtrip", file=sys.stderr)
        return 2
    program = sys.argv[1]
    torch.set_num_threads(1)
    model = randomised_resnet18(7001)
    n, h, w = 3, 32, 32
    x = torch.randn(n, 3, h, w)
    with torch.no_grad():
        y_torch = model(x)

    with tempfile.TemporaryDirectory(prefix="resblocks_roundtrip_") as tmp:
        weights = os.path.join(tmp, "resnet18.safetensors")
        images = os.path.join(tmp, "images.f32")
        logits = os.path.join(tmp, "logits.f32")
        saved = os.path.join(tmp, "saved.safetensors")
        with open(weights, "wb") as f:
            f.write(safetensors_bytes(model.state_dict(), {"format": "pt"}))
        x.numpy().astype("<f4").tofile(images)
        run = subprocess.run([program, weights, images, str(n), str(h), str(w), logits, saved],
                             capture_output=True, text=True)
        print(run.stdout, end="")
        if run.returncode != 0:
            print("torch_roundtrip.py: FAILED: %s exited with %d: %s" % (program, run.returncode, run.stderr),
                  file=sys.stderr)
            return 1
        y_resblocks = torch.from_numpy(np.fromfile(logits, dtype="<f4").reshape(n, 10).copy())
        with open(saved, "rb") as f:
            state = read_safetensors(f.read())

    failures = []
    again = torchvision.models.resnet18(num_classes=10)
    again.load_state_dict(state)  # strict, unmodified: names, shapes and dtypes as torch's own
    again.eval()
    original = model.state_dict()
    for key, value in original.items():
        if state[key].dtype != value.dtype or state[key].shape != value.shape or not bool((state[key] == value).all()):
            failures.append("tensor %s changed in the round trip (%s %s -> %s %s)"
                            % (key, value.dtype, tuple(value.shape), state[key].dtype, tuple(state[key].shape)))
    with torch.no_grad():
        y_again = again(x)
    if not close(y_resblocks, y_torch):
        failures.append("resblocks' logits differ from torch's by %.3g" % float((y_resblocks - y_torch).abs().max()))
    if not close(y_again, y_torch):
        failures.append("torch's logits after the round trip differ by %.3g" % float((y_again - y_torch).abs().max()))
    print("torch_roundtrip.py: resnet18(num_classes=10), %d tensors, %d images %dx%d: max |resblocks - torch| = %.3g, "
          "max |logit| = %.3g; torch after the round trip: max diff %.3g"
          % (len(original), n, h, w, float((y_resblocks - y_torch).abs().max()), float(y_torch.abs().max()),
             float((y_again - y_torch).abs().max())))
    for f in failures:
        print("torch_roundtrip.py: FAILED: " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
