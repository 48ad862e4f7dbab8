"""A seeded sentence generator for five languages, each sentence with its English translation.

    gen = SentenceGenerator("es")
    s = gen.sample(random.Random(0), "train")
    s.text, s.translation      # "¿Dónde compra el vecino las manzanas rojas?", "Where does the neighbour buy ..."

One abstract sentence (a structure with concept slots: which verb, which noun with which article and
adjective, which time phrase) is drawn first and then realised by each language's rules, so the translation
is consistent by construction: the English realisation of the same abstract sentence. The languages use
Whisper's codes: en, es, fr, de, zh (Mandarin, written in simplified characters, spoken by eSpeak's "cmn").

Why a grammar and not a list of sentences: a speech model trained on a few hundred fixed sentences learns
to recognise whole sentences; with ~150 nouns, ~50 adjectives and ~40 verbs in eleven structures (statement,
negation, modal verb, yes/no question, what/where/how-many questions, copula, "there is", coordination) and
numbers up to 99 there are far more sentences than clips, so it must learn to spell.

Splits, all decided by pure functions of the text (no state, no registry):
- a held-out tenth of the nouns, adjectives and verbs (`HELDOUT_SHARE`, chosen by a hash of the concept) only
  ever appears in the "test_unseen" split, which therefore measures spelling of words never heard in training;
- every other sentence goes to train, val or test by a hash of its text in its language (`SPLIT_SHARES`), so
  the three sets are disjoint whatever the seeds, and a sentence drawn twice always lands in the same set.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from zoo.errors import InputError
from zoo.speech import lexicon as lx

LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "de", "zh")
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_unseen")
HELDOUT_SHARE = 0.10  # of each word class (nouns, adjectives, verbs), as the issue asks ("e.g. 10%")
SPLIT_SHARES = {"val": 0.05, "test": 0.05}  # of seen-word sentences, by text hash; the rest is train
KIND_WEIGHTS = {  # how often each structure is drawn: declaratives most, every structure well represented
    "statement": 22, "negation": 12, "modal": 12, "yesno": 10, "what": 6, "where": 6, "where_is": 4,
    "how_many": 6, "copula": 10, "exist": 7, "coord": 5,
}
MAX_DRAWS = 10_000  # rejection sampling for a split; val needs ~30 draws on average, so this never binds


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise InputError(f"unknown language code {language!r}; allowed (Whisper's codes): {', '.join(LANGUAGES)}")
    return language


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


# -----------------------------------------------------------------------------
# the lexicon, parsed


@dataclass(frozen=True)
class Noun:
    key: str  # the English singular, unique
    en: tuple[str, str]  # singular, plural
    es: tuple[str, str, str]  # gender, singular, plural
    fr: tuple[str, str, str]
    de: tuple[str, str, str, str]  # gender, singular, plural ("" for mass nouns), accusative/dative singular
    zh: tuple[str, str]  # measure word ("" for mass nouns), noun
    tags: frozenset[str]

    @property
    def mass(self) -> bool:
        return "mass" in self.tags


@dataclass(frozen=True)
class Adjective:
    key: str
    es: tuple[str, str, str, str]  # m.sg, f.sg, m.pl, f.pl
    fr: tuple[str, str, str, str]
    fr_pre: bool  # before the noun
    de: tuple[str, str]  # predicative, inflection stem
    zh: tuple[str, str, str]  # attributive, predicative, "very" predicative
    tags: frozenset[str]  # the noun tags it describes
    estar: bool  # Spanish copula: estar (a state) rather than ser (a property)


@dataclass(frozen=True)
class Verb:
    key: str
    en: tuple[str, str]  # base, third person singular
    es: tuple[str, tuple[str, ...]]  # infinitive, (I, you, he/she, we, they)
    fr: tuple[str, tuple[str, ...]]
    de: tuple[str, tuple[str, ...]]
    zh: tuple[str, str]  # verb, negated verb
    objects: frozenset[str]
    animal_subject: bool


@dataclass(frozen=True)
class Time:
    key: str
    forms: dict[str, str] = field(hash=False, compare=False)


def _fields(line: str, n: int, what: str) -> list[str]:
    parts = [p.strip() for p in line.split("|")]
    if len(parts) != n:
        raise InputError(f"lexicon {what} line needs {n} fields separated by '|', got {len(parts)}: {line!r}")
    return parts


def _gendered(field_: str, line: str) -> tuple[str, str, str | None]:
    gender, _, word = field_.partition(" ")
    if gender not in ("m", "f", "n"):
        raise InputError(f"lexicon noun needs a gender m/f/n before {field_!r}: {line!r}")
    sg, _, pl = word.partition("/")
    return gender, sg, pl or None


def _english_plural(sg: str) -> str:
    if sg.endswith(("s", "x", "ch", "sh", "z")):
        return sg + "es"
    return sg[:-1] + "ies" if sg.endswith("y") and sg[-2] not in "aeiou" else sg + "s"


def _spanish_plural(sg: str) -> str:
    if sg[-1] in "aeiouáéíóú":
        return sg + "s"
    return sg[:-1] + "ces" if sg.endswith("z") else sg + "es"


def _french_plural(sg: str) -> str:
    if sg.endswith(("s", "x", "z")):
        return sg
    if sg.endswith(("eau", "eu")):
        return sg + "x"
    return sg[:-2] + "aux" if sg.endswith("al") else sg + "s"


def _parse_noun(line: str) -> Noun:
    en, es, fr, de, zh, tags = _fields(line, 6, "noun")
    en_sg, _, en_pl = en.partition("/")
    es_g, es_sg, es_pl = _gendered(es, line)
    fr_g, fr_sg, fr_pl = _gendered(fr, line)
    de_g, _, de_forms = de.partition(" ")
    de_sg, de_pl, de_obl = (de_forms.split("/") + ["", ""])[:3]
    mw, _, zh_noun = zh.partition(" ")
    tagset = frozenset(tags.split())
    if not tagset <= lx.NOUN_TAGS or de_g not in ("m", "f", "n"):
        raise InputError(f"lexicon noun has unknown tags or German gender (m/f/n); allowed tags "
                         f"{sorted(lx.NOUN_TAGS)}: {line!r}")
    return Noun(en_sg, (en_sg, en_pl or _english_plural(en_sg)),
                (es_g, es_sg, es_pl or _spanish_plural(es_sg)), (fr_g, fr_sg, fr_pl or _french_plural(fr_sg)),
                (de_g, de_sg, de_pl, de_obl or de_sg), ("" if mw == "-" else mw, zh_noun), tagset)


def _spanish_adjective(ms: str) -> tuple[str, str, str, str]:
    fs = ms[:-1] + "a" if ms.endswith("o") else ms
    return ms, fs, _spanish_plural(ms), _spanish_plural(fs)


def _french_adjective(ms: str) -> tuple[str, str, str, str]:
    if ms.endswith("e"):
        fs = ms
    elif ms.endswith("eux"):
        fs = ms[:-1] + "se"
    elif ms.endswith("er"):
        fs = ms[:-2] + "ère"
    else:
        fs = ms + "e"
    mp = ms if ms.endswith(("s", "x")) else ms + "x" if ms.endswith("eau") else ms + "s"
    return ms, fs, mp, fs + "s"


def _parse_adjective(line: str) -> Adjective:
    en, es, fr, de, zh, tags = _fields(line, 6, "adjective")
    es_forms = tuple(es.split("/")) if "/" in es else _spanish_adjective(es)
    fr_forms = tuple(fr.split("/")) if "/" in fr else _french_adjective(fr)
    if len(es_forms) != 4 or len(fr_forms) != 4:
        raise InputError(f"lexicon adjective needs one form or four (m.sg/f.sg/m.pl/f.pl): {line!r}")
    de_pred, _, de_stem = de.partition("/")
    if "/" in zh:
        attr, pred = zh.split("/")
        zh_forms = (attr, pred, pred)
    else:
        zh_forms = (zh if len(zh) == 1 else zh + "的", "很" + zh, "非常" + zh)
    tagset = frozenset(tags.split())
    return Adjective(en, es_forms, fr_forms, fr_forms[0] in lx.FRENCH_PRENOMINAL, (de_pred, de_stem or de_pred),
                     zh_forms, tagset - {"estar"}, "estar" in tagset)


def _conjugation(field_: str, regular) -> tuple[str, tuple[str, ...]]:
    inf, _, forms = field_.partition(":")
    return inf.strip(), tuple(forms.split()) if forms else regular(inf.strip())


def _spanish_present(inf: str) -> tuple[str, ...]:
    stem, ending = inf[:-2], inf[-2:]
    vowel = {"ar": "a", "er": "e", "ir": "e"}[ending]
    we = {"ar": "amos", "er": "emos", "ir": "imos"}[ending]
    return stem + "o", stem + vowel + "s", stem + vowel, stem + we, stem + vowel + "n"


def _french_present(inf: str) -> tuple[str, ...]:
    if not inf.endswith("er"):
        raise InputError(f"French verb {inf!r} is not a regular -er verb: list its five forms")
    stem = inf[:-2]
    # "nous mangeons": keep the g soft before o (Bescherelle, la conjugaison, verbes en -ger)
    we = stem + ("eons" if stem.endswith("g") else "ons")
    return stem + "e", stem + "es", stem + "e", we, stem + "ent"


def _german_present(inf: str, overrides: tuple[str, ...] = ()) -> tuple[str, ...]:
    stem = inf[:-1] if inf.endswith(("ern", "eln")) else inf[:-2]
    # e-insertion after d/t and after a consonant + m/n ("du öffnest", "er zeichnet"); -st after s/ß/z/x
    # becomes -t ("du isst" aside, "du putzt"); Duden, Die Grammatik, §§ 640-642.
    e = "e" if stem.endswith(("d", "t")) or (stem[-1] in "mn" and stem[-2] not in "aeiouäöülrhmn") else ""
    second = stem + ("t" if stem.endswith(("s", "ß", "z", "x")) else e + "st")
    forms = [stem + "e", second, stem + e + "t", inf, inf]
    if overrides:
        forms[1], forms[2] = overrides
    return tuple(forms)


def _parse_verb(line: str) -> Verb:
    en, es, fr, de, zh, objects, subjects = _fields(line, 7, "verb")
    base, _, third = en.partition("/")
    if not third:
        head, _, rest = base.partition(" ")
        third = " ".join(filter(None, [_english_plural(head) if head[-1] in "sxhyz" else head + "s", rest]))
    de_inf, _, de_over = de.partition(":")
    zh_verb, _, zh_neg = zh.partition("/")
    objs = frozenset(objects.split())
    if not objs <= lx.NOUN_TAGS or subjects not in ("p", "pa"):
        raise InputError(f"lexicon verb has unknown object tags or subjects (p or pa): {line!r}")
    return Verb(base, (base, third), _conjugation(es, _spanish_present), _conjugation(fr, _french_present),
                (de_inf.strip(), _german_present(de_inf.strip(), tuple(de_over.split()))),
                (zh_verb, zh_neg or "不" + zh_verb), objs, subjects == "pa")


def _lines(block: str) -> list[str]:
    """The entries of a lexicon block; an indented line continues the one before (keeps lines short)."""
    out: list[str] = []
    for line in block.strip().splitlines():
        if line.startswith(" ") and out:
            out[-1] += " " + line.strip()
        elif line.strip():
            out.append(line)
    return out


NOUNS: tuple[Noun, ...] = tuple(_parse_noun(line) for line in _lines(lx.NOUNS))
ADJECTIVES: tuple[Adjective, ...] = tuple(_parse_adjective(line) for line in _lines(lx.ADJECTIVES))
VERBS: tuple[Verb, ...] = tuple(_parse_verb(line) for line in _lines(lx.VERBS))


# -----------------------------------------------------------------------------
# numbers 1-99 and the time phrases (hours are built from the numbers)

EN_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
           "sixteen seventeen eighteen nineteen".split()
EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ES_UNITS = "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciséis " \
           "diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés veinticuatro veinticinco " \
           "veintiséis veintisiete veintiocho veintinueve".split()
ES_TENS = "_ _ veinte treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
FR_UNITS = "zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize " \
           "dix-sept dix-huit dix-neuf".split()
FR_TENS = "_ _ vingt trente quarante cinquante soixante soixante quatre-vingt quatre-vingt".split()
DE_UNITS = "null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn fünfzehn " \
           "sechzehn siebzehn achtzehn neunzehn".split()
DE_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()
ZH_DIGITS = "零一二三四五六七八九"


def number(language: str, n: int, gender: str = "m") -> str:
    """The cardinal 1-99 as spoken before a noun of `gender` (Spanish "veintiún libros", "veintiuna casas")."""
    if not 1 <= n <= 99:
        raise InputError(f"numbers are spelt from 1 to 99, got {n}")
    tens, unit = divmod(n, 10)
    if language == "en":
        return EN_UNITS[n] if n < 20 else EN_TENS[tens] + (f"-{EN_UNITS[unit]}" if unit else "")
    if language == "es":
        word = ES_UNITS[n] if n < 30 else ES_TENS[tens] + (f" y {ES_UNITS[unit]}" if unit else "")
        return word[:-3] + ("una" if gender == "f" else "ún" if n > 1 else "un") if word.endswith("uno") else word
    if language == "fr":
        if n < 20:
            word = FR_UNITS[n]
        elif tens in (7, 9):  # soixante-dix, quatre-vingt-dix: the teens on top of sixty and eighty
            word = FR_TENS[tens] + ("-et-" if n == 71 else "-") + FR_UNITS[10 + unit]
        elif n == 80:
            word = "quatre-vingts"
        else:
            word = FR_TENS[tens] + ("-et-un" if unit == 1 and tens != 8 else f"-{FR_UNITS[unit]}" if unit else "")
        return word + "e" if gender == "f" and word.endswith("un") else word
    if language == "de":
        if n < 20:
            return DE_UNITS[n]
        return (("ein" if unit == 1 else DE_UNITS[unit]) + "und" if unit else "") + DE_TENS[tens]
    if language == "zh":  # 两 (not 二) counts things before a measure word; 十二, 二十二 keep 二
        if n == 2:
            return "两"
        return (ZH_DIGITS[tens] if tens > 1 else "") + ("十" if tens else "") + (ZH_DIGITS[unit] if unit else "")
    raise InputError(check_language(language))


def _hour(h: int) -> Time:
    return Time(f"at {h} o'clock", {
        "en": f"at {EN_UNITS[h]} o'clock",
        "es": "a la una" if h == 1 else f"a las {ES_UNITS[h]}",
        "fr": "à une heure" if h == 1 else f"à {FR_UNITS[h]} heures",
        "de": f"um {'ein' if h == 1 else DE_UNITS[h]} Uhr",
        "zh": number("zh", h) + "点",
    })


TIMES: tuple[Time, ...] = tuple(
    Time(f[0], dict(zip(LANGUAGES, f, strict=True))) for f in (_fields(line, 5, "time") for line in _lines(lx.TIMES))
) + tuple(_hour(h) for h in range(1, 13))


# -----------------------------------------------------------------------------
# abstract sentences


@dataclass(frozen=True)
class NP:
    """A noun phrase: a pronoun (person 0-4: I, you, he/she, we, they) or a noun with determiner and adjective."""

    noun: Noun | None = None
    det: str = "def"  # def | indef | num
    plural: bool = False
    count: int = 1
    adj: Adjective | None = None
    pron: int | None = None
    gender: str = "m"  # of a pronoun

    @property
    def person(self) -> int:
        return self.pron if self.pron is not None else 4 if self.plural else 2

    @property
    def fem(self) -> bool:
        return (self.noun.es[0] if self.noun else self.gender) == "f"


@dataclass(frozen=True)
class Clause:
    subj: NP
    verb: Verb
    obj: NP | None
    place: Noun | None = None
    time: Time | None = None
    neg: bool = False
    modal: str | None = None  # want | can | must


@dataclass(frozen=True)
class Abstract:
    kind: str
    clause: Clause | None = None
    clause2: Clause | None = None
    conj: str = "and"
    subj: NP | None = None  # copula, where_is
    adj: Adjective | None = None  # copula
    very: bool = False
    obj: NP | None = None  # exist
    place: Noun | None = None  # exist
    time: Time | None = None  # exist, where_is

    def concepts(self) -> frozenset[str]:
        """The nouns, adjectives and verbs it uses, as "noun:key" strings (the unit of the held-out split)."""
        out: set[str] = set()

        def np(p: NP | None):
            if p is not None and p.noun is not None:
                out.add(f"noun:{p.noun.key}")
            if p is not None and p.adj is not None:
                out.add(f"adj:{p.adj.key}")

        for c in (self.clause, self.clause2):
            if c is not None:
                np(c.subj)
                np(c.obj)
                out.add(f"verb:{c.verb.key}")
                if c.place is not None:
                    out.add(f"noun:{c.place.key}")
        np(self.subj)
        np(self.obj)
        if self.adj is not None:
            out.add(f"adj:{self.adj.key}")
        if self.place is not None:
            out.add(f"noun:{self.place.key}")
        return frozenset(out)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# "have" doubles as a function word (Spanish "tener que" = must, French "il y a" = there is): holding it out
# would put its forms into training sentences anyway.
NEVER_HELD_OUT = frozenset({"verb:have"})


def _heldout(kind: str, items) -> frozenset[str]:
    """The HELDOUT_SHARE of `items` with the smallest hash of their key: exact share, stable under additions."""
    keys = sorted((f"{kind}:{it.key}" for it in items if f"{kind}:{it.key}" not in NEVER_HELD_OUT),
                  key=lambda k: _hash("heldout/" + k))
    return frozenset(keys[:round(HELDOUT_SHARE * len(keys))])


HELDOUT: frozenset[str] = _heldout("noun", NOUNS) | _heldout("adj", ADJECTIVES) | _heldout("verb", VERBS)
CATEGORIES = frozenset("person animal food drink thing vehicle place doc text song".split())


def split_of_text(language: str, text: str) -> str:
    """train, val or test for a seen-word sentence: a pure function of its text, so the sets are disjoint."""
    u = _hash(f"{language}\n{text}") / 2**64
    return "val" if u < SPLIT_SHARES["val"] else "test" if u < SPLIT_SHARES["val"] + SPLIT_SHARES["test"] else "train"


class _Sampler:
    """Draws abstract sentences; which words are allowed is the caller's business (it rejects)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def noun(self, tags: frozenset[str], countable: bool = False, exclude: Noun | None = None) -> Noun:
        pool = [n for n in NOUNS if n.tags & tags and not (countable and n.mass) and n is not exclude]
        return self.rng.choice(pool)

    def adjective(self, noun: Noun | None, chance: float) -> Adjective | None:
        if self.rng.random() >= chance:
            return None
        tags = noun.tags & CATEGORIES if noun is not None else frozenset({"person"})
        pool = [a for a in ADJECTIVES if a.tags & tags]
        return self.rng.choice(pool) if pool else None

    def count(self) -> int:
        return self.rng.randint(2, 10) if self.rng.random() < 0.6 else self.rng.randint(11, 99)

    def subject(self, animals: bool, allow_pronoun: bool = True, definite: bool = False) -> NP:
        r = self.rng
        if allow_pronoun and r.random() < 0.35:
            return NP(pron=r.randrange(5), gender=r.choice("mf"))
        noun = self.noun(frozenset({"person", "animal"} if animals else {"person"}))
        det = r.choices(["def", "defpl", "indef"], [55, 20, 25 if not definite else 0])[0]
        return NP(noun, "def" if det == "defpl" else det, det == "defpl", 1, self.adjective(noun, 0.3))

    def object(self, noun: Noun, definite: bool = False, adjective: float = 0.35) -> NP:
        r = self.rng
        if noun.mass:
            return NP(noun, "def", False, 1, self.adjective(noun, adjective))
        det = r.choices(["def", "defpl", "indef", "num"], [40, 15, 25, 20] if not definite else [70, 30, 0, 0])[0]
        plural = det in ("defpl", "num")
        return NP(noun, "def" if det == "defpl" else det, plural, self.count() if det == "num" else 1,
                  self.adjective(noun, adjective))

    def clause(self, neg: bool = False, modal: str | None = None, place: float = 0.3, time: float = 0.4,
               countable: bool = False, no_person_object: bool = False) -> Clause:
        r = self.rng
        verb = r.choice(VERBS)
        tags = verb.objects - ({"person"} if no_person_object else set())
        if not any(n.tags & tags and not (countable and n.mass) for n in NOUNS):  # "how many" + "drink"
            return self.clause(neg, modal, place, time, countable, no_person_object)
        subj = self.subject(verb.animal_subject)
        obj = self.object(self.noun(tags, countable, exclude=subj.noun), definite=neg)
        where = self.noun(frozenset({"place"}), exclude=obj.noun) if r.random() < place else None
        when = r.choice(TIMES) if r.random() < time else None
        return Clause(subj, verb, obj, where, when, neg, modal)

    def abstract(self) -> Abstract:
        r = self.rng
        kind = r.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()))[0]
        if kind == "statement":
            return Abstract(kind, self.clause())
        if kind == "negation":
            return Abstract(kind, self.clause(neg=True, place=0.0))
        if kind == "modal":
            return Abstract(kind, self.clause(modal=r.choice(["want", "can", "must"])))
        if kind == "yesno":
            return Abstract(kind, self.clause(place=0.25, time=0.25))
        if kind in ("what", "where"):
            return Abstract(kind, self.clause(place=0.4 if kind == "what" else 0.0))
        if kind == "how_many":
            c = self.clause(countable=True, no_person_object=True)
            return Abstract(kind, Clause(c.subj, c.verb, NP(c.obj.noun, "num", True), c.place, c.time))
        if kind == "where_is":
            noun = self.noun(frozenset({"person", "animal", "thing", "vehicle", "doc"}))
            plural = not noun.mass and r.random() < 0.3
            return Abstract(kind, subj=NP(noun, "def", plural, 1, self.adjective(noun, 0.4)),
                            time=r.choice(TIMES) if r.random() < 0.4 else None)
        if kind == "copula":
            subj = self.subject(animals=True, definite=True) if r.random() < 0.4 else None
            if subj is None:
                noun = self.noun(CATEGORIES - {"song"})
                subj = NP(noun, "def", not noun.mass and r.random() < 0.3)
            elif subj.adj is not None:
                subj = NP(subj.noun, subj.det, subj.plural)
            adj = self.adjective(subj.noun, 1.0)
            if adj is None:
                return self.abstract()
            return Abstract(kind, subj=subj, adj=adj, very=r.random() < 0.3)
        if kind == "exist":
            noun = self.noun(frozenset({"person", "animal", "food", "thing", "vehicle", "doc"}), countable=True)
            obj = NP(noun, "indef", False, 1, self.adjective(noun, 0.35)) if r.random() < 0.5 else \
                NP(noun, "num", True, self.count(), self.adjective(noun, 0.35))
            return Abstract(kind, obj=obj, place=self.noun(frozenset({"place"})),
                            time=r.choice(TIMES) if r.random() < 0.3 else None)
        conj = r.choice(["and", "but"])
        # the longest sentences (up to ~10 s at a slow rate): two clauses, each with its own adjuncts
        return Abstract(kind, self.clause(place=0.3, time=0.3), self.clause(neg=conj == "but", place=0.0, time=0.3),
                        conj=conj)


# -----------------------------------------------------------------------------
# realisation, one small class per language


def _join(words) -> str:
    return " ".join(w for w in words if w)


def _capitalise(text: str) -> str:
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[:i] + ch.upper() + text[i + 1:]
    return text


class English:
    PRONOUNS = ("I", "you", "he", "we", "they")
    BE = ("am", "are", "is", "are", "are")
    MODALS = {"want": ("want to", "wants to"), "can": ("can", "can"), "must": ("must", "must")}

    def np(self, p: NP) -> str:
        if p.pron is not None:
            return "she" if p.pron == 2 and p.gender == "f" else self.PRONOUNS[p.pron]
        head = p.noun.en[1] if p.plural else p.noun.en[0]
        rest = _join([p.adj.key if p.adj else "", head])
        det = {"def": "the", "indef": "an" if rest[0] in "aeiou" else "a"}.get(p.det) or number("en", p.count)
        return f"{det} {rest}"

    def place(self, n: Noun | None) -> str:
        return f"{lx.PLACE_PREPOSITIONS.get(n.key, ('in',))[0]} the {n.en[0]}" if n else ""

    def time(self, t: Time | None) -> str:
        return t.forms["en"] if t else ""

    def verb(self, c: Clause) -> str:
        return c.verb.en[1] if c.subj.person == 2 else c.verb.en[0]

    def do(self, c: Clause) -> str:
        return "does" if c.subj.person == 2 else "do"

    def clause(self, c: Clause) -> str:
        obj, rest = (self.np(c.obj) if c.obj else ""), [self.place(c.place), self.time(c.time)]
        if c.modal:
            return _join([self.np(c.subj), self.MODALS[c.modal][c.subj.person == 2], c.verb.en[0], obj, *rest])
        if c.neg:
            return _join([self.np(c.subj), self.do(c), "not", c.verb.en[0], obj, *rest])
        return _join([self.np(c.subj), self.verb(c), obj, *rest])

    def realise(self, a: Abstract) -> str:
        c = a.clause
        if a.kind in ("statement", "negation", "modal"):
            return _capitalise(self.clause(c)) + "."
        if a.kind == "yesno":
            return _capitalise(_join([self.do(c), self.np(c.subj), c.verb.en[0], self.np(c.obj),
                                      self.place(c.place), self.time(c.time)])) + "?"
        if a.kind == "what":
            return _join(["What", self.do(c), self.np(c.subj), c.verb.en[0], self.place(c.place),
                          self.time(c.time)]) + "?"
        if a.kind == "where":
            return _join(["Where", self.do(c), self.np(c.subj), c.verb.en[0], self.np(c.obj), self.time(c.time)]) + "?"
        if a.kind == "how_many":
            return _join(["How many", c.obj.noun.en[1], self.do(c), self.np(c.subj), c.verb.en[0],
                          self.place(c.place), self.time(c.time)]) + "?"
        if a.kind == "where_is":
            return _join(["Where", self.BE[a.subj.person], self.np(a.subj), self.time(a.time)]) + "?"
        if a.kind == "copula":
            be = self.BE[a.subj.person]
            return _capitalise(_join([self.np(a.subj), be, "very" if a.very else "", a.adj.key])) + "."
        if a.kind == "exist":
            return _join(["There", "are" if a.obj.plural else "is", self.np(a.obj), self.place(a.place),
                          self.time(a.time)]) + "."
        conj = " and " if a.conj == "and" else ", but "
        return _capitalise(self.clause(a.clause) + conj + self.clause(a.clause2)) + "."


class Spanish:
    PRONOUNS = (("yo", "yo"), ("tú", "tú"), ("él", "ella"), ("nosotros", "nosotras"), ("ellos", "ellas"))
    SER = ("soy", "eres", "es", "somos", "son")
    ESTAR = ("estoy", "estás", "está", "estamos", "están")
    MODALS = {"want": ("quiero", "quieres", "quiere", "queremos", "quieren"),
              "can": ("puedo", "puedes", "puede", "podemos", "pueden"),
              "must": ("tengo que", "tienes que", "tiene que", "tenemos que", "tienen que")}

    def np(self, p: NP, personal_a: bool = False) -> str:
        if p.pron is not None:
            return self.PRONOUNS[p.pron][p.gender == "f"]
        g, sg, pl = p.noun.es
        idx = (g == "f") + 2 * p.plural
        det = {"def": ("el", "la", "los", "las")[idx], "indef": ("un", "una")[g == "f"]}.get(p.det) \
            or number("es", p.count, g)
        text = _join([det, pl if p.plural else sg, p.adj.es[idx] if p.adj else ""])
        if personal_a and "person" in p.noun.tags:  # "veo a la mujer": a human direct object takes "a"
            text = "al" + text[2:] if text.startswith("el ") else "a " + text
        return text

    def obj(self, c: Clause) -> str:
        return self.np(c.obj, personal_a=True) if c.obj else ""

    def place(self, n: Noun | None) -> str:
        return "en " + self.np(NP(n)) if n else ""

    def time(self, t: Time | None) -> str:
        return t.forms["es"] if t else ""

    def clause(self, c: Clause) -> str:
        person = c.subj.person
        if c.modal:
            verb = f"{self.MODALS[c.modal][person]} {c.verb.es[0]}"
        else:
            verb = c.verb.es[1][person]
        return _join([self.np(c.subj), "no" if c.neg else "", verb, self.obj(c), self.place(c.place),
                      self.time(c.time)])

    def realise(self, a: Abstract) -> str:
        c = a.clause
        if a.kind in ("statement", "negation", "modal"):
            return _capitalise(self.clause(c)) + "."
        if a.kind == "yesno":
            return "¿" + _capitalise(_join([c.verb.es[1][c.subj.person], self.np(c.subj), self.obj(c),
                                            self.place(c.place), self.time(c.time)])) + "?"
        if a.kind == "what":
            return "¿" + _join(["Qué", c.verb.es[1][c.subj.person], self.np(c.subj), self.place(c.place),
                                self.time(c.time)]) + "?"
        if a.kind == "where":
            return "¿" + _join(["Dónde", c.verb.es[1][c.subj.person], self.np(c.subj), self.obj(c),
                                self.time(c.time)]) + "?"
        if a.kind == "how_many":
            g = c.obj.noun.es[0]
            return "¿" + _join(["Cuántas" if g == "f" else "Cuántos", c.obj.noun.es[2], c.verb.es[1][c.subj.person],
                                self.np(c.subj), self.place(c.place), self.time(c.time)]) + "?"
        if a.kind == "where_is":
            return "¿" + _join(["Dónde", self.ESTAR[a.subj.person], self.np(a.subj), self.time(a.time)]) + "?"
        if a.kind == "copula":
            be = (self.ESTAR if a.adj.estar else self.SER)[a.subj.person]
            adj = a.adj.es[a.subj.fem + 2 * (a.subj.plural or a.subj.person >= 3)]
            return _capitalise(_join([self.np(a.subj), be, "muy" if a.very else "", adj])) + "."
        if a.kind == "exist":
            return _join(["Hay", self.np(a.obj), self.place(a.place), self.time(a.time)]) + "."
        second = self.clause(a.clause2)
        conj = ", pero " if a.conj == "but" else " e " if second.startswith(("i", "hi")) else " y "
        return _capitalise(self.clause(a.clause) + conj + second) + "."


FRENCH_VOWELS = tuple("aeiouyéèêàâîôûœh")


def _elide(words: list[str]) -> str:
    """French elision and contraction: le/la + vowel -> l', je/ne/que/de + vowel -> j'/n'/qu'/d', à le -> au."""
    out: list[str] = []
    for w in (w for w in words if w):
        for piece in w.split(" "):
            prev = out[-1] if out else ""
            if prev.lower() in ("le", "la", "je", "ne", "que", "de") and piece.lower().startswith(FRENCH_VOWELS):
                out[-1] = prev[0] + "'" + piece
            elif prev.lower() == "à" and piece in ("le", "les"):
                out[-1] = "au" if piece == "le" else "aux"
            else:
                out.append(piece)
    return " ".join(out).replace("' ", "'")


class French:
    PRONOUNS = (("je", "je"), ("tu", "tu"), ("il", "elle"), ("nous", "nous"), ("ils", "elles"))
    BE = ("suis", "es", "est", "sommes", "sont")
    MODALS = {"want": ("veux", "veux", "veut", "voulons", "veulent"),
              "can": ("peux", "peux", "peut", "pouvons", "peuvent"),
              "must": ("dois", "dois", "doit", "devons", "doivent")}

    def np(self, p: NP) -> list[str]:
        if p.pron is not None:
            return [self.PRONOUNS[p.pron][p.gender == "f"]]
        g, sg, pl = p.noun.fr
        idx = (g == "f") + 2 * p.plural
        head = pl if p.plural else sg
        det = {"def": ("le", "la", "les", "les")[idx], "indef": ("un", "une")[g == "f"]}.get(p.det) \
            or number("fr", p.count, g)
        if p.adj is None:
            return [det, head]
        adj = p.adj.fr[idx]
        if not p.adj.fr_pre:
            return [det, head, adj]
        if idx == 0 and head.startswith(FRENCH_VOWELS):  # "un vieil homme", "un bel oiseau"
            adj = lx.FRENCH_PRENOMINAL.get(p.adj.fr[0]) or adj
        return [det, adj, head]

    def place(self, n: Noun | None) -> list[str]:
        return [lx.PLACE_PREPOSITIONS.get(n.key, ("", "dans"))[1], *self.np(NP(n))] if n else []

    def time(self, t: Time | None) -> str:
        return t.forms["fr"] if t else ""

    def clause(self, c: Clause) -> list[str]:
        person, obj = c.subj.person, (self.np(c.obj) if c.obj else [])
        rest = [*self.place(c.place), self.time(c.time)]
        if c.modal:
            return [*self.np(c.subj), self.MODALS[c.modal][person], c.verb.fr[0], *obj, *rest]
        verb = c.verb.fr[1][person]
        if c.neg:
            return [*self.np(c.subj), "ne", verb, "pas", *obj, *rest]
        return [*self.np(c.subj), verb, *obj, *rest]

    def realise(self, a: Abstract) -> str:
        c = a.clause
        if a.kind in ("statement", "negation", "modal"):
            return _capitalise(_elide(self.clause(c))) + "."
        if a.kind == "yesno":
            return _capitalise(_elide(["est-ce", "que", *self.clause(c)])) + " ?"
        if a.kind == "what":
            return _capitalise(_elide(["qu'est-ce", "que", *self.np(c.subj), c.verb.fr[1][c.subj.person],
                                       *self.place(c.place), self.time(c.time)])) + " ?"
        if a.kind == "where":
            return _capitalise(_elide(["où", "est-ce", "que", *self.np(c.subj), c.verb.fr[1][c.subj.person],
                                       *self.np(c.obj), self.time(c.time)])) + " ?"
        if a.kind == "how_many":
            return _capitalise(_elide(["combien", "de", c.obj.noun.fr[2], "est-ce", "que", *self.np(c.subj),
                                       c.verb.fr[1][c.subj.person], *self.place(c.place), self.time(c.time)])) + " ?"
        if a.kind == "where_is":
            return _capitalise(_elide(["où", self.BE[a.subj.person], *self.np(a.subj), self.time(a.time)])) + " ?"
        if a.kind == "copula":
            fem = (a.subj.noun.fr[0] if a.subj.noun else a.subj.gender) == "f"
            adj = a.adj.fr[fem + 2 * (a.subj.plural or a.subj.person >= 3)]
            return _capitalise(_elide([*self.np(a.subj), self.BE[a.subj.person], "très" if a.very else "", adj])) + "."
        if a.kind == "exist":
            return _capitalise(_elide(["il", "y", "a", *self.np(a.obj), *self.place(a.place), self.time(a.time)])) + "."
        conj = [","] + ["mais"] if a.conj == "but" else ["et"]
        return _capitalise(_elide([*self.clause(a.clause), *conj, *self.clause(a.clause2)])).replace(" ,", ",") + "."


class German:
    PRONOUNS = (("ich", "ich"), ("du", "du"), ("er", "sie"), ("wir", "wir"), ("sie", "sie"))
    BE = ("bin", "bist", "ist", "sind", "sind")
    MODALS = {"want": ("will", "willst", "will", "wollen", "wollen"),
              "can": ("kann", "kannst", "kann", "können", "können"),
              "must": ("muss", "musst", "muss", "müssen", "müssen")}
    # Articles by case and gender (m, f, n, plural), and the adjective endings after each article type; Duden,
    # Die Grammatik, §§ 477-483 (weak after der/die/das, mixed after ein, strong with no article).
    DEF = {"nom": ("der", "die", "das", "die"), "acc": ("den", "die", "das", "die"),
           "dat": ("dem", "der", "dem", "den")}
    INDEF = {"nom": ("ein", "eine", "ein"), "acc": ("einen", "eine", "ein"), "dat": ("einem", "einer", "einem")}
    WEAK = {"nom": ("e", "e", "e", "en"), "acc": ("en", "e", "e", "en"), "dat": ("en", "en", "en", "en")}
    MIXED = {"nom": ("er", "e", "es"), "acc": ("en", "e", "es"), "dat": ("en", "en", "en")}
    STRONG_PLURAL = {"nom": "e", "acc": "e", "dat": "en"}
    GENDERS = "mfn"

    def np(self, p: NP, case: str = "nom") -> str:
        if p.pron is not None:
            return self.PRONOUNS[p.pron][p.gender == "f"]
        g, sg, pl, oblique = p.noun.de
        gi = 3 if p.plural else self.GENDERS.index(g)
        head = pl if p.plural else sg if case == "nom" else oblique
        if p.det == "def":
            det, ending = self.DEF[case][gi], self.WEAK[case][gi]
        elif p.det == "indef":
            det, ending = self.INDEF[case][gi], self.MIXED[case][gi]
        else:
            det, ending = number("de", p.count), self.STRONG_PLURAL[case]
        return _join([det, p.adj.de[1] + ending if p.adj else "", head])

    def place(self, n: Noun | None) -> str:
        if not n:
            return ""
        prep = lx.PLACE_PREPOSITIONS.get(n.key, ("", "", "in"))[2]
        text = f"{prep} {self.np(NP(n), 'dat')}"
        return text.replace("in dem ", "im ", 1).replace("an dem ", "am ", 1)  # im Garten, am Bahnhof

    def time(self, t: Time | None) -> str:
        return t.forms["de"] if t else ""

    def verb(self, c: Clause) -> str:
        return c.verb.de[1][c.subj.person]

    def obj(self, c: Clause) -> str:
        return self.np(c.obj, "acc") if c.obj else ""

    def clause(self, c: Clause) -> str:
        rest = [self.obj(c), self.place(c.place), self.time(c.time)]
        if c.modal:  # the infinitive goes last: "ich will den Apfel heute essen"
            return _join([self.np(c.subj), self.MODALS[c.modal][c.subj.person], *rest, c.verb.de[0]])
        return _join([self.np(c.subj), self.verb(c), *rest, "nicht" if c.neg else ""])

    def realise(self, a: Abstract) -> str:
        c = a.clause
        if a.kind in ("statement", "negation", "modal"):
            return _capitalise(self.clause(c)) + "."
        if a.kind == "yesno":
            return _capitalise(_join([self.verb(c), self.np(c.subj), self.obj(c), self.place(c.place),
                                      self.time(c.time)])) + "?"
        if a.kind == "what":
            return _join(["Was", self.verb(c), self.np(c.subj), self.place(c.place), self.time(c.time)]) + "?"
        if a.kind == "where":
            return _join(["Wo", self.verb(c), self.np(c.subj), self.obj(c), self.time(c.time)]) + "?"
        if a.kind == "how_many":
            return _join(["Wie viele", c.obj.noun.de[2], self.verb(c), self.np(c.subj), self.place(c.place),
                          self.time(c.time)]) + "?"
        if a.kind == "where_is":
            return _join(["Wo", self.BE[a.subj.person], self.np(a.subj), self.time(a.time)]) + "?"
        if a.kind == "copula":
            return _capitalise(_join([self.np(a.subj), self.BE[a.subj.person], "sehr" if a.very else "",
                                      a.adj.de[0]])) + "."
        if a.kind == "exist":
            return _join(["Es gibt", self.np(a.obj, "acc"), self.place(a.place), self.time(a.time)]) + "."
        return _capitalise(self.clause(a.clause) + (" und " if a.conj == "and" else ", aber ")
                           + self.clause(a.clause2)) + "."


class Mandarin:
    PRONOUNS = (("我", "我"), ("你", "你"), ("他", "她"), ("我们", "我们"), ("他们", "她们"))
    MODALS = {"want": "想", "can": "能", "must": "必须"}

    def np(self, p: NP) -> str:
        if p.pron is not None:
            return self.PRONOUNS[p.pron][p.gender == "f"]
        mw, noun = p.noun.zh
        head = (p.adj.zh[0] if p.adj else "") + noun
        if p.det == "indef":
            return "一" + mw + head
        if p.det == "num":
            return number("zh", p.count) + mw + head
        return ("那些" if p.plural else "") + head

    def location(self, n: Noun) -> str:
        return n.zh[1] + lx.PLACE_PREPOSITIONS.get(n.key, ("", "", "", "里"))[3]

    def place(self, n: Noun | None) -> str:
        return "在" + self.location(n) if n else ""

    def time(self, t: Time | None) -> str:
        return t.forms["zh"] if t else ""

    def clause(self, c: Clause) -> str:
        verb = c.verb.zh[1] if c.neg else c.verb.zh[0]
        obj = self.np(c.obj) if c.obj else ""
        return "".join([self.np(c.subj), self.time(c.time), self.MODALS.get(c.modal, ""), self.place(c.place),
                        verb, obj])

    def realise(self, a: Abstract) -> str:
        c = a.clause
        if a.kind in ("statement", "negation", "modal"):
            return self.clause(c) + "。"
        if a.kind == "yesno":
            return self.clause(c) + "吗？"
        if a.kind == "what":
            return self.np(c.subj) + self.time(c.time) + self.place(c.place) + c.verb.zh[0] + "什么？"
        if a.kind == "where":
            return self.np(c.subj) + self.time(c.time) + "在哪里" + c.verb.zh[0] + self.np(c.obj) + "？"
        if a.kind == "how_many":
            mw, noun = c.obj.noun.zh
            return self.np(c.subj) + self.time(c.time) + self.place(c.place) + c.verb.zh[0] + "几" + mw + noun + "？"
        if a.kind == "where_is":
            return self.np(a.subj) + self.time(a.time) + "在哪里？"
        if a.kind == "copula":
            return self.np(a.subj) + a.adj.zh[2 if a.very else 1] + "。"
        if a.kind == "exist":
            return self.time(a.time) + self.location(a.place) + "有" + self.np(a.obj) + "。"
        return self.clause(a.clause) + ("，" if a.conj == "and" else "，但是") + self.clause(a.clause2) + "。"


REALISERS = {"en": English(), "es": Spanish(), "fr": French(), "de": German(), "zh": Mandarin()}


# -----------------------------------------------------------------------------
# the public generator


@dataclass(frozen=True)
class Sentence:
    text: str
    translation: str  # English
    language: str
    kind: str  # the structure
    concepts: frozenset[str]  # "noun:apple", "verb:eat", ... (what the held-out split is decided on)


def realise(abstract: Abstract, language: str) -> str:
    return REALISERS[check_language(language)].realise(abstract)


class SentenceGenerator:
    """Sentences of one language for one split; `sample(rng, split)` is a pure function of the rng state."""

    def __init__(self, language: str):
        self.language = check_language(language)

    def sample(self, rng: random.Random, split: str) -> Sentence:
        check_split(split)
        sampler = _Sampler(rng)
        for _ in range(MAX_DRAWS):
            a = sampler.abstract()
            concepts = a.concepts()
            unseen = bool(concepts & HELDOUT)
            if unseen != (split == "test_unseen"):
                continue
            text = realise(a, self.language)
            if split != "test_unseen" and split_of_text(self.language, text) != split:
                continue
            return Sentence(text, realise(a, "en"), self.language, a.kind, concepts)
        raise RuntimeError(f"no {split} sentence in {MAX_DRAWS} draws for {self.language}")  # pragma: no cover


def concept_words(language: str, concepts) -> set[str]:
    """The surface words of `concepts` ("noun:apple", ...) in a space-separated language: every form of each."""
    check_language(language)
    if language == "zh":
        raise InputError("Mandarin is written without spaces: compare concepts, not words")
    words: set[str] = set()
    by_key = {f"noun:{n.key}": n for n in NOUNS} | {f"adj:{a.key}": a for a in ADJECTIVES} | \
             {f"verb:{v.key}": v for v in VERBS}
    for c in concepts:
        item = by_key[c]
        if isinstance(item, Noun):
            forms = {"en": item.en, "es": item.es[1:], "fr": item.fr[1:], "de": item.de[1:]}[language]
        elif isinstance(item, Adjective):
            forms = {"en": (item.key,), "es": item.es, "fr": item.fr, "de": (item.de[0],)}[language]
        else:
            forms = {"en": item.en, "es": (item.es[0], *item.es[1]), "fr": (item.fr[0], *item.fr[1]),
                     "de": (item.de[0], *item.de[1])}[language]
        words |= {w.lower() for f in forms for w in f.split() if f}
    return words


def heldout_words(language: str) -> frozenset[str]:
    """Words (lower case) that only held-out concepts use in `language`: they never occur in train/val/test."""
    seen = {f"noun:{n.key}" for n in NOUNS} | {f"adj:{a.key}" for a in ADJECTIVES} | {f"verb:{v.key}" for v in VERBS}
    return frozenset(concept_words(language, HELDOUT) - concept_words(language, seen - HELDOUT))


def lexicon_size(language: str) -> int:
    """Distinct content-word forms of the lexicon in `language` (nouns, adjectives, verbs, all inflections);
    for Mandarin the distinct noun, adjective and verb strings."""
    check_language(language)
    if language == "zh":
        return len({n.zh[1] for n in NOUNS} | {a.zh[0] for a in ADJECTIVES} | {v.zh[0] for v in VERBS})
    everything = {f"noun:{n.key}" for n in NOUNS} | {f"adj:{a.key}" for a in ADJECTIVES} | \
                 {f"verb:{v.key}" for v in VERBS}
    return len(concept_words(language, everything))
