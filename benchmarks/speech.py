"""zoo Whisper vs Hugging Face `transformers` WhisperForConditionalGeneration with Whisper tiny's dimensions:
encoder time, greedy decoding speed and batched transcription throughput.

    python benchmarks/speech.py [--only encoder|decode|batch] [--threads 2] [--rounds 5] [--new-tokens 100] [--quick]
                                [--json PATH]

Both sides get Whisper tiny's shape (width 384, 4 encoder + 4 decoder layers, 6 heads, 80 mels, GELU MLP 1536,
LayerNorm, biases, a tied head over a 51,865-token vocabulary: zoo.speech.whisper.whisper_tiny()), random weights
(nothing is downloaded), fp32, the same thread count, torch.inference_mode, and HF in eval mode with SDPA attention;
they are measured in the same run, so the printed ratios compare implementations, not machines. Timing rounds
alternate between zoo and its peer and the best round counts, so a machine that other jobs keep busy slows both
alike (the load average is printed; ratios from a quiet machine are the ones to quote).

  encoder  one 5 s clip. zoo encodes the clip's own 500 mel frames (250 encoder frames) as decode() and
           transcribe() do (zoo.speech.decoding.encode_audio: on oneDNN-packed weights); HF's encoder only takes
           30 s windows, so its features are the audio padded to 30 s (3000 frames, 1500 encoder frames), as
           its feature extractor does. Also timed: zoo on the same 3000 frames (the like-for-like ratio).
  decode   greedy decoding of exactly --new-tokens tokens for one clip, from its encoder output (the encoder is
           the case above), after the same 4-token prompt <|startoftranscript|><|en|><|transcribe|>
           <|notimestamps|>: zoo.speech.decoding.DecodingTask.run (what decode() runs after the encoder: a
           no-speech pass at <|startoftranscript|>, prefill, cached steps) vs HF generate(encoder_outputs=...).
           Both suppress the same token list, <|endoftext|> included, and the same blank tokens at the first
           step, so both produce exactly --new-tokens tokens (checked). Also timed: zoo with prepack=False, and
           zoo over 1500 encoder frames (the clip padded to 30 s, HF's cross-attention length).
  batch    8 clips of 3 to 8 s transcribed together (encoder + --new-tokens greedy tokens each), clips/s:
           zoo.speech.decoding.decode on the list of mels (right-padded to the longest, with a mask) vs HF
           generate on the 8 windows of 3000 frames. Also timed: zoo on the same 30 s windows.

The log-mel front end is not timed: both sides get precomputed features of the same noise. zoo's decoding needs a
tokenizer: zoo's WhisperTokenizer over a byte-level stand-in for the BPE with 50,257 text ids, so that every
special token has its id in Whisper's multilingual vocabulary (<|endoftext|> 50257, <|startoftranscript|> 50258,
<|en|> 50259, <|transcribe|> 50359, <|notimestamps|> 50363, 1501 timestamps from 50364; 51,865 in all), the same
ids HF's generation config is given. The parameter counts differ only by HF's learned position tables (zoo adds
sinusoids in the encoder and uses RoPE in the decoder) and zoo's key biases; both are printed.

--json PATH: the cases for benchmarks/run_all.py (zoo as it runs against HF as it runs, and like for like on the
same 30 s windows; ratio > 1: zoo ahead; the issue's target for encoder and decoding is 2x).
"""

import argparse
import json
import math
import os
from dataclasses import replace

import torch
import transformers
from timing import interleaved  # benchmarks/timing.py: run as scripts, benchmarks/ is on sys.path
from transformers import GenerationConfig, WhisperForConditionalGeneration
from transformers import WhisperConfig as HFWhisperConfig
from transformers.modeling_outputs import BaseModelOutput

from zoo.speech.audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from zoo.speech.decoding import DecodingOptions, DecodingTask, decode, encode_audio, suppressed_ids
from zoo.speech.tokenizer import LANGUAGES, WhisperTokenizer
from zoo.speech.whisper import Whisper, whisper_tiny

N_TEXT = 50257  # Whisper's GPT-2 text ids; <|endoftext|> follows them
N_LANGUAGES = 99  # Whisper's multilingual models before large-v3: 50257 + 2 + 99 + 6 + 1501 = 51865 ids
CLIP_SECONDS = 5.0
BATCH_SECONDS = (3.0, 8.0, 4.5, 6.0, 3.5, 7.0, 5.0, 5.5)  # the batch-8 clips, 3 to 8 s


class ByteStandIn:
    """The BPE interface WhisperTokenizer builds on (as tests/test_speech_decoding.py's WordPieces): text is its
    UTF-8 bytes (ids 0..255), and ids 256..50256 stand for the rest of Whisper's text vocabulary."""

    eot_id = N_TEXT

    def encode(self, text):
        return list(text.encode("utf-8"))

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_bytes(self, token_id):
        return bytes([token_id]) if token_id < 256 else b""


def build_pair():
    """zoo's Whisper and HF's of Whisper tiny's shape, with matching token ids and decoding rules."""
    torch.manual_seed(0)
    tokenizer = WhisperTokenizer(ByteStandIn(), list(LANGUAGES)[:N_LANGUAGES])
    zoo_model = Whisper(whisper_tiny())
    zoo_model.tokenizer = tokenizer
    assert tokenizer.vocab_size == zoo_model.vocab_size == 51865, (tokenizer.vocab_size, zoo_model.vocab_size)
    options = DecodingOptions(language="en", temperature=0.0, without_timestamps=True,
                              suppress_tokens=(-1, tokenizer.eot))  # -1: the non-speech symbols, as whisper
    suppress = suppressed_ids(tokenizer, zoo_model.vocab_size, options)
    blank = list(tokenizer.blank_tokens)  # zoo's SuppressBlank at the first step; HF's begin_suppress_tokens
    e, d = zoo_model.config.encoder, zoo_model.config.decoder
    hf_config = HFWhisperConfig(vocab_size=zoo_model.vocab_size, num_mel_bins=zoo_model.config.n_mels, d_model=e.dim,
                                encoder_layers=e.n_layers, decoder_layers=d.n_layers, encoder_attention_heads=e.n_heads,
                                decoder_attention_heads=d.n_heads, encoder_ffn_dim=4 * e.dim, decoder_ffn_dim=4 * d.dim,
                                max_source_positions=e.max_seq_len, max_target_positions=d.max_seq_len,
                                decoder_start_token_id=tokenizer.sot, pad_token_id=tokenizer.eot,
                                bos_token_id=tokenizer.eot, eos_token_id=tokenizer.eot, suppress_tokens=suppress,
                                begin_suppress_tokens=blank, tie_word_embeddings=True)
    hf_model = WhisperForConditionalGeneration._from_config(hf_config, attn_implementation="sdpa")
    # the fields of openai/whisper-tiny's generation_config.json that generate(language=, task=) reads
    generation = GenerationConfig.from_model_config(hf_config)
    generation.lang_to_id = {f"<|{code}|>": tokenizer.language_token(code) for code in tokenizer.languages}
    generation.task_to_id = {"transcribe": tokenizer.transcribe, "translate": tokenizer.translate}
    generation.no_timestamps_token_id = tokenizer.no_timestamps
    generation.is_multilingual = True
    generation.suppress_tokens, generation.begin_suppress_tokens = suppress, blank
    hf_model.generation_config = generation
    zoo_model.eval()
    hf_model.eval()
    return zoo_model, hf_model, options


def describe(zoo_model, hf_model):
    n_zoo = sum(p.numel() for p in zoo_model.parameters())
    n_hf = sum(p.numel() for p in hf_model.parameters())
    positions = hf_model.model.encoder.embed_positions.weight.numel() + \
        hf_model.model.decoder.embed_positions.weight.numel()
    e = zoo_model.config.encoder
    key_biases = (e.n_layers + 2 * zoo_model.config.decoder.n_layers) * e.dim
    assert n_zoo - key_biases == n_hf - positions, "the two models' shapes differ beyond positions and key biases"
    print(f"Whisper tiny's shape: width {e.dim}, {e.n_layers} + {zoo_model.config.decoder.n_layers} layers, "
          f"{e.n_heads} heads, {zoo_model.config.n_mels} mels, vocab {zoo_model.vocab_size}; parameters: "
          f"zoo {n_zoo / 1e6:.2f}M, HF {n_hf / 1e6:.2f}M (HF's learned positions {positions / 1e6:.2f}M, "
          f"zoo's key biases {key_biases / 1e3:.1f}k: otherwise identical)")


def noise(seconds: float, seed: int) -> torch.Tensor:
    return 0.1 * torch.randn(int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(seed))


def clip_features(seconds: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(80, frames) log-mel of the clip as it is (zoo) and (80, 3000) of the clip padded to 30 s (HF's input)."""
    audio = noise(seconds, seed)
    return log_mel_spectrogram(audio), log_mel_spectrogram(pad_or_trim(audio, N_SAMPLES))


# ----------------------------------------------------------------------------------------------------------
# encoder


def bench_encoder(args, zoo_model, hf_model):
    mel, window = clip_features(CLIP_SECONDS, seed=1)
    frames = mel.shape[1]
    print(f"\n== encoder, one {CLIP_SECONDS:g} s clip, ms per call (best of {args.rounds} interleaved rounds)")

    @torch.inference_mode()
    def zoo_own():
        features, _ = encode_audio(zoo_model, mel[None], None)
        assert features.shape[1] == math.ceil(frames / 2)

    @torch.inference_mode()
    def zoo_30s():
        encode_audio(zoo_model, window[None], None)

    @torch.inference_mode()
    def hf():
        assert hf_model.model.encoder(window[None]).last_hidden_state.shape[1] == 1500

    t = interleaved({"zoo": zoo_own, "zoo 30 s": zoo_30s, "hf": hf}, args.rounds, warmup=True)
    print(f"zoo ({frames} mel frames -> {math.ceil(frames / 2)} encoder frames) {t['zoo'] * 1e3:.1f} ms   "
          f"HF (padded to 3000 -> 1500) {t['hf'] * 1e3:.1f} ms   zoo speed-up {t['hf'] / t['zoo']:.2f}x")
    print(f"    zoo on the same 3000 padded frames {t['zoo 30 s'] * 1e3:.1f} ms: {t['hf'] / t['zoo 30 s']:.2f}x HF "
          f"like for like")
    return t


# ----------------------------------------------------------------------------------------------------------
# greedy decoding


def zoo_decode_fn(model, features, audio_mask, options, n: int):
    def run():  # the task (prompt, logit filters) is set up per call, as decode() does and HF's generate
        results = DecodingTask(model, options).run(features, audio_mask)
        assert all(len(r.tokens) == n for r in results), [len(r.tokens) for r in results]

    return run


def hf_generate_fn(model, n: int, **inputs):
    @torch.inference_mode()
    def run():
        out = model.generate(**inputs, language="en", task="transcribe", max_new_tokens=n, do_sample=False,
                             num_beams=1)
        assert out.shape[-1] == n, out.shape

    return run


def bench_decode(args, zoo_model, hf_model, options):
    n = args.new_tokens
    mel, window = clip_features(CLIP_SECONDS, seed=1)
    with torch.inference_mode():
        features, _ = zoo_model.embed_audio(mel[None])
        features_30s, _ = zoo_model.embed_audio(window[None])
        hf_features = hf_model.model.encoder(window[None]).last_hidden_state
    options = replace(options, sample_len=n)
    print(f"\n== greedy decoding of exactly {n} tokens for one {CLIP_SECONDS:g} s clip after a 4-token prompt, from "
          f"its encoder output, tokens/s (best of {args.rounds} interleaved rounds)")
    fns = {"zoo": zoo_decode_fn(zoo_model, features, None, options, n),
           "zoo unpacked": zoo_decode_fn(zoo_model, features, None,
                                         replace(options, prepack=False), n),
           "zoo 30 s": zoo_decode_fn(zoo_model, features_30s, None, options, n),
           "hf": hf_generate_fn(hf_model, n, encoder_outputs=BaseModelOutput(last_hidden_state=hf_features))}
    t = interleaved(fns, args.rounds, warmup=True)
    rate = {name: n / seconds for name, seconds in t.items()}
    z, h = rate["zoo"], rate["hf"]
    print(f"zoo DecodingTask.run (over {features.shape[1]} audio frames) {z:.0f} tok/s   "
          f"HF generate (over 1500) {h:.0f} tok/s   zoo speed-up {z / h:.2f}x")
    print(f"    zoo with prepack=False {rate['zoo unpacked']:.0f} tok/s ({rate['zoo unpacked'] / h:.2f}x HF); "
          f"zoo over the same 1500 padded frames {rate['zoo 30 s']:.0f} tok/s ({rate['zoo 30 s'] / h:.2f}x HF)")
    return rate


# ----------------------------------------------------------------------------------------------------------
# batched transcription


def bench_batch(args, zoo_model, hf_model, options):
    n = args.new_tokens
    clips = [clip_features(seconds, seed=10 + i) for i, seconds in enumerate(BATCH_SECONDS)]
    mels = [mel for mel, _ in clips]
    windows = torch.stack([window for _, window in clips])  # (8, 80, 3000)
    options = replace(options, sample_len=n)
    B = len(BATCH_SECONDS)
    print(f"\n== transcription of {B} clips of {', '.join(f'{s:g}' for s in BATCH_SECONDS)} s together: encoder + "
          f"{n} greedy tokens each, clips/s (best of {args.rounds} interleaved rounds)")

    def zoo_fn(inputs):
        def run():
            results = decode(zoo_model, inputs, options)
            assert len(results) == B and all(len(r.tokens) == n for r in results)

        return run

    t = interleaved({"zoo": zoo_fn(mels), "zoo 30 s": zoo_fn(list(windows)),
                     "hf": hf_generate_fn(hf_model, n, input_features=windows)}, args.rounds, warmup=True)
    rate = {name: B / seconds for name, seconds in t.items()}
    z, h = rate["zoo"], rate["hf"]
    print(f"zoo decode (padded to the longest clip, {max(mel.shape[1] for mel in mels)} "
          f"frames, masked) {z:.2f} clips/s   HF generate (3000 frames each) {h:.2f} clips/s   "
          f"zoo speed-up {z / h:.2f}x")
    print(f"    zoo on the same 30 s windows {rate['zoo 30 s']:.2f} clips/s ({rate['zoo 30 s'] / h:.2f}x HF)")
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("encoder", "decode", "batch"), help="run one section")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (the best counts)")
    parser.add_argument("--new-tokens", type=int, default=100, help="tokens generated per clip, on both sides")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one timing round (after the warm-up)")
    parser.add_argument("--json", metavar="PATH", help="write the cases to PATH")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    if not 1 <= args.new_tokens <= 448 - 4:
        parser.error("--new-tokens must be in [1, 444]: the 4-token prompt and the tokens fit Whisper's 448")

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # generate's notes on max_length / min_length defaults
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, cpu, {torch.get_num_threads()} "
          f"threads, fp32, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    zoo_model, hf_model, options = build_pair()
    describe(zoo_model, hf_model)
    cases = []
    if args.only in (None, "encoder"):
        t = bench_encoder(args, zoo_model, hf_model)
        cases += [{"case": f"Whisper tiny encoder, one {CLIP_SECONDS:g} s clip (zoo: its frames; HF: padded to 30 s)",
                   "zoo": t["zoo"] * 1e3, "peer": t["hf"] * 1e3, "unit": "ms", "ratio": t["hf"] / t["zoo"],
                   "target": 2.0},
                  {"case": "Whisper tiny encoder, both on the padded 30 s window", "zoo": t["zoo 30 s"] * 1e3,
                   "peer": t["hf"] * 1e3, "unit": "ms", "ratio": t["hf"] / t["zoo 30 s"]}]
    if args.only in (None, "decode"):
        rate = bench_decode(args, zoo_model, hf_model, options)
        cases += [{"case": f"Whisper tiny greedy decoding, {args.new_tokens} tokens, one clip", "zoo": rate["zoo"],
                   "peer": rate["hf"], "unit": "tokens/s", "ratio": rate["zoo"] / rate["hf"], "target": 2.0},
                  {"case": "Whisper tiny greedy decoding over the same 1500 encoder frames", "zoo": rate["zoo 30 s"],
                   "peer": rate["hf"], "unit": "tokens/s", "ratio": rate["zoo 30 s"] / rate["hf"]}]
    if args.only in (None, "batch"):
        rate = bench_batch(args, zoo_model, hf_model, options)
        cases += [{"case": f"Whisper tiny, {len(BATCH_SECONDS)} clips of 3-8 s transcribed together",
                   "zoo": rate["zoo"], "peer": rate["hf"], "unit": "clips/s", "ratio": rate["zoo"] / rate["hf"]},
                  {"case": f"Whisper tiny, {len(BATCH_SECONDS)} clips on the same 30 s windows",
                   "zoo": rate["zoo 30 s"], "peer": rate["hf"], "unit": "clips/s",
                   "ratio": rate["zoo 30 s"] / rate["hf"]}]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(cases, f, indent=2)


if __name__ == "__main__":
    main()
