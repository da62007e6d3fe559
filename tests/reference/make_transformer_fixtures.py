#!/usr/bin/env python3
"""Generate the Transformer PyTorch parity fixtures read by tests/reference/transformer_parity_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_transformer_fixtures.py           # (re)write the transformer_*.txt fixtures
    /usr/bin/python3 tests/reference/make_transformer_fixtures.py --check   # exit 1 if the files on disk differ

Everything is float64 with fixed seeds, so regenerating gives byte-identical files. The file format is
the one of make_fixtures.py (and tests/support/fixture.hpp): '#' comments, then per tensor a header
`name rows cols` followed by `cols` lines of `rows` values (column-major, resblocks' layout, '%.17g').

Block cases: torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=0, activation="gelu",
norm_first=..., batch_first=True) in training mode (no fast path) on B sequences of L tokens:
  - `shape`: (L, B, d, heads, ff) as a 5 x 1 tensor; `causal` 1 x 1 (1: src_mask = -inf above the diagonal);
  - `x`, `dL_dy`, `y`, `dL_dx`: d x (B*L), token t of sequence b in column t + L*b;
  - `param.<name>` / `grad.<name>`: torch's names and shapes (self_attn.in_proj_weight 3d x d, biases
    as columns); every parameter is random, LayerNorm weights around 1, biases not 0;
  - `mask` (key-padding case): L x B, 1 where the key is padding (src_key_padding_mask[b, t] = True);
  - `activation` (the activation cases only) 1 x 1: 0 = activation="relu", 2 = GELU(approximate="tanh")
    passed as the activation; absent = "gelu". The ReLU case checks that no linear1 output is within
    1e-3 of the kink, so the float test is not decided there.

`positional_sinusoidal`: the table `pe` (max_len x d) of the PyTorch tutorial's PositionalEncoding
(PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)), computed with the tutorial's code in float64.

`transformer_lm`: a 2-layer causal character model, logits = head(ln_f(blocks(tok_emb(ids) +
pos_emb(t)))) with nn.Embedding token and learned position embeddings, pre-LN blocks, and the mean
cross-entropy against `targets`: `ids`, `targets` (L x B, token t of sequence b at (t, b)), `shape`
(L, B, d, heads, ff, vocab, layers), `param.*`, `loss` (1 x 1) and every `grad.*`.

Inputs (x, the parameters, dL_dy) are rounded to multiples of 1/64, so they are exact in float32 too.
"""

import math
import sys

import torch
from torch import nn

import make_fixtures
from make_fixtures import DTYPE, parameter, quantise, run_case


def Case(name, description):
    return make_fixtures.Case(name, description, generator="make_transformer_fixtures.py",
                              layout="d x (B*L), column t + L*b")


def causal_mask(length):
    return torch.triu(torch.full((length, length), float("-inf"), dtype=DTYPE), diagonal=1)


def randomise(model):
    """Random parameters (multiples of 1/64): LayerNorm weights near 1, everything else around 0."""
    with torch.no_grad():
        norm_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
        for p in model.parameters():
            if id(p) in norm_weights:
                p.copy_(quantise(1.0 + 0.25 * torch.randn_like(p)))
            else:
                p.copy_(quantise(0.5 * torch.randn_like(p)))


def gelu_tanh(x):
    return nn.functional.gelu(x, approximate="tanh")


# name: (code in the fixture, TransformerEncoderLayer's activation argument)
ACTIVATIONS = {"relu": (0, "relu"), "gelu": (1, "gelu"), "gelu_tanh": (2, gelu_tanh)}


class Block(nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer (same parameter names) applied to a (B*L, d) batch."""

    def __init__(self, d, heads, ff, length, norm_first, causal, key_padding_mask=None, activation="gelu"):
        super().__init__(d, heads, ff, dropout=0.0, activation=ACTIVATIONS[activation][1], norm_first=norm_first,
                         batch_first=True)
        self.length = length
        self.causal = causal
        self.key_padding_mask = key_padding_mask

    def forward(self, x2d):
        x = x2d.reshape(-1, self.length, x2d.shape[1])  # (B, L, d)
        mask = causal_mask(self.length) if self.causal else None
        y = super().forward(x, src_mask=mask, src_key_padding_mask=self.key_padding_mask)
        return y.reshape(-1, x2d.shape[1])


def block_case(name, description, norm_first, causal, seed, padded=None, d=8, heads=2, ff=16, length=5, sequences=2,
               activation="gelu"):
    torch.manual_seed(seed)
    mask = None
    if padded is not None:
        mask = torch.zeros(sequences, length, dtype=torch.bool)
        for b, t in padded:
            mask[b, t] = True
    model = Block(d, heads, ff, length, norm_first, causal, mask, activation).to(DTYPE)
    model.train()
    randomise(model)
    probes = []
    model.linear1.register_forward_hook(lambda module, inputs, output: probes.append(output.detach().clone()))
    x = quantise(torch.randn(sequences * length, d, dtype=DTYPE))
    dL_dy = quantise(torch.randn(sequences * length, d, dtype=DTYPE))
    case = Case(name, description)
    case.add("shape", torch.tensor([length, sequences, d, heads, ff], dtype=DTYPE).reshape(-1, 1))
    case.add("causal", torch.tensor([[1.0 if causal else 0.0]], dtype=DTYPE))
    if mask is not None:
        case.add("mask", mask.T.to(DTYPE))
    if activation != "gelu":
        case.add("activation", torch.tensor([[float(ACTIVATIONS[activation][0])]], dtype=DTYPE))
    run_case(case, model, x, dL_dy)
    if activation == "relu":
        assert probes and all(bool((h.abs() > 1e-3).all()) for h in probes), name + ": a ReLU input is near 0"
    return case


def positional_sinusoidal(d=8, max_len=16):
    """The PyTorch tutorial's PositionalEncoding table (word_language_model / transformer tutorial)."""
    position = torch.arange(max_len, dtype=DTYPE).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2, dtype=DTYPE) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, 1, d, dtype=DTYPE)
    pe[:, 0, 0::2] = torch.sin(position * div_term)
    pe[:, 0, 1::2] = torch.cos(position * div_term)
    case = make_fixtures.Case("positional_sinusoidal",
                              "The PyTorch tutorial's sinusoidal positional encoding, d=8, max_len=16.",
                              generator="make_transformer_fixtures.py", layout="pe is max_len x d")
    case.add("pe", pe[:, 0, :])
    return case


class TinyLm(nn.Module):
    def __init__(self, vocab, d, heads, ff, layers, max_len):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu", norm_first=True, batch_first=True)
            for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):  # ids (B, L)
        length = ids.shape[1]
        h = self.tok_emb(ids) + self.pos_emb(torch.arange(length)).unsqueeze(0)
        for block in self.blocks:
            h = block(h, src_mask=causal_mask(length))
        return self.head(self.ln_f(h))  # (B, L, vocab)


def transformer_lm(vocab=11, d=8, heads=2, ff=16, layers=2, length=5, sequences=2, max_len=7, seed=4006):
    torch.manual_seed(seed)
    model = TinyLm(vocab, d, heads, ff, layers, max_len).to(DTYPE)
    model.train()
    randomise(model)
    ids = torch.randint(0, vocab, (sequences, length))
    targets = torch.randint(0, vocab, (sequences, length))
    logits = model(ids)
    loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    loss.backward()
    case = make_fixtures.Case(
        "transformer_lm",
        "tok_emb(11, 8) + pos_emb(7, 8) -> 2 causal pre-LN TransformerEncoderLayer(8, 2, 16, gelu) -> ln_f -> "
        "head Linear(8, 11), mean cross-entropy; B=2 sequences of L=5.",
        generator="make_transformer_fixtures.py", layout="ids/targets L x B; parameters as torch")
    case.add("shape", torch.tensor([length, sequences, d, heads, ff, vocab, layers], dtype=DTYPE).reshape(-1, 1))
    case.add("ids", ids.T.to(DTYPE))
    case.add("targets", targets.T.to(DTYPE))
    params = dict(model.named_parameters())
    for name, p in params.items():
        case.add("param." + name, parameter(p))
    case.add("loss", loss.detach().reshape(1, 1))
    for name, p in params.items():
        case.add("grad." + name, parameter(p.grad))
    return case


def all_cases():
    return [
        block_case("transformer_pre_ln",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, gelu, norm_first=True); x is 8 x (2*5).",
                   True, False, 4001),
        block_case("transformer_pre_ln_causal",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, gelu, norm_first=True), causal src_mask; x is 8 x (2*5).",
                   True, True, 4002),
        block_case("transformer_post_ln",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, gelu, norm_first=False); x is 8 x (2*5).",
                   False, False, 4003),
        block_case("transformer_post_ln_causal",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, gelu, norm_first=False), causal src_mask; "
                   "x is 8 x (2*5).",
                   False, True, 4004),
        block_case("transformer_key_padding",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, gelu, norm_first=True), src_key_padding_mask: "
                   "sequence 0 keys 3 and 4, sequence 1 key 1 padded; x is 8 x (2*5).",
                   True, False, 4005, padded=[(0, 3), (0, 4), (1, 1)]),
        block_case("transformer_pre_ln_relu",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, activation=\"relu\", norm_first=True); x is 8 x (2*5).",
                   True, False, 4007, activation="relu"),
        block_case("transformer_post_ln_relu",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, activation=\"relu\", norm_first=False), causal; "
                   "x is 8 x (2*5).",
                   False, True, 4008, activation="relu"),
        block_case("transformer_pre_ln_gelu_tanh",
                   "TransformerEncoderLayer(8, 2, 16, dropout=0, activation=GELU(approximate=\"tanh\"), "
                   "norm_first=True); x is 8 x (2*5).",
                   True, False, 4009, activation="gelu_tanh"),
        positional_sinusoidal(),
        transformer_lm(),
    ]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(all_cases, __doc__))
