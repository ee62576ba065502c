"""Alertmanager's webhook payload (version 4), decoded and validated in one pass by msgspec.

The shape is Alertmanager's ``notify/webhook`` message. Types are checked strictly (a label value that is a
number, a status other than firing/resolved, a time that is not RFC 3339 are all refused with the JSON path of
the offending value), and so are the things diag relies on: ``version`` is "4", every alert has a non-empty
``alertname``, label names are Prometheus label names. Fields this module does not know are ignored rather than
refused, because Alertmanager adds fields to version 4 without raising the version (``truncatedAlerts`` came in
0.22 that way); refusing them would drop every alert after an Alertmanager upgrade.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

import msgspec

from diag.model import fingerprint

Status = Literal["firing", "resolved"]
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Go's zero time: Alertmanager's ``endsAt`` for an alert that has no end yet.
_ZERO_YEAR = 1


class PayloadError(ValueError):
    """The body is not a valid webhook v4 message; the message says what and where (``$.alerts[0].labels``)."""


class Alert(msgspec.Struct, frozen=True):
    """One alert of a notification, as Alertmanager sends it."""

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime
    endsAt: datetime
    generatorURL: str = ""
    fingerprint: str = ""  # Alertmanager >= 0.19 sends it; older ones do not

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def key(self) -> str:
        """Alertmanager's identity of the alert (a hash of its label set); computed the same way when absent."""
        if self.fingerprint:
            return self.fingerprint
        return fingerprint(*(f"{k}={v}" for k, v in sorted(self.labels.items())))

    @property
    def ends(self) -> datetime | None:
        return None if self.endsAt.year == _ZERO_YEAR else self.endsAt


class Message(msgspec.Struct, frozen=True):
    """One webhook notification: a group of alerts that share ``groupLabels``."""

    version: str
    groupKey: str
    status: Status
    receiver: str
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    alerts: list[Alert]
    truncatedAlerts: int = 0


_decoder = msgspec.json.Decoder(Message)


def decode(body: bytes) -> Message:
    """Parse and validate a webhook body; PayloadError with a one-line reason when it is not valid."""
    try:
        msg = _decoder.decode(body)
    except msgspec.ValidationError as e:
        raise PayloadError(f"invalid webhook payload: {_name_the_key(str(e), body)}") from None
    except msgspec.DecodeError as e:
        raise PayloadError(f"body is not JSON: {e}") from None
    if msg.version != "4":
        raise PayloadError(f"unsupported payload version {msg.version!r} (diag reads version 4) - at `$.version`")
    if msg.truncatedAlerts < 0:
        raise PayloadError("truncatedAlerts must not be negative - at `$.truncatedAlerts`")
    if not msg.alerts:
        raise PayloadError("a notification without alerts - at `$.alerts`")
    for name, labels in (("groupLabels", msg.groupLabels), ("commonLabels", msg.commonLabels)):
        _check_names(labels, f"$.{name}")
    for i, a in enumerate(msg.alerts):
        _check_names(a.labels, f"$.alerts[{i}].labels")
        if not a.labels.get("alertname"):
            raise PayloadError(f"alert without an alertname label - at `$.alerts[{i}].labels`")
    return msg


def _name_the_key(message: str, body: bytes) -> str:
    """msgspec says ``labels[...]`` for a bad value in a mapping; name the label (``labels.severity``) instead."""
    m = re.search(r"- at `\$((?:\.\w+|\[\d+\])*)\[\.\.\.\]`$", message)
    if not m:
        return message
    try:
        node = msgspec.json.decode(body)  # valid JSON: only its shape was wrong
        for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", m.group(1)):
            node = node[name] if name else node[int(index)]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        return message
    bad = next((k for k, v in node.items() if not isinstance(v, str)), None) if isinstance(node, dict) else None
    return message if bad is None else message.replace("[...]`", f".{bad}`")


def _check_names(labels: dict[str, str], where: str) -> None:
    for k in labels:
        if not _LABEL_NAME.match(k):
            raise PayloadError(f"{k!r} is not a valid label name - at `{where}`")
