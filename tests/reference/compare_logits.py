#!/usr/bin/python3
"""Compare the reference logits of a converted checkpoint with those of the original.

    compare_logits.py --reference MODEL --model MODEL --tokens 1,2,3 --tol 1e-5 [--label TEXT]

Both models are loaded by llama_ref.py (each in its own layout: a llama2.c .bin runs interleaved
RoPE, an HF directory rotate-half RoPE) and run in float64 on one token sequence. Passes when
max |logits_model - logits_reference| <= tol * max |logits_reference|.

Because the HF directory is read with the Hugging Face conventions only, agreement shows that the
converter wrote a genuine HF layout: q/k rows permuted so that HF row (head, half, i) holds Meta
row (head, i, half). A missing or wrong permutation changes the logits by about their own size."""

import argparse
import os
import sys

import torch

sys.dont_write_bytecode = True  # tests must not leave __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402  (the reference sits beside this script)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--tol", type=float, required=True)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    ids = torch.tensor([[int(t) for t in a.tokens.split(",") if t.strip()]], dtype=torch.long)
    with torch.no_grad():
        ref = llama_ref.forward(llama_ref.load_model(a.reference), ids)
        out = llama_ref.forward(llama_ref.load_model(a.model), ids)
    if out.shape != ref.shape:
        sys.exit(f"FAIL {a.label}: logits shape {tuple(out.shape)} vs {tuple(ref.shape)}")
    rel = float((out - ref).abs().max() / ref.abs().max())
    ok = rel <= a.tol
    print(f"{'ok  ' if ok else 'FAIL'} {a.label}: max |logit diff| / max |logit| = {rel:.3g} "
          f"(tolerance {a.tol:g}) over {ids.shape[1]} positions")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
