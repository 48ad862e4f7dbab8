"""How the trainer feeds and scores a GPT: data settings, data preparation, loss, evaluation, FLOPs.

These are the functions the `gpt` Family registers (zoo/text/gpt.py); the trainer calls nothing else.
"""

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo.errors import InputError
from zoo.nn import transformer_flops_per_token
from zoo.nn.packed import prepacked_linears
from zoo.registry import TrainingData
from zoo.text.code import parse_rate
from zoo.text.data import UNITS, WINDOW_STARTS, prepare_text_data
from zoo.utils import eval_mode, model_device

TOKENIZERS = ("char", "bpe")
EVAL_BATCH = 32  # windows per evaluation forward pass (larger batches were slower on a 2-core CPU)


@dataclass
class TextDataConfig:
    tokenizer: str = "bpe"  # char | bpe (byte-level BPE trained on the training split)
    vocab_size: int = 4096  # BPE vocabulary (the char vocabulary is whatever the corpus holds)
    max_chars: int | None = None  # cap on corpus characters; None = whole file (default corpus: 8M)
    seq_len: int | None = None  # training context; None = model.backbone.max_seq_len
    eval_stride: int | None = None  # perplexity sliding-window stride; None = seq_len // 2
    quick_eval_windows: int = 128  # windows scored by the evaluations during training
    code_samples: int = 0  # full evaluation of a Python code model: functions sampled for parse_rate (zoo.text.code)
    window_starts: str = "any"  # any | line: training windows begin anywhere or at column 0 (zoo.text.data.line_starts)
    units: str = "files"  # files | functions: the corpus as written or its Python functions (data.python_functions)

    def __post_init__(self):
        if self.code_samples < 0:
            raise InputError(f"data.code_samples={self.code_samples}; allowed: 0 (off) or a number of samples")
        if self.tokenizer not in TOKENIZERS:
            raise InputError(f"data.tokenizer={self.tokenizer!r}; allowed: {', '.join(TOKENIZERS)}")
        if self.units not in UNITS:
            raise InputError(f"data.units={self.units!r}; allowed: {', '.join(UNITS)}")
        if self.window_starts not in WINDOW_STARTS:
            raise InputError(f"data.window_starts={self.window_starts!r}; allowed: {', '.join(WINDOW_STARTS)}")
        if self.quick_eval_windows < 1:
            raise InputError(f"data.quick_eval_windows={self.quick_eval_windows}; allowed: an integer >= 1")
        for name in ("max_chars", "seq_len", "eval_stride"):  # 0 would read as None (`seq_len or ...`): refuse it
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"data.{name}={getattr(self, name)}; allowed: an integer >= 1, or None (the default)")


def prepare_data(config, data_config: TextDataConfig, path, cache_dir, model=None, run_dir=None) -> TrainingData:
    seq_len = data_config.seq_len or config.backbone.max_seq_len
    if seq_len > config.backbone.max_seq_len:
        raise InputError(f"data.seq_len={seq_len} exceeds model.backbone.max_seq_len={config.backbone.max_seq_len}")
    tokenizer = getattr(model, "tokenizer", None) if model is not None else None
    text = prepare_text_data(path, data_config.tokenizer, data_config.vocab_size, seq_len, cache_dir,
                             max_chars=data_config.max_chars, tokenizer=tokenizer,
                             window_starts=data_config.window_starts, units=data_config.units)
    if model is None:
        config = dataclasses.replace(config, vocab_size=text.tokenizer.vocab_size)
    return TrainingData(text.train, text.val, config, extras={"tokenizer": text.tokenizer},
                        tokens_per_sample=seq_len)


def loss(model, batch) -> torch.Tensor:
    logits = model(batch["input_ids"])  # (B, T, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten())


def example_batch(model, generator: torch.Generator) -> tuple[dict, dict]:
    """Four random 16-token windows (inputs and next-token labels) for the cross-model tests; no frozen modules."""
    idx = torch.randint(0, model.config.vocab_size, (4, 17), generator=generator)
    return {"input_ids": idx[:, :-1], "labels": idx[:, 1:]}, {}


def flops_per_sample(model, data_config: TextDataConfig) -> float:
    """6N + 12 L d T per token (PaLM appendix B), times T tokens per sample; T is the trained context
    (data.seq_len), which may be shorter than the model's max_seq_len."""
    c = model.config.backbone
    seq_len = data_config.seq_len or c.max_seq_len
    return seq_len * transformer_flops_per_token(model.num_params(non_embedding=False), c.n_layers, c.dim, seq_len)


@torch.inference_mode()
def evaluate(model, data: TrainingData, data_config: TextDataConfig, out_dir=None, quick: bool = False) -> dict:
    """val_loss: mean next-token loss over non-overlapping windows covering the validation split (every
    position scored once, as nanoGPT's estimate does in expectation); perplexity: the sliding-window
    recipe of Hugging Face's perplexity guide (stride < context, so most tokens see a long context).
    On a CPU the forward passes use prepacked weights (zoo.nn.packed): about 1.2x faster. With data.code_samples,
    parse_rate: the share of sampled functions that parse as Python (zoo.text.code)."""
    with eval_mode(model), prepacked_linears(model, rows=EVAL_BATCH * data.val.seq_len):
        metrics = _evaluate(model, data, data_config, quick)
    if not quick and data_config.code_samples:  # (generation prepacks the weights it needs itself)
        with eval_mode(model):
            metrics["parse_rate"], _ = parse_rate(model, n=data_config.code_samples)
    return metrics


def _evaluate(model, data: TrainingData, data_config: TextDataConfig, quick: bool) -> dict:
    tokens = torch.from_numpy(data.val.tokens[:].astype("int64"))
    T = data.val.seq_len
    device = model_device(model)
    starts = list(range(0, len(tokens) - T, T))
    if quick and len(starts) > data_config.quick_eval_windows:
        step = len(starts) / data_config.quick_eval_windows
        starts = [starts[int(i * step)] for i in range(data_config.quick_eval_windows)]
    total, count, start_time = 0.0, 0, time.perf_counter()
    for i in range(0, len(starts), EVAL_BATCH):
        chunk = torch.stack([tokens[s:s + T + 1] for s in starts[i:i + EVAL_BATCH]]).to(device)
        logits = model(chunk[:, :-1])
        total += F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum").item()
        count += chunk[:, 1:].numel()
    seconds = time.perf_counter() - start_time
    metrics = {"val_loss": total / count, "tokens_per_s": count / seconds}
    if not quick:
        metrics["perplexity"] = sliding_window_perplexity(model, tokens, T, data_config.eval_stride or T // 2)
    return metrics


@torch.inference_mode()
def sliding_window_perplexity(model, tokens: torch.Tensor, context: int, stride: int) -> float:
    """exp(mean NLL) where each window of `context` tokens scores only the tokens its predecessor did not."""
    if not 0 < stride <= context:
        raise InputError(f"data.eval_stride must be in [1, {context}], got {stride}")
    device = model_device(model)
    nll, counted, previous_end = 0.0, 0, 0
    windows = []
    for begin in range(0, len(tokens) - 1, stride):
        end = min(begin + context, len(tokens) - 1)
        windows.append((begin, end, end - previous_end))  # score the last (end - previous_end) targets
        previous_end = end
        if end == len(tokens) - 1:
            break
    for i in range(0, len(windows), EVAL_BATCH):
        group = windows[i:i + EVAL_BATCH]
        width = max(end - begin for begin, end, _ in group)
        inputs = torch.zeros(len(group), width, dtype=torch.long)
        targets = torch.full((len(group), width), -100, dtype=torch.long)
        for row, (begin, end, new) in enumerate(group):
            n = end - begin
            inputs[row, :n] = tokens[begin:end]
            targets[row, n - new:n] = tokens[begin + 1 + n - new:end + 1]
        logits = model(inputs.to(device))  # right padding is harmless: causal attention never looks ahead
        nll += F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().to(device), ignore_index=-100,
                               reduction="sum").item()
        counted += int((targets != -100).sum())
    return math.exp(nll / counted)
