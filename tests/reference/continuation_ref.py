#!/usr/bin/python3
"""Dense continuation perplexity (DESIGN.md section 5) in PyTorch, from llama_ref.py's forward pass,
tokenizer and document rules: windows of L tokens from token 0 (a last shorter one kept when it has
at least 2 tokens), those of at least P + 2 tokens scored on every token after the first P, each
given all tokens before it in its window.

    continuation_ref.py MODEL TOKENIZER DATA WINDOW PROMPT   ->  JSON {"ppl", "tokens", "windows"}
"""

import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402


def main():
    model, tokenizer, data, window, prompt = sys.argv[1:6]
    L, P = int(window), int(prompt)
    m = llama_ref.load_model(model, torch.float64)
    with open(data, "rb") as fh:
        stream = llama_ref.token_stream(llama_ref.Tokenizer(tokenizer), fh.read().decode("utf-8"))
    wins = [stream[s:s + L] for s in range(0, len(stream), L)]
    wins = [w for w in wins if len(w) >= P + 2]
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(wins), 8):  # batches of equal-length windows (only the last can be shorter)
            group = [w for w in wins[i:i + 8] if len(w) == len(wins[i])]
            rest = [w for w in wins[i:i + 8] if len(w) != len(wins[i])]
            for batch in (group, rest):
                if not batch:
                    continue
                x = torch.tensor(batch, dtype=torch.long)
                logp = torch.log_softmax(llama_ref.forward(m, x).to(torch.float64), dim=-1)
                # token t (t >= P) given tokens 0..t-1: the logits at t - 1
                tgt = x[:, P:]
                nll -= float(logp[:, P - 1:-1, :].gather(-1, tgt.unsqueeze(-1)).sum())
                tokens += tgt.numel()
    windows = len(wins)
    print(json.dumps({"ppl": math.exp(nll / tokens), "tokens": tokens, "windows": windows}))


if __name__ == "__main__":
    main()
