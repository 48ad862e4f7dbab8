"""zoo GPT vs Hugging Face `transformers` Llama of the identical shape: training step and generation speed.

    python benchmarks/text.py [--only train|generate|compile] [--threads 2] [--gpu] [--compile-train]

Both sides get the same architecture (RoPE, SwiGLU with the same hidden size, RMSNorm, no biases, tied
embeddings), the same shapes, the same batch, the same thread count and fp32, and are measured in the same
run, so the printed ratios compare implementations, not machines. Random weights: nothing is downloaded.
Timing rounds alternate between zoo and its peer and the best round counts, so a machine that other jobs
keep busy slows both alike (the load average is printed; ratios from a quiet machine are the ones to quote).

  train     forward + backward + AdamW step (the same loss code and the same fused AdamW on both sides:
            zoo's trainer and HF's Trainer both default to it); default shape: nanoGPT's CPU baby config
            (4 layers, width 128, 4 heads, context 64, batch 12). Also timed: the same zoo model with its norms,
            RoPE and activation removed (matmuls, attention, loss and optimizer only), the floor for any eager
            implementation that runs those as separate kernels, so HF / floor is the most such a port can gain.
  generate  greedy decoding with a KV cache, tokens/s, at batch 1 and at batch 8 with ragged (left-padded)
            prompts: zoo.text.generate.generate (default: oneDNN-prepacked weights, zoo.nn.packed; and with
            prepack=False) vs HF model.generate (6 layers, width 384, 100 new tokens); plus the weight matmuls
            alone, through F.linear (HF's path) and prepacked (zoo's), each path's ceiling.
  compile   GPU only (automatic when CUDA is available, or --gpu): compiled one-token decode vs eager;
            on a CPU-only machine it says it was skipped
"""

import argparse
import contextlib
import os
import time

import torch
from timing import interleaved  # benchmarks/timing.py: run as scripts, benchmarks/ is on sys.path
from transformers import LlamaConfig, LlamaForCausalLM

from zoo.nn.packed import prepacked_linears
from zoo.text.generate import GenerationOptions, generate
from zoo.text.gpt import GPT, GPTConfig, gpt_backbone
from zoo.text.tokenizer import CharTokenizer

VOCAB = 256
# a char vocabulary of VOCAB printable code points, so zoo's text API and HF's ids see the same token ids
CHARS = "".join(chr(c) for c in range(0x21, 0x21 + VOCAB))


def build_pair(dim: int, n_layers: int, n_heads: int, hidden: int, max_seq_len: int, device):
    """A zoo GPT and an HF Llama of identical shape (same FLOPs and parameter count), both with tied heads."""
    torch.manual_seed(0)
    zoo_model = GPT(GPTConfig(vocab_size=VOCAB, tie_embeddings=True,
                              backbone=gpt_backbone(dim=dim, n_layers=n_layers, n_heads=n_heads, mlp="swiglu",
                                                    hidden_dim=hidden, max_seq_len=max_seq_len)))
    zoo_model.tokenizer = CharTokenizer(CHARS)
    hf_config = LlamaConfig(vocab_size=VOCAB, hidden_size=dim, intermediate_size=hidden, num_hidden_layers=n_layers,
                            num_attention_heads=n_heads, num_key_value_heads=n_heads,
                            max_position_embeddings=max_seq_len, rms_norm_eps=1e-6, tie_word_embeddings=True,
                            attention_bias=False, mlp_bias=False, pad_token_id=0, bos_token_id=None,
                            eos_token_id=None)
    hf_model = LlamaForCausalLM._from_config(hf_config, attn_implementation="sdpa")
    n_zoo = sum(p.numel() for p in zoo_model.parameters())
    n_hf = sum(p.numel() for p in hf_model.parameters())
    assert n_zoo == n_hf, f"shapes differ: zoo {n_zoo} parameters, HF {n_hf}"
    return zoo_model.to(device), hf_model.to(device)


# ----------------------------------------------------------------------------------------------------------
# training step


def train_step(model, hf: bool, x, y, compile_blocks: bool = False):
    model.train()
    if compile_blocks:  # what zoo's trainer does with compile=True: torch.compile each block
        for block in model.backbone.blocks:
            block.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=x).logits if hf else model(x)  # the same loss on both sides
        torch.nn.functional.cross_entropy(logits.view(-1, VOCAB), y.view(-1)).backward()
        optimizer.step()

    return step


def bench_train(args, device):
    print(f"\n== training step: forward + backward + AdamW, {args.layers} layers x {args.width} wide, "
          f"{args.heads} heads, SwiGLU {args.hidden}, context {args.context}, batch {args.batch}, vocab {VOCAB}")
    zoo_model, hf_model = build_pair(args.width, args.layers, args.heads, args.hidden, args.context, device)
    torch.manual_seed(1)
    x = torch.randint(0, VOCAB, (args.batch, args.context), device=device)
    y = torch.randint(0, VOCAB, (args.batch, args.context), device=device)
    floor, _ = build_pair(args.width, args.layers, args.heads, args.hidden, args.context, device)
    floor.backbone.rope = None
    for block in floor.backbone.blocks:
        block.attn_norm, block.mlp_norm, block.mlp.act = torch.nn.Identity(), torch.nn.Identity(), lambda t: t
    floor.backbone.norm = None
    steps = {"zoo": train_step(zoo_model, False, x, y), "hf": train_step(hf_model, True, x, y),
             "floor": train_step(floor, False, x, y)}
    if args.compile_train:
        compiled, _ = build_pair(args.width, args.layers, args.heads, args.hidden, args.context, device)
        steps["zoo compiled"] = train_step(compiled, False, x, y, compile_blocks=True)
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    t = interleaved(steps, args.rounds, args.steps, device)
    print(f"zoo {t['zoo'] * 1e3:.1f} ms/step   HF Llama {t['hf'] * 1e3:.1f} ms/step   "
          f"zoo speed-up {t['hf'] / t['zoo']:.2f}x  (target >= 1.3x)")
    print(f"    matmuls + attention + loss + AdamW alone (no norms, RoPE, activation): {t['floor'] * 1e3:.1f} ms/step, "
          f"HF / that floor {t['hf'] / t['floor']:.2f}x")
    if "zoo compiled" in t:
        print(f"zoo with per-block torch.compile (trainer compile=True) {t['zoo compiled'] * 1e3:.1f} ms/step   "
              f"speed-up over HF eager {t['hf'] / t['zoo compiled']:.2f}x")
    return t


# ----------------------------------------------------------------------------------------------------------
# generation


def ragged_prompts(batch: int, lengths: list[int]) -> list[str]:
    g = torch.Generator().manual_seed(2)
    return ["".join(CHARS[i] for i in torch.randint(0, VOCAB, (lengths[b % len(lengths)],), generator=g).tolist())
            for b in range(batch)]


def zoo_generate_fn(model, prompts, new_tokens: int, compile: bool = False, prepack: bool = True):
    options = GenerationOptions(max_new_tokens=new_tokens, temperature=0, compile=compile, prepack=prepack)

    def run():
        results = generate(model, prompts, options)
        assert all(r.n_new_tokens == new_tokens for r in results)

    return run


def hf_generate_fn(model, prompts, new_tokens: int, device):
    tokenizer = CharTokenizer(CHARS)
    ids = [tokenizer.encode(p) for p in prompts]
    T = max(len(row) for row in ids)
    input_ids = torch.zeros(len(ids), T, dtype=torch.long)
    attention_mask = torch.zeros(len(ids), T, dtype=torch.long)
    for i, row in enumerate(ids):  # left padding, as HF recommends for decoder-only generation
        input_ids[i, T - len(row):] = torch.tensor(row)
        attention_mask[i, T - len(row):] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)

    @torch.inference_mode()
    def run():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, use_cache=True)
        assert out.shape[1] == T + new_tokens

    return run


def matmul_floor_fn(model, batch: int, new_tokens: int, prepack: bool):
    """Only the weight matmuls of `new_tokens` decode steps (every Linear once per token, as decoding reads
    them), through F.linear or through zoo's prepacked weights: each path's ceiling on tokens/s. At batch 1
    they read the fp32 weights once per token (41 MB here, more than the CPU caches hold)."""
    linears = [module for module in model.modules() if isinstance(module, torch.nn.Linear)]
    inputs = {m.in_features: torch.randn(batch, 1, m.in_features, device=m.weight.device) for m in linears}

    @torch.inference_mode()
    def run():
        with prepacked_linears(model, rows=batch) if prepack else contextlib.nullcontext():
            for _ in range(new_tokens):
                for m in linears:
                    m(inputs[m.in_features])

    return run


BATCHES = ((1, [20]), (8, [5, 20, 12, 33, 8, 27, 16, 40]))  # prompt lengths in tokens (ragged at batch 8)


def bench_generate(args, device):
    print(f"\n== greedy generation with a KV cache: 6 layers x 384 wide, 6 heads, SwiGLU 1024, vocab {VOCAB}, "
          f"{args.new_tokens} new tokens, prefill included, tokens/s (best of {args.rounds} interleaved rounds)")
    zoo_model, hf_model = build_pair(384, 6, 6, 1024, 256, device)
    zoo_model.eval()
    hf_model.eval()
    results = {}
    for batch, lengths in BATCHES:
        prompts = ragged_prompts(batch, lengths)
        fns = {"zoo": zoo_generate_fn(zoo_model, prompts, args.new_tokens),
               "zoo unpacked": zoo_generate_fn(zoo_model, prompts, args.new_tokens, prepack=False),
               "hf": hf_generate_fn(hf_model, prompts, args.new_tokens, device),
               "linear floor": matmul_floor_fn(zoo_model, batch, args.new_tokens, prepack=False),
               "packed floor": matmul_floor_fn(zoo_model, batch, args.new_tokens, prepack=True)}
        for fn in fns.values():
            fn()  # warm-up: first-call allocations, HF's generation-config set-up
        t = interleaved(fns, args.rounds, 1, device)
        rate = {name: batch * args.new_tokens / seconds for name, seconds in t.items()}
        z, h = rate["zoo"], rate["hf"]
        results[batch] = (z, h)
        shape = "prompt 20 tokens" if batch == 1 else f"ragged prompts {lengths}"
        print(f"batch {batch} ({shape}): zoo {z:.0f} tok/s   HF generate {h:.0f} tok/s   "
              f"zoo speed-up {z / h:.2f}x  (target >= 2x)")
        print(f"    zoo with prepack=False {rate['zoo unpacked']:.0f} tok/s ({rate['zoo unpacked'] / h:.2f}x HF); "
              f"the weight matmuls alone: {rate['linear floor']:.0f} tok/s through F.linear, "
              f"{rate['packed floor']:.0f} tok/s prepacked")
    return results


def bench_compile(args, device):
    if device.type != "cuda":
        print("\n== compiled decode vs eager: skipped (no CUDA device here; it runs automatically on a GPU machine)")
        return None
    print(f"\n== compiled one-token decode (GenerationOptions(compile=True)) vs eager on "
          f"{torch.cuda.get_device_name()}: 6 x 384, {args.new_tokens} new tokens, tokens/s")
    zoo_model, _ = build_pair(384, 6, 6, 1024, 256, device)
    zoo_model.eval()
    for batch, lengths in BATCHES:
        prompts = ragged_prompts(batch, lengths)
        fns = {"eager": zoo_generate_fn(zoo_model, prompts, args.new_tokens),
               "compiled": zoo_generate_fn(zoo_model, prompts, args.new_tokens, compile=True)}
        fns["eager"]()
        start = time.perf_counter()
        fns["compiled"]()  # compiles (once per batch size: a batch of 1 is specialised)
        warm = time.perf_counter() - start
        t = interleaved(fns, args.rounds, 1, device)
        eager, compiled = (batch * args.new_tokens / t[name] for name in ("eager", "compiled"))
        print(f"batch {batch}: eager {eager:.0f} tok/s   compiled {compiled:.0f} tok/s   "
              f"speed-up {compiled / eager:.2f}x   (first compiled call {warm:.1f} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("train", "generate", "compile"), help="run one section")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="run on CUDA (the default when it is available)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=384, help="SwiGLU hidden size, the same on both sides")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds (the best counts)")
    parser.add_argument("--compile-train", action="store_true",
                        help="also time zoo with per-block torch.compile (the trainer's compile=True)")
    parser.add_argument("--new-tokens", type=int, default=100)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu: CUDA is not available on this machine")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if device.type == "cpu" else ""
    print(f"torch {torch.__version__}, {device.type}, {torch.get_num_threads()} threads, fp32{load}")
    if args.only in (None, "train"):
        bench_train(args, device)
    if args.only in (None, "generate"):
        bench_generate(args, device)
    if args.only in (None, "compile"):
        bench_compile(args, device)


if __name__ == "__main__":
    main()
