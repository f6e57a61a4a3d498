#!/usr/bin/env python3
"""PyTorch side of the Blixt benchmarks: the same workloads as bench_engine.c.

Prints one JSON object per line: {"name", "ms", ...}. Run it through
bench/compare.py, which sets PyTorch up at its best on these machines
(OPENBLAS_CORETYPE=SkylakeX, OMP_WAIT_POLICY=PASSIVE, threads pinned).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), min(samples)


def train_step_fn(model, x, y, lr=0.01):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def load_fashion_mnist(d):
    """Fashion-MNIST train split as (N,784) float32 in [0,1] and int64 labels."""
    import gzip
    import os
    import numpy as np
    ip, lp = os.path.join(d, "train-images-idx3-ubyte.gz"), os.path.join(d, "train-labels-idx1-ubyte.gz")
    if not (os.path.exists(ip) and os.path.exists(lp)):
        return None, None
    with gzip.open(ip) as f:
        img = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(lp) as f:
        lab = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(img.astype(np.float32) / 255.0), torch.from_numpy(lab.astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    q = a.quick
    only = set(a.only.split(",")) if a.only else None

    def want(n):
        return only is None or n in only

    out = []
    if want("mlp"):
        m = mlp([784, 256, 128, 10])
        x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
        med, mn = timed(train_step_fn(m, x, y), 20, 50 if q else 200)
        out.append({"name": "mlp", "ms": med, "min_ms": mn})
    if want("cnn"):
        m = cnn()
        x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
        med, mn = timed(train_step_fn(m, x, y), 2, 5 if q else 15)
        out.append({"name": "cnn", "ms": med, "min_ms": mn})
    if want("bigmlp"):
        m = mlp([784, 4096, 4096, 10])
        x, y = torch.randn(512, 784), torch.randint(0, 10, (512,))
        med, mn = timed(train_step_fn(m, x, y), 1, 3 if q else 7)
        flops = 2 * 512 * (784 * 4096 + 4096 * 4096 + 4096 * 10) * 3 - 2 * 512 * 784 * 4096
        out.append({"name": "bigmlp", "ms": med, "min_ms": mn, "gflops": flops / med / 1e6})
    if want("tinyop"):
        a1, b1 = torch.ones(1), torch.ones(1)
        n = 2000

        def f():
            for _ in range(n):
                torch.add(a1, b1)
        med, mn = timed(f, 2, 10)
        out.append({"name": "tinyop", "ms": med / n * 1e3, "unit": "us/call"})
    if want("epoch"):
        x, y = load_fashion_mnist(a.data)
        if x is not None:
            ds = torch.utils.data.TensorDataset(x, y)
            loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)
            m = mlp([784, 256, 128, 10])
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            t0 = time.perf_counter()
            for bx_, by_ in loader:
                opt.zero_grad()
                F.cross_entropy(m(bx_), by_).backward()
                opt.step()
            out.append({"name": "epoch", "ms": (time.perf_counter() - t0) * 1e3, "unit": "ms/epoch"})
    for o in out:
        o["impl"] = "pytorch"
        o["threads"] = a.threads
        print(json.dumps(o), flush=True)


if __name__ == "__main__":
    main()
