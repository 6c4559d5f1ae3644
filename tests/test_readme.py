"""Every Python snippet of the README runs as written, in order, in one namespace (as a
reader pasting them into one notebook would). A snippet whose last comment line names an
exception (``# StructureError: ...``) must raise it with that message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
RAISES = re.compile(r"^# (\w+(?:Error|Exception)): (.+)$", re.M)


def test_the_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 8


def test_every_readme_snippet_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # snippets write files (hb.py, hnn_optimizer.py)
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": "readme"}
    for i, code in enumerate(SNIPPETS):
        expected = RAISES.findall(code)
        if expected:
            name, message = expected[-1]
            with pytest.raises(Exception) as info:  # noqa: B017 - checked by name below
                exec(compile(code, f"README snippet {i}", "exec"), namespace)
            assert type(info.value).__name__ == name, (i, info.value)
            assert message.strip() in str(info.value), (i, str(info.value))
            continue
        try:
            exec(compile(code, f"README snippet {i}", "exec"), namespace)
        except Exception as exc:  # the snippet's number and text make the failure readable
            raise AssertionError(f"README snippet {i} failed: {exc!r}\n{code}") from exc
