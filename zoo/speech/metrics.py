"""Scoring transcripts and translations as the field does: WER and CER with jiwer after Whisper-style text
normalisation, BLEU and chrF with sacrebleu.

Whisper's evaluation (Radford et al., 2022, sec. 4.4 and appendix C) normalises both reference and hypothesis
before WER so that casing, punctuation and spacing are not counted as errors; its basic normaliser (for
languages other than English) lowercases, removes bracketed text, turns symbols and punctuation into spaces
and squeezes whitespace. Languages written without spaces between words (Chinese, Japanese, Thai, ...) are
scored by characters (CER), with the spaces removed.
"""

import re
import unicodedata

from zoo.errors import InputError

CHARACTER_LANGUAGES = ("zh", "ja", "th", "lo", "my", "yue")  # written without spaces: CER, not WER


def normalize(text: str) -> str:
    """Whisper's BasicTextNormalizer: lowercase; drop [bracketed] and (parenthesised) text; every mark, symbol
    and punctuation character becomes a space; whitespace squeezed."""
    text = re.sub(r"[<\[][^>\]]*[>\]]|\([^)]*\)", "", text.lower())
    text = "".join(" " if unicodedata.category(c)[0] in "MSP" else c for c in unicodedata.normalize("NFKC", text))
    return re.sub(r"\s+", " ", text).strip()


def error_rate(references: list[str], hypotheses: list[str], language: str | None = None,
               characters: bool = False) -> float:
    """Word error rate, or character error rate (spaces removed) for a language written without spaces or with
    characters=True (spaces kept, as characters), over the normalised texts (jiwer: edits / reference length,
    over the whole set). Empty references are left out (they have no words to get wrong; text on them is
    counted as hallucination elsewhere)."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise InputError("error_rate needs at least one non-empty reference")
    refs, hyps = zip(*pairs)
    if language in CHARACTER_LANGUAGES:
        return jiwer.cer([r.replace(" ", "") for r in refs], [h.replace(" ", "") for h in hyps])
    return jiwer.cer(list(refs), list(hyps)) if characters else jiwer.wer(list(refs), list(hyps))


def translation_scores(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus BLEU (Papineni et al., 2002) and chrF (Popovic, 2015) with sacrebleu's standard settings."""
    import sacrebleu

    if not references:
        raise InputError("translation_scores needs at least one reference")
    return {"bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}
