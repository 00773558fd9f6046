#!/usr/bin/python3
"""Checks that pruned checkpoints made with different rank layouts agree: the same tensor names
and shapes, the same config.json and per-layer structure in the report, tensor values within
1e-4 relative (float summation order differs between layouts), and the same perplexity."""
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
    ref_dir, others = sys.argv[1], sys.argv[2:]
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
            assert err <= 1e-4 * max(scale, 1e-6), f"{d}: {k} differs by {err} (max {scale})"
            worst = max(worst, err / max(scale, 1e-6))
        for key in ("layers", "hidden_kept", "params_after"):
            assert rep[key] == ref_rep[key], f"{d}: report {key} differs"
        a, b = rep["ppl_after"], ref_rep["ppl_after"]
        assert abs(a - b) <= 1e-4 * b, f"{d}: ppl {a} vs {b}"
        print(f"{d}: same {len(t)} tensors (worst {worst:.2g} of a tensor's largest value), ppl {a:.6f}")


if __name__ == "__main__":
    main()
