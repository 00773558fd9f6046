#!/usr/bin/python3
"""PyTorch reference of the distillation loss and its gradient (independent of the C code).

Reads little-endian float32 student and teacher logits [rows, vocab] from two files, computes
weight * mean over rows of T^2 * KL(softmax(teacher/T) || softmax(student/T)) with torch autograd,
prints {"loss": ..., "grad": [...]} (gradient w.r.t. the student logits, row-major)."""
import json, sys

import numpy as np
import torch


def main():
    student_path, teacher_path, rows, vocab, temperature, weight = sys.argv[1:7]
    rows, vocab, T, w = int(rows), int(vocab), float(temperature), float(weight)
    s = torch.tensor(np.fromfile(student_path, dtype="<f4").reshape(rows, vocab), dtype=torch.float64,
                     requires_grad=True)
    t = torch.tensor(np.fromfile(teacher_path, dtype="<f4").reshape(rows, vocab), dtype=torch.float64)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / T, dim=-1), torch.log_softmax(t / T, dim=-1),
                                    reduction="batchmean", log_target=True)
    loss = w * T * T * kl
    loss.backward()
    print(json.dumps({"loss": loss.item(), "grad": s.grad.flatten().tolist()}))


if __name__ == "__main__":
    main()
