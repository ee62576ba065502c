"""The driver's pager handling on every platform's pager prompt, fed in the chunks a device may send them in
(recorded forms: IOS/NX-OS/EOS ``--More--``, VRP/Comware ``---- More ----`` + ANSI cursor moves, Junos
``---(more 42%)---`` + a carriage return over blanks, RouterOS ``-- [Q quit|D dump|down]``)."""

from __future__ import annotations

import pytest

from diag.network.devices.base import _SessionMixin


class _Channel:
    """What netmiko's read_channel would return, chunk by chunk; what was written back."""

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks
        self.written: list[str] = []
        self.remote_conn = None

    def read_channel(self) -> str:
        return self.chunks.pop(0) if self.chunks else ""

    def write_channel(self, data: str) -> None:
        self.written.append(data)


class _Session(_SessionMixin, _Channel):
    pass


def read_all(chunks: list[str]) -> tuple[str, list[str]]:
    s = _Session(chunks)
    out = "".join(s.read_channel() for _ in range(len(chunks) + 3))
    return out, s.written


IOS_ERASE = "\b" * 9 + " " * 9 + "\b" * 9


@pytest.mark.parametrize(
    ("chunks", "text", "keys"),
    [
        (["line 1\nline 2\n --More-- ", IOS_ERASE + "line 3\nsw-1#"], "line 1\nline 2\nline 3\nsw-1#", [" "]),
        # the pager split across two reads
        (["line 1\n --Mo", "re-- ", IOS_ERASE + "line 2\nsw-1#"], "line 1\nline 2\nsw-1#", [" "]),
        (["a\n  ---- More ----", "\x1b[42D" + " " * 42 + "\x1b[42Db\n<ce-1>"], "a\nb\n<ce-1>", [" "]),
        (["a\n---(more 42%)---", "\r                                        \rb\nnetops@mx-1> "], "a\nb\nnetops@mx-1> ",
         [" "]),
        (["a\n-- [Q quit|D dump|down]", "\rb\n[netops@rtr-1] > "], "a\n\rb\n[netops@rtr-1] > ", [" "]),
        # text that only looks like a pager is output: inside a line, and "--" alone at the end of the output
        (["description uplink --More-- text\nsw-1#"], "description uplink --More-- text\nsw-1#", []),
        (["!\n--", ""], "!\n--", []),
    ],
)
def test_pager_answered_and_removed(chunks: list[str], text: str, keys: list[str]) -> None:
    out, written = read_all(chunks)
    assert out == text
    assert written == keys
