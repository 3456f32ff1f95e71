"""The PyTorch reference for the training-speed benchmark: the same network (embedding -> GRU ->
linear), batch and optimiser (Adam with gradient clipping) as `train::train_step`, on random
tokens, with the hidden state carried across steps as in truncated backprop.

Usage: torch_reference.py V E H LAYERS B T STEPS THREADS
Prints one JSON line: {"tokens_per_s": ..., "torch": "...", "threads": ...}.

The cell-latency benchmark's reference predicts one cell's output the way the kernel does, at
batch 1 with the state carried: the cell's code tokens in one call, then output tokens one at a
time (sampled with temperature 1 from a seeded generator).

Usage: torch_reference.py generate V E H LAYERS CODE_TOKENS OUTPUT_TOKENS CELLS THREADS
Prints one JSON line: {"ms_per_cell": [...], "torch": "...", "threads": ...}.
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


def generate(v, e, hid, layers, code_tokens, output_tokens, cells, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GruLm(v, e, hid, layers).eval()
    gen = torch.Generator().manual_seed(0)
    h = torch.zeros(layers, 1, hid)
    times = []
    with torch.no_grad():
        for _ in range(cells + 3):
            start = time.perf_counter()
            code = torch.randint(0, v, (1, code_tokens), generator=gen)
            logits, h = model(code, h)
            row = logits[0, -1]
            for _ in range(output_tokens):
                probs = torch.softmax(row, dim=0)
                nxt = torch.multinomial(probs, 1, generator=gen)
                nxt.item()
                logits, h = model(nxt.view(1, 1), h)
                row = logits[0, -1]
            times.append(1000 * (time.perf_counter() - start))
    print(json.dumps({"ms_per_cell": times[3:], "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


def main():
    if sys.argv[1] == "generate":
        return generate(*(int(a) for a in sys.argv[2:10]))
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
