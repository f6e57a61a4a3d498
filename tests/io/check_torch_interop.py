#!/usr/bin/env python3
"""Reads a Blixt-written safetensors file with plain json+struct (no Blixt code)
and compares every tensor with the values PyTorch computes for it.

Usage: check_torch_interop.py PATH_TO_io_test_safetensors
Exit 0 = all match, 1 = mismatch, 77 = skipped (no torch).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import torch
except Exception:  # noqa: BLE001 - any import failure means "no torch here"
    print("torch not importable: skipped")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_plain  # noqa: E402


def read(path):
    meta, out, _ = st_plain.read(path)
    return meta, out


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "interop.safetensors")
        subprocess.run([exe, "--write-interop", path], check=True)
        meta, t = read(path)
    want = {
        "net.0.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0,
        "lr": 0.1 / torch.arange(1, 5, dtype=torch.float64),
        "step": torch.tensor(1234567890123, dtype=torch.int64),
        "zp": torch.arange(-2, 2, dtype=torch.int32),
        "q": (torch.arange(4) * 85 - 128).to(torch.int8),
        "mask": torch.tensor([[0, 255, 2], [255, 4, 255]], dtype=torch.uint8),
        "flag": torch.tensor([True, False, False, True]),
        "empty": torch.zeros(0, 3),
    }
    ok = meta == {"format": "pt"} and set(t) == set(want)
    if not ok:
        print("metadata or names differ:", meta, sorted(t))
    for k, v in want.items():
        g = t.get(k)
        if g is None or g.dtype != v.dtype or g.shape != v.shape or not torch.equal(g, v):
            print("MISMATCH", k, g, v)
            ok = False
    print("interop", "ok" if ok else "FAILED", "(%d tensors)" % len(t))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
