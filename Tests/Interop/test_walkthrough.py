"""scripts/try's walkthrough, run against the session's stack, so the README's first command
cannot rot."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import walkthrough  # noqa: E402


def test_walkthrough_shows_every_step(stack, capsys):
    walkthrough.walkthrough(stack)
    out = capsys.readouterr().out
    assert "-> 401 Unauthorized" in out.split("2. The client")[0]
    assert '"resource": "' + stack.jira + '"' in out
    assert "aud=" + stack.jira in out
    assert "result: OPS-1" in out
    assert 'error="insufficient_scope"' in out and 'scope="jira:write"' in out
    assert "result: created: printer on fire" in out
    assert 'error="invalid_token"' in out
    assert "requests that reached the legacy server: 0" in out
    assert ", 0 with an Authorization header" in out
    assert all(f"== {n}." in out for n in range(1, 9))
