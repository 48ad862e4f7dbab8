"""The Whisper-style model on the backbone: clip-length encoding with padding masks, cached decoding against
teacher forcing, the multitask targets, the joint CTC loss."""

import math
from pathlib import Path

import pytest
import torch

import zoo
from zoo.speech import recipe
from zoo.speech.audio import MEL_PAD
from zoo.speech.decoding import pad_mels
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.speech.whisper import Whisper, WhisperConfig, decoder_backbone, encoder_backbone


def tiny(ctc_weight: float = 0.0, vocab_size: int = 64, **fields) -> Whisper:
    torch.manual_seed(0)
    small = dict(dim=32, n_layers=2, n_heads=4)
    return Whisper(WhisperConfig(vocab_size=vocab_size, ctc_weight=ctc_weight, encoder=encoder_backbone(**small),
                                 decoder=decoder_backbone(**small), **fields)).eval()


def test_a_clip_keeps_its_length_and_padding_changes_nothing():
    model = tiny()
    short, long = torch.randn(1, 80, 300), torch.randn(1, 80, 411)  # 3 s and 4.11 s of 10 ms frames
    alone, mask = model.embed_audio(short)
    assert alone.shape == (1, 150, 32) and mask is None  # 20 ms encoder frames, no padding to 30 s
    batch = torch.full((2, 80, 411), MEL_PAD)
    batch[0, :, :300], batch[1] = short[0], long[0]
    mel_mask = torch.zeros(2, 411, dtype=torch.bool)
    mel_mask[0, :300], mel_mask[1] = True, True
    features, audio_mask = model.embed_audio(batch, mel_mask)
    assert audio_mask.sum(1).tolist() == [150, 206]
    # padding is the convolution's own zero padding and is masked out of attention: the clip alone, to rounding
    torch.testing.assert_close(features[0, :150], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features[1], model.embed_audio(long)[0][0], atol=1e-5, rtol=1e-5)


def test_decoding_pads_a_batch_of_clips_as_training_does():
    """zoo.speech.decoding batches clips of different lengths with the same padding as the training collate, so a
    clip's audio features in a decoded batch equal the clip alone (and its training features)."""
    model = tiny()
    clips = [torch.randn(80, 300), torch.randn(80, 411)]
    batch, mask, _ = pad_mels(clips)
    collated = recipe.collate([{"mel": c.T, "tokens": torch.tensor([1]), "labels": torch.tensor([1]),
                                "ctc_targets": torch.tensor([1]), "ctc_length": torch.tensor(1)} for c in clips])
    torch.testing.assert_close(batch, collated["mel"].transpose(1, 2), rtol=0, atol=0)
    with torch.no_grad():
        features, _ = model.embed_audio(batch, mask)
        torch.testing.assert_close(features[0, :150], model.embed_audio(clips[0][None])[0][0], atol=1e-5, rtol=1e-5)


def test_cached_decoding_equals_teacher_forcing_over_padded_audio():
    model = tiny()
    mel, mel_mask = torch.randn(2, 80, 200), torch.ones(2, 200, dtype=torch.bool)
    mel_mask[1, 120:] = False
    tokens = torch.randint(0, 64, (2, 6))
    with torch.no_grad():
        audio, audio_mask = model.embed_audio(mel, mel_mask)
        full = model.logits(tokens, audio, audio_mask)
        cache = model.make_cache(2, 8)
        steps = [model.prefill(tokens[:, :3], None, cache, audio_features=audio, audio_mask=audio_mask)]
        steps += [model.step(tokens[:, t:t + 1], cache) for t in range(3, 6)]
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 2:], atol=1e-5, rtol=1e-5)


def test_bad_input_names_the_model_and_shapes():
    model = tiny()
    with pytest.raises(ValueError, match=r"Whisper expects log-mel frames of shape \(B, 80, T\)"):
        model.embed_audio(torch.randn(80, 100))
    with pytest.raises(ValueError, match="at most 3000 mel frames"):
        model.embed_audio(torch.randn(1, 80, 3002))


@pytest.fixture(scope="module")
def tokenizer():
    return WhisperTokenizer.train(["the cat sat", "el gato", "le chat", "die katze", "猫坐着"], 1900,
                                  ["en", "es", "fr", "de", "zh"])


def test_multitask_targets(tokenizer):
    row = {"no_speech": False, "language": "es", "text": "el gato", "translation": "the cat"}
    inputs, labels = recipe.target_tokens(tokenizer, row, "translate")
    assert inputs[:4] == tokenizer.sot_sequence("es", "translate")
    assert labels[0] == tokenizer.language_token("es")  # language identification is learned
    assert labels[1:3] == [recipe.IGNORE] * 2  # the task and <|notimestamps|> are given, never predicted
    assert tokenizer.decode(labels[3:-1]) == "the cat" and labels[-1] == tokenizer.eot
    assert len(inputs) == len(labels)
    silence = {"no_speech": True, "language": None, "text": "", "translation": ""}
    prompt = tokenizer.sot_sequence("es", "transcribe", timestamps=False)
    # the no-speech detector; then no preference for the first token, and the end right after it
    assert recipe.target_tokens(tokenizer, silence, "transcribe", "es", filler=7) == (
        [*prompt, 7], [tokenizer.no_speech, recipe.IGNORE, recipe.IGNORE, recipe.UNIFORM, tokenizer.eot])
    assert {recipe.choose_filler(i, tokenizer) for i in range(100)} <= set(range(tokenizer.eot))
    languages = [recipe.choose_prompt_language(i, ("en", "es")) for i in range(200)]
    assert 80 < languages.count("es") < 120


def test_a_translation_from_the_transcript_reads_it_as_previous_text(tokenizer, monkeypatch):
    row = {"no_speech": False, "language": "es", "text": "el gato", "translation": "the cat"}
    plain_inputs, plain_labels = recipe.target_tokens(tokenizer, row, "translate")
    inputs, labels = recipe.target_tokens(tokenizer, row, "translate", from_transcript=True)
    transcript = tokenizer.encode("el gato")
    assert inputs == [tokenizer.sot_prev, *transcript, *plain_inputs]  # context, never predicted
    assert labels == [recipe.IGNORE] * (1 + len(transcript)) + plain_labels
    assert recipe.target_tokens(tokenizer, row, "transcribe", from_transcript=True) == recipe.target_tokens(
        tokenizer, row, "transcribe")
    # the evaluation translates each clip after transcribing it, prompted with what it heard
    model = tiny(vocab_size=tokenizer.vocab_size, translate_from_transcript=True)
    model.tokenizer = tokenizer
    rows = [{**row, "duration": 0.3}, {"no_speech": False, "language": "en", "text": "the cat", "translation": "",
                                       "duration": 0.2}]
    clips = recipe.MelClips(torch.randn(50, 80), torch.tensor([0, 30, 50]), rows)
    calls, decode_clips = [], recipe.decode_clips
    monkeypatch.setattr(recipe, "decode_clips", lambda *args, **kw: calls.append((args[3], kw)) or decode_clips(
        *args, **kw))
    recipe.score_split(model, clips, [0, 1], recipe.SpeechDataConfig(eval_beam_size=None), translate=True)
    heard = decode_clips(model, clips, [0], "transcribe", None)[0]
    assert [task for task, _ in calls] == ["transcribe", "translate"]
    assert calls[1][1]["prompts"] == [heard.tokens]  # the Spanish clip only: English is not translated
    model.config.translate_from_transcript = False
    calls.clear()
    recipe.score_split(model, clips, [0, 1], recipe.SpeechDataConfig(eval_beam_size=None), translate=True)
    assert calls[1][1]["prompts"] is None


def test_task_choice_is_a_function_of_the_index():
    english, spanish = {"no_speech": False, "language": "en"}, {"no_speech": False, "language": "es"}
    assert {recipe.choose_task(english, i, 0.5) for i in range(100)} == {"transcribe"}
    tasks = [recipe.choose_task(spanish, i, 0.5) for i in range(1000)]
    assert tasks == [recipe.choose_task(spanish, i, 0.5) for i in range(1000)]
    assert 0.45 < tasks.count("translate") / 1000 < 0.55


def test_both_tasks_makes_each_non_english_clip_two_items(tokenizer):
    rows = [{"no_speech": False, "language": "es", "text": "el gato", "translation": "the cat"},
            {"no_speech": False, "language": "en", "text": "the dog", "translation": ""},
            {"no_speech": True, "language": None, "text": "", "translation": ""},
            {"no_speech": False, "language": "es", "text": "el perro", "translation": "the dog"}]
    clips = recipe.MelClips(torch.randn(40, 80), torch.tensor([0, 10, 16, 30, 40]), rows)
    drawn = recipe.SpeechItems(clips, tokenizer, 0.5, Path("."))
    both = recipe.SpeechItems(clips, tokenizer, 0.5, Path("."), both_tasks=True)
    assert len(drawn) == 4 and [i for i, _ in drawn.tasks] == [0, 1, 2, 3]
    assert both.tasks == [(0, "transcribe"), (0, "translate"), (1, "transcribe"), (2, "transcribe"),
                          (3, "transcribe"), (3, "translate")]
    assert both.lengths() == [10, 10, 6, 14, 10, 10]  # each item's frames, for the length-grouped batches
    heard = [tokenizer.decode([t for t in both[k]["labels"].tolist() if 0 <= t < tokenizer.eot]) for k in (0, 1, 5)]
    assert heard == ["el gato", "the cat", "the dog"]
    torch.testing.assert_close(both[1]["mel"], clips.frames(0))
    torch.testing.assert_close(both[1]["ctc_targets"], both[0]["ctc_targets"])  # CTC hears the transcript
    with pytest.raises(ValueError, match=r"data.both_tasks=true .* data.translate_share=0 .* allowed"):
        recipe.SpeechDataConfig(both_tasks=True, translate_share=0.0)


def test_joint_ctc_loss_is_finite_with_empty_targets_and_trains_the_encoder():
    model = tiny(ctc_weight=0.3).train()
    batch, _ = recipe.example_batch(model, torch.Generator().manual_seed(0))
    batch["ctc_length"][2] = 0  # a no-speech clip: an empty transcript, all blanks
    loss, metrics = recipe.loss(model, batch)
    assert torch.isfinite(loss) and set(metrics) == {"ce", "ctc"}
    assert loss.item() == pytest.approx(0.7 * metrics["ce"].item() + 0.3 * metrics["ctc"].item(), rel=1e-5)
    loss.backward()
    assert model.ctc_head.weight.grad.abs().sum() > 0 and model.conv1.weight.grad.abs().sum() > 0


def test_token_loss_scores_uniform_positions_against_the_uniform_distribution():
    logits = torch.randn(1, 3, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[2, recipe.UNIFORM, recipe.IGNORE]])
    total, count = recipe.token_loss(logits, labels)
    logprobs = logits.log_softmax(-1)
    assert int(count) == 2
    assert total.item() == pytest.approx((-logprobs[0, 0, 2] - logprobs[0, 1].mean()).item(), rel=1e-6)
    # its minimum is the uniform distribution itself: log V
    assert recipe.token_loss(torch.zeros(1, 1, 5), torch.tensor([[recipe.UNIFORM]]))[0].item() == pytest.approx(
        math.log(5))


@pytest.mark.parametrize("ctc_weight, phoneme_ctc_weight", [(0.0, 0.0), (0.3, 0.0), (0.3, 0.2)])
def test_the_loss_runs_through_ddps_forward(ctc_weight, phoneme_ctc_weight):
    """The trainer hands the loss the DDP wrapper: the loss must compute through its forward (DDP's gradient
    sync is armed there) and read the config from the wrapped model; gradients equal the bare model's (the
    phoneme head's too: its encoder block's output is caught inside that one forward)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model = tiny(ctc_weight=ctc_weight, phoneme_ctc_weight=phoneme_ctc_weight).train()
    batch, _ = recipe.example_batch(model, torch.Generator().manual_seed(0))
    recipe.loss(model, batch)[0].backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(model)
        recipe.loss(wrapped, batch)[0].backward()
    finally:
        dist.destroy_process_group()
    for name, p in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(p.grad, expected[name], msg=name)


def test_named_sizes_have_whispers_dimensions():
    tiny_config = zoo.load("whisper-tiny").config
    assert (tiny_config.encoder.dim, tiny_config.encoder.n_layers, tiny_config.encoder.n_heads) == (384, 4, 6)
    assert tiny_config.encoder.mlp_hidden == 1536 and tiny_config.vocab_size == 51865
    base = zoo.load("whisper-base").config
    assert (base.decoder.dim, base.decoder.n_layers, base.decoder.n_heads) == (512, 6, 8)


@pytest.mark.slow
def test_the_family_trains_evaluates_and_transcribes_end_to_end(tmp_path, capsys, zoo_home):
    """A few steps of `zoo train whisper-cpu` on a tiny synthesised corpus, then `zoo eval` and `zoo transcribe`
    through the CLI: every stage runs and reports what it should (quality is the recipe's job, not this test's)."""
    import json

    from zoo.cli import main
    from zoo.speech.data import SpeechCorpusConfig, build_corpus

    tiny_recipe = ["--set", "data.corpus.train_clips=12", "--set", "data.corpus.val_clips=6", "--set",
                   "data.corpus.test_clips=8", "--set", "data.corpus.test_unseen_clips=4", "--set",
                   "data.quick_eval_clips=4", "--set", "model.encoder.n_layers=1",
                   "--set", "model.decoder.n_layers=1",
                   "--set", "model.encoder.dim=32", "--set", "model.decoder.dim=32", "--set", "model.encoder.n_heads=2",
                   "--set", "model.decoder.n_heads=2", "--set", "train.batch_size=4",
                   "--set", "train.eval_every=2", "--set", "train.log_every=1", "--set", "train.tensorboard=false"]
    out = tmp_path / "run"
    assert main(["train", "whisper-cpu", "--out", str(out), "--steps", "3", *tiny_recipe]) == 0
    metrics = json.loads(capsys.readouterr().out.splitlines()[-1])
    languages = ("en", "es", "fr", "de")
    assert {f"wer_{lang}" for lang in languages} | {"cer_zh", "bleu", "chrf", "language_accuracy",
                                                    "no_speech_accuracy", "real_time_factor"} <= set(metrics)
    assert {f"wer_{lang}_unseen" for lang in languages} <= set(metrics)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"ce", "ctc"} <= set(log[0]) and any("val_language_accuracy" in r for r in log)
    assert (out / "language_confusion.png").stat().st_size > 1000

    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]).keys() == metrics.keys()
    corpus = build_corpus(SpeechCorpusConfig(train_clips=12, val_clips=6, test_clips=8, test_unseen_clips=4),
                          zoo_home / "cache" / "speech")  # the corpus training built, from the cache
    wav = next((corpus / "test").glob("*.wav"))
    assert main(["transcribe", str(out), str(wav), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["file"] == str(wav) and result["language"] in ("en", "es", "fr", "de", "zh")
    assert isinstance(result["text"], str) and isinstance(result["segments"], list)
