#!/usr/bin/python3
"""Independent PyTorch reference for vtrans-dist: LLaMA forward pass, llama2.c tokenizer,
the perplexity protocol of README.md ("Evaluation protocol"), and greedy generation.

Written from the math and the published formats, not from the project's C code, so that the two
implementations can check each other. It imports nothing from the project. Needs only the Python
standard library, numpy and torch (Debian's python3-torch / python3-numpy, run with /usr/bin/python3).

    llama_ref.py eval     --model PATH --tokenizer PATH --data FILE [--window L] [--dtype float64|float32]
    llama_ref.py logits   --model PATH --tokens 1,2,3 [--out FILE.npy] [--dtype ...]
    llama_ref.py generate --model PATH --tokenizer PATH --steps N [--prompt TEXT]

PATH for --model is a llama2.c v0 `.bin` file or a Hugging Face LLaMA directory (config.json plus
model.safetensors, or shards listed in model.safetensors.index.json; F32, F16 or BF16 tensors).
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch

BOS = 1


# ----------------------------------------------------------------------------------------------
# Model container
# ----------------------------------------------------------------------------------------------

class Layer:
    """One transformer layer. `attn` / `mlp` are None when that block is absent (pruned away)."""

    def __init__(self):
        self.attn = None  # dict: norm, wq, wk, wv, wo, n_heads, n_kv_heads (+ bq, bk, bv, bo: attention_bias)
        self.mlp = None   # dict: norm, w1 (gate), w2 (down), w3 (up) (+ b1, b2, b3: mlp_bias)


class Model:
    def __init__(self):
        self.dim = 0
        self.head_dim = 0
        self.vocab = 0
        self.eps = 1e-5
        self.theta = 10000.0
        self.rope = "interleaved"  # or "half"
        self.embed = None          # [vocab, dim]
        self.layers = []
        self.final_norm = None     # [dim]
        self.wcls = None           # [vocab, dim] (the embedding itself when tied)

    def to(self, dtype):
        """Cast every weight to `dtype` (torch.float64 or torch.float32)."""
        conv = lambda t: t.to(dtype)  # noqa: E731
        self.embed = conv(self.embed)
        self.final_norm = conv(self.final_norm)
        self.wcls = conv(self.wcls)
        for layer in self.layers:
            for block in (layer.attn, layer.mlp):
                if block is None:
                    continue
                for k, v in block.items():
                    if isinstance(v, torch.Tensor):
                        block[k] = conv(v)
        return self


# ----------------------------------------------------------------------------------------------
# Loading: llama2.c v0 .bin
# ----------------------------------------------------------------------------------------------

def load_llama2c_bin(path):
    """llama2.c legacy (v0) checkpoint: 7 int32 header, then float32 tensors in a fixed order."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 28:
        raise ValueError(f"{path}: too short for a llama2.c header")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28].tobytes())
    shared = vocab > 0          # negative vocab_size means an untied classifier follows
    vocab = abs(vocab)
    hd = dim // n_heads
    data = raw[28:]
    if data.size % 4:
        raise ValueError(f"{path}: payload is not a whole number of float32")
    f = data.view("<f4")

    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        if off + n > f.size:
            raise ValueError(f"{path}: truncated (needs more than {f.size} floats)")
        t = torch.from_numpy(f[off:off + n].astype(np.float64).reshape(shape))
        off += n
        return t

    L = n_layers
    emb = take(vocab, dim)
    rms_att = take(L, dim)
    wq = take(L, n_heads * hd, dim)
    wk = take(L, n_kv * hd, dim)
    wv = take(L, n_kv * hd, dim)
    wo = take(L, dim, n_heads * hd)
    rms_ffn = take(L, dim)
    w1 = take(L, hidden, dim)
    w2 = take(L, dim, hidden)
    w3 = take(L, hidden, dim)
    rms_final = take(dim)
    # freq_cis_real / freq_cis_imag: precomputed RoPE tables. We recompute RoPE from the formula
    # instead (exact in float64), so these are only skipped over.
    take(seq_len, hd // 2)
    take(seq_len, hd // 2)
    wcls = emb if shared else take(vocab, dim)
    if off != f.size:
        raise ValueError(f"{path}: {f.size - off} unexpected trailing floats")

    m = Model()
    m.dim, m.head_dim, m.vocab = dim, hd, vocab
    m.eps, m.theta, m.rope = 1e-5, 10000.0, "interleaved"
    m.embed, m.final_norm, m.wcls = emb, rms_final, wcls
    for l in range(L):
        layer = Layer()
        layer.attn = dict(norm=rms_att[l], wq=wq[l], wk=wk[l], wv=wv[l], wo=wo[l],
                          n_heads=n_heads, n_kv_heads=n_kv)
        layer.mlp = dict(norm=rms_ffn[l], w1=w1[l], w2=w2[l], w3=w3[l])
        m.layers.append(layer)
    return m


# ----------------------------------------------------------------------------------------------
# Loading: Hugging Face directory with safetensors
# ----------------------------------------------------------------------------------------------

def read_safetensors(path):
    """Parse one .safetensors file into {name: float64 torch tensor}."""
    blob = np.fromfile(path, dtype=np.uint8)
    (hlen,) = struct.unpack("<Q", blob[:8].tobytes())
    if 8 + hlen > blob.size:
        raise ValueError(f"{path}: header length {hlen} runs past the end of the file")
    header = json.loads(blob[8:8 + hlen].tobytes().decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info["dtype"], info["shape"]
        begin, end = info["data_offsets"]
        n = int(np.prod(shape)) if shape else 1
        chunk = blob[base + begin:base + end]
        if dtype == "F32":
            arr = chunk.view("<f4").astype(np.float64)
        elif dtype == "F16":
            arr = chunk.view("<f2").astype(np.float64)
        elif dtype == "BF16":
            # bfloat16 is the top half of a float32: widen the 16 bits into the high half.
            arr = (chunk.view("<u2").astype(np.uint32) << 16).view("<f4").astype(np.float64)
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        if arr.size != n:
            raise ValueError(f"{path}: tensor {name}: {arr.size} values for shape {shape}")
        out[name] = torch.from_numpy(arr.reshape(shape))
    return out


def load_hf_dir(path):
    with open(os.path.join(path, "config.json")) as fh:
        cfg = json.load(fh)
    index = os.path.join(path, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        with open(index) as fh:
            files = sorted(set(json.load(fh)["weight_map"].values()))
        for name in files:
            tensors.update(read_safetensors(os.path.join(path, name)))
    else:
        tensors = read_safetensors(os.path.join(path, "model.safetensors"))

    def get(name):
        if name not in tensors:
            raise ValueError(f"{path}: missing tensor {name}")
        return tensors[name]

    dim = cfg["hidden_size"]
    L = cfg["num_hidden_layers"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    heads_l = cfg.get("num_attention_heads_per_layer", [n_heads] * L)
    kv_l = cfg.get("num_key_value_heads_per_layer", [n_kv] * L)
    inter_l = cfg.get("intermediate_size_per_layer", [cfg["intermediate_size"]] * L)
    m = Model()
    m.dim = dim
    m.head_dim = cfg.get("head_dim") or dim // n_heads
    m.vocab = cfg["vocab_size"]
    m.eps = float(cfg.get("rms_norm_eps", 1e-6))
    m.theta = float(cfg.get("rope_theta", 10000.0))
    m.rope = "half"  # Hugging Face LLaMA checkpoints store q/k for rotate-half RoPE
    m.embed = get("model.embed_tokens.weight")
    m.final_norm = get("model.norm.weight")
    if cfg.get("tie_word_embeddings", False):
        m.wcls = m.embed
    else:
        m.wcls = get("lm_head.weight")
    for l in range(L):
        p = f"model.layers.{l}."
        layer = Layer()
        if heads_l[l] > 0:
            layer.attn = dict(norm=get(p + "input_layernorm.weight"),
                              wq=get(p + "self_attn.q_proj.weight"),
                              wk=get(p + "self_attn.k_proj.weight"),
                              wv=get(p + "self_attn.v_proj.weight"),
                              wo=get(p + "self_attn.o_proj.weight"),
                              n_heads=heads_l[l], n_kv_heads=kv_l[l])
            hd = m.head_dim
            a = layer.attn
            assert a["wq"].shape == (heads_l[l] * hd, dim), (l, a["wq"].shape)
            assert a["wk"].shape == (kv_l[l] * hd, dim) and a["wv"].shape == (kv_l[l] * hd, dim)
            assert a["wo"].shape == (dim, heads_l[l] * hd)
            assert heads_l[l] % kv_l[l] == 0
            if cfg.get("attention_bias", False):  # LlamaConfig: q, k, v and o_proj all get a bias
                for key, name in (("bq", "q"), ("bk", "k"), ("bv", "v"), ("bo", "o")):
                    a[key] = get(p + f"self_attn.{name}_proj.bias")
                assert a["bo"].shape == (dim,) and a["bq"].shape == (heads_l[l] * hd,)
        if inter_l[l] > 0:
            layer.mlp = dict(norm=get(p + "post_attention_layernorm.weight"),
                             w1=get(p + "mlp.gate_proj.weight"),
                             w2=get(p + "mlp.down_proj.weight"),
                             w3=get(p + "mlp.up_proj.weight"))
            assert layer.mlp["w1"].shape == (inter_l[l], dim)
            if cfg.get("mlp_bias", False):  # LlamaConfig: gate, up and down_proj all get a bias
                for key, name in (("b1", "gate"), ("b2", "down"), ("b3", "up")):
                    layer.mlp[key] = get(p + f"mlp.{name}_proj.bias")
                assert layer.mlp["b2"].shape == (dim,)
        m.layers.append(layer)
    assert m.embed.shape == (m.vocab, dim) and m.wcls.shape == (m.vocab, dim)
    return m


def load_model(path, dtype=torch.float64):
    m = load_hf_dir(path) if os.path.isdir(path) else load_llama2c_bin(path)
    return m.to(dtype)


# ----------------------------------------------------------------------------------------------
# Forward pass
# ----------------------------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    # y = x / sqrt(mean(x^2) + eps) * w, over the last (hidden) dimension
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, hd, theta, dtype):
    """cos/sin of angle[t, i] = t * theta^(-2i/hd) for positions t < T, pair index i < hd/2."""
    i = torch.arange(hd // 2, dtype=torch.float64)
    inv_freq = theta ** (-(2.0 * i) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def apply_rope(x, cos, sin, layout):
    """Rotate each 2-D pair of x [B, T, H, hd] by its angle.

    interleaved (llama2.c / Meta): pair i is (x[2i], x[2i+1]).
    half (Hugging Face rotate-half): pair i is (x[i], x[i + hd/2]).
    Both rotate by the same angles; they only differ in which coordinates form a pair."""
    B, T, H, hd = x.shape
    c = cos[None, :, None, :]  # [1, T, 1, hd/2]
    s = sin[None, :, None, :]
    if layout == "interleaved":
        xp = x.reshape(B, T, H, hd // 2, 2)
        a, b = xp[..., 0], xp[..., 1]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).reshape(B, T, H, hd)
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat((a * c - b * s, a * s + b * c), dim=-1)


def attention(q, k, v, block=64):
    """Causal grouped-query attention. q [B, T, nh, hd], k and v [B, T, nkv, hd] -> [B, T, nh, hd].

    Query head j reads KV head j // rep, rep = nh / nkv. Rather than copying K and V rep times,
    the rep query heads of a KV head are stacked along the row axis: q -> [B*nkv, rep*t, hd].
    Queries are processed in blocks of `block` positions; a block only needs the keys up to its
    last position, which skips most of the masked upper triangle (same result, less work)."""
    B, T, nh, hd = q.shape
    nkv = k.shape[2]
    rep = nh // nkv
    q = q.reshape(B, T, nkv, rep, hd).permute(0, 2, 3, 1, 4)  # [B, nkv, rep, T, hd]
    k = k.permute(0, 2, 1, 3).reshape(B * nkv, T, hd)
    v = v.permute(0, 2, 1, 3).reshape(B * nkv, T, hd)
    scale = 1.0 / math.sqrt(hd)
    out = torch.empty(B, nkv, rep, T, hd, dtype=q.dtype)
    for t0 in range(0, T, block):
        t1 = min(T, t0 + block)
        qb = q[:, :, :, t0:t1].reshape(B * nkv, rep * (t1 - t0), hd)
        # additive mask: query position t0 + i may not see key position j > t0 + i
        mask = torch.full((t1 - t0, t1), float("-inf"), dtype=q.dtype).triu(t0 + 1).repeat(rep, 1)
        scores = torch.baddbmm(mask, qb, k[:, :t1].transpose(1, 2), alpha=scale)  # qk^T/sqrt(hd)
        out[:, :, :, t0:t1] = (torch.softmax(scores, dim=-1) @ v[:, :t1]).view(B, nkv, rep, t1 - t0, hd)
    return out.permute(0, 3, 1, 2, 4)  # [B, T, nkv, rep, hd] = [B, T, nh, hd] with j = kv*rep + r


def linear(h, w, b):
    """h W^T (+ b when the projection has a bias), as torch.nn.Linear."""
    return h @ w.T if b is None else h @ w.T + b


def forward(m, tokens):
    """tokens: LongTensor [B, T] (each row a separate sequence starting at position 0).
    Returns logits [B, T, vocab] in the model's dtype."""
    B, T = tokens.shape
    dtype = m.embed.dtype
    hd = m.head_dim
    cos, sin = rope_tables(T, hd, m.theta, dtype)
    x = m.embed[tokens]  # [B, T, dim]
    for layer in m.layers:
        a = layer.attn
        if a is not None:
            nh, nkv = a["n_heads"], a["n_kv_heads"]
            h = rmsnorm(x, a["norm"], m.eps)
            q = linear(h, a["wq"], a.get("bq")).view(B, T, nh, hd)
            k = linear(h, a["wk"], a.get("bk")).view(B, T, nkv, hd)
            v = linear(h, a["wv"], a.get("bv")).view(B, T, nkv, hd)
            q = apply_rope(q, cos, sin, m.rope)
            k = apply_rope(k, cos, sin, m.rope)
            att = attention(q, k, v).reshape(B, T, nh * hd)
            x = x + linear(att, a["wo"], a.get("bo"))
        f = layer.mlp
        if f is not None:
            h = rmsnorm(x, f["norm"], m.eps)
            # SwiGLU: w2( silu(w1 h) * (w3 h) )
            act = torch.nn.functional.silu(linear(h, f["w1"], f.get("b1"))) * linear(h, f["w3"], f.get("b3"))
            x = x + linear(act, f["w2"], f.get("b2"))
    x = rmsnorm(x, m.final_norm, m.eps)
    return x @ m.wcls.T


# ----------------------------------------------------------------------------------------------
# llama2.c tokenizer
# ----------------------------------------------------------------------------------------------

class Tokenizer:
    """tokenizer.bin: u32 max_token_length, then per token: f32 score, i32 byte length, bytes."""

    def __init__(self, path):
        with open(path, "rb") as fh:
            b = fh.read()
        (self.max_token_length,) = struct.unpack_from("<I", b, 0)
        off = 4
        self.pieces, self.scores = [], []
        while off < len(b):
            score, n = struct.unpack_from("<fi", b, off)
            off += 8
            if n < 0 or off + n > len(b):
                raise ValueError(f"{path}: bad token record at byte {off - 8}")
            self.pieces.append(b[off:off + n])
            self.scores.append(score)
            off += n
        self.ids = {}
        for i, p in enumerate(self.pieces):
            self.ids.setdefault(p, i)

    def encode(self, text, bos=True):
        """llama2.c encoding: dummy-prefix space, one token per UTF-8 code point (byte fallback
        at id byte+3 when the code point is not in the vocabulary), then repeatedly merge the
        adjacent pair whose concatenation is in the vocabulary with the highest score (the
        leftmost such pair on ties) until no pair merges."""
        toks = [BOS] if bos else []
        if not text:
            return toks
        seq = []
        for ch in " " + text:  # the dummy prefix is an ordinary space token, merged like any other
            piece = ch.encode("utf-8")
            if piece in self.ids:
                seq.append(self.ids[piece])
            else:
                seq.extend(byte + 3 for byte in piece)

        NONE = float("-inf")

        def pair_score(i):
            j = self.ids.get(self.pieces[seq[i]] + self.pieces[seq[i + 1]])
            return NONE if j is None else self.scores[j]

        # score[i] is the score of merging (seq[i], seq[i+1]); kept up to date after each merge so
        # that each step is one max() and one index() over a list (both run in C).
        score = [pair_score(i) for i in range(len(seq) - 1)]
        while score:
            best = max(score)
            if best == NONE:
                break
            i = score.index(best)  # first occurrence = leftmost pair on ties
            seq[i] = self.ids[self.pieces[seq[i]] + self.pieces[seq[i + 1]]]
            del seq[i + 1]
            del score[i]
            if i < len(seq) - 1:
                score[i] = pair_score(i)
            if i > 0:
                score[i - 1] = pair_score(i - 1)
        return toks + seq

    def decode_piece(self, prev, tok):
        """Bytes printed for `tok` following `prev`, as llama2.c run.c prints them."""
        piece = self.pieces[tok]
        if prev == BOS and piece.startswith(b" "):
            piece = piece[1:]  # BOS is followed by the dummy-prefix space: drop it
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            try:
                piece = bytes([int(piece[3:5], 16)])
            except ValueError:
                pass
        # run.c's safe_printf: a single unprintable, non-space byte is not printed
        if len(piece) == 1 and not (0x20 <= piece[0] < 0x7F or piece[0] in b" \t\n\v\f\r"):
            return b""
        return piece


# ----------------------------------------------------------------------------------------------
# Evaluation protocol (README.md, "Evaluation protocol")
# ----------------------------------------------------------------------------------------------

ASCII_SPACE = " \t\n\v\f\r"


def documents(text):
    """Split at every "\\n\\n", strip leading/trailing newlines only, skip empty/whitespace pieces."""
    docs = []
    for piece in text.split("\n\n"):
        piece = piece.strip("\n")
        if piece.strip(ASCII_SPACE) == "":
            continue
        docs.append(piece)
    return docs


def token_stream(tok, text):
    stream = []
    for doc in documents(text):
        stream.extend(tok.encode(doc, bos=True))  # BOS per document, no EOS
    return stream


def evaluate(m, stream, window, batch_tokens=512):
    """Returns (nll_sum, scored_tokens) over non-overlapping windows of `window` tokens, run
    `batch_tokens // window` windows at a time (small batches were fastest on one core)."""
    batch = max(1, batch_tokens // window)
    n = len(stream)
    full = n // window
    nll_sum = 0.0
    scored = 0

    def score(rows):  # rows: LongTensor [B, T]
        logits = forward(m, rows)
        logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
        # token t+1 is scored given tokens 0..t of its own window
        tgt = rows[:, 1:]
        nll = -logp[:, :-1, :].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        return float(nll.sum()), tgt.numel()

    data = torch.tensor(stream, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, full, batch):
            stop = min(full, start + batch)
            rows = data[start * window: stop * window].view(stop - start, window)
            s, c = score(rows)
            nll_sum += s
            scored += c
        tail = data[full * window:]
        if tail.numel() >= 2:  # the last, shorter window
            s, c = score(tail.view(1, -1))
            nll_sum += s
            scored += c
    return nll_sum, scored


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def dtype_of(name):
    return {"float64": torch.float64, "float32": torch.float32}[name]


def cmd_eval(args):
    m = load_model(args.model, dtype_of(args.dtype))
    tok = Tokenizer(args.tokenizer)
    with open(args.data, "rb") as fh:
        raw = fh.read()
    text = raw.decode("utf-8")  # strict: non-UTF-8 text is an error
    stream = token_stream(tok, text)
    nll_sum, scored = evaluate(m, stream, args.window)
    if scored == 0:
        sys.exit(f"{args.data}: no tokens to score")
    print(json.dumps({"ppl": math.exp(nll_sum / scored), "tokens": scored, "nll_sum": nll_sum,
                      "stream_tokens": len(stream), "window": args.window, "dtype": args.dtype,
                      "data_sha256": hashlib.sha256(raw).hexdigest()}))


def cmd_logits(args):
    m = load_model(args.model, dtype_of(args.dtype))
    ids = [int(t) for t in args.tokens.split(",") if t.strip()]
    with torch.no_grad():
        logits = forward(m, torch.tensor([ids], dtype=torch.long))[0].to(torch.float64).numpy()
    if args.out:
        np.save(args.out, logits)
    else:
        json.dump({"tokens": ids, "logits": logits.tolist()}, sys.stdout)
        sys.stdout.write("\n")


def cmd_generate(args):
    """Greedy (temperature 0) generation with llama2.c run.c semantics: start at BOS, force the
    prompt tokens, take the argmax after it, stop at BOS or after `steps` positions."""
    m = load_model(args.model, dtype_of(args.dtype))
    tok = Tokenizer(args.tokenizer)
    prompt = tok.encode(args.prompt, bos=True)
    seq = [prompt[0]]
    out = sys.stdout.buffer
    with torch.no_grad():
        for pos in range(args.steps):
            if pos + 1 < len(prompt):
                nxt = prompt[pos + 1]
            else:
                # recompute the whole prefix each step: simple, and fast enough for small models
                logits = forward(m, torch.tensor([seq], dtype=torch.long))[0, -1]
                nxt = int(torch.argmax(logits))
            if nxt == BOS:
                break
            out.write(tok.decode_piece(seq[-1], nxt))
            seq.append(nxt)
    if args.ids_out:
        with open(args.ids_out, "w") as fh:
            fh.write(" ".join(str(t) for t in seq[1:]) + "\n")
    out.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("eval", help="perplexity by the protocol of README.md (Evaluation protocol)")
    e.add_argument("--model", required=True)
    e.add_argument("--tokenizer", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--window", type=int, default=256)
    e.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    e.set_defaults(func=cmd_eval)

    lg = sub.add_parser("logits", help="logits at every position of one token sequence")
    lg.add_argument("--model", required=True)
    lg.add_argument("--tokens", required=True, help="comma-separated token ids")
    lg.add_argument("--out", help="write a float64 .npy [T, vocab] instead of JSON on stdout")
    lg.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    lg.set_defaults(func=cmd_logits)

    g = sub.add_parser("generate", help="greedy generation from BOS, printed as llama2.c prints it")
    g.add_argument("--model", required=True)
    g.add_argument("--tokenizer", required=True)
    g.add_argument("--steps", type=int, default=256)
    g.add_argument("--prompt", default="")
    g.add_argument("--ids-out", help="also write the generated token ids (BOS excluded) here")
    g.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    g.set_defaults(func=cmd_generate)

    args = ap.parse_args(argv)
    if getattr(args, "window", 2) < 2:
        ap.error("--window must be at least 2")
    args.func(args)


if __name__ == "__main__":
    main()
