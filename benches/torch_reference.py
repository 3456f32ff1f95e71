"""The PyTorch reference for the training-speed benchmark: the same network (embedding -> GRU ->
linear), batch and optimiser (Adam with gradient clipping) as `train::train_step`, on random
tokens, with the hidden state carried across steps as in truncated backprop.

Usage: torch_reference.py V E H LAYERS B T STEPS THREADS
Prints one JSON line: {"tokens_per_s": ..., "torch": "...", "threads": ...}.
"""
import json
import sys
import time

import torch
from torch import nn


class GruLm(nn.Module):
    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, h):
        out, h = self.gru(self.embed(x), h)
        return self.head(out), h


def main():
    v, e, hid, layers, b, t, steps, threads = (int(a) for a in sys.argv[1:9])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GruLm(v, e, hid, layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.randint(0, v, (steps + 2, b, t + 1))
    h = torch.zeros(layers, b, hid)

    def step(i, h):
        x, y = data[i, :, :-1], data[i, :, 1:]
        logits, h = model(x, h)
        loss = nn.functional.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        return h.detach()

    for i in range(2):
        h = step(i, h)
    start = time.perf_counter()
    for i in range(steps):
        h = step(i + 2, h)
    secs = time.perf_counter() - start
    print(json.dumps({"tokens_per_s": steps * b * t / secs, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
