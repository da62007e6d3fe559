#!/usr/bin/env python3
"""Generate the self-attention PyTorch parity fixtures read by tests/reference/attention_parity_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_attention_fixtures.py           # (re)write the attention_*.txt fixtures
    /usr/bin/python3 tests/reference/make_attention_fixtures.py --check   # exit 1 if the files on disk differ

Everything is float64 with fixed seeds, so regenerating gives byte-identical files. The file format is
the one of make_fixtures.py (and tests/support/fixture.hpp): '#' comments, then per tensor a header
`name rows cols` followed by `cols` lines of `rows` values (column-major, resblocks' layout, '%.17g').

Each case is torch.nn.MultiheadAttention(d, heads, batch_first=True) called as self-attention,
y = mha(x, x, x)[0], on a batch of B sequences of L tokens. Tensors:
  - `shape`: (L, B, d, heads) as a 4 x 1 tensor;
  - `x`, `dL_dy`, `y`, `dL_dx`: d x (B*L), token t of sequence b in column t + L*b (the (B, L, d) tensor
    reshaped to (B*L, d) and transposed);
  - `param.<name>` / `grad.<name>`: in_proj_weight 3d x d, in_proj_bias 3d x 1, out_proj.weight d x d,
    out_proj.bias d x 1 (PyTorch's names and shapes); the biases are random, not torch's zeros;
  - `mask` (key-padding cases): L x B, 1 where the key is padding (key_padding_mask[b, t] = True);
  - `attention_weights`: L x (L*B*heads); block part = h + heads*b (columns part*L ... part*L + L-1) is
    the transposed attention matrix of sequence b, head h: entry (j, i) = weight of key j for query i
    (PyTorch's attn_output_weights[b, h, i, j] with average_attn_weights=False).

Inputs (x, the parameters, dL_dy) are rounded to multiples of 1/64, so they are exact in float32 too.
No query has all its keys masked (PyTorch would give NaN there).
"""

import sys

import torch
from torch import nn

import make_fixtures
from make_fixtures import DTYPE, batch, quantise, run_case


def Case(name, description):
    return make_fixtures.Case(name, description, generator="make_attention_fixtures.py",
                              layout="d x (B*L), column t + L*b")


class SelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (same parameter names) called as self-attention on a (B*L, d) batch."""

    def __init__(self, d, heads, length, causal=False, key_padding_mask=None):
        super().__init__(d, heads, batch_first=True)
        self.length = length
        self.causal = causal
        self.key_padding_mask = key_padding_mask  # (B, L) bool or None

    def attn_mask(self):
        if not self.causal:
            return None
        return torch.triu(torch.full((self.length, self.length), float("-inf"), dtype=DTYPE), diagonal=1)

    def attend(self, x2d, need_weights):
        x = x2d.reshape(-1, self.length, self.embed_dim)  # (B, L, d)
        return super().forward(x, x, x, key_padding_mask=self.key_padding_mask, need_weights=need_weights,
                               attn_mask=self.attn_mask(), average_attn_weights=False)

    def forward(self, x2d):
        y, _ = self.attend(x2d, need_weights=False)
        return y.reshape(-1, self.embed_dim)


def run_attention_case(name, description, d, heads, length, sequences, seed, causal=False, padded=None):
    torch.manual_seed(seed)
    mask = None
    if padded is not None:
        mask = torch.zeros(sequences, length, dtype=torch.bool)
        for b, t in padded:
            mask[b, t] = True
    model = SelfAttention(d, heads, length, causal, mask).to(DTYPE)
    with torch.no_grad():
        for p in model.parameters():  # random biases too (torch starts them at 0)
            p.copy_(quantise(0.5 * torch.randn_like(p)))
    x = quantise(torch.randn(sequences * length, d, dtype=DTYPE))
    dL_dy = quantise(torch.randn(sequences * length, d, dtype=DTYPE))

    case = Case(name, description)
    case.add("shape", torch.tensor([length, sequences, d, heads], dtype=DTYPE).reshape(-1, 1))
    if mask is not None:
        case.add("mask", mask.T.to(DTYPE))
    run_case(case, model, x, dL_dy)
    with torch.no_grad():
        _, w = model.attend(x, need_weights=True)  # (B, heads, L queries, L keys)
    assert bool(torch.isfinite(w).all()), name + ": a query has every key masked"
    blocks = [w[b, h].T for b in range(sequences) for h in range(heads)]
    case.add("attention_weights", torch.cat(blocks, dim=1))
    return case


def all_cases():
    return [
        run_attention_case(
            "attention_self", "MultiheadAttention(d=8, heads=2) self-attention, no mask; x is 8 x (2*5).",
            8, 2, 5, 2, 3001),
        run_attention_case(
            "attention_causal",
            "MultiheadAttention(d=8, heads=2) self-attention, attn_mask = -inf above the diagonal (causal); "
            "x is 8 x (2*5).",
            8, 2, 5, 2, 3002, causal=True),
        run_attention_case(
            "attention_key_padding",
            "MultiheadAttention(d=6, heads=3) self-attention, key_padding_mask: sequence 0 keys 3 and 4, "
            "sequence 1 key 1, sequence 2 key 0 padded; x is 6 x (3*5).",
            6, 3, 5, 3, 3003, padded=[(0, 3), (0, 4), (1, 1), (2, 0)]),
    ]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(all_cases, __doc__))
