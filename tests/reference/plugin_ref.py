#!/usr/bin/python3
"""Independent PyTorch reference of a Variator-plugged window (docs/PLUGINS.md), in float64.

    plugin_ref.py MODEL PLUGIN.f32 K R P TOKENS.i32 B T C_LOGITS.f32

PLUGIN.f32: the plugin's raw float32 parameters, per layer with an FFN: w [d], W1 [r, 2d], b1 [r],
W2 [d, r], b2 [d] (the last layer has none). TOKENS.i32: [B, T] windows; their first P tokens are the prompt. Groups of K from
position 0, as many as fit in the first P - 1 positions; the other positions run exactly, except in
the last layer, whose FFN does not run at prompt positions 0..P-2 (the last-layer rule). Since
attention is exact and causal, the whole window in one pass equals the plugged prefill followed by
the continuation on its cache. Prints JSON: max |C - torch| over the logits and max |torch|."""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

silu = torch.nn.functional.silu


def plugged_ffn(h, f, pl, k, P):
    """h [B, T, d]: FFN inputs; rows < P plugged, the rest exact; pl None: the last layer."""
    B, T, d = h.shape
    ffn = lambda z: (silu(z @ f["w1"].T) * (z @ f["w3"].T)) @ f["w2"].T  # noqa: E731
    y = ffn(h)
    if pl is None:
        y[:, : P - 1] = 0
        return y
    G = (P - 1) // k if P > 1 else 0
    if G:
        xg = h[:, : G * k].reshape(B, G, k, d)
        a = torch.softmax(xg @ pl["w"], dim=-1)  # [B, G, k]
        fg = ffn((a[..., None] * xg).sum(2))  # [B, G, d]
        fi = fg[:, :, None, :].expand(B, G, k, d)
        u = silu(torch.cat([xg, fi], -1) @ pl["w1"].T + pl["b1"])
        y[:, : G * k] = (fi + u @ pl["w2"].T + pl["b2"]).reshape(B, G * k, d)
    return y


def forward(m, plugins, tokens, k, P):
    B, T = tokens.shape
    hd = m.head_dim
    cos, sin = llama_ref.rope_tables(T, hd, m.theta, m.embed.dtype)
    x = m.embed[tokens]
    for layer, pl in zip(m.layers, plugins):
        a = layer.attn
        if a is not None:
            nh, nkv = a["n_heads"], a["n_kv_heads"]
            h = llama_ref.rmsnorm(x, a["norm"], m.eps)
            q = llama_ref.apply_rope((h @ a["wq"].T).view(B, T, nh, hd), cos, sin, m.rope)
            kk = llama_ref.apply_rope((h @ a["wk"].T).view(B, T, nkv, hd), cos, sin, m.rope)
            v = (h @ a["wv"].T).view(B, T, nkv, hd)
            x = x + llama_ref.attention(q, kk, v).reshape(B, T, nh * hd) @ a["wo"].T
        if layer.mlp is not None:
            x = x + plugged_ffn(llama_ref.rmsnorm(x, layer.mlp["norm"], m.eps), layer.mlp, pl, k, P)
    return llama_ref.rmsnorm(x, m.final_norm, m.eps) @ m.wcls.T


def main(argv):
    model, plugin, k, r, P, tokens, B, T, c_logits = argv
    k, r, P, B, T = int(k), int(r), int(P), int(B), int(T)
    m = llama_ref.load_model(model, torch.float64)
    flat = torch.from_numpy(np.fromfile(plugin, dtype=np.float32).astype(np.float64))
    d, off, plugins = m.dim, 0, []
    for i, layer in enumerate(m.layers):
        if layer.mlp is None or i == len(m.layers) - 1:
            plugins.append(None)
            continue
        pl = {}
        for name, shape in (("w", (d,)), ("w1", (r, 2 * d)), ("b1", (r,)), ("w2", (d, r)), ("b2", (d,))):
            n = int(np.prod(shape))
            pl[name] = flat[off: off + n].reshape(shape)
            off += n
        plugins.append(pl)
    assert off == flat.numel(), f"{plugin}: {flat.numel()} floats, the model's plugins take {off}"
    tok = torch.from_numpy(np.fromfile(tokens, dtype=np.int32).astype(np.int64)).view(B, T)
    logits = forward(m, plugins, tok, k, P)
    c = torch.from_numpy(np.fromfile(c_logits, dtype=np.float32).astype(np.float64)).view_as(logits)
    print(json.dumps({"max_abs_diff": float((c - logits).abs().max()), "max_abs": float(logits.abs().max())}))


if __name__ == "__main__":
    main(sys.argv[1:])
