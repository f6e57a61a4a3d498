#!/usr/bin/env python3
"""Loads a Blixt checkpoint into torch.nn with plain json+struct+zlib (neither
Blixt code nor the safetensors package): the state_dict tensors are stored
under their PyTorch names, so load_state_dict(strict=True) must succeed.

Usage: check_ckpt_torch.py PATH_TO_io_test_checkpoint
Exit 0 = all match, 1 = mismatch, 77 = skipped (no torch).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

try:
    import torch
except Exception:  # noqa: BLE001 - any import failure means "no torch here"
    print("torch not importable: skipped")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_plain  # noqa: E402


read = st_plain.read


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.bn = torch.nn.BatchNorm1d(3)


def ramp(shape, a, b, dtype=torch.float32):
    n = 1
    for d in shape:
        n *= d
    return (torch.arange(n, dtype=torch.float64) * a + b).to(dtype).reshape(shape)


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.ckpt")
        subprocess.run([exe, "--write-torch", path], check=True)
        meta, t, data = read(path)
    ok = True
    if meta.get("format") != "pt":
        print("metadata format is not 'pt':", meta.get("format"))
        ok = False
    text = meta["blixt"]
    crc = zlib.crc32(data, zlib.crc32(text.encode("utf-8")))
    if "%08x" % crc != meta.get("blixt_crc32"):
        print("crc mismatch:", "%08x" % crc, meta.get("blixt_crc32"))
        ok = False
    tree = json.loads(text)
    sd = {k: t[v["__tensor__"]] for k, v in tree["state_dict"].items()}
    net = Net()
    res = net.load_state_dict(sd, strict=True)
    print("load_state_dict(strict=True):", res)
    want = {
        "fc.weight": ramp((3, 4), 0.25, -1.0), "fc.bias": ramp((3,), -0.5, 0.5),
        "bn.weight": ramp((3,), 0.5, 1.0), "bn.bias": ramp((3,), 0.125, -0.125),
        "bn.running_mean": ramp((3,), 0.3, 0.1), "bn.running_var": ramp((3,), 0.5, 2.0),
        "bn.num_batches_tracked": torch.tensor(5, dtype=torch.int64),
    }
    got = net.state_dict()
    for k, v in want.items():
        g = got[k]
        if g.dtype != v.dtype or g.shape != v.shape or not torch.equal(g, v):
            print("MISMATCH", k, g, v)
            ok = False
    ea = tree["optimizer_states"][0]["state"]["0"]["exp_avg"]["__tensor__"]
    if ea != "optimizer_states.0.state.0.exp_avg" or not torch.equal(t[ea], ramp((3, 4), 0.01, 0.0)):
        print("optimizer moment mismatch:", ea)
        ok = False
    if tree["epoch"] != 1 or tree["global_step"] != 2:
        print("epoch/global_step mismatch", tree["epoch"], tree["global_step"])
        ok = False
    # the model runs with the loaded weights
    net.eval()
    y = net.bn(net.fc(torch.ones(2, 4)))
    ok = ok and bool(torch.isfinite(y).all())
    print("checkpoint interop", "ok" if ok else "FAILED", "(%d tensors)" % len(t))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
