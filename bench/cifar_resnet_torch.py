"""PyTorch twin of resblocks_bench's BM_CifarResNetTrain/20/128: one training step (forward, cross-entropy,
backward, SGD with Nesterov momentum and weight decay) of the same ResNet-20 as
../shared/anchors/fmnist_torch.py (1x28x28 inputs, projection shortcuts), batch 128, on random data.
Usage: python3 bench/cifar_resnet_torch.py THREADS   (Debian python3-torch; prints 5 timings in ms, each
the mean of 4 steps). Run it beside OMP_NUM_THREADS=THREADS build/bench/resblocks_bench
--benchmark_filter=BM_CifarResNetTrain: the machine is noisy, only side-by-side ratios mean much."""
import sys, time, torch
import torch.nn as nn, torch.nn.functional as F
threads = int(sys.argv[1]); torch.set_num_threads(threads); torch.manual_seed(0)
class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.proj = None
        if stride != 1 or cin != cout:
            s.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(s, x):
        y = s.b2(s.c2(F.relu(s.b1(s.c1(x)))))
        return F.relu(y + (x if s.proj is None else s.proj(x)))
class ResNet(nn.Module):
    def __init__(s, n):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(n): layers.append(Block(cin, cout, stride if i == 0 else 1)); cin = cout
        s.body = nn.Sequential(*layers); s.fc = nn.Linear(64, 10)
    def forward(s, x): return s.fc(F.adaptive_avg_pool2d(s.body(s.stem(x)), 1).flatten(1))
m = ResNet(3)
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
x = torch.randn(128, 1, 28, 28); y = torch.randint(0, 10, (128,))
def step():
    opt.zero_grad(); loss = F.cross_entropy(m(x), y); loss.backward(); opt.step()
for _ in range(3): step()
ts=[]
for r in range(5):
    t0=time.perf_counter()
    for _ in range(4): step()
    ts.append((time.perf_counter()-t0)/4*1000)
print(f"torch threads={threads} step ms: " + " ".join(f"{t:.0f}" for t in ts))
