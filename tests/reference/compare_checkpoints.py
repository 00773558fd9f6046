#!/usr/bin/python3
"""Checks that pruned checkpoints made with different rank layouts agree: the same tensor names
and shapes, the same config.json and per-layer structure in the report, tensor values within
1e-4 of each tensor's largest value (float summation order differs between layouts), and the same
perplexity to 1e-4.

`--tol T` sets the tensors' tolerance, for weights trained by Adam after the masks (recovery):
Adam's first step is lr * g / |g| element by element, so a gradient component at rounding level
takes a full step of either sign, and a layout's 3e-6 rounding differences come out as up to 8e-5
(d2l against n1l, measured), while one recovery step fewer moves the worst element by 1.2e-2 and
half the batch by 6e-2 (stories260K, also measured)."""
import json, os, struct, sys

import numpy as np


def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__":
                continue
            s, e = v["data_offsets"]
            assert v["dtype"] == "F32", v["dtype"]
            out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f4").reshape(v["shape"])
    return out


def main():
    args, tol = sys.argv[1:], 1e-4
    if args[:1] == ["--tol"]:
        tol, args = float(args[1]), args[2:]
    ref_dir, others = args[0], args[1:]
    ref, ref_cfg = tensors(ref_dir), json.load(open(os.path.join(ref_dir, "config.json")))
    ref_rep = json.load(open(os.path.join(ref_dir, "vtrans_report.json")))
    for d in others:
        t, cfg = tensors(d), json.load(open(os.path.join(d, "config.json")))
        rep = json.load(open(os.path.join(d, "vtrans_report.json")))
        assert cfg == ref_cfg, f"{d}: config.json differs"
        assert sorted(t) == sorted(ref), f"{d}: tensor names differ"
        worst = 0.0
        for k in ref:
            assert t[k].shape == ref[k].shape, f"{d}: {k} shape {t[k].shape} vs {ref[k].shape}"
            err = float(np.max(np.abs(t[k] - ref[k]))) if t[k].size else 0.0
            scale = float(np.max(np.abs(ref[k]))) if ref[k].size else 1.0
            assert err <= tol * max(scale, 1e-6), f"{d}: {k} differs by {err} (max {scale}, tolerance {tol})"
            worst = max(worst, err / max(scale, 1e-6))
        for key in ("layers", "hidden_kept", "params_after"):
            assert rep[key] == ref_rep[key], f"{d}: report {key} differs"
        a, b = rep["ppl_after"], ref_rep["ppl_after"]
        assert abs(a - b) <= 1e-4 * b, f"{d}: ppl {a} vs {b}"
        print(f"{d}: same {len(t)} tensors (worst {worst:.2g} of a tensor's largest value), ppl {a:.6f}")


if __name__ == "__main__":
    main()
