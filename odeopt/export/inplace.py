"""In-place updates of state lists in a plan: torch SGD's memory traffic for heavy ball."""

from __future__ import annotations

from dataclasses import replace

from .plan import EvaluateStage, GroupStage, Op, ReduceStage, Stage

__all__ = ["update_state_in_place"]


def update_state_in_place(stages: list[Stage], states: list[str]) -> list[Stage]:
    """Update state lists in place where nothing reads their old values afterwards.

    An op ``out = x·s`` or ``out = x + α·y`` whose x is a state list becomes ``x·= s`` or
    ``x += α·y`` (and ``out`` is x from then on) when no later op, reduction or alias reads
    the old x. Heavy ball becomes ``p·= s; p += c·g`` (torch SGD's memory traffic), BBI's
    rescale-and-kick ``p·= r; p += c·g``. Only for rules without extra evaluations, whose
    stages cannot fail after the state is written."""
    if any(isinstance(st, EvaluateStage) for st in stages):
        return stages
    stages = [
        GroupStage(list(st.ops), st.scalars) if isinstance(st, GroupStage) else st for st in stages
    ]
    where = [
        (si, oi)
        for si, st in enumerate(stages)
        for oi in (range(len(st.ops)) if isinstance(st, GroupStage) else [None])
    ]

    def item(pos: tuple[int, int | None]) -> Op | Stage:
        si, oi = pos
        st = stages[si]
        return st.ops[oi] if oi is not None and isinstance(st, GroupStage) else st

    def reads(pos: tuple[int, int | None]) -> tuple[str, ...]:
        x = item(pos)
        if isinstance(x, Op):
            return x.reads()
        return (x.source,) if isinstance(x, ReduceStage) else ()

    def rename(pos: tuple[int, int | None], old: str, new: str) -> None:
        si, oi = pos
        st, x = stages[si], item(pos)
        if isinstance(x, Op) and isinstance(st, GroupStage) and oi is not None:
            st.ops[oi] = x.renamed(old, new)
        elif isinstance(x, ReduceStage) and x.source == old:
            stages[si] = replace(x, source=new)

    def aliases(upto: int) -> list[tuple[int, Op]]:
        return [
            (k, x)
            for k, pos in enumerate(where[:upto])
            if isinstance(x := item(pos), Op) and x.kind == "alias"
        ]

    changed = True
    while changed:
        changed = False
        for k, a in aliases(len(where)):  # a later read of an alias of a state reads the state
            if a.x in states:
                for q in where[k + 1 :]:
                    x = item(q)
                    if isinstance(x, Op) and a.out in x.reads():
                        si, oi = q
                        st = stages[si]
                        assert isinstance(st, GroupStage) and oi is not None
                        st.ops[oi] = replace(
                            x, x=a.x if x.x == a.out else x.x, y=a.x if x.y == a.out else x.y
                        )
        for src in states:
            for k, pos in enumerate(where):
                op = item(pos)
                if not isinstance(op, Op) or op.x != src or op.inplace:
                    continue
                if op.kind not in ("mul_s", "add"):
                    continue
                old = {src}  # names of the old value: src and its aliases made before
                for _, a in aliases(k):
                    if a.x in old:
                        old.add(a.out)
                if any(r in old for q in where[k + 1 :] for r in reads(q)):
                    continue
                si, oi = pos
                st = stages[si]
                assert isinstance(st, GroupStage) and oi is not None
                st.ops[oi] = replace(op, out=src, inplace=True)
                for q in where[k + 1 :]:
                    rename(q, op.out, src)
                changed = True
                break
    return stages
