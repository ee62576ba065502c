"""SNMPv3 framing for the client (RFC 3412/3414): engine discovery, the time window, HMAC and privacy.

The agent is the authoritative engine: its engine ID localises the keys, and its boots/time (kept as an
offset from the monotonic clock) go into every authenticated request. The message code is ``usm.py``'s,
which the trap receiver uses too. Imported only for v3 sessions (hashing and ciphers cost start-up).
"""

from __future__ import annotations

import time

from diag.network.snmp import ber, usm
from diag.network.snmp.base import SnmpCredentialError, SnmpInputError, Target

#: What a v3 Report's counter means, for the error a user reads.
REPORTS = {
    usm.UNKNOWN_USER_NAMES: "Unknown user name",
    usm.WRONG_DIGESTS: "wrong digest (auth password or protocol)",
    usm.UNSUPPORTED_SEC_LEVELS: "security level not allowed for this user",
    usm.DECRYPTION_ERRORS: "agent could not decrypt (privacy password or protocol)",
}


class Usm:
    """v3 framing (RFC 3412/3414): engine discovery, the time window, HMAC and privacy around each PDU.

    The agent is the authoritative engine: its engine ID localises the keys, and its boots/time (kept
    as an offset from our clock) go into every authenticated request.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        label = target.label
        if not target.user:
            raise SnmpInputError(f"{label}: SNMPv3 needs a user (--user, or snmp.user in the inventory)")
        if target.priv_key and not target.auth_key:
            raise SnmpInputError(f"{label}: SNMPv3 privacy needs an auth password too")
        try:
            self.user = usm.User.create(
                target.user,
                target.auth_protocol if target.auth_key else None,
                target.auth_key,
                target.priv_protocol if target.priv_key else None,
                target.priv_key,
            )
        except ValueError as e:  # the message names the user and the problem, never the password
            # An unknown protocol or a short password is what was given, not a refusal by the agent.
            raise SnmpCredentialError(f"{label}: SNMPv3 {e}") from None
        self.level = self.user.level
        self.user_name = target.user.encode()
        self.context = target.context.encode()
        self.engine_id = b""
        self.boots = 0
        self.time_offset = 0.0  # agent's engine time = monotonic clock + offset
        self.auth_key = self.priv_key = b""

    @property
    def engine_time(self) -> int:
        return max(0, int(time.monotonic() + self.time_offset))

    def learn(self, engine_id: bytes, boots: int, engine_time: int) -> None:
        if engine_id != self.engine_id and engine_id:
            self.engine_id = engine_id
            if self.level:
                self.auth_key, self.priv_key = self.user.keys(engine_id)
        self.boots = boots
        self.time_offset = engine_time - time.monotonic()

    def encode(self, pdu: int, rid: int, oids: list[bytes], a: int, b: int, level: int | None = None) -> bytes:
        level = self.level if level is None else level
        varbinds = ber.tlv(0x30, b"".join(ber.tlv(0x30, ber.tlv(ber.OBJECT_ID, o) + b"\x05\x00") for o in oids))
        body = usm.pdu(pdu, rid, varbinds, a, b)
        scoped = usm.scoped_pdu(self.engine_id, self.context, body)
        name = self.user_name if level or self.engine_id else b""
        return usm.build_message(
            rid, self.engine_id, self.boots, self.engine_time if level else 0, name, scoped,
            self.user, level, max_size=65507, reportable=True,
        )  # fmt: skip

    def decode(self, data: bytes) -> tuple[int, int, int, int, list[ber.Varbind]] | None:
        msg = usm.parse_message(data)
        if msg.flags & usm.FLAG_AUTH:
            if not self.level or not self.engine_id or msg.engine_id != self.engine_id:
                return None
            if not msg.authentic(self.user, self.auth_key):
                return None  # not from the agent that holds our key: drop it, as net-snmp does
            self.learn(msg.engine_id, msg.boots, msg.engine_time)
            scoped = msg.plaintext(self.priv_key, self.user.priv_protocol or "AES")
        elif msg.flags & usm.FLAG_PRIV:
            return None
        else:
            scoped = msg.scoped
        _, _, pos, end = usm.parse_scoped(scoped)
        pdu, rid, status, index, varbinds, _ = ber.decode_pdu(scoped, pos, end)
        if pdu == ber.REPORT:
            # A Report may not carry our request id (the agent could not read the PDU): match the msgID.
            if varbinds and varbinds[0][0] == _UNKNOWN_ENGINE:
                self.learn(msg.engine_id, msg.boots, msg.engine_time)
            elif varbinds and varbinds[0][0] == _NOT_IN_TIME and msg.flags & usm.FLAG_AUTH:
                pass  # learn() above took the agent's boots and time
            return pdu, msg.msg_id, status, index, varbinds
        if not msg.flags & usm.FLAG_AUTH and self.level:
            return None  # an unauthenticated Response to an authenticated request is not believed
        return pdu, rid, status, index, varbinds


_UNKNOWN_ENGINE = ber.encode_oid(usm.UNKNOWN_ENGINE_IDS)
_NOT_IN_TIME = ber.encode_oid(usm.NOT_IN_TIME_WINDOWS)
REPORT_OIDS = {ber.encode_oid(k): v for k, v in REPORTS.items()}
