"""zoo's GPT vs a GPT-2-style peer (nanoGPT's architecture) at nanoGPT's CPU "baby" budget, one run.

    python benchmarks/nanogpt_baby.py [--steps 50] [--threads 2]

Same shape (4 layers, 4 heads, width 128, context 64, batch 12, vocab 65), same AdamW and clipping;
the peer is the 2019 GPT-2 block written out here (learned positions, LayerNorm with bias, fused QKV, GELU
MLP 4x, SDPA causal, tied head), the architecture nanoGPT trains. Prints ms per training step for both and
the ratio, interleaving the two so machine noise hits both alike.
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

import zoo

VOCAB, DIM, LAYERS, HEADS, CONTEXT, BATCH = 65, 128, 4, 4, 64, 12


class GPT2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)
        self.up, self.down = nn.Linear(DIM, 4 * DIM), nn.Linear(4 * DIM, DIM)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class GPT2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, DIM), nn.Embedding(CONTEXT, DIM)
        self.blocks = nn.ModuleList(GPT2Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def make_step(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    x, y = torch.randint(0, VOCAB, (BATCH, CONTEXT)), torch.randint(0, VOCAB, (BATCH, CONTEXT))

    def step():
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"zoo gpt-nano": zoo.load("gpt-nano", n_layers=LAYERS, n_heads=HEADS, dim=DIM, max_seq_len=CONTEXT,
                                       vocab_size=VOCAB, dropout=0.0),
              "GPT-2 block (nanoGPT's)": GPT2()}
    steps = {name: make_step(model.train()) for name, model in models.items()}
    for step in steps.values():
        for _ in range(10):
            step()
    best = {name: math.inf for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
    for name, model in models.items():
        params = sum(p.numel() for p in set(model.parameters()))
        print(f"{name:<26} {params:>9,} params  {best[name] * 1e3:6.1f} ms/step")
    ours, peer = best["zoo gpt-nano"], best["GPT-2 block (nanoGPT's)"]
    print(f"zoo / peer step time: {ours / peer:.2f}x  (2000 steps: {2000 * ours:.0f} s vs {2000 * peer:.0f} s)")


if __name__ == "__main__":
    main()
