#!/usr/bin/env python3
"""Trains the same MLP and CNN with Blixt and with PyTorch on Fashion-MNIST in
one run and compares test accuracy and wall time per training epoch.

    python3 bench/train_compare.py [--build build] [--threads 1,2] [--only mlp,cnn]
                                   [--mlp-epochs 5] [--cnn-epochs 3] [--lr 0.01]

Both sides get exactly the same training problem:
  * the same initial weights: PyTorch builds the network (torch.manual_seed)
    and writes its state_dict as safetensors; Blixt loads it by name (strict);
  * the same data: the IDX files of Debian's dataset-fashion-mnist, 60000
    training and 10000 test images, scaled x/255 to float32 on both sides;
  * the same batch order: Blixt's shuffled loader (seeded) decides the
    permutation of every epoch, `blixt-bench-accuracy --dump-order` writes it,
    and PyTorch follows it (Blixt checks its first batch of each epoch);
  * the same optimisation: SGD (lr, momentum 0.9), batch 128, mean cross
    entropy, the last short batch kept.
Blixt trains through the Trainer (bench/bench_accuracy.c: bx_trainer_fit with
the CSV logger, the default ModelCheckpoint and the progress bar, then
bx_trainer_test); PyTorch is a plain loop at its best (batches gathered by
indexing the data tensors, no DataLoader collation; OPENBLAS_CORETYPE=SkylakeX,
OMP_WAIT_POLICY=PASSIVE, torch/OpenBLAS/OpenMP threads = Blixt's).
Epoch time is training batches only (no validation on either side). Float
rounding differs between the two engines, so the runs are not bitwise equal:
the accuracy difference is the trajectory's sensitivity, which is what the
0.5-point bound allows for.

Results: a table on stdout and bench/out/train_compare.json.
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = "/usr/share/datasets/fashion-mnist"
TORCH_PY = "/usr/bin/python3"  # Debian's python3-torch


def env_for(threads):
    env = dict(os.environ)
    env.update({"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads),
                "OPENBLAS_CORETYPE": "SkylakeX", "OPENBLAS_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads)})
    return env


def run_json(cmd, threads):
    p = subprocess.run(cmd, env=env_for(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")][-1]


# ---- PyTorch side -------------------------------------------------------------------
def build_torch(model):
    import torch.nn as nn
    if model == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def write_safetensors(path, sd):
    hdr, blobs, off = {}, [], 0
    for k, v in sd.items():
        b = v.detach().contiguous().float().numpy().tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    import numpy as np
    import torch
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    out = {}
    for k, e in hdr.items():
        b, en = e["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(raw[8 + n + b:8 + n + en], np.float32).copy()).reshape(e["shape"])
    return out


def load_idx(d, split, flat):
    import numpy as np
    import torch

    def rd(stem, off):
        p = os.path.join(d, stem)
        return gzip.open(p + ".gz").read()[off:] if os.path.exists(p + ".gz") else open(p, "rb").read()[off:]
    img = np.frombuffer(rd(f"{split}-images-idx3-ubyte", 16), np.uint8)
    lab = np.frombuffer(rd(f"{split}-labels-idx1-ubyte", 8), np.uint8)
    x = torch.from_numpy(img.astype(np.float32) / np.float32(255.0))  # x/255 in float32, as Blixt
    x = x.reshape(-1, 784) if flat else x.reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(lab.astype(np.int64))


def torch_worker(a):
    import numpy as np
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    x, y = load_idx(a.data, "train", a.model == "mlp")
    xt, yt = load_idx(a.data, "t10k", a.model == "mlp")
    load_ms = (time.perf_counter() - t0) * 1e3
    n = x.shape[0]
    order = torch.from_numpy(np.fromfile(a.order, np.int32).astype(np.int64)).reshape(-1, n)
    net = build_torch(a.model)
    net.load_state_dict(read_safetensors(a.init), strict=True)
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=a.momentum)
    epoch_ms, losses = [], []
    net.train()
    f0 = time.perf_counter()
    for e in range(a.epochs):
        perm = order[e]
        t0 = time.perf_counter()
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            losses.append(float(loss))
        epoch_ms.append((time.perf_counter() - t0) * 1e3)
    fit_ms = (time.perf_counter() - f0) * 1e3
    net.eval()
    t0 = time.perf_counter()
    correct = 0
    with torch.no_grad():
        for i in range(0, xt.shape[0], 1000):
            correct += int((net(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum())
    test_ms = (time.perf_counter() - t0) * 1e3
    print(json.dumps({"impl": "pytorch", "model": a.model, "threads": a.threads, "epochs": a.epochs,
                      "test_acc": correct / xt.shape[0], "test_correct": correct, "test_n": xt.shape[0],
                      "train_loss_last": float(loss), "epoch_ms": [round(v, 1) for v in epoch_ms], "losses": losses,
                      "fit_ms": round(fit_ms, 1), "test_ms": round(test_ms, 1), "load_ms": round(load_ms, 1),
                      "same_init": True}))


# ---- the comparison ----------------------------------------------------------------------
def mean(v):
    return sum(v) / len(v)


def rel_trace(a, b):
    """Largest relative difference of two loss trajectories in 10-step windows from steps 1, 10, 30, ..."""
    rel = [abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b)]
    return {f"step_{k}": max(rel[k - 1:k + 9]) for k in (1, 10, 30, 100, 300, 1000, 3000) if k + 9 <= len(rel)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="mlp,cnn")
    ap.add_argument("--mlp-epochs", type=int, default=5)
    ap.add_argument("--cnn-epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the initial weights")
    ap.add_argument("--shuffle-seed", type=int, default=1234)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--out", default=os.path.join(HERE, "out", "train_compare.json"))
    # worker mode (internal): one PyTorch training run
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--init", help=argparse.SUPPRESS)
    ap.add_argument("--order", help=argparse.SUPPRESS)
    ap.add_argument("--init-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker and a.init_out:
        import torch
        torch.manual_seed(a.seed)
        write_safetensors(a.init_out, build_torch(a.model).state_dict())
        return 0
    if a.worker:
        a.threads = int(a.threads)
        return torch_worker(a)

    blixt = os.path.join(a.build, "bin", "blixt-bench-accuracy")
    if not os.path.exists(blixt):
        raise SystemExit(f"{blixt} not found: build the project first")
    tmp = tempfile.mkdtemp(prefix="blixt-train-compare-")
    rows, losses = [], {}
    load = os.getloadavg()
    t_start = time.time()
    for model in [m for m in a.only.split(",") if m]:
        epochs = a.mlp_epochs if model == "mlp" else a.cnn_epochs
        init, order = os.path.join(tmp, f"{model}_init.safetensors"), os.path.join(tmp, f"{model}_order.bin")
        subprocess.run([TORCH_PY, os.path.abspath(__file__), "--worker", "--model", model, "--seed", str(a.seed),
                        "--init-out", init], check=True)
        common = ["--model", model, "--epochs", str(epochs), "--lr", str(a.lr), "--momentum", str(a.momentum),
                  "--batch", str(a.batch), "--init", init, "--data", a.data]
        subprocess.run([blixt, "--model", model, "--epochs", str(epochs), "--batch", str(a.batch),
                        "--shuffle-seed", str(a.shuffle_seed), "--data", a.data, "--dump-order", order], check=True)
        for t in [int(s) for s in a.threads.split(",")]:
            b = run_json([blixt, "--threads", str(t), "--shuffle-seed", str(a.shuffle_seed)] + common, t)
            p = run_json([TORCH_PY, os.path.abspath(__file__), "--worker", "--threads", str(t),
                          "--order", order] + common, t)
            if b.get("order_mismatch"):
                raise SystemExit(f"{model}: Blixt's batches did not follow the dumped order")
            be, pe = mean(b["epoch_ms"]), mean(p["epoch_ms"])
            # step by step: the same first steps (same init, data, order, loss and update), then the
            # float rounding differences grow; a bug would show as a jump or a lasting bias
            bl, pl = b.pop("losses"), p.pop("losses")
            losses[(model, t, "blixt")], losses[(model, t, "pytorch")] = bl, pl
            trace = rel_trace(bl, pl)
            loss_rel = trace["step_1"]
            spe = len(bl) // epochs
            mean_last = {"blixt": mean(bl[-spe:]), "pytorch": mean(pl[-spe:])}
            row = {"model": model, "threads": t, "epochs": epochs, "blixt": b, "pytorch": p,
                   "acc_diff_points": 100 * (b["test_acc"] - p["test_acc"]),
                   "first_losses_max_rel_diff": loss_rel, "loss_rel_diff_by_step": trace,
                   "mean_loss_last_epoch": mean_last,
                   "blixt_epoch_ms": be, "pytorch_epoch_ms": pe, "ratio": be / pe}
            rows.append(row)
            print(f"{model} threads={t}: blixt {100 * b['test_acc']:.2f}% {be:.0f} ms/epoch, "
                  f"pytorch {100 * p['test_acc']:.2f}% {pe:.0f} ms/epoch; loss rel diff by step "
                  + ", ".join(f"{k[5:]}: {v:.1e}" for k, v in trace.items() if k != "step_1")
                  + f"; mean loss last epoch {mean_last['blixt']:.4f} vs {mean_last['pytorch']:.4f}",
                  file=sys.stderr, flush=True)
    load_end = os.getloadavg()

    print(f"\nFashion-MNIST, SGD lr {a.lr} momentum {a.momentum}, batch {a.batch}, same initial weights and "
          f"batch order; epoch = training batches only")
    print(f"{'model':<5} {'ep':>3} {'thr':>3} {'blixt acc':>10} {'torch acc':>10} {'diff':>6}  "
          f"{'blixt ms/ep':>11} {'torch ms/ep':>11} {'ratio':>6} {'loss1-10 rel':>12}")
    ok = True
    for r in rows:
        d = r["acc_diff_points"]
        ok &= abs(d) <= 0.5
        print(f"{r['model']:<5} {r['epochs']:>3} {r['threads']:>3} {100 * r['blixt']['test_acc']:>9.2f}% "
              f"{100 * r['pytorch']['test_acc']:>9.2f}% {d:>+6.2f}  {r['blixt_epoch_ms']:>11.0f} "
              f"{r['pytorch_epoch_ms']:>11.0f} {r['ratio']:>6.2f} {r['first_losses_max_rel_diff']:>12.1e}")
    # noise baseline: the same implementation at two thread counts (other rounding, same everything else)
    noise = {}
    ths = sorted({r["threads"] for r in rows})
    for m in sorted({r["model"] for r in rows}):
        for impl in ("blixt", "pytorch"):
            accs = [r[impl]["test_acc"] for r in rows if r["model"] == m]
            if len(accs) > 1:
                l0, l1 = losses[(m, ths[0], impl)], losses[(m, ths[-1], impl)]
                noise[f"{m}/{impl}"] = {"acc_spread_points": 100 * (max(accs) - min(accs)),
                                        "bitwise_same_losses": l0 == l1, "loss_rel_diff_by_step": rel_trace(l0, l1)}
    for k, v in noise.items():
        tr = ", ".join(f"{st[5:]}: {x:.1e}" for st, x in v["loss_rel_diff_by_step"].items() if st != "step_1")
        print(f"rounding noise {k} at {ths[0]} vs {ths[-1]} threads: accuracy spread {v['acc_spread_points']:.2f} "
              f"points; " + ("bitwise identical losses" if v["bitwise_same_losses"] else f"loss rel diff by step {tr}"))
    print(f"accuracy within 0.5 point: {'yes' if ok else 'NO'}; load average {load[0]:.2f} at start, "
          f"{load_end[0]:.2f} at end; {time.time() - t_start:.0f} s")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"settings": {k: v for k, v in vars(a).items() if k not in ("worker", "model", "epochs", "init", "order")},
                   "load_avg_start": load, "load_avg_end": load_end, "rows": rows,
                   "noise_points": noise, "accuracy_ok": ok}, f, indent=1)
    for fn in os.listdir(tmp):
        os.remove(os.path.join(tmp, fn))
    os.rmdir(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
