"""The synthetic speech corpus: eSpeak synthesis per language, the grammar's splits, augmentation, the cache.

Everything here is small (a few dozen clips of a few seconds): the corpus builds in seconds on one core.
"""

import hashlib
import random
import re

import numpy as np
import pytest
import soundfile as sf

from zoo.speech import data as D
from zoo.speech import grammar as G
from zoo.speech.audio import load_audio

SENTENCES = {
    "en": "The old man reads the newspaper in the kitchen.",
    "es": "El hombre viejo lee el periódico en la cocina.",
    "fr": "Le vieil homme lit le journal dans la cuisine.",
    "de": "Der alte Mann liest die Zeitung in der Küche.",
    "zh": "老人在厨房里看报纸。",
}
TINY = dict(train_clips=14, val_clips=6, test_clips=6, test_unseen_clips=6, no_speech_share=0.25)


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20)


def voiced_seconds(x: np.ndarray, frame: int = 320) -> float:
    """Seconds of 20 ms frames within 30 dB of the loudest frame (speech, not the gaps between words)."""
    frames = x[: x.size // frame * frame].reshape(-1, frame)
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    return float(np.sum(energy > energy.max() - 30) * frame / D.SAMPLE_RATE)


@pytest.mark.parametrize("language", G.LANGUAGES)
def test_synthesis_is_real_speech_in_each_language(language):
    audio = D.synthesize(SENTENCES[language], language)
    seconds = audio.size / D.SAMPLE_RATE
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.5 < seconds < 5.0, seconds  # a 10-word sentence at eSpeak's 175 words per minute
    assert voiced_seconds(audio) > 0.6 * seconds  # sound, not mostly silence
    assert -35 < rms_db(audio) < -5 and np.max(np.abs(audio)) < 1.0
    # speech energy sits in the voice band: most of it between 100 Hz and 4 kHz, nothing near Nyquist at 16 kHz
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / D.SAMPLE_RATE)
    assert power[(freqs > 100) & (freqs < 4000)].sum() > 0.8 * power.sum()


def test_synthesis_is_deterministic_and_voices_differ():
    text, first = SENTENCES["es"], D.synthesize(SENTENCES["es"], "es")
    D.synthesize("Otra frase distinta para cambiar el estado.", "es", D.VoiceParams("m3", rate=140))
    np.testing.assert_array_equal(D.synthesize(text, "es"), first)  # eSpeak's state does not leak between calls
    slow = D.synthesize(text, "es", D.VoiceParams(rate=120))
    assert slow.size > 1.25 * first.size  # 175 -> 120 words per minute
    female = D.synthesize(text, "es", D.VoiceParams("f3"))
    assert female.size != first.size or not np.array_equal(female, first)


def test_unknown_language_and_variant_are_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'jp'.*en, es, fr, de, zh"):
        D.synthesize("hello", "jp")
    with pytest.raises(ValueError, match=r"'jp'.*en, es, fr, de, zh"):
        G.SentenceGenerator("jp")
    with pytest.raises(ValueError, match=r"'jp'.*en, es, fr, de, zh"):
        D.SpeechCorpusConfig(languages=("en", "jp"))
    with pytest.raises(ValueError, match=r"'m9'.*m1.*f5"):
        D.synthesize("hello", "en", D.VoiceParams("m9"))


def by_key(items, key):
    return next(it for it in items if it.key == key)


def test_realisations_are_grammatical_in_each_language():
    def noun(key):
        return by_key(G.NOUNS, key)

    def verb(key):
        return by_key(G.VERBS, key)

    def adj(key):
        return by_key(G.ADJECTIVES, key)

    reads = G.Abstract("statement", G.Clause(G.NP(noun("man"), adj=adj("young")), verb("read"),
                                             G.NP(noun("newspaper")), place=noun("kitchen")))
    assert {lang: G.realise(reads, lang) for lang in G.LANGUAGES} == {
        "en": "The young man reads the newspaper in the kitchen.",
        "es": "El hombre joven lee el periódico en la cocina.",
        "fr": "Le jeune homme lit le journal dans la cuisine.",
        "de": "Der junge Mann liest die Zeitung in der Küche.",
        "zh": "年轻的男人在厨房里读报纸。",
    }
    today = next(t for t in G.TIMES if t.key == "today")
    eats = G.Abstract("negation", G.Clause(G.NP(pron=3, gender="f"), verb("eat"), G.NP(noun("apple"), adj=adj("red")),
                                           time=today, neg=True))
    assert {lang: G.realise(eats, lang) for lang in G.LANGUAGES} == {
        "en": "We do not eat the red apple today.",
        "es": "Nosotras no comemos la manzana roja hoy.",
        "fr": "Nous ne mangeons pas la pomme rouge aujourd'hui.",
        "de": "Wir essen den roten Apfel heute nicht.",
        "zh": "我们今天不吃红色的苹果。",
    }
    old_bird = G.Abstract("exist", obj=G.NP(noun("bird"), "indef", adj=adj("old")), place=noun("station"))
    assert [G.realise(old_bird, lang) for lang in ("en", "fr", "de")] == [
        "There is an old bird at the station.", "Il y a un vieil oiseau à la gare.",
        "Es gibt einen alten Vogel am Bahnhof."]
    # an adjective whose predicative form ends in -e inflects on the stem without it: müde -> müden, not müdeen
    tired_dog = G.Abstract("exist", obj=G.NP(noun("dog"), "indef", adj=adj("tired")), place=noun("station"))
    assert G.realise(tired_dog, "de") == "Es gibt einen müden Hund am Bahnhof."


def test_grammar_translations_and_lexicon_sizes():
    for language in G.LANGUAGES:
        assert G.lexicon_size(language) >= (200 if language == "zh" else 400), language
    gens = {lang: G.SentenceGenerator(lang) for lang in G.LANGUAGES}
    for i in range(50):
        # the same rng state gives the same abstract sentence in every language, hence the same translation
        english = gens["en"].sample(random.Random(i), "train")
        assert english.text == english.translation
    assert G.number("fr", 71) == "soixante-et-onze" and G.number("fr", 21, "f") == "vingt-et-une"
    assert G.number("es", 21, "m") == "veintiún" and G.number("es", 31, "f") == "treinta y una"
    assert G.number("de", 21) == "einundzwanzig" and G.number("zh", 2) == "两" and G.number("zh", 22) == "二十二"
    kinds = {gens["fr"].sample(random.Random(i), "train").kind for i in range(300)}
    assert kinds == set(G.KIND_WEIGHTS)


def test_splits_are_disjoint_and_unseen_words_only_in_test_unseen():
    n = 300
    for language in G.LANGUAGES:
        gen = G.SentenceGenerator(language)
        sets = {split: [gen.sample(random.Random(1000 * k + i), split) for i in range(n)]
                for k, split in enumerate(G.SPLITS)}
        texts = {split: {s.text for s in sents} for split, sents in sets.items()}
        for a in G.SPLITS:
            for b in G.SPLITS:
                assert a == b or not texts[a] & texts[b], (language, a, b)
        for split in ("train", "val", "test"):
            assert all(not s.concepts & G.HELDOUT for s in sets[split])
            assert all(G.split_of_text(language, s.text) == split for s in sets[split])
        assert all(s.concepts & G.HELDOUT for s in sets["test_unseen"])
        if language != "zh":  # word level too: no held-out surface form in a seen-word sentence
            held = G.heldout_words(language)
            assert len(held) >= 30

            def words(text):
                return {w.split("'")[-1] for w in re.findall(r"[\w'-]+", text.lower())}

            seen_words = set().union(*(words(s.text) for split in ("train", "val", "test") for s in sets[split]))
            unseen_words = set().union(*(words(s.text) for s in sets["test_unseen"]))
            assert not seen_words & held
            assert len(unseen_words & held) >= 20
    assert len(G.HELDOUT) == 23  # 10% of 144 nouns, 49 adjectives and 40 verbs (have is never held out)


def test_snr_of_added_noise_is_the_requested_one():
    speech = D.synthesize(SENTENCES["en"], "en").astype(np.float64)
    padded = np.concatenate([np.zeros(4000), speech, np.zeros(4000)])
    region = slice(4000, 4000 + speech.size)
    for kind in D.NOISE_KINDS:
        for snr in (30.0, 20.0, 10.0, 5.0, 0.0):
            noisy = D.add_noise(padded, snr, kind, np.random.default_rng(int(snr)), region)
            assert abs(D.measured_snr_db(padded, noisy, region) - snr) < 0.01
    # pink noise: power falls 3 dB per octave (1/f), white is flat
    pink = D.pink_noise(2**16, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(pink)) ** 2
    freqs = np.fft.rfftfreq(pink.size, 1 / D.SAMPLE_RATE)
    low, high = power[(freqs > 250) & (freqs < 500)].mean(), power[(freqs > 2000) & (freqs < 4000)].mean()
    assert 7.0 < 10 * np.log10(low / high) < 11.0  # three octaves apart: 9 dB


def test_reverb_decays_by_60_db_in_rt60():
    impulse = np.zeros(16000)
    impulse[0] = 1.0
    ir = D.reverberate(impulse, rt60_s=0.3, drr_db=6.0, rng=np.random.default_rng(0))
    assert ir[0] == 1.0 and ir.size == 16000 + int(0.3 * D.SAMPLE_RATE) - 1
    tail = ir[1:int(0.3 * D.SAMPLE_RATE)]
    assert abs(10 * np.log10(np.sum(tail ** 2)) + 6.0) < 0.01  # direct-to-reverberant ratio
    early, late = rms_db(ir[1:800]), rms_db(ir[int(0.25 * 16000):int(0.3 * 16000)])
    assert 40 < early - late < 65  # ~50 dB drop between 25 ms and 275 ms on a 60 dB / 300 ms slope


def test_no_speech_kinds():
    rng = np.random.default_rng(0)
    clips = {kind: D.no_speech(kind, 2.0, rng) for kind in D.NO_SPEECH_KINDS}
    assert all(c.size == 32000 and np.max(np.abs(c)) < 1.0 for c in clips.values())
    assert not clips["silence"].any()
    assert rms_db(clips["low_noise"]) < -45
    spectrum = np.abs(np.fft.rfft(clips["hum"]))
    peak_hz = np.argmax(spectrum) * D.SAMPLE_RATE / clips["hum"].size
    assert peak_hz in (50.0, 60.0)
    tone = np.abs(np.fft.rfft(clips["tone"])) ** 2
    assert tone.max() > 0.3 * tone.sum()  # one frequency
    with pytest.raises(ValueError, match="allowed: silence, low_noise"):
        D.no_speech("birdsong", 1.0, rng)


def test_corpus_build_determinism_manifest_and_cache(tmp_path):
    config = D.SpeechCorpusConfig(seed=7, **TINY)
    root = D.build_corpus(config, tmp_path / "a", workers=1, progress=False)
    rows = {split: D.read_manifest(root, split) for split in G.SPLITS}
    assert [len(rows[s]) for s in G.SPLITS] == [14, 6, 6, 6]
    all_rows = [r for s in G.SPLITS for r in rows[s]]
    speech = [r for r in all_rows if not r["no_speech"]]
    silent = [r for r in all_rows if r["no_speech"]]
    assert len(silent) >= 2 and not any(r["no_speech"] for r in rows["test_unseen"])
    assert {r["language"] for r in speech} == set(G.LANGUAGES)
    for r in silent:
        assert r["kind"] in D.NO_SPEECH_KINDS and r["language"] is None and r["text"] == "" and r["voice"] is None
    for r in speech:
        assert sf.info(root / r["audio"]).samplerate == D.SAMPLE_RATE  # written at 16 kHz, read without resampling
        audio = load_audio(root / r["audio"]).numpy()
        assert r["kind"] == "speech" and r["text"] and r["translation"] and r["voice"].startswith(
            D.ESPEAK_VOICES[r["language"]])
        assert abs(audio.size / D.SAMPLE_RATE - r["duration"]) < 1e-3
        assert 1.5 <= r["speech_end"] - r["speech_start"] <= 10.0
        assert r["snr_db"] in config.snr_db and voiced_seconds(audio) > 0.5
        if r["language"] == "en":
            assert r["text"] == r["translation"]
    for r in rows["test_unseen"]:  # every sentence carries a held-out word
        if r["language"] == "zh":
            assert any(by_key(G.NOUNS, c[5:]).zh[1] in r["text"] for c in G.HELDOUT if c.startswith("noun:")) or \
                any(by_key(G.VERBS, c[5:]).zh[0] in r["text"] for c in G.HELDOUT if c.startswith("verb:")) or \
                any(by_key(G.ADJECTIVES, c[4:]).zh[1][1:] in r["text"] for c in G.HELDOUT if c.startswith("adj:"))
        else:
            words = {w.split("'")[-1] for w in re.findall(r"[\w'-]+", r["text"].lower())}
            assert words & G.heldout_words(r["language"]), r["text"]
    # same seed, other worker count: byte-identical manifests and WAVs; a second call is served from the cache
    again = D.build_corpus(config, tmp_path / "b", workers=2, progress=False)
    assert again.name == root.name

    def digest(path):
        return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(path.rglob("*")) if p.is_file()}

    assert digest(again) == digest(root)
    assert D.build_corpus(config, tmp_path / "a", workers=1, progress=False) == root
    other = D.build_corpus(D.SpeechCorpusConfig(seed=8, **TINY), tmp_path / "a", workers=1, progress=False)
    assert other != root and D.read_manifest(other, "train") != rows["train"]


def test_train_languages_weight_the_training_split_only():
    """`train_languages` repeats a language in the training split's cycle; validation and test stay balanced over
    `languages`, clip for clip the same as without it, and the default keeps the cache key of older configs."""
    tiny = dict(TINY, no_speech_share=0.0)
    balanced = D.SpeechCorpusConfig(**tiny)
    weighted = D.SpeechCorpusConfig(train_languages=("en", "es", "fr", "de", "zh", "zh"), **tiny)
    assert [D.make_clip(weighted, "train", i).row["language"] for i in range(7)] == [
        "en", "es", "fr", "de", "zh", "zh", "en"]
    assert [D.make_clip(balanced, "train", i).row["language"] for i in range(7)] == [
        "en", "es", "fr", "de", "zh", "en", "es"]
    for split in ("val", "test"):
        a, b = D.make_clip(balanced, split, 3), D.make_clip(weighted, split, 3)
        assert a.row == b.row and np.array_equal(a.audio, b.audio)
    assert D.config_key(weighted) != D.config_key(balanced)
    assert D.config_key(D.SpeechCorpusConfig(train_languages=(), **tiny)) == D.config_key(balanced)
    with pytest.raises(ValueError, match=r"train_languages \['en', 'ja'\] must name each of languages"):
        D.SpeechCorpusConfig(train_languages=("en", "ja"))
    with pytest.raises(ValueError, match=r"\['en', 'en'\] must name each of languages \['en', 'de'\] and no other"):
        D.SpeechCorpusConfig(languages=("en", "de"), train_languages=("en", "en"))
