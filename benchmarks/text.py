"""zoo GPT vs Hugging Face `transformers` Llama of the identical shape: training step and generation speed.

    python benchmarks/text.py [--only train|generate|compile] [--threads 2] [--gpu] [--compile-train] [--quick]
                              [--json PATH]

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
  generate  decoding with a KV cache, tokens/s, at batch 1 and at batch 8 with ragged (left-padded) prompts,
            greedy and sampling (temperature 0.8, top-k 50, top-p 0.95, a fixed seed), zoo.text.generate.generate
            vs HF model.generate (6 layers, width 384, 100 new tokens), each zoo case against HF in the same mode:
            eager on oneDNN-prepacked weights (the default, zoo.nn.packed), compiled (compile=True), int8
            (zoo.nn.packed.int8_dynamic, eager and compiled, every linear and with the MLP down projections kept
            in fp32; against HF in fp32), prepack=False, and at batch 1
            speculative decoding with an early-exit draft; plus the weight matmuls alone, through F.linear
            (HF's path) and prepacked (zoo's), each path's ceiling. Then speculative decoding on trained weights
            (the shipped gpt-nano and its own first layers as the draft) against gpt-nano alone.
  compile   GPU only (automatic when CUDA is available, or --gpu): compiled one-token decode vs eager;
            on a CPU-only machine it says it was skipped

--quick: one round, 20 new tokens, one training step (a smoke run). --json PATH: the cases for
benchmarks/run_all.py, a list of {"case", "zoo", "peer", "unit", "ratio", "target"} (ratio > 1: zoo ahead).
"""

import argparse
import contextlib
import json
import os
import time

import torch
from timing import interleaved  # benchmarks/timing.py: run as scripts, benchmarks/ is on sys.path
from transformers import LlamaConfig, LlamaForCausalLM

from zoo.decoding import TokenState
from zoo.nn.packed import int8_dynamic, prepacked_linears
from zoo.text.generate import GenerationOptions, generate
from zoo.text.gpt import GPT, GPTConfig, gpt_backbone
from zoo.text.speculative import early_exit_draft, speculative_decode
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
    shape = f"{args.layers}x{args.width}, context {args.context}, batch {args.batch}"
    return [{"case": f"GPT training step, {shape}, fused AdamW (peer: HF LlamaForCausalLM)", "zoo": t["zoo"] * 1e3,
             "peer": t["hf"] * 1e3, "unit": "ms/step", "ratio": t["hf"] / t["zoo"], "target": 1.3}]


# ----------------------------------------------------------------------------------------------------------
# generation


def ragged_prompts(batch: int, lengths: list[int]) -> list[str]:
    g = torch.Generator().manual_seed(2)
    return ["".join(CHARS[i] for i in torch.randint(0, VOCAB, (lengths[b % len(lengths)],), generator=g).tolist())
            for b in range(batch)]


SAMPLING = dict(temperature=0.8, top_k=50, top_p=0.95)  # HF generate's default top-k, a usual top-p


def zoo_generate_fn(model, prompts, new_tokens: int, sampling: bool = False, draft=None, lookahead: int = 4,
                    **options):
    settings = dict(SAMPLING, seed=0) if sampling else dict(temperature=0)
    options = GenerationOptions(max_new_tokens=new_tokens, **settings, **options)

    def run():
        results = generate(model, prompts, options, draft=draft, lookahead=lookahead)
        assert all(r.n_new_tokens == new_tokens for r in results)

    return run


def hf_generate_fn(model, prompts, new_tokens: int, device, sampling: bool = False):
    tokenizer = CharTokenizer(CHARS)
    ids = [tokenizer.encode(p) for p in prompts]
    T = max(len(row) for row in ids)
    input_ids = torch.zeros(len(ids), T, dtype=torch.long)
    attention_mask = torch.zeros(len(ids), T, dtype=torch.long)
    for i, row in enumerate(ids):  # left padding, as HF recommends for decoder-only generation
        input_ids[i, T - len(row):] = torch.tensor(row)
        attention_mask[i, T - len(row):] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    settings = dict(do_sample=True, **SAMPLING) if sampling else dict(do_sample=False)

    @torch.inference_mode()
    def run():
        torch.manual_seed(0)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, pad_token_id=0, use_cache=True, **settings)
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
DRAFT_LAYERS = 1  # the speculative case's draft: the model's first layer (zoo.text.speculative.early_exit_draft)


def generate_cases(zoo_model, hf_model, int8_models: dict, prompts, new_tokens: int, device) -> dict:
    """name -> (function, the HF case it is compared with, target ratio or None). int8_models: label -> an
    int8_dynamic copy of zoo_model (none on a GPU)."""
    batch = len(prompts)
    cases = {}
    for mode in ("greedy", "sampling"):
        sampling = mode == "sampling"
        cases[f"hf {mode}"] = (hf_generate_fn(hf_model, prompts, new_tokens, device, sampling), None, None)
        cases[f"zoo {mode}"] = (zoo_generate_fn(zoo_model, prompts, new_tokens, sampling), f"hf {mode}", 2.0)
        cases[f"zoo compiled {mode}"] = (zoo_generate_fn(zoo_model, prompts, new_tokens, sampling, compile=True),
                                         f"hf {mode}", 2.0)
        for label, model in int8_models.items():
            cases[f"zoo {label} {mode}"] = (zoo_generate_fn(model, prompts, new_tokens, sampling), f"hf {mode}", None)
            cases[f"zoo {label} compiled {mode}"] = (
                zoo_generate_fn(model, prompts, new_tokens, sampling, compile=True), f"hf {mode}", 3.0)
    cases["zoo unpacked greedy"] = (zoo_generate_fn(zoo_model, prompts, new_tokens, prepack=False), "hf greedy", None)
    if batch == 1:  # speculative decoding takes one prompt at a time
        draft = early_exit_draft(zoo_model, DRAFT_LAYERS)
        cases["zoo speculative greedy"] = (zoo_generate_fn(zoo_model, prompts, new_tokens, draft=draft),
                                           "hf greedy", None)
    cases["linear floor"] = (matmul_floor_fn(zoo_model, batch, new_tokens, prepack=False), None, None)
    cases["packed floor"] = (matmul_floor_fn(zoo_model, batch, new_tokens, prepack=True), None, None)
    return cases


def draft_acceptance(zoo_model, prompt: str, new_tokens: int) -> float:
    """The share of the early-exit draft's proposals the model accepts on the benchmark's prompt."""
    ids = zoo_model.tokenizer.encode(prompt)
    state = TokenState()
    options = GenerationOptions(max_new_tokens=new_tokens, temperature=0)
    return speculative_decode(zoo_model, early_exit_draft(zoo_model, DRAFT_LAYERS), ids, options, state).acceptance


def bench_generate(args, device) -> list[dict]:
    print(f"\n== generation with a KV cache: 6 layers x 384 wide, 6 heads, SwiGLU 1024, vocab {VOCAB}, "
          f"{args.new_tokens} new tokens, prefill included, tokens/s (best of {args.rounds} interleaved rounds); "
          f"greedy, and sampling at temperature {SAMPLING['temperature']}, top-k {SAMPLING['top_k']}, "
          f"top-p {SAMPLING['top_p']}")
    zoo_model, hf_model = build_pair(384, 6, 6, 1024, 256, device)
    zoo_model.eval()
    hf_model.eval()
    # fbgemm: CPU only. Every linear in int8, and with the MLP down projections in fp32: the copy that stays
    # under 1% of the shipped gpt-nano's validation loss (README, tests/test_decoding_levers.py)
    int8_models = {"int8": int8_dynamic(zoo_model),
                   "int8 (mlp.down fp32)": int8_dynamic(zoo_model, keep_float=("mlp.down",))
                   } if device.type == "cpu" else {}
    results = []
    for batch, lengths in BATCHES:
        prompts = ragged_prompts(batch, lengths)
        cases = generate_cases(zoo_model, hf_model, int8_models, prompts, args.new_tokens, device)
        fns = {name: fn for name, (fn, _, _) in cases.items()}
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()  # warm-up: first-call allocations, HF's generation-config set-up, compiling
            if "compiled" in name:
                print(f"    {name}: first call (compiling, once per process and batch size) "
                      f"{time.perf_counter() - start:.1f} s")
        t = interleaved(fns, args.rounds, 1, device)
        rate = {name: batch * args.new_tokens / seconds for name, seconds in t.items()}
        shape = "prompt 20 tokens" if batch == 1 else f"ragged prompts {lengths}"
        print(f"batch {batch} ({shape}):")
        for name, (_, peer, target) in cases.items():
            if peer is None:
                continue
            ratio = rate[name] / rate[peer]
            goal = f"  (target >= {target:g}x)" if target else ""
            print(f"    {name:<44} {rate[name]:7.0f} tok/s   {peer} {rate[peer]:5.0f} tok/s   {ratio:.2f}x{goal}")
            results.append({"case": f"text generation, batch {batch}, {name.removeprefix('zoo ')} (peer: HF "
                                    f"generate {peer.removeprefix('hf ')})", "zoo": rate[name], "peer": rate[peer],
                            "unit": "tokens/s", "ratio": ratio, "target": target})
        if batch == 1:
            print(f"    speculative: draft = the model's first {DRAFT_LAYERS} of 6 layers, 4 proposals a round; "
                  f"it agrees with the model on {draft_acceptance(zoo_model, prompts[0], args.new_tokens):.0%} of "
                  f"them (random weights: the residual stream is mostly the token's embedding, so this is an "
                  f"upper bound, not a trained pair)")
        print(f"    the weight matmuls alone: {rate['linear floor']:.0f} tok/s through F.linear, "
              f"{rate['packed floor']:.0f} tok/s prepacked")
    return results


def bench_speculative_shipped(args) -> list[dict]:
    """Speculative decoding where the weights are trained: the shipped gpt-nano (4 x 128, a 4096-token BPE on
    Python code), its own first layers as the draft (no trained draft ships), against gpt-nano alone."""
    import zoo

    model = zoo.load("gpt-nano", pretrained=True).eval()
    prompt, layers, lookahead = "def ", 3, 2  # the early-exit draft that agreed most (README)
    ids = model.tokenizer.encode(prompt)
    options = GenerationOptions(max_new_tokens=args.new_tokens, temperature=0)
    acceptance = speculative_decode(model, early_exit_draft(model, layers), ids, options, TokenState(),
                                    lookahead).acceptance
    fns = {"plain": zoo_generate_fn(model, [prompt], args.new_tokens),
           "speculative": zoo_generate_fn(model, [prompt], args.new_tokens, draft=early_exit_draft(model, layers),
                                          lookahead=lookahead)}
    t = interleaved(fns, args.rounds, 1, warmup=True)
    rate = {name: args.new_tokens / seconds for name, seconds in t.items()}
    ratio = rate["speculative"] / rate["plain"]
    print(f"\n== speculative decoding on trained weights: gpt-nano (shipped), greedy from {prompt!r}, draft = its "
          f"first {layers} of 4 layers, {lookahead} proposals a round, {acceptance:.0%} accepted: "
          f"{rate['speculative']:.0f} tok/s against {rate['plain']:.0f} tok/s alone, {ratio:.2f}x")
    return [{"case": f"speculative greedy decoding, gpt-nano with its first {layers} layers as the draft "
                     f"(peer: gpt-nano alone)", "zoo": rate["speculative"], "peer": rate["plain"],
             "unit": "tokens/s", "ratio": ratio, "target": None}]


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
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round, 20 new tokens, 1 training step")
    parser.add_argument("--json", metavar="PATH", help="write the cases (zoo, peer, ratio) to PATH")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup, args.new_tokens = 1, 1, 1, 20

    torch.set_num_threads(args.threads)
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu: CUDA is not available on this machine")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if device.type == "cpu" else ""
    print(f"torch {torch.__version__}, {device.type}, {torch.get_num_threads()} threads, fp32{load}")
    cases = []
    if args.only in (None, "train"):
        cases += bench_train(args, device)
    if args.only in (None, "generate"):
        cases += bench_generate(args, device)
        if device.type == "cpu":
            cases += bench_speculative_shipped(args)
    if args.only in (None, "compile"):
        bench_compile(args, device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(cases, f, indent=2)


if __name__ == "__main__":
    main()
