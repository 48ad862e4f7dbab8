"""Hugging Face checkpoints of the speech and VAE families (zoo/speech/hf.py, zoo/diffusion/hf.py): a tiny
WhisperForConditionalGeneration and AutoencoderKL with random weights, saved with save_pretrained into a temporary
folder (nothing downloads), loaded by zoo.load and compared with transformers / diffusers running the same folder."""

import json
import shutil

import numpy as np
import pytest
import torch

import zoo
from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.interop import export_hf
from zoo.speech.audio import N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from zoo.speech.decoding import DecodingOptions, DecodingTask, decode, suppressed_ids
from zoo.speech.hf import read_tokenizer
from zoo.speech.tokenizer import N_TIMESTAMPS, TASK_SPECIALS, timestamp_text
from zoo.speech.whisper import Whisper, WhisperConfig, decoder_backbone, encoder_backbone

transformers = pytest.importorskip("transformers")

LANGUAGES = ("en", "zh", "de", "es")  # Whisper's first four, in its order
AUDIO_POSITIONS = 100  # encoder frames: 200 mel frames, a 2 s window (Whisper's is 1500: 30 s)
TEXT = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
        "speech recognition turns sound into words", "hello world, this is a test of the tokenizer"]


def randomize(module: torch.nn.Module, std: float, skip: tuple[str, ...] = ()):
    """Random weights everywhere (biases and norm gains too, which the libraries initialise to 0 and 1), so that
    every tensor of the conversion shows in the outputs."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not name.endswith(skip):
                mean = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(mean + std * torch.randn(p.shape, generator=generator))


# ----------------------------------------------------------------------------------------------------------
# A Whisper folder: a small byte-level BPE with Whisper's special tokens, a tiny random model


def whisper_tokenizer(directory):
    """transformers' WhisperTokenizer over a small BPE trained here, with Whisper's specials after it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXT * 10, trainers.BpeTrainer(vocab_size=320, show_progress=False,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    directory.mkdir()
    bpe.model.save(str(directory))  # vocab.json + merges.txt
    tokenizer = transformers.WhisperTokenizer(vocab=str(directory / "vocab.json"),
                                              merges=str(directory / "merges.txt"))  # adds <|endoftext|>
    specials = ["<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES), *TASK_SPECIALS.values()]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([AddedToken(timestamp_text(k * 0.02), normalized=False) for k in range(N_TIMESTAMPS)])
    return tokenizer


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    """(folder, transformers model, transformers tokenizer): what WhisperForConditionalGeneration and
    WhisperProcessor.save_pretrained write, the generation config filled in as the real checkpoints have it."""
    root = tmp_path_factory.mktemp("hf_whisper")
    tokenizer = whisper_tokenizer(root / "bpe")
    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=96,
        max_source_positions=AUDIO_POSITIONS, max_target_positions=64, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot, begin_suppress_tokens=None)
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    randomize(model, 0.1, skip=("encoder.embed_positions.weight",))  # the sinusoids stay
    generation = model.generation_config
    generation.lang_to_id = {f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES}
    generation.task_to_id = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    generation.no_timestamps_token_id = ids("<|notimestamps|>")
    generation.is_multilingual = True
    folder = root / "whisper"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=2 * AUDIO_POSITIONS // 100).save_pretrained(
        folder)
    return folder, model, tokenizer


def mel_input(frames: int = 2 * AUDIO_POSITIONS, seed: int = 0) -> torch.Tensor:
    """A log-mel window of the scale zoo's front end gives (about [-1.5, 1.5])."""
    return torch.randn(1, 80, frames, generator=torch.Generator().manual_seed(seed)) * 0.5


def test_whisper_encoder_and_logits_match_transformers(whisper_folder):
    """The same folder in zoo and in transformers: the tokenizer's ids, the encoder's output and the decoder's
    logits (measured: equal to the last bit, 0.0, with logits up to 3)."""
    folder, hf, hf_tokenizer = whisper_folder
    model = zoo.load(folder)
    assert isinstance(model, Whisper) and model.config.learned_positions and model.config.pad_to_window
    for text, token in model.tokenizer.special_tokens.items():
        assert hf_tokenizer.convert_tokens_to_ids(text) == token, text
    for text in TEXT:
        assert model.tokenizer.encode(" " + text) == hf_tokenizer.encode(" " + text, add_special_tokens=False)
    mel = mel_input()
    tokens = torch.tensor([[*model.tokenizer.sot_sequence("en"), *model.tokenizer.encode(" the lazy dog")] * 3])
    with torch.no_grad():
        features, _ = model.embed_audio(mel)
        logits = model.logits(tokens, features)
        hf_features = hf.model.encoder(mel).last_hidden_state
        hf_logits = hf(input_features=mel, decoder_input_ids=tokens).logits
    encoder_gap, logits_gap = (features - hf_features).abs().max().item(), (logits - hf_logits).abs().max().item()
    print(f"encoder max |diff| {encoder_gap:.2e}, logits max |diff| {logits_gap:.2e} (logits up to "
          f"{hf_logits.abs().max():.1f})")
    assert encoder_gap < 1e-4 and logits_gap < 1e-4


def test_whisper_greedy_decoding_gives_transformers_generate_tokens(whisper_folder):
    """zoo's decoding (zoo/speech/decoding.py) and transformers' generate, greedy from the same prompt
    (<|startoftranscript|><|en|><|transcribe|><|notimestamps|>) with the same suppression: zoo's suppressed ids
    as generate's suppress_tokens, zoo's SuppressBlank as its begin_suppress_tokens."""
    folder, hf, _ = whisper_folder
    model = zoo.load(folder)
    tokenizer = model.tokenizer
    steps = 32
    options = DecodingOptions(language="en", without_timestamps=True, sample_len=steps)
    for seed in range(2):
        mel = mel_input(seed=seed)
        ours = decode(model, mel[0], options).tokens
        with torch.no_grad():
            theirs = hf.generate(mel, language="en", task="transcribe", return_timestamps=False, do_sample=False,
                                 num_beams=1, max_new_tokens=steps,
                                 suppress_tokens=suppressed_ids(tokenizer, model.vocab_size, options),
                                 begin_suppress_tokens=list(tokenizer.blank_tokens))
        assert len(ours) == steps  # no <|endoftext|>: every step compared
        assert ours == theirs[0].tolist()


def test_learned_positions_count_each_rows_own_tokens(whisper_folder):
    """In a batch whose prompts differ in length (one with a previous text, left-padded), each row decodes as it
    does alone: the learned positions count a row's real tokens, as RoPE positions do."""
    model = zoo.load(whisper_folder[0])
    task = DecodingTask(model, DecodingOptions(language="en", without_timestamps=True, sample_len=12))
    with torch.no_grad():
        features, mask = model.embed_audio(torch.cat([mel_input(seed=4), mel_input(seed=5)]))
    prompts = ["the lazy dog jumps", None]
    together = task.run(features, mask, prompts=prompts)
    for i, prompt in enumerate(prompts):
        alone = task.run(features[i:i + 1], None, prompts=[prompt])[0]
        assert together[i].tokens == alone.tokens
        assert together[i].sum_logprob == pytest.approx(alone.sum_logprob, abs=1e-4)


@pytest.mark.parametrize("n_mels, tolerance", [(80, 2e-5), (128, 5e-5)])
def test_log_mel_matches_whisper_feature_extractor(n_mels, tolerance):
    """zoo.speech.audio's log-mel of a 1.5 s clip padded to 30 s against transformers' WhisperFeatureExtractor
    (measured: 5.5e-6 at 80 mels, 1.8e-5 at 128). A Whisper with pad_to_window pads the clip's own features with
    the log-mel of silence instead: the same values but at the frames next to the clip's end, which the STFT
    computes with reflect padding here and with the zeros that follow in transformers (measured: 0.07 at the last
    frame of the clip)."""
    t = torch.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    noise = torch.randn(len(t), generator=torch.Generator().manual_seed(0))
    audio = 0.3 * torch.sin(2 * np.pi * (200 + 400 * t) * t) * (1 + torch.sin(2 * np.pi * 3 * t)) + 0.05 * noise
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    reference = torch.from_numpy(extractor(audio.numpy(), sampling_rate=SAMPLE_RATE,
                                           return_tensors="np").input_features[0])
    assert (log_mel_spectrogram(pad_or_trim(audio, N_SAMPLES), n_mels=n_mels) - reference).abs().max() < tolerance

    clip = log_mel_spectrogram(audio, n_mels=n_mels)  # 150 frames
    model = Whisper(WhisperConfig(n_mels=n_mels, pad_to_window=True, encoder=encoder_backbone(dim=8, n_heads=1),
                                  decoder=decoder_backbone(dim=8, n_heads=1)))
    window, mask = model._pad_to_window(clip[None], None)
    assert window.shape == reference[None].shape and mask is None
    away_from_end = torch.cat([torch.arange(clip.shape[1] - 1), torch.arange(clip.shape[1] + 2, N_FRAMES)])
    assert (window[0, :, away_from_end] - reference[:, away_from_end]).abs().max() < tolerance


def test_whisper_export_is_a_folder_transformers_loads(whisper_folder, tmp_path):
    """import -> export -> transformers' model, tokenizer and feature extractor load it; the logits are zoo's, and
    zoo reads the export (and its own save of the imported model) back to the same model."""
    folder, _, _ = whisper_folder
    model = zoo.load(folder)
    out = export_hf(model, tmp_path / "export")
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(out).eval()
    processor = transformers.WhisperProcessor.from_pretrained(out)
    tokenizer = model.tokenizer
    mel = mel_input(seed=3)
    tokens = torch.tensor([[*tokenizer.sot_sequence("de"), *tokenizer.encode(" hello world")]])
    with torch.no_grad():
        logits = model(mel, tokens)
        torch.testing.assert_close(hf(input_features=mel, decoder_input_ids=tokens).logits, logits, rtol=0,
                                   atol=1e-4)
        torch.testing.assert_close(zoo.load(out)(mel, tokens), logits, rtol=0, atol=0)
        torch.testing.assert_close(zoo.load(model.save_pretrained(tmp_path / "zoo"))(mel, tokens), logits, rtol=0,
                                   atol=0)  # and zoo's own format keeps the imported model's options
    hf_ids = processor.tokenizer.convert_tokens_to_ids
    for text, token in [*tokenizer.special_tokens.items(), ("<|0.00|>", tokenizer.timestamp_begin),
                        ("<|30.00|>", tokenizer.vocab_size - 1)]:
        assert hf_ids(text) == token, text
    assert processor.tokenizer.encode(" sea shells", add_special_tokens=False) == tokenizer.encode(" sea shells")
    assert processor.feature_extractor.nb_max_frames == 2 * AUDIO_POSITIONS
    (out / "tokenizer.json").unlink()  # what transformers' slow tokenizer reads: vocab.json, merges.txt, added tokens
    slow = read_tokenizer(out)
    assert slow.special_tokens == tokenizer.special_tokens
    assert slow.encode(" sea shells") == tokenizer.encode(" sea shells")


def test_whisper_export_names_what_whisper_cannot_express(tmp_path):
    recipe = zoo.load("whisper-cpu")  # RoPE, RMSNorm, GeGLU, a CTC head, translations read after the transcript
    with pytest.raises(InputError, match="the decoder uses RoPE; Whisper's format has learned absolute positions"):
        export_hf(recipe, tmp_path / "out")
    with pytest.raises(InputError, match="MLP is geglu.*CTC head|CTC head.*MLP is geglu"):
        export_hf(recipe, tmp_path / "out")
    with pytest.raises(InputError, match=r"translates from its transcript \(translate_from_transcript\)"):
        export_hf(recipe, tmp_path / "out")


def test_imported_whisper_transcribes_through_zoo(whisper_folder):
    """model.transcribe runs zoo's long-form loop on the imported model: windows padded to the encoder's length,
    timestamps on (real Whisper learnt them), language detection over the folder's languages."""
    folder, _, _ = whisper_folder
    model = zoo.load(folder)
    audio = 0.1 * torch.randn(int(1.5 * SAMPLE_RATE), generator=torch.Generator().manual_seed(0))
    result = model.transcribe(audio, temperature=0.0, beam_size=None, sample_len=8, no_speech_threshold=None,
                              logprob_threshold=None, compression_ratio_threshold=None)
    assert result["language"] in LANGUAGES and isinstance(result["text"], str)


# ----------------------------------------------------------------------------------------------------------
# What zoo refuses, and how it says so


@pytest.fixture
def copy_of(whisper_folder, tmp_path):
    """copy_of(edit) -> a fresh copy of the Whisper folder, edit(config) applied to its config.json."""
    def copy(edit=None):
        folder = shutil.copytree(whisper_folder[0], tmp_path / f"copy{len(list(tmp_path.iterdir()))}")
        if edit is not None:
            config = json.loads((folder / "config.json").read_text())
            edit(config)
            (folder / "config.json").write_text(json.dumps(config))
        return folder
    return copy


def test_an_unsupported_architecture_names_the_supported_ones(copy_of):
    folder = copy_of(lambda config: config.update(model_type="bert"))
    with pytest.raises(InputError, match="'bert'.*supported: .*AutoencoderKL.*whisper"):
        zoo.load(folder)
    folder = copy_of(lambda config: config.update(architectures=["WhisperForAudioClassification"]))
    with pytest.raises(InputError, match="WhisperForAudioClassification.*WhisperForConditionalGeneration"):
        zoo.load(folder)


def test_a_shape_mismatch_names_the_tensor_and_both_shapes(copy_of):
    folder = copy_of(lambda config: config.update(decoder_ffn_dim=80))
    with pytest.raises(CorruptFileError, match=r"model\.decoder\.layers\.0\.fc1\.weight has shape \(96, 64\); "
                                               r"config\.json needs \(80, 64\)"):
        zoo.load(folder)


def test_a_missing_file_is_named(copy_of):
    folder = copy_of()
    (folder / "model.safetensors").unlink()
    with pytest.raises(MissingFileError, match="model.safetensors"):
        zoo.load(folder)
    folder = shutil.copytree(folder, folder.with_name("slow"))
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.json").write_text("{}")
    with pytest.raises(MissingFileError, match="merges.txt is missing"):
        zoo.load(folder)


def test_a_tokenizer_off_whisper_layout_is_refused(copy_of):
    folder = copy_of()
    generation = json.loads((folder / "generation_config.json").read_text())
    generation["no_timestamps_token_id"] += 1
    (folder / "generation_config.json").write_text(json.dumps(generation))
    with pytest.raises(CorruptFileError, match="no_timestamps_token_id"):
        zoo.load(folder)


# ----------------------------------------------------------------------------------------------------------
# diffusers' AutoencoderKL


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    reference = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                              up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                              layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16,
                              scaling_factor=0.5).eval()
    randomize(reference, 0.2)
    folder = tmp_path_factory.mktemp("hf_vae") / "vae"
    reference.save_pretrained(folder)
    return folder, reference


def test_autoencoder_kl_encodes_and_decodes_as_diffusers(vae_folder):
    folder, reference = vae_folder
    vae = zoo.load(folder)
    assert vae.config.block_out_channels == (8, 16) and vae.config.scaling_factor == 0.5
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(images).mean
        expected = reference.encode(images).latent_dist.mean
        decoded, expected_decoded = vae.decode(mean * 0.5), reference.decode(mean).sample
    encode_gap, decode_gap = (mean - expected).abs().max().item(), (decoded - expected_decoded).abs().max().item()
    print(f"VAE encode max |diff| {encode_gap:.2e}, decode max |diff| {decode_gap:.2e}")
    assert encode_gap < 1e-4 and decode_gap < 1e-4


def test_autoencoder_kl_settings_zoo_cannot_build_are_named(vae_folder, tmp_path):
    folder = shutil.copytree(vae_folder[0], tmp_path / "vae")
    config = json.loads((folder / "config.json").read_text())
    config.update(shift_factor=0.1159, use_quant_conv=False)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="shift_factor=0.1159.*use_quant_conv=False"):
        zoo.load(folder)


def test_autoencoder_kl_of_older_diffusers_attention_names_loads(vae_folder, tmp_path):
    """Stable Diffusion 1.x's VAE files predate diffusers 0.14 and name the mid blocks' attention projections
    query / key / value / proj_attn; zoo renames them as diffusers does."""
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(vae_folder[0], tmp_path / "vae")
    weights = folder / "diffusion_pytorch_model.safetensors"
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    tensors = {}
    for name, tensor in load_file(weights).items():
        for new, previous in old.items():
            name = name.replace(f"attentions.0.{new}.", f"attentions.0.{previous}.")
        tensors[name] = tensor
    assert any(".query." in name for name in tensors)
    save_file(tensors, weights)
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(zoo.load(folder).encode(images).mean,
                                   vae_folder[1].encode(images).latent_dist.mean, rtol=0, atol=0)
