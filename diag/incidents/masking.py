"""Masks secrets and personal data in everything an incident carries out of diag (tickets, notes, attachments).

Two layers: :func:`diag.secrets.mask` blanks every secret value diag itself revealed (passwords, communities,
keys read by reference), and :class:`Masker` blanks what *looks* like a secret or personal data in text that
came from hosts (command output, log lines, alert annotations): ``password=...``, SNMP communities, bearer
and API tokens, credentials in URLs, private keys, e-mail addresses and phone numbers. Users add patterns in
``agent.incidents.masking.patterns``; a pattern with a group named ``keep`` keeps that part (e.g. the key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from diag.secrets import mask as mask_revealed

MASK = "***"

#: (name, regex). Where a group ``keep`` is present, that part survives so the text still reads.
DEFAULT_PATTERNS: list[tuple[str, str]] = [
    ("private_key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)"),
    (
        "password",
        r"(?i)(?P<keep>\b(?:password|passwd|passphrase|pwd|secret|api[_-]?key|access[_-]?key|token|auth[_-]?key|"
        r"priv[_-]?key|community)\b[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+",
    ),
    ("authorization", r"(?i)(?P<keep>\b(?:authorization:\s*)?(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    ("url_credentials", r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(?=@)"),
    # net-snmp tools (-c COMMUNITY, -A/-X keys) and Cisco-style "snmp-server community NAME"
    ("snmp_community", r"(?P<keep>(?:^|\s)-[cAX]\s+)\S+"),
    ("snmp_server_community", r"(?i)(?P<keep>\bsnmp-server\s+community\s+)\S+"),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    # International numbers (+7 912 345-67-89, +44 20 7946 0958) and Russian trunk-prefixed ones (8 (912) 345-67-89);
    # plain digit runs are left alone: they are byte counts, PIDs and timestamps far more often than phones.
    ("phone", r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?!\w)"),
    ("phone_ru", r"(?<!\w)8[\s-]?\(\d{3,5}\)[\s-]?\d{1,3}[\s-]?\d{2}[\s-]?\d{2}(?!\w)"),
]


class Masker:
    """Applies the default and configured patterns, then the revealed-secret mask."""

    def __init__(self, extra: Iterable[str] = (), defaults: bool = True) -> None:
        pats = [p for _, p in DEFAULT_PATTERNS] if defaults else []
        pats.extend(extra)
        self.patterns = [re.compile(p, re.MULTILINE) for p in pats]

    def text(self, text: str) -> str:
        if not text:
            return text
        text = mask_revealed(text)
        for pat in self.patterns:
            text = pat.sub(_replace, text)
        return text

    def data(self, value: Any) -> Any:
        """Mask every string inside a JSON-like value (dicts, lists), keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


def _replace(m: re.Match[str]) -> str:
    keep = m.groupdict().get("keep")
    return (keep or "") + MASK
