#!/usr/bin/env python3
"""table.py — the table of scripts/bench/run from the files it left in WORK (run with /usr/bin/python3):
sgemm rates, training step times from progress.jsonl, eval rates, the PyTorch peer, memory."""
import json, os, platform, re, subprocess, sys

work, B, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def load(name):
    p = os.path.join(work, name)
    return json.load(open(p)) if os.path.exists(p) else None


def teacher_seconds(name):
    """(sequences, replicas, seconds) of the teacher cache pass, from a prune log."""
    m = re.search(r"teacher cache: (\d+) calibration sequences, sharded over (\d+) replica\(s\), in ([0-9.]+) s",
                  open(os.path.join(work, f"{name}.log")).read())
    return (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else None


def step_seconds(name):
    """Mean wall time of the mask steps after the first (the first touches fresh memory)."""
    recs = [json.loads(l) for l in open(os.path.join(work, f"run-{name}", "progress.jsonl"))]
    secs = [r["seconds"] for r in recs]
    d = [b - a for a, b in zip(secs, secs[1:])]
    return sum(d) / len(d)


def memory(name):
    """[(rank, peak RSS MiB, weights MiB, activations and caches MiB)] from a prune log."""
    line = re.search(r"memory per rank \(MiB\):(.*)", open(os.path.join(work, f"{name}.log")).read()).group(1)
    return [(int(r), float(p), float(w), float(a)) for r, p, w, a in
            re.findall(r"(\d+): peak RSS (\d+) \(held (\d+) weights \+ (\d+) activations", line)]


cfg = json.load(open(os.path.join(work, "llama7b-2l", "config.json")))
d, ffn, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
q = cfg["num_attention_heads"] * (d // cfg["num_attention_heads"])
kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * (d // cfg["num_attention_heads"])
ctx = (T + 1) / 2
matmul = 2 * d * (q + 2 * kv) + 2 * q * d + 2 * d * 2 * ffn + 2 * ffn * d  # per layer and token
attn = 2 * 2 * ctx * q  # causal scores and weighted values
head = 2 * d * V
# Forward (layers, student classifier), backward to the inputs of every matmul (no weight
# gradients: the weights are frozen), attention backward twice its forward. The teacher costs
# nothing per step: its expectations are cached before training.
step_flops = L * (matmul + attn) + head + L * (matmul + 2 * attn) + head

probes = [json.loads(l) for l in open(os.path.join(work, "sgemm-probes.jsonl"))]
mix = {r: [p["model_mix"] for p in probes if p["rows"] == r] for r in (256, 2048)}
packed = {r: [p["packed_mix"] for p in probes if p["rows"] == r and "packed_mix" in p] for r in (256, 2048)}
limit = max(mix[256] + mix[2048] + packed[256] + packed[2048])
s2 = load("sgemm2.json")
tok = {n: B * T / step_seconds(n) for n in ("n1", "stages", "replicas")}
for n in ("n1b", "n1c"):  # -n 1 again: after the PyTorch peer, and after the -n 2 runs
    if os.path.exists(os.path.join(work, f"run-{n}", "progress.jsonl")):
        tok[n] = B * T / step_seconds(n)
# The -n 2 runs ran between n1b and n1c: their ratios are against the mean of the two, with the
# ratios against each beside it (the spread is the machine's drift over those minutes).
bracket = [tok[n] for n in ("n1b", "n1c") if n in tok] or [tok["n1"]]
n1_mean = sum(bracket) / len(bracket)


def scaling(x):
    if len(bracket) < 2:
        return f"{x / n1_mean:.2f}x of -n 1"
    lo, hi = sorted(x / b for b in bracket)
    return f"{x / n1_mean:.2f}x of -n 1 ({lo:.2f}x to {hi:.2f}x against the -n 1 runs before and after)"


if os.path.exists(os.path.join(work, "run-threads2", "progress.jsonl")):  # parallel.threads = 2, -n 1
    tok["threads2"] = B * T / step_seconds("threads2")
if os.path.exists(os.path.join(work, "run-stages2b", "progress.jsonl")):
    tok["stages2b"] = 2 * B * T / step_seconds("stages2b")
for n in ("n1-plain", "stages-plain"):  # weights not packed (parallel.pack_weights = false)
    if os.path.exists(os.path.join(work, f"run-{n}", "progress.jsonl")):
        tok[n] = B * T / step_seconds(n)
# two 1-thread sgemm processes at once against the 1-thread probe just before them
pairs = [json.loads(l) for l in open(os.path.join(work, "sgemm-pairs.jsonl"))] \
    if os.path.exists(os.path.join(work, "sgemm-pairs.jsonl")) else []
pair_x = [(a["model_mix"] + b["model_mix"]) / one["model_mix"] for one, a, b in pairs]
gf = tok["n1"] * step_flops / 1e9
ed, ep = load("eval-dense.json"), load("eval-pruned.json")
tf, tc = load("torch-forward.json"), load("torch-cached.json")

# the commit the binaries were built from: scripts/bench/run records it when it starts
commit = os.environ.get("VT_BENCH_COMMIT") or \
    subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {cpu}, {os.cpu_count()} cores; commit {commit}; LLaMA-2-7B-shaped stack, {L} layers, "
      f"sequence {T}, batch {B}, one thread per rank")
print()
print("| # | measure | value | ratio |")
print("| --- | --- | --- | --- |")
for r in (256, 2048):
    print(f"| 1 | BLIS sgemm, 1 thread, the stack's matmul shapes at {r} rows ({len(mix[r])} probes over the run) | "
          f"{min(mix[r]):.1f} to {max(mix[r]):.1f} GFLOP/s | |")
blis_default = [p["blis_default_mix"] for p in probes if p["rows"] == 256 and "blis_default_mix" in p]
if blis_default: # what bli_sgemm's own choice of code path (small-matrix under ~512 rows) gives; matmul.h
    print(f"| 1 | the same at 256 rows with BLIS's default code path (small-matrix), which vtrans-dist avoids | "
          f"{min(blis_default):.1f} to {max(blis_default):.1f} GFLOP/s | |")
for r in (256, 2048):
    if packed[r]:  # the same with the weights packed once (vt_sgemm_packed), as parallel.pack_weights runs
        print(f"| 1 | the same at {r} rows with the weights packed once beforehand | "
              f"{min(packed[r]):.1f} to {max(packed[r]):.1f} GFLOP/s | |")
print(f"| 1 | the limit: the best 1-thread probe | {limit:.1f} GFLOP/s | |")
print(f"| 1 | BLIS sgemm, 2 threads, 2048 rows | {s2['model_mix']:.1f} GFLOP/s | {s2['model_mix'] / limit:.2f}x of the limit |")
print(f"| 2 | Faster-VTrans step, -n 1 ({step_flops / 1e9:.2f} GFLOP per token) | {tok['n1']:.1f} tokens/s, "
      f"{gf:.1f} GFLOP/s | {gf / limit * 100:.0f}% of the limit |")
if "n1b" in tok:  # our step again, after the peer
    print(f"| 2 | the same step again, after the PyTorch peer's run | {tok['n1b']:.1f} tokens/s | |")
if "n1c" in tok:
    print(f"| 2 | the same step again, after the -n 2 runs | {tok['n1c']:.1f} tokens/s | |")
for name, r, ours in (("teacher forward every step", tf, (tok["n1"] + tok.get("n1b", tok["n1"])) / 2),
                      ("teacher hidden states cached", tc, tok["n1"])):
    if r:
        around = " (against the mean of our runs before and after it)" if "n1b" in tok and r is tf else ""
        print(f"| 3 | PyTorch {r['torch']} step, {name} | {r['tokens_per_second']:.1f} tokens/s | "
              f"ours {ours / r['tokens_per_second']:.2f}x{around} |")
if pair_x:
    print(f"| 4 | the machine: two 1-thread sgemm processes at once, one per core, 2048 rows ({len(pair_x)} probes) | "
          f"{min(pair_x):.2f}x to {max(pair_x):.2f}x of one | |")
print(f"| 4 | -n 2 as 2 stages ({B} micro-batches) | {tok['stages']:.1f} tokens/s | {scaling(tok['stages'])} |")
if "stages2b" in tok:
    print(f"| 4 | -n 2 as 2 stages, batch {2 * B} ({2 * B} micro-batches) | {tok['stages2b']:.1f} tokens/s | "
          f"{scaling(tok['stages2b'])} |")
print(f"| 4 | -n 2 as 2 replicas | {tok['replicas']:.1f} tokens/s | {scaling(tok['replicas'])} |")
if "n1-plain" in tok and "stages-plain" in tok:
    print(f"| 4 | weights not packed (parallel.pack_weights = false): -n 1, and -n 2 as 2 stages | "
          f"{tok['n1-plain']:.1f}, {tok['stages-plain']:.1f} tokens/s | packed {tok['n1'] / tok['n1-plain']:.2f}x and "
          f"{tok['stages'] / tok['stages-plain']:.2f}x faster; stages {tok['stages-plain'] / tok['n1-plain']:.2f}x "
          f"of -n 1 |")
if "threads2" in tok:
    print(f"| 4 | -n 1 with 2 threads in the rank (parallel.threads = 2) | {tok['threads2']:.1f} tokens/s | "
          f"{scaling(tok['threads2'])}; {tok['threads2'] / tok['replicas']:.2f}x of -n 2 as 2 replicas |")
lt = load("layer-threads.json")  # bench_layer --threads 2: one layer, packed, 1 and 2 threads alternately
if lt:
    print(f"| 4 | one layer's gated forward and backward at {lt['tokens']} rows, packed, on 1 and {lt['threads']} "
          f"threads alternately in one process ({lt['rounds']} rounds) | {lt['one_s']:.2f} s, {lt['many_s']:.2f} s | "
          f"{lt['threads']} threads {lt['speedup']:.2f}x faster; the same gate gradients: "
          f"{'yes' if lt['same_gates_gradient'] else 'NO'} |")
ab = load("layer-ab.json")  # bench_layer: one layer, packed and plain alternately in one process
if ab:
    print(f"| 4 | one layer's gated forward and backward at {ab['tokens']} rows, plain and packed alternately "
          f"in one process ({ab['rounds']} rounds) | {ab['plain_s']:.2f} s, {ab['packed_s']:.2f} s | "
          f"packed {ab['gain']:.2f}x faster |")
if os.path.exists(os.path.join(work, "run-long-chunks", "progress.jsonl")):
    long = {n: 2 * 1024 / step_seconds(n) for n in ("long-n1", "long-stages", "long-chunks")}
    print(f"| 4 | 2 sequences of 1024 tokens per step, -n 1 | {long['long-n1']:.1f} tokens/s | |")
    print(f"| 4 | the same, -n 2 as 2 stages (2 micro-batches) | {long['long-stages']:.1f} tokens/s | "
          f"{long['long-stages'] / long['long-n1']:.2f}x of -n 1 |")
    print(f"| 4 | the same, -n 2 as 2 stages, sequences in 4 chunks (8 micro-batches of 256 tokens) | "
          f"{long['long-chunks']:.1f} tokens/s | {long['long-chunks'] / long['long-n1']:.2f}x of -n 1, "
          f"{long['long-chunks'] / long['long-stages']:.2f}x of unchunked |")
tn, tr = teacher_seconds("n1"), teacher_seconds("replicas")
if tn and tr:
    print(f"| 4 | teacher cache pass, {tn[0]} sequences: -n 1, and -n 2 as 2 replicas (sharded) | {tn[2]:.1f} s, "
          f"{tr[2]:.1f} s | {tn[2] / tr[2]:.2f}x faster |")
print(f"| 5 | eval, dense, window {T} | {ed['tokens_per_second']:.1f} tokens/s, {ed['gflops_per_second']:.1f} GFLOP/s | "
      f"{ed['gflops_per_second'] / limit * 100:.0f}% of the limit |")
print(f"| 5 | eval, pruned to 50% of the parameters | {ep['tokens_per_second']:.1f} tokens/s | "
      f"{ep['tokens_per_second'] / ed['tokens_per_second']:.2f}x of dense |")
for name, what in (("n1", "-n 1"), ("stages", "-n 2 stages"), ("replicas", "-n 2 replicas")):
    for r, rss, w, a in memory(name):
        print(f"| 6 | peak RSS, {what}, rank {r} | {rss:.0f} MiB (weights {w:.0f} + activations and caches {a:.0f}) | "
              f"{rss / (w + a):.2f}x of held |")
