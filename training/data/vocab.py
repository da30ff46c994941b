"""Vocabulary and text grammar of the synthetic world.

Everything the synthetic generator says about a scene is produced by the ``render_*`` functions below, and the
ground-truth checkers read it back with the ``parse_*`` functions. The grammar is deliberately small and strict: a
parser returns ``None`` for any text that is not exactly one of the documented forms, so a corrupted string can never
be half-understood.

Semantics (used by the generator *and* enforced by the checkers):

* Noun phrases in captions (``"a small red circle"``) state an object's exact size: no size word means *medium*.
* Referring expressions (``"the red circle"``, ``"the medium red circle"``) are constraints: an attribute that is not
  named is unconstrained; a referring expression must pick out exactly one object.
* Spatial relations compare object centres along the dominant axis: ``A`` is *to the left of* ``B`` when
  ``|dx| >= |dy|`` and ``A``'s centre is left of ``B``'s; *above* / *below* when ``|dy| > |dx|`` (image y grows
  downwards). The generator only states relations whose dominant axis is clear (ratio >= 2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

# --------------------------------------------------------------------------------------------------------------------
# Visual vocabulary
# --------------------------------------------------------------------------------------------------------------------

#: Object colours (name -> RGB). Saturated and far apart from each other and from the light backgrounds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 220, 0),
    "purple": (130, 40, 170),
    "orange": (250, 120, 0),
    "pink": (240, 90, 190),
    "black": (25, 25, 25),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
SHAPE_PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "star": "stars",
    "cross": "crosses",
}
SIZES: tuple[str, ...] = ("small", "medium", "large")

#: Light backgrounds (name -> RGB). Textured variants add low-amplitude noise / stripes around the base colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (244, 244, 244),
    "beige": (242, 236, 222),
    "light gray": (226, 226, 226),
    "pale blue": (226, 234, 244),
}

RELATIONS: tuple[str, ...] = ("above", "below", "to the left of", "to the right of")
INVERSE_RELATION = {
    "above": "below",
    "below": "above",
    "to the left of": "to the right of",
    "to the right of": "to the left of",
}
#: Short answer words for "where is A relative to B?".
RELATION_ANSWER = {"above": "above", "below": "below", "to the left of": "left", "to the right of": "right"}

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")

# Video
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
DIRECTION_PHRASE = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
PHRASE_DIRECTION = {v: k for k, v in DIRECTION_PHRASE.items()}

# Audio
AUDIO_KINDS: tuple[str, ...] = ("high beep", "low beep", "rising chirp", "falling chirp", "noise")
_AUDIO_SINGULAR = {k: k for k in AUDIO_KINDS} | {"noise": "burst of noise"}
_AUDIO_PLURAL = {
    "high beep": "high beeps",
    "low beep": "low beeps",
    "rising chirp": "rising chirps",
    "falling chirp": "falling chirps",
    "noise": "bursts of noise",
}

# Visual-entailment vocabulary for undecidable ("maybe") statements.
MATERIALS: tuple[str, ...] = ("wood", "metal", "paper", "glass")


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


# --------------------------------------------------------------------------------------------------------------------
# Objects and noun phrases
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    """Attributes of one object: all three known (a scene object) or some None (a referring expression)."""

    size: Optional[str]
    colour: Optional[str]
    shape: Optional[str]

    def matches(self, other: "Attr") -> bool:
        """True when every attribute set on ``self`` equals the one on ``other``."""
        return all(
            mine is None or mine == theirs
            for mine, theirs in ((self.size, other.size), (self.colour, other.colour), (self.shape, other.shape))
        )


def noun_phrase(size: str, colour: str, shape: str) -> str:
    """Indefinite noun phrase with the exact-size convention: ``"a small red circle"``, ``"an orange star"``."""
    words = ([size] if size != "medium" else []) + [colour, shape]
    return f"{article(words[0])} {' '.join(words)}"


def region_phrase(size: str, colour: str, shape: str) -> str:
    """Grounded-caption target for a region (same as :func:`noun_phrase`)."""
    return noun_phrase(size, colour, shape)


def referring_expression(attr: Attr) -> str:
    """Definite description: ``"the small red circle"``; ``"the red object"`` when the shape is not named."""
    words = [w for w in (attr.size, attr.colour) if w is not None]
    words.append(attr.shape if attr.shape is not None else "object")
    return "the " + " ".join(words)


_C = "|".join(COLOUR_NAMES)
_S = "|".join(SHAPES)
_SP = "|".join(SHAPE_PLURALS.values())
_NP_RE = re.compile(rf"\b(a|an) (?:(small|large) )?({_C}) ({_S})\b")
_RE_PAT = rf"the(?: (small|medium|large))?(?: ({_C}))? ({_S}|object)"
_RE_RE = re.compile(rf"^{_RE_PAT}$")
_REL_PAT = "|".join(RELATIONS)


def _np_ok(m: re.Match) -> bool:
    first = m.group(2) or m.group(3)
    return m.group(1) == article(first)


def parse_noun_phrase(text: str) -> Optional[Attr]:
    m = _NP_RE.fullmatch(text)
    if not m or not _np_ok(m):
        return None
    return Attr(m.group(2) or "medium", m.group(3), m.group(4))


def parse_referring_expression(text: str) -> Optional[Attr]:
    m = _RE_RE.match(text)
    if not m:
        return None
    shape = None if m.group(3) == "object" else m.group(3)
    if m.group(1) is None and m.group(2) is None and shape is None:
        return None  # "the object" refers to nothing in particular
    return Attr(m.group(1), m.group(2), shape)


# --------------------------------------------------------------------------------------------------------------------
# Image captions
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionClaim:
    """What an image caption asserts: the exact multiset of objects, plus optionally one relation or an x-order."""

    objects: tuple[Attr, ...]
    relation: Optional[str] = None  # between objects[0] and objects[1] (two-object captions)
    order: Optional[str] = None  # "left to right" / "right to left" for 3+ objects


def render_caption(objs: list[tuple[str, str, str]], relation: Optional[str] = None,
                   order: Optional[str] = None) -> str:
    """``objs`` are (size, colour, shape) in mention order."""
    nps = [noun_phrase(*o) for o in objs]
    if len(nps) == 1:
        return nps[0]
    if len(nps) == 2:
        return f"{nps[0]} {relation if relation else 'and'} {nps[1]}"
    text = ", ".join(nps[:-1]) + " and " + nps[-1]
    if order:
        text += f" from {order}"
    return text


def parse_caption(text: str) -> Optional[CaptionClaim]:
    matches = list(_NP_RE.finditer(text))
    if not matches or any(not _np_ok(m) for m in matches):
        return None
    objs = tuple(Attr(m.group(2) or "medium", m.group(3), m.group(4)) for m in matches)
    glue = [text[matches[i].end() : matches[i + 1].start()] for i in range(len(matches) - 1)]
    if text[: matches[0].start()] != "":
        return None
    tail = text[matches[-1].end() :]
    relation = order = None
    if len(objs) == 1:
        if tail:
            return None
    elif len(objs) == 2:
        if tail:
            return None
        g = glue[0].strip()
        if glue[0] != f" {g} " or (g != "and" and g not in RELATIONS):
            return None
        relation = None if g == "and" else g
    else:
        if glue != [", "] * (len(objs) - 2) + [" and "]:
            return None
        if tail in (" from left to right", " from right to left"):
            order = tail[len(" from ") :]
        elif tail:
            return None
    return CaptionClaim(objs, relation, order)


# --------------------------------------------------------------------------------------------------------------------
# Image questions (VQA) and visual-entailment hypotheses
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Form:
    """One sentence form of a grammar, written and read in one place: ``render`` writes it from a :class:`Question`
    / :class:`Hypothesis`, ``pattern`` reads it back and ``fields`` say how (field name -> function of the match; a
    referring expression that refers to nothing gives None, which rejects the text). ``article``: the groups
    (determiner, the word after it) that must agree, ``"a"`` / ``"an"``."""

    kind: str
    render: Callable[[Any], str]
    pattern: re.Pattern
    fields: dict[str, Callable[[re.Match], Any]]
    article: Optional[tuple[int, int]] = None


def _ref(group: int) -> Callable[[re.Match], Optional[Attr]]:
    return lambda m: parse_referring_expression(m.group(group))


def _text(group: int) -> Callable[[re.Match], str]:
    return lambda m: m.group(group)


def _render_form(forms: dict[str, _Form], kind: str, value, what: str) -> str:
    if kind not in forms:
        raise ValueError(f"unknown {what} type {kind!r}")
    return forms[kind].render(value)


def _parse_form(forms: Sequence[_Form], text: str, make: Callable[..., Any]):
    """``make(kind, **fields)`` of the first form whose pattern matches ``text``; None when no form matches, or when
    the first one that does rejects the text (a referring expression to nothing, a wrong article)."""
    for form in forms:
        m = form.pattern.match(text)
        if not m:
            continue
        values = {}
        for name, read in form.fields.items():
            values[name] = read(m)
            if values[name] is None:
                return None
        if form.article is not None and m.group(form.article[0]) != article(m.group(form.article[1])):
            return None
        return make(form.kind, **values)
    return None


QUESTION_TYPES: tuple[str, ...] = (
    "color",
    "shape",
    "size",
    "count",
    "count_color",
    "count_shape",
    "exists",
    "relation_yn",
    "where",
)


@dataclass(frozen=True)
class Question:
    qtype: str
    ref: Optional[Attr] = None  # the object asked about
    ref2: Optional[Attr] = None  # second object (relations)
    colour: Optional[str] = None
    shape: Optional[str] = None
    relation: Optional[str] = None


_SHAPE_OF_PLURAL = {v: k for k, v in SHAPE_PLURALS.items()}

#: The question forms (one per :data:`QUESTION_TYPES`), in the order they are tried when parsing.
_QUESTION_FORMS: tuple[_Form, ...] = (
    _Form("color", lambda q: f"what color is {referring_expression(q.ref)}?",
          re.compile(rf"^what color is ({_RE_PAT})\?$"), {"ref": _ref(1)}),
    _Form("shape", lambda q: f"what shape is {referring_expression(q.ref)}?",
          re.compile(rf"^what shape is ({_RE_PAT})\?$"), {"ref": _ref(1)}),
    _Form("size", lambda q: f"what size is {referring_expression(q.ref)}?",
          re.compile(rf"^what size is ({_RE_PAT})\?$"), {"ref": _ref(1)}),
    _Form("count", lambda q: "how many shapes are there?", re.compile(r"^how many shapes are there\?$"), {}),
    _Form("count_color", lambda q: f"how many {q.colour} shapes are there?",
          re.compile(rf"^how many ({_C}) shapes are there\?$"), {"colour": _text(1)}),
    _Form("count_shape", lambda q: f"how many {SHAPE_PLURALS[q.shape]} are there?",
          re.compile(rf"^how many ({_SP}) are there\?$"), {"shape": lambda m: _SHAPE_OF_PLURAL[m.group(1)]}),
    _Form("exists", lambda q: f"is there {article(q.colour)} {q.colour} {q.shape}?",
          re.compile(rf"^is there (a|an) ({_C}) ({_S})\?$"), {"colour": _text(2), "shape": _text(3)}, article=(1, 2)),
    _Form("relation_yn", lambda q: f"is {referring_expression(q.ref)} {q.relation} {referring_expression(q.ref2)}?",
          re.compile(rf"^is ({_RE_PAT}) ({_REL_PAT}) ({_RE_PAT})\?$"),
          {"ref": _ref(1), "ref2": _ref(6), "relation": _text(5)}),
    _Form("where",
          lambda q: f"where is {referring_expression(q.ref)} relative to {referring_expression(q.ref2)}?",
          re.compile(rf"^where is ({_RE_PAT}) relative to ({_RE_PAT})\?$"), {"ref": _ref(1), "ref2": _ref(5)}),
)
_QUESTION_FORM_OF = {form.kind: form for form in _QUESTION_FORMS}


def render_question(q: Question) -> str:
    return _render_form(_QUESTION_FORM_OF, q.qtype, q, "question")


def parse_question(text: str) -> Optional[Question]:
    return _parse_form(_QUESTION_FORMS, text, Question)


HYPOTHESIS_TYPES_DECIDABLE = ("exists", "count", "relation", "color", "size", "all_color")
HYPOTHESIS_TYPES_UNDECIDABLE = ("moving", "hidden", "drawn_before", "material")
HYPOTHESIS_TYPES = HYPOTHESIS_TYPES_DECIDABLE + HYPOTHESIS_TYPES_UNDECIDABLE


@dataclass(frozen=True)
class Hypothesis:
    htype: str
    ref: Optional[Attr] = None
    ref2: Optional[Attr] = None
    colour: Optional[str] = None
    shape: Optional[str] = None
    size: Optional[str] = None
    count: Optional[int] = None
    relation: Optional[str] = None
    extra: Optional[str] = None  # direction / material

    @property
    def decidable(self) -> bool:
        return self.htype in HYPOTHESIS_TYPES_DECIDABLE


_DIR_PAT = "|".join(DIRECTION_PHRASE.values())

#: The hypothesis forms (one per :data:`HYPOTHESIS_TYPES`), in the order they are tried when parsing: the undecidable
#: forms first, as their texts also match the patterns of "exists", "relation" and "color".
_HYPOTHESIS_FORMS: tuple[_Form, ...] = (
    _Form("moving", lambda h: f"{referring_expression(h.ref)} is moving {DIRECTION_PHRASE[h.extra]}",
          re.compile(rf"^({_RE_PAT}) is moving ({_DIR_PAT})$"),
          {"ref": _ref(1), "extra": lambda m: PHRASE_DIRECTION[m.group(5)]}),
    _Form("hidden",
          lambda h: f"there is {article(h.colour)} {h.colour} {h.shape} hidden behind {referring_expression(h.ref)}",
          re.compile(rf"^there is (a|an) ({_C}) ({_S}) hidden behind ({_RE_PAT})$"),
          {"ref": _ref(4), "colour": _text(2), "shape": _text(3)}, article=(1, 2)),
    _Form("drawn_before", lambda h: f"{referring_expression(h.ref)} was drawn before {referring_expression(h.ref2)}",
          re.compile(rf"^({_RE_PAT}) was drawn before ({_RE_PAT})$"), {"ref": _ref(1), "ref2": _ref(5)}),
    _Form("material", lambda h: f"{referring_expression(h.ref)} is made of {h.extra}",
          re.compile(rf"^({_RE_PAT}) is made of ({'|'.join(MATERIALS)})$"), {"ref": _ref(1), "extra": _text(5)}),
    _Form("exists", lambda h: f"there is {article(h.colour)} {h.colour} {h.shape}",
          re.compile(rf"^there is (a|an) ({_C}) ({_S})$"), {"colour": _text(2), "shape": _text(3)}, article=(1, 2)),
    _Form("count", lambda h: "there is one shape" if h.count == 1 else f"there are {NUMBER_WORDS[h.count]} shapes",
          re.compile(rf"^there (?:is (one) shape|are ({'|'.join(NUMBER_WORDS[2:])}) shapes)$"),
          {"count": lambda m: NUMBER_WORDS.index(m.group(1) or m.group(2))}),
    _Form("relation", lambda h: f"{referring_expression(h.ref)} is {h.relation} {referring_expression(h.ref2)}",
          re.compile(rf"^({_RE_PAT}) is ({_REL_PAT}) ({_RE_PAT})$"),
          {"ref": _ref(1), "ref2": _ref(6), "relation": _text(5)}),
    _Form("color", lambda h: f"{referring_expression(h.ref)} is {h.colour}",
          re.compile(rf"^({_RE_PAT}) is ({_C})$"), {"ref": _ref(1), "colour": _text(5)}),
    _Form("size", lambda h: f"{referring_expression(h.ref)} is {h.size}",
          re.compile(rf"^({_RE_PAT}) is (small|medium|large)$"), {"ref": _ref(1), "size": _text(5)}),
    _Form("all_color", lambda h: f"all shapes are {h.colour}", re.compile(rf"^all shapes are ({_C})$"),
          {"colour": _text(1)}),
)
_HYPOTHESIS_FORM_OF = {form.kind: form for form in _HYPOTHESIS_FORMS}


def render_hypothesis(h: Hypothesis) -> str:
    return _render_form(_HYPOTHESIS_FORM_OF, h.htype, h, "hypothesis")


def parse_hypothesis(text: str) -> Optional[Hypothesis]:
    return _parse_form(_HYPOTHESIS_FORMS, text, Hypothesis)


# --------------------------------------------------------------------------------------------------------------------
# Video captions and questions
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoClause:
    """One event: ``kind`` in move/appear/disappear/turn/still; ``attr`` the object (colour before a turn)."""

    kind: str
    attr: Attr
    direction: Optional[str] = None
    new_colour: Optional[str] = None


def render_video_caption(actors: list[VideoClause], still: list[VideoClause]) -> str:
    parts = []
    for c in actors:
        np_ = noun_phrase(c.attr.size, c.attr.colour, c.attr.shape)
        if c.kind == "move":
            parts.append(f"{np_} moves {DIRECTION_PHRASE[c.direction]}")
        elif c.kind == "appear":
            parts.append(f"{np_} appears")
        elif c.kind == "disappear":
            parts.append(f"{np_} disappears")
        elif c.kind == "turn":
            parts.append(f"{np_} turns {c.new_colour}")
        else:
            raise ValueError(c.kind)
    text = " and ".join(parts)
    if still:
        nps = [noun_phrase(c.attr.size, c.attr.colour, c.attr.shape) for c in still]
        verb = "stays" if len(nps) == 1 else "stay"
        text += f" while {' and '.join(nps)} {verb} still"
    return text


_NP_PAT = rf"(?:a|an) (?:(?:small|large) )?(?:{_C}) (?:{_S})"
_CLAUSE_RE = re.compile(rf"^({_NP_PAT}) (moves ({_DIR_PAT})|appears|disappears|turns ({_C}))$")


def parse_video_caption(text: str) -> Optional[tuple[list[VideoClause], list[VideoClause]]]:
    main, still_part = text, None
    if " while " in text:
        main, still_part = text.split(" while ", 1)
    actors = []
    for piece in main.split(" and "):
        m = _CLAUSE_RE.match(piece)
        if not m:
            return None
        attr = parse_noun_phrase(m.group(1))
        if attr is None:
            return None
        verb = m.group(2)
        if verb.startswith("moves"):
            actors.append(VideoClause("move", attr, direction=PHRASE_DIRECTION[m.group(3)]))
        elif verb == "appears":
            actors.append(VideoClause("appear", attr))
        elif verb == "disappears":
            actors.append(VideoClause("disappear", attr))
        else:
            if m.group(4) == attr.colour:
                return None
            actors.append(VideoClause("turn", attr, new_colour=m.group(4)))
    still = []
    if still_part is not None:
        pieces = still_part.split(" and ")
        verb = " stays still" if len(pieces) == 1 else " stay still"
        if not pieces[-1].endswith(verb):
            return None
        pieces[-1] = pieces[-1][: -len(verb)]
        for p in pieces:
            attr = parse_noun_phrase(p)
            if attr is None:
                return None
            still.append(VideoClause("still", attr))
    return actors, still


VIDEO_QUESTION_TYPES = ("direction", "turn_color", "appear_shape", "disappear_shape", "moves_yn", "count_moving",
                        "count_end", "count_start")

_VQ_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("direction", re.compile(rf"^which direction does ({_RE_PAT}) move\?$")),
    ("turn_color", re.compile(rf"^what color does ({_RE_PAT}) turn\?$")),
    ("appear_shape", re.compile(r"^what shape appears\?$")),
    ("disappear_shape", re.compile(r"^what shape disappears\?$")),
    ("moves_yn", re.compile(rf"^does ({_RE_PAT}) move\?$")),
    ("count_moving", re.compile(r"^how many shapes move\?$")),
    ("count_end", re.compile(r"^how many shapes are there at the end of the video\?$")),
    ("count_start", re.compile(r"^how many shapes are there at the start of the video\?$")),
]


def render_video_question(qtype: str, ref: Optional[Attr] = None) -> str:
    return {
        "direction": lambda: f"which direction does {referring_expression(ref)} move?",
        "turn_color": lambda: f"what color does {referring_expression(ref)} turn?",
        "appear_shape": lambda: "what shape appears?",
        "disappear_shape": lambda: "what shape disappears?",
        "moves_yn": lambda: f"does {referring_expression(ref)} move?",
        "count_moving": lambda: "how many shapes move?",
        "count_end": lambda: "how many shapes are there at the end of the video?",
        "count_start": lambda: "how many shapes are there at the start of the video?",
    }[qtype]()


def parse_video_question(text: str) -> Optional[tuple[str, Optional[Attr]]]:
    for qtype, pat in _VQ_PATTERNS:
        m = pat.match(text)
        if m:
            if pat.groups:
                ref = parse_referring_expression(m.group(1))
                return (qtype, ref) if ref else None
            return qtype, None
    return None


# --------------------------------------------------------------------------------------------------------------------
# Audio captions
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoundGroup:
    """A run of identical sound events: ``count`` times ``kind`` (quick: short beeps at a fast tempo)."""

    kind: str
    count: int
    quick: bool = False


def render_sound_group(g: SoundGroup) -> str:
    quick = "quick " if g.quick else ""
    if g.count == 1:
        name = _AUDIO_SINGULAR[g.kind]
        return f"{article(quick + name)} {quick}{name}"
    return f"{NUMBER_WORDS[g.count]} {quick}{_AUDIO_PLURAL[g.kind]}"


def render_audio_caption(groups: list[SoundGroup]) -> str:
    phrases = [render_sound_group(g) for g in groups]
    if len(phrases) == 1:
        return phrases[0]
    if len(phrases) == 2:
        return f"{phrases[0]} followed by {phrases[1]}"
    return ", then ".join(phrases)


_SING = {v: k for k, v in _AUDIO_SINGULAR.items()}
_PLUR = {v: k for k, v in _AUDIO_PLURAL.items()}
_GROUP_RE = re.compile(
    rf"^(a|an|{'|'.join(NUMBER_WORDS[2:])}) (quick )?({'|'.join(list(_SING) + list(_PLUR))})$"
)


def parse_sound_group(text: str) -> Optional[SoundGroup]:
    m = _GROUP_RE.match(text)
    if not m:
        return None
    det, quick, name = m.group(1), bool(m.group(2)), m.group(3)
    if det in ("a", "an"):
        if name not in _SING or det != article((m.group(2) or "") + name):
            return None
        g = SoundGroup(_SING[name], 1, quick)
    else:
        if name not in _PLUR:
            return None
        g = SoundGroup(_PLUR[name], NUMBER_WORDS.index(det), quick)
    if g.quick and (g.kind not in ("high beep", "low beep") or g.count < 2):
        return None
    return g


def parse_audio_caption(text: str) -> Optional[list[SoundGroup]]:
    if ", then " in text:
        pieces = text.split(", then ")
        if len(pieces) < 3:
            return None
    elif " followed by " in text:
        pieces = text.split(" followed by ")
        if len(pieces) != 2:
            return None
    else:
        pieces = [text]
    groups = [parse_sound_group(p) for p in pieces]
    if any(g is None for g in groups):
        return None
    return groups  # type: ignore[return-value]


def canonical_groups(events: list[tuple[str, bool]]) -> list[SoundGroup]:
    """Run-length encode a sequence of (kind, quick) events into :class:`SoundGroup` s."""
    groups: list[SoundGroup] = []
    for kind, quick in events:
        if groups and groups[-1].kind == kind and groups[-1].quick == quick:
            groups[-1] = SoundGroup(kind, groups[-1].count + 1, quick)
        else:
            groups.append(SoundGroup(kind, 1, quick))
    return groups
