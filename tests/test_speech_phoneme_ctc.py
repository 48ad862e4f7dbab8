"""The auxiliary phoneme CTC head (hierarchical multitask CTC): eSpeak's phonemes of a transcript, its classes, the
head on an intermediate encoder block, its loss term, its config checks, and models without it."""

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from tests.test_speech_model import tiny
from zoo.speech import recipe
from zoo.speech.data import VoiceParams, engine, phonemize, synthesize
from zoo.speech.grammar import SentenceGenerator
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.speech.whisper import Whisper, WhisperConfig, encoder_backbone


def test_phonemize_gives_espeaks_phoneme_names_and_leaves_synthesis_as_it_was():
    voice = VoiceParams(variant="f2", rate=160)  # a breathy variant: its noise comes from the rand() state
    before = synthesize("The cat sat on the mat.", "en", voice)
    # eSpeak's ASCII phoneme names, "/" between a word's, a space between words and clauses; stress marks kept
    # (phoneme_units drops them)
    assert phonemize(["The man does not forget the shoe this week.", "Hello, world. How are you?", ""], "en") == [
        "D/@ m/'a/n d/V/z/n/,0/t f/3/g/'E/t D/@ S/'u: D/I/s w/'i:/k", "h/@/l/'oU w/'3:/l/d h/'aU A@ j/u:", ""]
    assert phonemize(["Le vieil homme lit le journal."], "fr") == ["l/@- v/j/'E/j 'O/m l/'i l/@- Z/u/r/n/'a/l"]
    assert phonemize(["Er trägt die Spielzeuge."], "de") == ["_!_|/E/r t/r/'E:/k/t d/i: S/p/'i:/l/ts/OY/g/@"]
    # each Mandarin final with its whole tone contour, each word ended by the very short pause _|
    assert phonemize(["我不画那些马。", "妈骂", "一个王后九点必须在办公室里修理那些票。"], "zh") == [
        "w/'o214/_| p/u35/X/w/'A51/_| n/'A51/_| S;/'iE55/_| m/'A214/_|", "m/'A55/_| m/'A51/_|",
        "j/i35/k/'o-11/_| w/'A35/N/_| X/'ou51/_| tS;/'iou214/_| t/'iE214/n/_| p/'i51/_| S;/'y55/_| ts/'ai51/_| "
        "p/'a51/n/_| k/'ong55/_| s./'i.51/_| l/'i214/_| S;/iou55/l/'i214/_| n/'A51/_| S;/'iE55/_| ph/j/'Au51/_|"]
    np.testing.assert_array_equal(synthesize("The cat sat on the mat.", "en", voice), before)
    with pytest.raises(ValueError, match="eSpeak has no voice 'xx'"):
        engine().phonemes(["hello"], "xx")
    with pytest.raises(ValueError, match="unknown language code 'ja'"):
        phonemize(["こんにちは"], "ja")


def test_phoneme_units_are_espeaks_names_with_mandarin_tones_apart():
    assert recipe.phoneme_units("D/@ m/'a/n d/V/z/n/,0/t S/'u: D/I2/; 'E/m/p/t/i", "en") == [
        "D", "@", "m", "a", "n", "d", "V", "z", "n", "0", "t", "S", "u:", "D", "I2", "E", "m", "p", "t", "i"]
    # pauses, alone or combined, are no units; a name of several characters is one
    assert recipe.phoneme_units("_!_|/E/r t/r/'E:/k/t _:_: d/i: _|/'O~/z", "de") == [
        "E", "r", "t", "r", "E:", "k", "t", "d", "i:", "O~", "z"]
    # Mandarin: final and tone apart; a word eSpeak reads as English is kept, its markers dropped
    assert recipe.phoneme_units("tS;/'iou214/_| ph/j/'Au51/_| s./'i.51/_| (en)/k/I2/;/@/N/t/'u:/(cmn)/_|", "zh") == [
        "tS;", "iou", "214", "ph", "j", "Au", "51", "s.", "i.", "51", "k", "I2", "@", "N", "t", "u:"]
    # tones are split only in the Mandarin voice's names: not in another language, not between (en) and (cmn)
    assert recipe.phoneme_units("x55", "en") == ["x55"] and recipe.phoneme_units("x55", "zh") == ["x", "55"]
    assert recipe.phoneme_units("(en)/x55/(cmn)/x55 (en)/x55", "zh") == ["x55", "x", "55", "x55"]
    assert recipe.phoneme_units("", "es") == []


def test_phoneme_targets_one_class_a_unit_and_other_for_the_rest():
    units = recipe.PHONEME_UNITS
    assert list(units) == sorted(set(units)) and len(units) == 129
    assert not any(c in unit for unit in units for c in "/ ',()_") and ";" not in units
    assert {"tS;", "iou", "214", "55", "0", "i@3", "A~", "**"} <= set(units)
    assert recipe.PHONEME_CLASSES == len(units) + 2 == recipe.PHONEME_OTHER + 2  # then other, then the blank
    assert recipe.phoneme_targets(" ".join(units), "en") == list(range(len(units)))  # every unit its own class
    # a name outside the units is "other", whole: one class, not one per character
    assert recipe.phoneme_targets("m/'A55/_| q/'A99 tS;/Q!", "zh") == [
        units.index("m"), units.index("A"), units.index("55"), recipe.PHONEME_OTHER, recipe.PHONEME_OTHER,
        units.index("tS;"), recipe.PHONEME_OTHER]
    assert recipe.phoneme_targets("", "zh") == []


def test_the_four_mandarin_tones_are_four_target_sequences():
    # 妈 麻 马 骂: one syllable in tones 1-4; eSpeak's IPA would read 妈 and 骂 alike ("mˈɑ5")
    readings = phonemize(["妈", "麻", "马", "骂"], "zh")
    assert readings == ["m/'A55/_|", "m/'A35/_|", "m/'A214/_|", "m/'A51/_|"]
    targets = [recipe.phoneme_targets(reading, "zh") for reading in readings]
    units = recipe.PHONEME_UNITS
    # the same initial and final, then the tone: four sequences that differ only in the tone unit
    assert targets == [[units.index("m"), units.index("A"), units.index(tone)] for tone in ("55", "35", "214", "51")]


def test_a_mandarin_syllable_is_at_most_five_units():
    # initial, medial glide, final, tone, nasal coda; most are 3 or 4
    assert [recipe.phoneme_units(r, "zh") for r in phonemize(["九", "票", "关"], "zh")] == [
        ["tS;", "iou", "214"], ["ph", "j", "Au", "51"], ["k", "w", "a", "55", "n"]]
    rng = random.Random(0)
    characters = sorted({c for _ in range(300) for c in SentenceGenerator("zh").sample(rng, "train").text
                         if "\u4e00" <= c <= "\u9fff"})
    readings = phonemize(characters, "zh")  # each character alone
    lengths = {c: len(recipe.phoneme_units(r, "zh")) for c, r in zip(characters, readings) if "(en)" not in r}
    assert len(lengths) > 200 and max(lengths.values()) == 5 and min(lengths.values()) >= 2, lengths
    # the exceptions: characters eSpeak reads as an English word (穷: "(en)/k/I2/;/@/N/t/'u:/(cmn)/_|")
    assert len(lengths) >= len(characters) - 2


def test_items_carry_the_phoneme_targets_and_no_speech_has_none():
    tokenizer = WhisperTokenizer.train(["the cat", "妈骂"], 1900, ["en", "zh"])
    rows = [{"language": "zh", "text": "妈骂", "translation": "", "no_speech": False},
            {"language": None, "text": "", "translation": "", "no_speech": True},
            {"language": "en", "text": "the cat", "translation": "", "no_speech": False}]
    clips = recipe.MelClips(torch.randn(30, 80), torch.tensor([0, 10, 20, 30]), rows)
    items = recipe.SpeechItems(clips, tokenizer, 0.0, Path("."), ["m/'A55/_| m/'A51/_|", "", "D/@ k/'a/t"])
    units = recipe.PHONEME_UNITS
    assert items[0]["phoneme_targets"].tolist() == [units.index(u) for u in ("m", "A", "55", "m", "A", "51")]
    assert items[1]["phoneme_length"].item() == 0 and items[2]["phoneme_length"].item() == 5
    batch = recipe.collate([items[i] for i in range(3)])
    assert batch["phoneme_targets"].shape == (3, 6) and batch["phoneme_length"].tolist() == [6, 0, 5]
    assert "phoneme_targets" not in recipe.SpeechItems(clips, tokenizer, 0.0, Path("."))[0]


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
    # by default the head reads the middle block, following the encoder's depth (so a 1-block tiny model needs no
    # override); a layer saved by older configs (2 whatever the depth) is checked only with the head
    assert [WhisperConfig(phoneme_ctc_weight=0.2, encoder=encoder_backbone(n_layers=n)).phoneme_block
            for n in (1, 2, 4, 6)] == [1, 1, 2, 3]
    assert WhisperConfig(phoneme_ctc_layer=2, encoder=encoder_backbone(n_layers=1)).phoneme_block == 2


def test_models_without_the_head_load_as_before_and_with_it_round_trip(tmp_path):
    without = tiny(ctc_weight=0.3)
    without.save_pretrained(tmp_path / "without")
    # a config.json written before the head existed has neither field: it loads as a model without the head
    config_file = tmp_path / "without" / "config.json"
    saved = json.loads(config_file.read_text())
    del saved["config"]["phoneme_ctc_weight"], saved["config"]["phoneme_ctc_layer"]
    config_file.write_text(json.dumps(saved))
    old = zoo.load(tmp_path / "without")
    assert old.phoneme_head is None and not any(name.startswith("phoneme_head") for name in old.state_dict())
    shipped = zoo.load("whisper-cpu", pretrained=True)  # trained with the head (weight 0.2 on block 2)
    assert shipped.phoneme_head is not None and shipped.config.phoneme_ctc_weight == 0.2
    model = tiny(ctc_weight=0.3, phoneme_ctc_weight=0.2, phoneme_ctc_layer=1)
    model.save_pretrained(tmp_path / "with")
    loaded = zoo.load(tmp_path / "with")
    assert isinstance(loaded, Whisper) and loaded.config.phoneme_ctc_layer == 1
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_phoneme_readings_are_cached_in_row_order_and_a_damaged_cache_is_rebuilt(tmp_path):
    rows = [{"language": "zh", "text": "我不画那些马。", "no_speech": False},
            {"language": None, "text": "", "no_speech": True},
            {"language": "en", "text": " Hello, world. ", "no_speech": False}]
    expected = ["w/'o214/_| p/u35/X/w/'A51/_| n/'A51/_| S;/'iE55/_| m/'A214/_|", "", "h/@/l/'oU w/'3:/l/d"]
    assert recipe.phoneme_readings(tmp_path, "train", rows) == expected
    cache = tmp_path / "train.phonemes-v3.json"
    cache.write_text('["only one"]', encoding="utf-8")  # a cache of another manifest reads as damaged
    with pytest.warns(UserWarning, match=r"damaged cache: .*train.phonemes-v3.json is not a JSON list of 3 strings"):
        assert recipe.phoneme_readings(tmp_path, "train", rows) == expected
    assert recipe.phoneme_readings(tmp_path, "train", rows) == expected  # from the rebuilt cache, no warning
