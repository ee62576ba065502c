"""Mask secrets in configuration text before it is stored: device configs by vendor keyword, host files by pattern.

A masked value becomes ``<masked:1a2b3c4d>``: eight hex digits of an HMAC-SHA256 of the value under a key that
lives only in the archive directory (``mask.key``, mode 0600). The same secret always gives the same tag, so a
diff still shows *that* a password or community changed (and which line) without showing it, and the tag cannot
be checked against a guessed password list without that key. Values revealed from the inventory's secret
references (``diag.secrets``) are masked as ``***`` wherever they appear, on top of the patterns.

Over-masking is the safe direction: ``key`` followed by any word is masked on a device (``key 7 0822455D0A16``,
``tacacs-server key S3cret``), so an innocent ``key 1`` id in a key chain shows as a tag too. Free-text lines
(``description``, ``remark``, ``banner``, ``alias``, ``name``) are left as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets as pysecrets
from dataclasses import dataclass, field
from pathlib import Path

from diag import secrets
from diag.archive.names import compile_patterns

TAG_PREFIX = "<masked:"

# The secret itself: a double-quoted string (Juniper, Arista) or one word. Keyword and value are on one line in
# every configuration syntax: blanks between them are [ \t], never a newline (RouterOS exports a section header
# such as "/ppp secret" on its own line, and the next line's "add" is not a secret).
_VALUE = r'(?P<s>"[^"\n]*"|[^\s"]+)'
# Encryption-type words that may stand between a keyword and its value: Cisco 0/5/7/8/9 (IOS-XR 10), Arista sha512,
# Juniper ascii-text, FRR md5.
_TYPE = r"(?:(?:0|4|5|6|7|8|9|10|md5|sha256|sha512|encrypted|hidden|text|hash|ascii-text|hex|ascii)[ \t]+){0,2}"
# Free text on a device, where "key" or "secret" is an ordinary word: never masked.
_FREE_TEXT = re.compile(r"[ \t]*(?:description|remark|alias|banner|name)\b", re.I)

#: Device configuration patterns (Cisco IOS/NX-OS/ASA, Arista EOS, Juniper, FRR/Quagga, HPE/Aruba...). Each
#: has a group ``s``: only that span is replaced, so the line keeps its keyword and stays diffable.
_B = r"[ \t]+"  # blanks between a keyword and its value: never a newline (see _VALUE)
DEVICE_PATTERNS: tuple[str, ...] = (
    # password / secret / enable secret / username x secret 5 / neighbor X password / isis password md5 X
    rf"(?i)(?<![\w-])(?:password|passwd|secret|encrypted-password|area-password|domain-password){_B}{_TYPE}{_VALUE}",
    # key 7 XXX, tacacs-server key, radius-server key, crypto isakmp key K address, ntp authentication-key 1 md5 K,
    # ip ospf authentication-key K, ip ospf message-digest-key 1 md5 K, key-string K, pre-shared-key K
    rf"(?i)(?<![\w-])(?:key(?!{_B}(?:chain|config-key|generate|exchange)\b)|key-string"
    rf"|authentication-key(?:{_B}\d+)?|message-digest-key{_B}\d+|pre-shared-key(?:{_B}(?:local|remote|address{_B}\S+))?"
    rf"|wpa-psk|psk|ikev[12]{_B}\S+-pre-shared-key){_B}{_TYPE}{_VALUE}",
    # snmp-server community public RO; snmp-server host 192.0.2.1 [traps] [version 2c] COMMUNITY
    rf"(?i)(?<![\w-])community{_B}{_TYPE}{_VALUE}",
    rf"(?i)^[ \t]*snmp-server{_B}host{_B}\S+(?:{_B}(?:traps|informs))?(?:{_B}version{_B}(?:1|2c))?"
    rf"{_B}(?P<s>[^\s\d]\S*)",
    # SNMPv3: snmp-server user U G v3 [encrypted] auth sha AUTHKEY priv aes 128 PRIVKEY (and Arista's localized)
    rf"(?i)(?<![\w-])auth{_B}(?:md5|sha\S*){_B}(?P<s>\S+)",
    rf"(?i)(?<![\w-])priv{_B}(?:des56|des|3des|aes(?:[ \t]*\d+)?){_B}(?P<s>\S+)",
    rf"(?i)(?<![\w-])localized{_B}\S+{_B}auth{_B}\S+{_B}(?P<s>\S+)",
)

#: Host file patterns that apply by default (extra ones come from ``agent.archive.mask``): ``name = value`` and
#: ``name: value`` settings whose name says secret, credentials in URLs, private key blocks, net-snmp's snmpd.conf.
HOST_PATTERNS: tuple[str, ...] = (
    r"(?i)^\s*(?:export\s+)?[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|private[_-]?key|psk|credential)"
    r"[\w.-]*\s*[=:]\s*(?P<s>\S.*?)\s*$",
    r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?P<s>[^\s@/]+)@",
    r"(?i)^\s*(?:ro|rw)community6?\s+(?P<s>\S+)",
    r"(?i)^\s*com2sec6?\s+\S+\s+\S+\s+(?P<s>\S+)",
    r'(?i)^\s*createUser\s+\S+\s+\S+\s+(?P<s>"[^"]*"|\S+)',
    r'(?i)^\s*createUser\s+\S+\s+\S+\s+(?:"[^"]*"|\S+)\s+\S+\s+(?P<s>"[^"]*"|\S+)',
)

_PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----\n.*?\n-----END \1-----", re.S)


_DEVICE = compile_patterns(DEVICE_PATTERNS)
_HOST = compile_patterns(HOST_PATTERNS)


def load_key(root: Path) -> bytes:
    """The archive's tag key (``root/mask.key``), made with 32 random bytes the first time."""
    path = root / "mask.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    key = pysecrets.token_bytes(32)
    try:  # O_EXCL: two processes making the key at once agree on the first one written
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


@dataclass(slots=True)
class Masker:
    """Masks one text by the patterns of its kind (``device`` or ``host``) plus the revealed secrets."""

    key: bytes
    host_patterns: list[re.Pattern[str]] = field(default_factory=list)

    def tag(self, value: str) -> str:
        digest = hmac.new(self.key, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
        return f"{TAG_PREFIX}{digest[:8]}>"

    def _sub(self, pattern: re.Pattern[str], text: str, skip_free_text: bool) -> str:
        def repl(m: re.Match[str]) -> str:
            if skip_free_text and _FREE_TEXT.match(text, text.rfind("\n", 0, m.start()) + 1):
                return m.group(0)
            group = "s" if "s" in pattern.groupindex else 0
            value = m.group(group)
            if value is None or value.startswith(TAG_PREFIX) or value.strip('"').startswith(TAG_PREFIX):
                return m.group(0)
            start, end = m.span(group)
            masked = (
                f'"{self.tag(value[1:-1])}"' if len(value) > 1 and value[0] == value[-1] == '"' else self.tag(value)
            )
            return m.string[m.start() : start] + masked + m.string[end : m.end()]

        return pattern.sub(repl, text)

    def mask(self, text: str, kind: str, extra: tuple[str, ...] = ()) -> str:
        """``text`` with every secret replaced; ``kind`` is ``device`` (vendor keywords) or ``host`` (patterns).

        ``extra`` are more patterns (group ``s`` the secret), such as a device driver's ``mask_patterns`` for its
        platform's syntax (MikroTik ``password=``, Huawei ``cipher %^%#...``); they run first.
        """
        text = secrets.mask(text)
        text = _PRIVATE_KEY.sub(lambda m: f"-----BEGIN {m[1]}-----\n{self.tag(m[0])}\n-----END {m[1]}-----", text)
        patterns = _DEVICE if kind == "device" else [*_HOST, *self.host_patterns]
        if extra:
            patterns = [*compile_patterns(extra), *patterns]
        for p in patterns:
            text = self._sub(p, text, kind == "device")
        return text
