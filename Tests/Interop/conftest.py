"""pytest fixtures: the interop stack (see interop_stack.py), started once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interop_stack import HERE, Stack, running_stack


@pytest.fixture(scope="session")
def bouncer_bin() -> str:
    binary = os.environ.get("BOUNCER_BIN") or str(HERE.parent.parent / ".build" / "debug" / "mcp-bouncer")
    if not Path(binary).exists():
        pytest.fail(f"mcp-bouncer binary not found at {binary}; build it or set BOUNCER_BIN")
    return binary


@pytest.fixture(scope="session")
def stack(tmp_path_factory, bouncer_bin) -> Stack:
    binary = bouncer_bin
    with running_stack(tmp_path_factory.mktemp("interop"), binary) as stack:
        yield stack
