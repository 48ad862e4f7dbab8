"""A tiny, half-trained GPT for the generation and decoding tests (tests/test_generate.py, tests/test_decoding.py).

2 layers, width 64, char tokenizer, trained for 40 steps on a short text, so that its continuations are varied,
plausible text ("in ime saves nine.") with several likely next tokens at each step, not memorised strings.
"""

import torch

import zoo
from zoo.text.tokenizer import CharTokenizer

TEXT = ("hello world. the quick brown fox jumps over the lazy dog. "
        "a stitch in time saves nine. hello there, general kenobi. ") * 4


def tiny_gpt(tokenizer, max_seq_len=128):
    return zoo.load("gpt-nano", vocab_size=tokenizer.vocab_size,
                    backbone={"n_layers": 2, "dim": 64, "max_seq_len": max_seq_len})


def half_trained_gpt():
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(TEXT)
    model = tiny_gpt(tokenizer)
    data = torch.tensor(tokenizer.encode(TEXT))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(40):
        starts = torch.randint(0, len(data) - 33, (8,))
        x = torch.stack([data[s:s + 32] for s in starts])
        y = torch.stack([data[s + 1:s + 33] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.tokenizer = tokenizer
    return model
