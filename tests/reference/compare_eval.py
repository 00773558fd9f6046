#!/usr/bin/python3
"""Compare two perplexity results, each one JSON object with at least "ppl" and "tokens"
(the output of `vtrans-dist eval --json` or of `llama_ref.py eval`).

    compare_eval.py EXPECTED.json ACTUAL.json --rtol 1e-4 [--label TEXT]

Prints one line with both values and their relative difference; exits 1 when the token counts
differ or |ppl_actual - ppl_expected| / ppl_expected > rtol. Standard library only."""

import argparse
import json
import sys


def load(path):
    """The JSON object in `path`. A program may print log lines around it: take the last line that
    parses as a JSON object when the whole text does not."""
    with open(path) as fh:
        text = fh.read()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    sys.exit(f"{path}: no JSON object found in:\n{text}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--rtol", type=float, required=True)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    exp, act = load(a.expected), load(a.actual)
    for name, obj in (("expected", exp), ("actual", act)):
        if "ppl" not in obj or "tokens" not in obj:
            sys.exit(f"{name} result lacks ppl/tokens: {obj}")
    rel = abs(act["ppl"] - exp["ppl"]) / exp["ppl"]
    ok = rel <= a.rtol and act["tokens"] == exp["tokens"]
    print(f"{'ok  ' if ok else 'FAIL'} {a.label}: ppl {act['ppl']:.10g} vs {exp['ppl']:.10g} "
          f"(relative difference {rel:.3g}, tolerance {a.rtol:g}); "
          f"tokens {act['tokens']} vs {exp['tokens']}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
