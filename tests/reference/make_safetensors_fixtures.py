#!/usr/bin/env python3
"""Generate the PyTorch safetensors interchange fixture read by tests/io/safetensors_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_safetensors_fixtures.py           # (re)write the files
    /usr/bin/python3 tests/reference/make_safetensors_fixtures.py --check   # exit 1 if they differ

Writes two files into tests/reference/fixtures/:
  - torch_small.safetensors: the float32 state_dict of
        nn.Sequential(Conv2d(2, 3, 3, padding=1, bias=False), BatchNorm2d(3), ReLU(), Flatten(), Linear(48, 5))
    with non-default BatchNorm running statistics and num_batches_tracked = 7, in the safetensors
    format (torch 1.13 has no safetensors package, so it is written here by hand: 8-byte little-endian
    header length, the JSON header with sorted keys and no whitespace, then the little-endian
    row-major data in key order). Tensors keep torch's shapes: the conv weight is [3, 2, 3, 3].
  - torch_small.txt (make_fixtures.py's text format): `x_shape` (N, C, H, W) = (2, 2, 4, 4), `x` in the
    image layout (channels x N*H*W), `y_eval_f32` = the eval-mode output in float32 and `y_eval` = the
    same network in float64 (the float32 weights converted exactly), both 5 x 2 (features x samples),
    and `num_batches_tracked` (1 x 1).

Seeds are fixed, torch runs single-threaded and deterministic: regenerating gives byte-identical files.
"""

import argparse
import json
import os
import struct
import sys

import torch
from torch import nn

import make_fixtures
from make_fixtures import DTYPE, batch, image, quantise

NAME = "torch_small"
FORMATS = {torch.float32: ("F32", "f"), torch.float64: ("F64", "d"), torch.int64: ("I64", "q")}


def safetensors_bytes(state_dict, metadata=None):
    """The safetensors encoding of `state_dict` (keys sorted, data in key order, no padding)."""
    header, chunks, offset = {}, [], 0
    for key in sorted(state_dict):
        t = state_dict[key].detach().contiguous()
        dtype, code = FORMATS[t.dtype]
        data = struct.pack("<%d%s" % (t.numel(), code), *t.flatten().tolist())
        header[key] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def read_safetensors(blob):
    """Decodes `blob` back to {name: tensor} (a self-check of safetensors_bytes)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("ascii"))
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    out = {}
    for key, e in header.items():
        begin, end = e["data_offsets"]
        torch_dtype = next(d for d, (name, _) in FORMATS.items() if name == e["dtype"])
        code = FORMATS[torch_dtype][1]
        count = (end - begin) // struct.calcsize(code)
        values = struct.unpack("<%d%s" % (count, code), data[begin:end])
        out[key] = torch.tensor(values, dtype=torch_dtype).reshape(e["shape"])
    return out


class ProbedReLU(nn.ReLU):
    """ReLU that records its input (to check that no pre-activation sits at the kink)."""

    def __init__(self, probes):
        super().__init__()
        self.probes = probes

    def forward(self, x):
        self.probes.append(x.detach().clone())
        return super().forward(x)


def build():
    torch.manual_seed(4001)
    probes = []
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), ProbedReLU(probes),
                          nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    bn = model[1]
    with torch.no_grad():
        bn.weight.copy_(quantise(0.5 + torch.rand(3)))
        bn.bias.copy_(quantise(torch.rand(3) - 0.5))
        bn.running_mean.copy_(quantise(0.5 * torch.randn(3)))
        bn.running_var.copy_(quantise(0.5 + 1.5 * torch.rand(3)))
        bn.num_batches_tracked.fill_(7)
    model.eval()
    x = quantise(torch.randn(2, 2, 4, 4))
    return model, x, probes


def outputs():
    model, x, probes = build()
    with torch.no_grad():
        y32 = model(x)
        for h in probes:
            assert bool((h.abs() > 1e-3).all()), "a ReLU input is too close to 0; pick another seed"
        y64 = model.to(DTYPE)(x.to(DTYPE))
    return x, y32, y64


def files():
    """{file name: bytes} of the fixtures."""
    model, _, _ = build()
    state = model.state_dict()
    blob = safetensors_bytes(state, {"format": "pt"})
    back = read_safetensors(blob)
    assert sorted(back) == sorted(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and bool((back[k] == v).all()), k
    assert len(blob) < 4096, "the binary fixture should stay small"

    x, y32, y64 = outputs()
    case = make_fixtures.Case(NAME, "eval-mode outputs of the network stored in torch_small.safetensors; "
                              "x is N=2, C=2, 4x4 in the image layout, y 5 x 2.",
                              generator="make_safetensors_fixtures.py", layout="resblocks' layout")
    case.add("x_shape", torch.tensor(list(x.shape), dtype=DTYPE).reshape(-1, 1))
    case.add("x", image(x))
    case.add("y_eval_f32", batch(y32))
    case.add("y_eval", batch(y64))
    case.add("num_batches_tracked", torch.tensor([[7.0]], dtype=DTYPE))
    return {NAME + ".safetensors": blob, NAME + ".txt": case.text().encode("ascii")}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "fixtures"), help="output directory")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = parser.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    stale = []
    for name, data in files().items():
        path = os.path.join(args.out, name)
        if args.check:
            try:
                with open(path, "rb") as f:
                    if f.read() != data:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            os.makedirs(args.out, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            print("wrote %s (%d bytes)" % (path, len(data)))
    if stale:
        print("fixtures differ from the generator: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
