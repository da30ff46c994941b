"""Truth conditions of the synthetic world's language, evaluated over object lists.

The generator evaluates its own statements over the ground-truth objects (a cheap self-consistency assertion); the
checkers (:mod:`training.data.checks`) evaluate the same statements over objects *re-detected from the pixels /
frames / waveform*. Both go through the functions below, so "what a sentence means" is defined in one place.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

from .vocab import (
    RELATION_ANSWER,
    Attr,
    CaptionClaim,
    Hypothesis,
    Question,
    SoundGroup,
    VideoClause,
)


class Undefined(Exception):
    """A statement whose presupposition fails (e.g. a referring expression that matches 0 or 2+ objects)."""


@dataclass(frozen=True)
class Obj:
    """An object of a scene (ground truth or detected): attributes and tight pixel box (x1/y1 exclusive)."""

    size: str
    colour: str
    shape: str
    box: tuple[float, float, float, float]

    @property
    def attr(self) -> Attr:
        return Attr(self.size, self.colour, self.shape)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


def spatial_relation(a: Obj, b: Obj, min_ratio: float = 1.0) -> Optional[str]:
    """Relation of ``a`` to ``b`` along the dominant axis of their centre offset; None if the two axes are within
    ``min_ratio`` of each other (ambiguous) or the centres coincide."""
    dx = a.centre[0] - b.centre[0]
    dy = a.centre[1] - b.centre[1]
    ax, ay = abs(dx), abs(dy)
    if ax == ay:
        return None
    if ax > ay:
        if ay > 0 and ax < min_ratio * ay:
            return None
        return "to the left of" if dx < 0 else "to the right of"
    if ax > 0 and ay < min_ratio * ax:
        return None
    return "above" if dy < 0 else "below"


def resolve(ref: Attr, objs: Sequence[Obj]) -> Obj:
    """The unique object matching referring expression ``ref``; :class:`Undefined` otherwise."""
    found = [o for o in objs if ref.matches(o.attr)]
    if len(found) != 1:
        raise Undefined(f"referring expression {ref} matches {len(found)} objects")
    return found[0]


def is_unique(ref: Attr, objs: Sequence[Obj]) -> bool:
    return sum(ref.matches(o.attr) for o in objs) == 1


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------------


def caption_problem(claim: CaptionClaim, objs: Sequence[Obj]) -> Optional[str]:
    """None when the caption is true of ``objs`` (exact multiset of objects + relation/order), else the reason."""
    said = Counter((a.size, a.colour, a.shape) for a in claim.objects)
    seen = Counter((o.size, o.colour, o.shape) for o in objs)
    if said != seen:
        return f"caption names {sorted(said.elements())} but the scene has {sorted(seen.elements())}"
    if claim.relation is not None:
        a, b = (resolve(Attr(*t), objs) for t in ((x.size, x.colour, x.shape) for x in claim.objects))
        actual = spatial_relation(a, b)
        if actual != claim.relation:
            return f"caption says {claim.relation!r} but the relation is {actual!r}"
    if claim.order is not None:
        placed = [resolve(x, objs) for x in claim.objects]
        xs = [o.centre[0] for o in placed]
        increasing = all(x1 < x2 for x1, x2 in zip(xs, xs[1:]))
        decreasing = all(x1 > x2 for x1, x2 in zip(xs, xs[1:]))
        if (claim.order == "left to right" and not increasing) or (claim.order == "right to left" and not decreasing):
            return f"objects are not ordered {claim.order}"
    return None


def answer_question(q: Question, objs: Sequence[Obj]) -> str:
    t = q.qtype
    if t == "color":
        return resolve(q.ref, objs).colour
    if t == "shape":
        return resolve(q.ref, objs).shape
    if t == "size":
        return resolve(q.ref, objs).size
    if t == "count":
        return str(len(objs))
    if t == "count_color":
        return str(sum(o.colour == q.colour for o in objs))
    if t == "count_shape":
        return str(sum(o.shape == q.shape for o in objs))
    if t == "exists":
        return "yes" if any(o.colour == q.colour and o.shape == q.shape for o in objs) else "no"
    if t in ("relation_yn", "where"):
        a, b = resolve(q.ref, objs), resolve(q.ref2, objs)
        if a is b:
            raise Undefined("relation of an object to itself")
        rel = spatial_relation(a, b)
        if rel is None:
            raise Undefined("ambiguous relation")
        if t == "where":
            return RELATION_ANSWER[rel]
        return "yes" if rel == q.relation else "no"
    raise ValueError(f"unknown question type {t!r}")


def hypothesis_label(h: Hypothesis, objs: Sequence[Obj]) -> str:
    """"yes" (entailed), "no" (contradicted) or "maybe" (the image cannot decide)."""
    t = h.htype
    if not h.decidable:
        # presuppositions must still hold: the objects talked about exist (uniquely)
        resolve(h.ref, objs)
        if h.ref2 is not None and resolve(h.ref2, objs) is resolve(h.ref, objs):
            raise Undefined("an object compared with itself")
        return "maybe"
    yes = {
        "exists": lambda: any(o.colour == h.colour and o.shape == h.shape for o in objs),
        "count": lambda: len(objs) == h.count,
        "color": lambda: resolve(h.ref, objs).colour == h.colour,
        "size": lambda: resolve(h.ref, objs).size == h.size,
        "all_color": lambda: all(o.colour == h.colour for o in objs),
    }
    if t == "relation":
        a, b = resolve(h.ref, objs), resolve(h.ref2, objs)
        rel = spatial_relation(a, b)
        if a is b or rel is None:
            raise Undefined("ambiguous relation")
        return "yes" if rel == h.relation else "no"
    return "yes" if yes[t]() else "no"


# --------------------------------------------------------------------------------------------------------------------
# Videos: objects are identified by shape (the generator never repeats a shape within a video)
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoEvent:
    shape: str
    kind: str  # move | still | appear | disappear | turn
    start: Optional[Obj]
    end: Optional[Obj]
    direction: Optional[str] = None


def video_events(start: Sequence[Obj], end: Sequence[Obj], frame_size: int, min_move: float = 0.2,
                 still_tol: float = 3.0) -> dict[str, VideoEvent]:
    """What happened to each object between the first and the last frame."""
    for objs, when in ((start, "first"), (end, "last")):
        shapes = [o.shape for o in objs]
        if len(set(shapes)) != len(shapes):
            raise Undefined(f"a shape occurs twice in the {when} frame")
    s = {o.shape: o for o in start}
    e = {o.shape: o for o in end}
    events = {}
    for shape in sorted(set(s) | set(e)):
        a, b = s.get(shape), e.get(shape)
        if a is None:
            events[shape] = VideoEvent(shape, "appear", None, b)
        elif b is None:
            events[shape] = VideoEvent(shape, "disappear", a, None)
        elif a.colour != b.colour:
            events[shape] = VideoEvent(shape, "turn", a, b)
        else:
            dx, dy = b.centre[0] - a.centre[0], b.centre[1] - a.centre[1]
            major, minor = max(abs(dx), abs(dy)), min(abs(dx), abs(dy))
            if major <= still_tol:
                events[shape] = VideoEvent(shape, "still", a, b)
            elif major >= min_move * frame_size and minor <= 0.5 * major:
                if abs(dx) >= abs(dy):
                    direction = "right" if dx > 0 else "left"
                else:
                    direction = "down" if dy > 0 else "up"
                events[shape] = VideoEvent(shape, "move", a, b, direction)
            else:
                raise Undefined(f"the {shape} moves by ({dx:.1f}, {dy:.1f}) px: neither still nor a clear motion")
    return events


def video_caption_problem(actors: list[VideoClause], still: list[VideoClause],
                          events: dict[str, VideoEvent]) -> Optional[str]:
    clauses = list(actors) + list(still)
    shapes = [c.attr.shape for c in clauses]
    if len(set(shapes)) != len(shapes):
        return "caption mentions a shape twice"
    if set(shapes) != set(events):
        return f"caption mentions {sorted(shapes)} but the video has {sorted(events)}"
    for c in clauses:
        ev = events[c.attr.shape]
        if ev.kind != c.kind:
            return f"caption says the {c.attr.shape} does {c.kind!r} but it does {ev.kind!r}"
        ref = ev.end if ev.kind == "appear" else ev.start
        if (ref.size, ref.colour) != (c.attr.size, c.attr.colour):
            return f"caption says {c.attr} but the object is {ref.attr}"
        if c.kind == "move" and c.direction != ev.direction:
            return f"caption says the {c.attr.shape} moves {c.direction} but it moves {ev.direction}"
        if c.kind == "turn" and c.new_colour != ev.end.colour:
            return f"caption says the {c.attr.shape} turns {c.new_colour} but it turns {ev.end.colour}"
    return None


def _resolve_video(ref: Attr, events: dict[str, VideoEvent]) -> VideoEvent:
    found = []
    for ev in events.values():
        for o in (ev.start, ev.end):
            if o is not None and ref.matches(o.attr):
                found.append(ev)
                break
    if len(found) != 1:
        raise Undefined(f"referring expression {ref} matches {len(found)} objects")
    return found[0]


def answer_video_question(qtype: str, ref: Optional[Attr], events: dict[str, VideoEvent]) -> str:
    if qtype == "direction":
        ev = _resolve_video(ref, events)
        if ev.kind != "move":
            raise Undefined(f"the {ev.shape} does not move")
        return ev.direction
    if qtype == "turn_color":
        ev = _resolve_video(ref, events)
        if ev.kind != "turn":
            raise Undefined(f"the {ev.shape} does not change colour")
        return ev.end.colour
    if qtype in ("appear_shape", "disappear_shape"):
        kind = qtype.split("_")[0]
        found = [ev.shape for ev in events.values() if ev.kind == kind]
        if len(found) != 1:
            raise Undefined(f"{len(found)} shapes {kind}")
        return found[0]
    if qtype == "moves_yn":
        ev = _resolve_video(ref, events)
        if ev.kind not in ("move", "still"):
            raise Undefined(f"the {ev.shape} {ev.kind}s")
        return "yes" if ev.kind == "move" else "no"
    if qtype == "count_moving":
        return str(sum(ev.kind == "move" for ev in events.values()))
    if qtype == "count_end":
        return str(sum(ev.end is not None for ev in events.values()))
    if qtype == "count_start":
        return str(sum(ev.start is not None for ev in events.values()))
    raise ValueError(f"unknown video question type {qtype!r}")


# --------------------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------------------


def audio_caption_problem(claimed: list[SoundGroup], actual: list[SoundGroup]) -> Optional[str]:
    if list(claimed) != list(actual):
        return f"caption says {claimed} but the clip has {actual}"
    return None
