"""The auxiliary phoneme CTC head (hierarchical multitask CTC): eSpeak's phonemes of a transcript, its classes, the
head on an intermediate encoder block, its loss term, its config checks, and models without it."""

import copy

import numpy as np
import pytest
import torch

import zoo
from tests.test_speech_model import tiny
from zoo.speech import recipe
from zoo.speech.data import VoiceParams, engine, phonemize, synthesize
from zoo.speech.whisper import Whisper, WhisperConfig, encoder_backbone


def test_phonemize_gives_espeaks_phoneme_names_and_leaves_synthesis_as_it_was():
    voice = VoiceParams(variant="f2", rate=160)  # a breathy variant: its noise comes from the rand() state
    before = synthesize("The cat sat on the mat.", "en", voice)
    # eSpeak's ASCII phoneme names, clauses joined by a space; stress marks kept (phoneme_targets drops them)
    assert phonemize(["The man does not forget the shoe this week.", "Hello, world. How are you?", ""], "en") == [
        "D@ m'an dVzn,0t f3g'Et D@ S'u: DIs w'i:k", "h@l'oU w'3:ld h'aU A@ ju:", ""]
    assert phonemize(["Le vieil homme lit le journal."], "fr") == ["l@- vj'Ej 'Om l'i l@- Zurn'al"]
    # each Mandarin syllable's whole tone contour after its vowel, each word ended by the very short pause _|
    assert phonemize(["我不画那些马。", "妈骂", "一个王后九点必须在办公室里修理那些票。"], "zh") == [
        "w'o214_| pu35Xw'A51_| n'A51_| S;'iE55_| m'A214_|", "m'A55_| m'A51_|",
        "ji35k'o-11_| w'A35N_| X'ou51_| tS;'iou214_| t'iE214n_| p'i51_| S;'y55_| ts'ai51_| p'a51n_| k'ong55_| "
        "s.'i.51_| l'i214_| S;iou55l'i214_| n'A51_| S;'iE55_| phj'Au51_|"]
    np.testing.assert_array_equal(synthesize("The cat sat on the mat.", "en", voice), before)
    with pytest.raises(ValueError, match="eSpeak has no voice 'xx'"):
        engine().phonemes(["hello"], "xx")
    with pytest.raises(ValueError, match="unknown language code 'ja'"):
        phonemize(["こんにちは"], "ja")


def test_phoneme_targets_one_class_a_symbol_and_other_for_the_rest():
    alphabet = recipe.PHONEME_ALPHABET
    assert recipe.phoneme_targets(alphabet) == list(range(len(alphabet)))  # every symbol its own class
    assert recipe.PHONEME_CLASSES == len(alphabet) + 2 == recipe.PHONEME_OTHER + 2  # then other, then the blank
    # stress marks, spaces, pauses and eSpeak's voice switches are no sounds; a character outside the alphabet
    # is "other"
    assert recipe.phoneme_targets("m'A55_| (en)kS@Nt'u:(cmn)_|") == [alphabet.index(s) for s in "mA55kS@Ntu:"]
    assert recipe.phoneme_targets("_!_|Er tr'E:kt k'ats@n_! _|Im h'at_:_: and") == [
        alphabet.index(s) for s in "ErtrE:ktkats@nImhatand"]
    assert recipe.phoneme_targets("?aɑ") == [recipe.PHONEME_OTHER, alphabet.index("a"), recipe.PHONEME_OTHER]
    assert recipe.phoneme_targets("") == []


def test_the_four_mandarin_tones_are_four_target_sequences():
    # 妈 麻 马 骂: one syllable in tones 1-4; eSpeak's IPA would read 妈 and 骂 alike ("mˈɑ5")
    readings = phonemize(["妈", "麻", "马", "骂"], "zh")
    targets = [tuple(recipe.phoneme_targets(reading)) for reading in readings]
    assert len(set(targets)) == 4, readings
    assert readings == ["m'A55_|", "m'A35_|", "m'A214_|", "m'A51_|"]
    assert targets[0] == tuple(recipe.PHONEME_ALPHABET.index(s) for s in "mA55")  # the repeated digit twice


def test_the_phoneme_head_reads_the_chosen_encoder_block():
    model = tiny(ctc_weight=0.3, phoneme_ctc_weight=0.2, phoneme_ctc_layer=1)
    mel, mel_mask = torch.randn(2, 80, 60), torch.ones(2, 60, dtype=torch.bool)
    mel_mask[1, 40:] = False
    tokens = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        logits, ctc_logits, phoneme_logits, audio_mask = model(mel, tokens, mel_mask, ctc=True)
        # block 1's output computed without hooks: the same model with its encoder cut after block 1, no final norm
        cut = copy.deepcopy(model)
        cut.encoder.blocks, cut.encoder.norm = cut.encoder.blocks[:1], None
        hidden, _ = cut.embed_audio(mel, mel_mask)
        top, _ = model.embed_audio(mel, mel_mask)
    assert phoneme_logits.shape == (2, 30, recipe.PHONEME_CLASSES) and ctc_logits.shape == (2, 30, recipe.CTC_CLASSES)
    torch.testing.assert_close(phoneme_logits, model.phoneme_head(hidden), rtol=0, atol=0)
    assert not torch.allclose(phoneme_logits, model.phoneme_head(top))  # not the top block's output
    assert audio_mask.sum(1).tolist() == [30, 20] and logits.shape == (2, 5, 64)
    assert not model.encoder.blocks[0]._forward_hooks  # the hook lives for that one forward only


def test_the_loss_adds_the_phoneme_ctc_term_and_trains_the_head():
    model = tiny(ctc_weight=0.3, phoneme_ctc_weight=0.2).train()
    batch, _ = recipe.example_batch(model, torch.Generator().manual_seed(0))
    batch["ctc_length"][2] = batch["phoneme_length"][2] = 0  # a no-speech clip: no bytes, no phonemes
    loss, parts = recipe.loss(model, batch)
    assert set(parts) == {"ce", "ctc", "phoneme_ctc"} and all(torch.isfinite(v) for v in parts.values())
    assert loss.item() == pytest.approx(0.5 * parts["ce"].item() + 0.3 * parts["ctc"].item()
                                        + 0.2 * parts["phoneme_ctc"].item(), rel=1e-5)
    loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in model.phoneme_head.parameters())
    assert model.encoder.blocks[0].attn_norm.weight.grad.abs().sum() > 0
    heavier = tiny(ctc_weight=0.3, phoneme_ctc_weight=0.4).train()  # the same weights, another phoneme weight
    heavier.load_state_dict(model.state_dict())
    other, other_parts = recipe.loss(heavier, batch)
    assert {k: v.item() for k, v in other_parts.items()} == pytest.approx({k: v.item() for k, v in parts.items()})
    assert other.item() == pytest.approx(loss.item() + 0.2 * (parts["phoneme_ctc"] - parts["ce"]).item(), rel=1e-5)
    assert abs(other.item() - loss.item()) > 1e-3
    alone = tiny(phoneme_ctc_weight=0.2)  # a phoneme head without the byte CTC head
    assert set(recipe.loss(alone, recipe.example_batch(alone, torch.Generator().manual_seed(0))[0])[1]) == {
        "ce", "phoneme_ctc"}


@pytest.mark.parametrize("fields, message", [
    ({"phoneme_ctc_weight": 0.2, "phoneme_ctc_layer": 0},
     r"WhisperConfig.phoneme_ctc_layer=0; allowed: an encoder block from 1 to encoder.n_layers=4"),
    ({"phoneme_ctc_weight": 0.2, "phoneme_ctc_layer": 5}, r"phoneme_ctc_layer=5; allowed: .* from 1 to .*=4"),
    ({"ctc_weight": 0.5, "phoneme_ctc_weight": 0.5},
     r"WhisperConfig.ctc_weight \+ phoneme_ctc_weight must be below 1 .* got 0.5 \+ 0.5"),
    ({"phoneme_ctc_weight": -0.1}, r"WhisperConfig.phoneme_ctc_weight must be in \[0, 1\), got -0.1"),
])
def test_bad_phoneme_settings_name_the_field_and_the_range(fields, message):
    with pytest.raises(ValueError, match=message):
        WhisperConfig(**fields)
    # a 1-block encoder without a phoneme head keeps the default layer 2: it is checked only with the head
    assert WhisperConfig(encoder=encoder_backbone(n_layers=1)).phoneme_ctc_layer == 2


def test_models_without_the_head_load_as_before_and_with_it_round_trip(tmp_path):
    shipped = zoo.load("whisper-cpu", pretrained=True)
    assert shipped.phoneme_head is None and shipped.config.phoneme_ctc_weight == 0
    assert not any(name.startswith("phoneme_head") for name in shipped.state_dict())
    model = tiny(ctc_weight=0.3, phoneme_ctc_weight=0.2, phoneme_ctc_layer=1)
    model.save_pretrained(tmp_path)
    loaded = zoo.load(tmp_path)
    assert isinstance(loaded, Whisper) and loaded.config.phoneme_ctc_layer == 1
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_phoneme_readings_are_cached_in_row_order_and_a_damaged_cache_is_rebuilt(tmp_path):
    rows = [{"language": "zh", "text": "我不画那些马。", "no_speech": False},
            {"language": None, "text": "", "no_speech": True},
            {"language": "en", "text": " Hello, world. ", "no_speech": False}]
    expected = ["w'o214_| pu35Xw'A51_| n'A51_| S;'iE55_| m'A214_|", "", "h@l'oU w'3:ld"]
    assert recipe.phoneme_readings(tmp_path, "train", rows) == expected
    cache = tmp_path / "train.phonemes-v2.json"
    cache.write_text('["only one"]', encoding="utf-8")  # a cache of another manifest reads as damaged
    with pytest.warns(UserWarning, match=r"damaged cache: .*train.phonemes-v2.json is not a JSON list of 3 strings"):
        assert recipe.phoneme_readings(tmp_path, "train", rows) == expected
    assert recipe.phoneme_readings(tmp_path, "train", rows) == expected  # from the rebuilt cache, no warning
