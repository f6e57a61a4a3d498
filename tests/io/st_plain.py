"""A safetensors reader in plain json+struct (no Blixt code, no safetensors
package), shared by the PyTorch interop checks. It also checks the layout
rules Blixt's writer promises: header padded to 8, tensors contiguous in
offset order, each aligned to its element size, the data section covered."""
import json
import struct

import torch

FMT = {"F64": ("d", 8, torch.float64), "F32": ("f", 4, torch.float32), "I64": ("q", 8, torch.int64),
       "I32": ("i", 4, torch.int32), "I8": ("b", 1, torch.int8), "U8": ("B", 1, torch.uint8),
       "BOOL": ("?", 1, torch.bool)}


def read(path):
    """(metadata dict, {name: torch tensor}, raw data section bytes)."""
    with open(path, "rb") as fp:
        raw = fp.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, "header not padded to 8"
    hdr = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = hdr.pop("__metadata__", {})
    out, end = {}, 0
    for name, e in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, en = e["data_offsets"]
        assert b == end, "%s: gap or overlap" % name
        ch, size, tdt = FMT[e["dtype"]]
        assert b % size == 0, "%s not aligned" % name
        numel = 1
        for d in e["shape"]:
            numel *= d
        assert en - b == numel * size, "%s: size mismatch" % name
        vals = struct.unpack("<%d%s" % (numel, ch), data[b:en])
        out[name] = torch.tensor(vals, dtype=tdt).reshape(e["shape"])
        end = en
    assert end == len(data), "data not covered"
    return meta, out, data
