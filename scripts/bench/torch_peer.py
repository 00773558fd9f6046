# torch_peer.py — PyTorch peer of vtrans-dist's Faster-VTrans training step (fp32 CPU), for comparing tokens/s.
import argparse
import json
import math
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description="PyTorch peer of the vtrans-dist VTrans training step")
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--ffn", type=int, default=11008)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=1, help="sequences per step")
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--teacher", choices=["forward", "cached"], default="forward")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tau", type=float, default=2.0, help="distillation temperature")
    p.add_argument("--beta", type=float, default=1e-3, help="weight of the gates' KL term")
    p.add_argument("--lr", type=float, default=0.05)
    a = p.parse_args()
    if a.steps < 1 or a.batch < 1 or a.dim % a.heads or a.heads % a.kv_heads:
        p.error("need --steps >= 1, --batch >= 1, heads dividing dim and kv-heads dividing heads")
    return a


# Threads are fixed before torch loads: Debian's torch calls the system BLAS (BLIS), which reads
# these variables once; torch.set_num_threads alone does not reach it.
if __name__ == "__main__":
    ARGS = parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["BLIS_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Model:
    """Frozen LLaMA weights (fused QKV and gate/up) and the VIB gate layout."""

    def __init__(self, dim, ffn, heads, kv_heads, layers, vocab, dtype=torch.float32, eps=1e-5, theta=10000.0):
        self.dim, self.ffn, self.heads, self.kv_heads, self.n_layers, self.vocab = dim, ffn, heads, kv_heads, layers, vocab
        self.hd, self.eps, self.theta = dim // heads, eps, theta

        def w(*shape):
            return torch.empty(*shape, dtype=dtype).normal_(0.0, 0.02).requires_grad_(False)

        ones = lambda: torch.ones(dim, dtype=dtype)  # noqa: E731
        qkv = (heads + 2 * kv_heads) * self.hd
        self.embed, self.head, self.final_norm = w(vocab, dim), w(vocab, dim), ones()
        self.layers = [dict(attn_norm=ones(), wqkv=w(qkv, dim), wo=w(dim, heads * self.hd),
                            ffn_norm=ones(), wgu=w(2 * ffn, dim), wdown=w(dim, ffn)) for _ in range(layers)]
        # Gates, as in masks.c: dim hidden gates, then per layer heads, FFN neurons and 2 block gates.
        self.n_layer_gates = heads + ffn + 2
        self.off = [dim + l * self.n_layer_gates for l in range(layers)]
        self.n_units = dim + layers * self.n_layer_gates

    def rope_tables(self, T, dtype):
        h2 = self.hd // 2
        freq = self.theta ** (-2.0 * torch.arange(h2, dtype=torch.float64) / self.hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
        return ang.cos().to(dtype)[:, None, :], ang.sin().to(dtype)[:, None, :]  # [T, 1, hd/2]


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):  # x [B, T, n, hd]; rotates halves (the HF layout)
    h2 = x.shape[-1] // 2
    x1, x2 = x[..., :h2], x[..., h2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def hidden_states(m, tokens, z, rope_cs, causal):
    """Final hidden states (before the final norm). z [B, n_units] gates the model as forward.c
    does (vt_embed_gated, attention_block, mlp_block); z None is the dense teacher."""
    B, T = tokens.shape
    H, KV, hd = m.heads, m.kv_heads, m.hd
    cos, sin = rope_cs
    x = F.embedding(tokens, m.embed)
    if z is not None:
        zh = z[:, None, :m.dim]  # hidden gates [B, 1, dim]
        x = x * zh
    for l, w in enumerate(m.layers):
        if z is not None:  # this layer's gates: heads, FFN neurons, attention block, MLP block
            z_heads, z_ffn, z_blocks = z[:, m.off[l]:m.off[l] + m.n_layer_gates].split([H, m.ffn, 2], dim=1)
        # attention block
        h = rmsnorm(x, w["attn_norm"], m.eps)
        qkv = F.linear(h, w["wqkv"]).view(B, T, H + 2 * KV, hd)
        q = rope(qkv[:, :, :H], cos, sin).transpose(1, 2)  # [B, H, T, hd]
        k = rope(qkv[:, :, H:H + KV], cos, sin).transpose(1, 2)
        v = qkv[:, :, H + KV:].transpose(1, 2)
        if KV != H:
            k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) @ v  # [B, H, T, hd]
        if z is not None:
            att = att * z_heads[:, :, None, None]  # head gates on the heads' outputs
        y = F.linear(att.transpose(1, 2).reshape(B, T, H * hd), w["wo"])
        x = x + (z_blocks[:, None, 0:1] * zh) * y if z is not None else x + y
        # MLP block
        h = rmsnorm(x, w["ffn_norm"], m.eps)
        gate, up = F.linear(h, w["wgu"]).split(m.ffn, dim=-1)
        a = F.silu(gate) * up
        if z is not None:
            a = a * z_ffn[:, None, :]  # neuron gates
        y = F.linear(a, w["wdown"])
        x = x + (z_blocks[:, None, 1:2] * zh) * y if z is not None else x + y
    return x


def logits_of(m, h):
    return F.linear(rmsnorm(h, m.final_norm, m.eps), m.head)


def distill_loss(s, t, tau):
    """loss.c vt_loss_distill: mean over tokens of tau^2 KL(softmax(t/tau) || softmax(s/tau))."""
    V = s.shape[-1]
    ls = F.log_softmax(s.reshape(-1, V) / tau, dim=-1)
    lt = F.log_softmax(t.reshape(-1, V) / tau, dim=-1)
    return F.kl_div(ls, lt, reduction="batchmean", log_target=True) * tau * tau


def gates_kl(mu, logvar, beta):
    """masks.c vt_masks_kl: beta * sum 0.5 log(1 + mu^2 / sigma^2)."""
    return beta * 0.5 * torch.log1p(mu * mu * torch.exp(-logvar)).sum()


def main(a):
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    torch.manual_seed(a.seed)
    T, B = a.seq_len, a.batch
    t0 = time.perf_counter()
    m = Model(a.dim, a.ffn, a.heads, a.kv_heads, a.layers, a.vocab)
    mu = (1.0 + 0.01 * torch.randn(m.n_units)).requires_grad_(True)
    logvar = (-9.0 + 0.01 * torch.randn(m.n_units)).requires_grad_(True)
    opt = torch.optim.Adam([mu, logvar], lr=a.lr)
    pool = torch.randint(3, a.vocab, (4 * B, T))  # the calibration sequences
    rope_cs = m.rope_tables(T, torch.float32)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    log(f"model built in {time.perf_counter() - t0:.1f}s: {m.n_units} gates, teacher {a.teacher}, "
        f"threads {a.threads}")

    cache = None
    if a.teacher == "cached":  # the dense model's final hidden states of every sequence, once
        t0 = time.perf_counter()
        with torch.no_grad():
            cache = torch.cat([hidden_states(m, pool[i:i + B], None, rope_cs, causal)
                               for i in range(0, pool.shape[0], B)])
        log(f"teacher cache of {pool.shape[0]} sequences in {time.perf_counter() - t0:.1f}s")

    times, loss_value = [], float("nan")
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        ids = torch.randperm(pool.shape[0])[:B]
        tokens = pool[ids]
        with torch.no_grad():
            h_t = cache[ids] if cache is not None else hidden_states(m, tokens, None, rope_cs, causal)
            logits_t = logits_of(m, h_t)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(B, m.n_units)
        logits_s = logits_of(m, hidden_states(m, tokens, z, rope_cs, causal))
        kd = distill_loss(logits_s, logits_t, a.tau)
        loss = kd + gates_kl(mu, logvar, a.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            log(f"grad norms: mu {mu.grad.norm().item():.3e} logvar {logvar.grad.norm().item():.3e}")
        opt.step()
        loss_value = loss.item()
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt)
        log(f"step {step + 1}/{a.warmup + a.steps}{' (warmup)' if step < a.warmup else ''}: "
            f"kd {kd.item():.6g} loss {loss_value:.6g} {dt:.2f}s")

    sps = sum(times) / len(times)
    print(json.dumps({"tokens_per_second": B * T / sps, "seconds_per_step": sps, "steps": a.steps, "batch": B,
                      "seq_len": T, "teacher": a.teacher, "threads": a.threads, "torch": torch.__version__,
                      "loss": loss_value}))


if __name__ == "__main__":
    main(ARGS)
