#!/usr/bin/env python3
"""Generates data/tiny-fashion: a small, deterministic Fashion-MNIST-format
dataset (IDX files, gzip) that the default CLI config falls back to when
Debian's dataset-fashion-mnist package is absent.

Ten synthetic classes of 28x28 u8 images, each a distinct stroke pattern
(bars, a box, a cross, diagonals, a disc, ...) drawn with a random shift of
up to 3 pixels, random stroke intensity and sparse noise, so an MLP must
learn something (a fixed pixel test fails under the shifts) but reaches
high accuracy within a few epochs. Output is byte-for-byte reproducible
(fixed seed, gzip mtime 0).

    python3 scripts/gen_tiny_fashion.py [OUT_DIR] [N_TRAIN] [N_TEST]
"""
import gzip
import math
import os
import random
import struct
import sys


def draw(cls, rng):
    img = [[0] * 28 for _ in range(28)]
    dx, dy = rng.randint(-3, 3), rng.randint(-3, 3)
    ink = rng.randint(150, 255)

    def put(x, y, v=ink):
        x, y = x + dx, y + dy
        if 0 <= x < 28 and 0 <= y < 28:
            img[y][x] = max(img[y][x], v)

    def hbar(y, x0, x1, w=2):
        for yy in range(y, y + w):
            for x in range(x0, x1):
                put(x, yy)

    def vbar(x, y0, y1, w=2):
        for xx in range(x, x + w):
            for y in range(y0, y1):
                put(xx, y)

    if cls == 0:    # horizontal bars (a "shirt": stripes)
        for y in (8, 13, 18):
            hbar(y, 7, 21)
    elif cls == 1:  # one vertical bar ("trouser")
        vbar(9, 5, 23, 3)
        vbar(16, 5, 23, 3)
    elif cls == 2:  # box outline ("bag")
        hbar(7, 7, 21); hbar(19, 7, 21); vbar(7, 7, 21); vbar(19, 7, 21)
    elif cls == 3:  # cross
        hbar(13, 5, 23); vbar(13, 5, 23)
    elif cls == 4:  # main diagonal
        for i in range(5, 23):
            put(i, i); put(i + 1, i)
    elif cls == 5:  # anti-diagonal
        for i in range(5, 23):
            put(27 - i, i); put(26 - i, i)
    elif cls == 6:  # filled disc
        for y in range(28):
            for x in range(28):
                if (x - 13.5) ** 2 + (y - 13.5) ** 2 < 36:
                    put(x, y)
    elif cls == 7:  # ring
        for y in range(28):
            for x in range(28):
                r = math.hypot(x - 13.5, y - 13.5)
                if 6.5 < r < 9:
                    put(x, y)
    elif cls == 8:  # "L" shape ("boot")
        vbar(8, 5, 21, 3); hbar(18, 8, 22, 3)
    else:           # "T" shape
        hbar(6, 5, 23, 3); vbar(12, 6, 23, 3)
    for _ in range(rng.randint(5, 25)):  # sparse noise
        img[rng.randrange(28)][rng.randrange(28)] = rng.randint(30, 200)
    return bytes(v for row in img for v in row)


def write_idx(path, data, dims, code=0x08):
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(bytes([0, 0, code, len(dims)]))
            for d in dims:
                f.write(struct.pack(">I", d))
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "tiny-fashion")
    n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    n_test = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20240601)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = [i % 10 for i in range(n)]
        rng.shuffle(labels)
        imgs = b"".join(draw(c, rng) for c in labels)
        write_idx(os.path.join(out, prefix + "-images-idx3-ubyte.gz"), imgs, (n, 28, 28))
        write_idx(os.path.join(out, prefix + "-labels-idx1-ubyte.gz"), bytes(labels), (n,))


if __name__ == "__main__":
    main()
