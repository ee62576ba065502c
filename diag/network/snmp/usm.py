"""SNMPv3 messages and the User-based Security Model (RFC 3414, 3826, 7860) for the trap receiver.

What the polling client (``v3.py``) and the notification receiver share: parse and build v3 messages,
check their HMAC, localise and extend keys, encrypt and decrypt (AES-128/192/256-CFB, DES-CBC), and the
Reports (engine-ID discovery, time window) and Responses the receiver sends back. One implementation for
both, so a protocol the client speaks is one the receiver accepts. The primitives are
the standard library's ``hashlib``/``hmac`` and OpenSSL's AES (the libcrypto hashlib loaded, through
ctypes; ``cryptography`` where there is none); only the protocol glue (key derivation and localisation,
IV and HMAC placement) is written here, and the tests check it against
net-snmp's ``snmptrap``/``snmpinform``. docs/traps.md says why this and not pysnmp (measured).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from diag.network.snmp import ber
from diag.network.snmp.ber import BerError, enc_int, tlv

#: auth protocol -> (hashlib name, length of msgAuthenticationParameters).
AUTH_PROTOCOLS: dict[str, tuple[str, int]] = {
    "MD5": ("md5", 12),
    "SHA": ("sha1", 12),
    "SHA224": ("sha224", 16),
    "SHA256": ("sha256", 24),
    "SHA384": ("sha384", 32),
    "SHA512": ("sha512", 48),
}
#: Privacy protocols (the client and the receiver speak the same): AES-128 (RFC 3826), AES-192/256 with either
#: key extension, and DES-CBC (RFC 3414 8.1) for old devices that know nothing else.
PRIV_PROTOCOLS = ("AES", "AES192", "AES256", "AES192C", "AES256C", "DES")
#: Key octets of each privacy protocol. AES-192/256 are not in an RFC: their keys are the localised key
#: extended when the hash is too short for them, and vendors extend it in one of two ways (draft-blumenthal-
#: aes-usm-04: net-snmp's AES-192/AES-256, "AES192"/"AES256" here; the Reeder 3DES draft's: Cisco's and
#: others', "AES192C"/"AES256C"). DES takes 16: its key, then the pre-IV.
PRIV_KEY_OCTETS = {"AES": 16, "DES": 16, "AES192": 24, "AES256": 32, "AES192C": 24, "AES256C": 32}
#: The names configuration may use (``priv_protocol``/``auth_protocol`` of the inventory, the trap receiver's
#: users, ``-a``/``-x`` on the command line): net-snmp's spellings, case-insensitive. docs/snmp.md lists them.
AUTH_ALIASES = {"SHA1": "SHA", "SHA-1": "SHA", "SHA-224": "SHA224", "SHA-256": "SHA256", "SHA-384": "SHA384",
                "SHA-512": "SHA512"}  # fmt: skip
PRIV_ALIASES = {"AES128": "AES", "AES-128": "AES", "AES-192": "AES192", "AES-256": "AES256",
                "AES-192-C": "AES192C", "AES-256-C": "AES256C"}  # fmt: skip
#: The privacy protocols as the documentation names them (what an error suggests).
PRIV_NAMES = ("AES", "AES-192", "AES-256", "AES-192-C", "AES-256-C", "DES")


def auth_protocol_name(text: str) -> str:
    """The auth protocol ``text`` names (``SHA-256`` -> ``SHA256``); ValueError for one that is not known."""
    name = AUTH_ALIASES.get(text.upper(), text.upper())
    if name not in AUTH_PROTOCOLS:
        raise ValueError(f"unknown auth protocol {text!r}; use {', '.join(AUTH_PROTOCOLS)}")
    return name


def priv_protocol_name(text: str) -> str:
    """The privacy protocol ``text`` names (``AES-256-C`` -> ``AES256C``); ValueError for one that is not known."""
    name = PRIV_ALIASES.get(text.upper(), text.upper())
    if name not in PRIV_PROTOCOLS:
        raise ValueError(f"privacy protocol {text!r} is not supported; use {', '.join(PRIV_NAMES)}")
    return name


def decrypt_hint(protocol: str) -> str:
    """What to check when a message of ``protocol`` does not decrypt (for a log line; the protocol's own name)."""
    name = PRIV_NAMES[PRIV_PROTOCOLS.index(protocol)]
    if protocol.startswith(("AES192", "AES256")):  # the other key extension gives another key: noise, not an error
        other = name.removesuffix("-C") if name.endswith("-C") else f"{name}-C"
        return f"wrong privacy password, or the sender uses {other} (the other key extension)?"
    return f"wrong privacy password, or not {name}?"


def check_protocol(key: str, text: str) -> str:
    """``auth_protocol`` or ``priv_protocol`` of a configuration, by its key (the inventory's check)."""
    return auth_protocol_name(text) if key == "auth_protocol" else priv_protocol_name(text)


FLAG_AUTH = 0x01
FLAG_PRIV = 0x02
FLAG_REPORTABLE = 0x04
USM = 3
TIME_WINDOW = 150  # seconds (RFC 3414 section 3.2, step 7)
MAX_ENGINE_TIME = 2147483647

# usmStats counters sent in Reports (RFC 3414 section 5).
UNSUPPORTED_SEC_LEVELS = "1.3.6.1.6.3.15.1.1.1.0"
NOT_IN_TIME_WINDOWS = "1.3.6.1.6.3.15.1.1.2.0"
UNKNOWN_USER_NAMES = "1.3.6.1.6.3.15.1.1.3.0"
UNKNOWN_ENGINE_IDS = "1.3.6.1.6.3.15.1.1.4.0"
WRONG_DIGESTS = "1.3.6.1.6.3.15.1.1.5.0"
DECRYPTION_ERRORS = "1.3.6.1.6.3.15.1.1.6.0"


def password_to_key(password: str, hash_name: str) -> bytes:
    """RFC 3414 A.2: hash the password repeated to 1 MiB (the same for SHA-2, RFC 7860)."""
    pw = password.encode()
    if not pw:
        raise ValueError("empty password")
    n = 1 << 20
    return hashlib.new(hash_name, (pw * (n // len(pw) + 1))[:n]).digest()


def localize(ku: bytes, engine_id: bytes, hash_name: str) -> bytes:
    """RFC 3414 A.2: the key for one authoritative engine, H(Ku | engineID | Ku)."""
    return hashlib.new(hash_name, ku + engine_id + ku).digest()


def extend_key(protocol: str, kul: bytes, engine_id: bytes, hash_name: str) -> bytes:
    """The localised privacy key as long as ``protocol`` needs (see :data:`PRIV_KEY_OCTETS`).

    Blumenthal (AES192, AES256): append H(key so far) until long enough. Reeder (AES192C, AES256C):
    append the key so far taken as a password, through password-to-key and localisation again.
    """
    need = PRIV_KEY_OCTETS[protocol]
    key = kul
    while len(key) < need:
        if protocol.endswith("C"):
            key += localize(_bytes_to_key(key, hash_name), engine_id, hash_name)
        else:
            key += hashlib.new(hash_name, key).digest()
    return key[:need]


def _bytes_to_key(password: bytes, hash_name: str) -> bytes:
    n = 1 << 20
    return hashlib.new(hash_name, (password * (n // len(password) + 1))[:n]).digest()


def _cfb(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    """AES-CFB128 (128, 192 or 256-bit key): OpenSSL's, through the libcrypto hashlib loaded, else ``cryptography``."""
    if len(key) not in (16, 24, 32) or len(iv) != 16:
        raise BerError("AES needs a 16, 24 or 32-octet key and a 16-octet IV")
    lib = _libcrypto()
    if lib is not None:
        return _cfb_openssl(lib, key, iv, data, encrypt)
    return _cfb_cryptography(key, iv, data, encrypt)


def _cfb_cryptography(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:  # CFB moved to the "decrepit" namespace in cryptography 47
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB
    cipher = Cipher(algorithms.AES(key), CFB(iv))
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


_openssl: Any = None  # the bound libcrypto, False when there is none to use
_openssl_lock = threading.Lock()


def _libcrypto() -> Any:
    """OpenSSL's libcrypto as hashlib loaded it (already mapped: binding it costs no memory), or None.

    ``cryptography`` would do the same cipher but its bindings add ~7.6 MiB to the agent (docs/traps.md).
    Only the six EVP calls of one cipher are bound, with their exact C signatures.
    """
    global _openssl
    with _openssl_lock:
        if _openssl is None:
            _openssl = False
            try:
                import _hashlib  # noqa: F401 - makes sure libcrypto is loaded
                import ctypes

                with open("/proc/self/maps", encoding="utf-8") as maps:
                    path = next((line.split()[-1] for line in maps if "/libcrypto.so" in line), None)
                if path is not None:
                    lib = ctypes.CDLL(path)
                    vp, ip = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
                    lib.EVP_CIPHER_CTX_new.restype = vp
                    lib.EVP_CIPHER_CTX_new.argtypes = []
                    lib.EVP_CIPHER_CTX_free.restype = None
                    lib.EVP_CIPHER_CTX_free.argtypes = [vp]
                    for bits in (128, 192, 256):
                        getattr(lib, f"EVP_aes_{bits}_cfb128").restype = vp
                        getattr(lib, f"EVP_aes_{bits}_cfb128").argtypes = []
                    lib.EVP_CipherInit_ex.restype = ctypes.c_int
                    lib.EVP_CipherInit_ex.argtypes = [vp, vp, vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
                    lib.EVP_CipherUpdate.restype = ctypes.c_int
                    lib.EVP_CipherUpdate.argtypes = [vp, ctypes.c_char_p, ip, ctypes.c_char_p, ctypes.c_int]
                    lib.EVP_CipherFinal_ex.restype = ctypes.c_int
                    lib.EVP_CipherFinal_ex.argtypes = [vp, ctypes.c_char_p, ip]
                    _openssl = lib
            except (OSError, ImportError, AttributeError):  # no /proc, no OpenSSL-backed hashlib: cryptography
                _openssl = False
        return _openssl or None


def _cfb_openssl(lib: Any, key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    import ctypes

    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise MemoryError("EVP_CIPHER_CTX_new failed")
    try:
        cipher = getattr(lib, f"EVP_aes_{len(key) * 8}_cfb128")()
        if lib.EVP_CipherInit_ex(ctx, cipher, None, key, iv, 1 if encrypt else 0) != 1:
            raise BerError("AES initialisation failed")
        # CFB is a stream mode: never more than the input. Array types straight from ctypes' cache of them
        # (create_string_buffer is Python code: two per message were a tenth of a v3 walk's CPU).
        out = (ctypes.c_char * (len(data) + 16))()
        n, m = ctypes.c_int(0), ctypes.c_int(0)
        if lib.EVP_CipherUpdate(ctx, out, ctypes.byref(n), data, len(data)) != 1:
            raise BerError("AES failed")
        tail = (ctypes.c_char * 16)()
        if lib.EVP_CipherFinal_ex(ctx, tail, ctypes.byref(m)) != 1:
            raise BerError("AES failed")
        return out.raw[: n.value] + tail.raw[: m.value]
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)


def _des_cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    """DES-CBC through ``cryptography`` (single DES is three-key TripleDES with one key repeated)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    try:  # TripleDES moved to the "decrepit" namespace in cryptography 43
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES
    if len(data) % 8:
        raise BerError("DES ciphertext is not a multiple of 8 octets")
    cipher = Cipher(TripleDES(key[:8] * 3), modes.CBC(iv))
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def encrypt(protocol: str, priv_key: bytes, boots: int, engine_time: int, scoped: bytes) -> tuple[bytes, bytes]:
    """(msgPrivacyParameters, encrypted ScopedPDU) for AES (RFC 3826) or DES (RFC 3414 8.1.1.1)."""
    if protocol == "DES":
        salt = boots.to_bytes(4, "big") + _salt.next()[4:]
        iv = bytes(a ^ b for a, b in zip(priv_key[8:16], salt, strict=True))
        return salt, _des_cbc(priv_key, iv, scoped + bytes(-len(scoped) % 8), encrypt=True)
    salt = _salt.next()
    return salt, _cfb(priv_key, aes_iv(boots, engine_time, salt), scoped, encrypt=True)


def decrypt(protocol: str, priv_key: bytes, boots: int, engine_time: int, params: bytes, data: bytes) -> bytes:
    """The plaintext ScopedPDU (maybe with DES padding after it); BerError on bad parameters."""
    if len(params) != 8 or len(priv_key) < 16:
        raise BerError("bad privacy parameters")
    if protocol == "DES":
        iv = bytes(a ^ b for a, b in zip(priv_key[8:16], params, strict=True))
        return _des_cbc(priv_key, iv, data, encrypt=False)
    return _cfb(priv_key[: PRIV_KEY_OCTETS.get(protocol, 16)], aes_iv(boots, engine_time, params), data, encrypt=False)


def aes_iv(boots: int, engine_time: int, salt: bytes) -> bytes:
    """RFC 3826 3.1.2.1: engineBoots (4 octets) | engineTime (4 octets) | the 8-octet salt."""
    return boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt


@dataclass(slots=True)
class User:
    """A configured USM user: keys derived once from the passwords (which are not kept)."""

    name: str
    auth_protocol: str | None = None
    priv_protocol: str | None = None
    auth_ku: bytes = b""
    priv_ku: bytes = b""
    _local: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(
        cls,
        name: str,
        auth_protocol: str | None,
        auth_key: str,
        priv_protocol: str | None,
        priv_key: str,
    ) -> User:
        """ValueError names what is wrong (unknown protocol, short password); the passwords are never in it.

        Protocols may be given by any name configuration accepts (:func:`priv_protocol_name`).
        """
        try:
            auth_protocol = auth_protocol_name(auth_protocol) if auth_protocol is not None else None
            priv_protocol = priv_protocol_name(priv_protocol) if priv_protocol is not None else None
        except ValueError as e:
            raise ValueError(f"user {name}: {e}") from None
        if priv_protocol and not auth_protocol:
            raise ValueError(f"user {name}: privacy needs an auth protocol too")
        for what, proto, key in (("auth", auth_protocol, auth_key), ("priv", priv_protocol, priv_key)):
            if proto and len(key) < 8:  # RFC 3414 11.2, and net-snmp refuses them too
                raise ValueError(f"user {name}: {what} password must have at least 8 characters")
        user = cls(name, auth_protocol, priv_protocol)
        if auth_protocol:
            h = AUTH_PROTOCOLS[auth_protocol][0]
            user.auth_ku = password_to_key(auth_key, h)
            if priv_protocol:
                user.priv_ku = password_to_key(priv_key, h)  # the priv key uses the auth protocol's hash
        return user

    @property
    def level(self) -> int:
        return (FLAG_AUTH if self.auth_protocol else 0) | (FLAG_PRIV if self.priv_protocol else 0)

    def keys(self, engine_id: bytes) -> tuple[bytes, bytes]:
        """(auth key, priv key) localised to ``engine_id``; cached, the cache bounded against floods."""
        with self._lock:
            hit = self._local.get(engine_id)
            if hit is None:
                if len(self._local) >= 256:
                    self._local.clear()
                h = AUTH_PROTOCOLS[self.auth_protocol][0] if self.auth_protocol else "sha1"
                auth = localize(self.auth_ku, engine_id, h) if self.auth_ku else b""
                # AES-128 uses the first 16 octets; DES the first 8 as key and the next 8 as pre-IV; AES-192/256
                # a longer key, extended when the hash gives fewer octets (extend_key).
                priv = b""
                if self.priv_ku:
                    protocol = self.priv_protocol or "AES"
                    priv = extend_key(protocol, localize(self.priv_ku, engine_id, h), engine_id, h)
                hit = self._local[engine_id] = (auth, priv)
            return hit

    def digest(self, key: bytes, message: bytes) -> bytes:
        assert self.auth_protocol is not None
        h, n = AUTH_PROTOCOLS[self.auth_protocol]
        return hmac.new(key, message, h).digest()[:n]


@dataclass(slots=True)
class Message:
    """A parsed v3 message; ``scoped`` is the ScopedPDU TLV, or the encrypted octets when ``flags`` has priv."""

    msg_id: int
    max_size: int
    flags: int
    engine_id: bytes
    boots: int
    engine_time: int
    user: bytes
    auth_params: bytes
    auth_offset: int  # where msgAuthenticationParameters' content starts in the raw message
    priv_params: bytes
    scoped: bytes
    raw: bytes

    def authentic(self, user: User, key: bytes) -> bool:
        """HMAC check over the message with the auth parameters zeroed (constant-time compare)."""
        n = AUTH_PROTOCOLS[user.auth_protocol or "SHA"][1]
        if len(self.auth_params) != n:
            return False
        o = self.auth_offset
        zeroed = self.raw[:o] + bytes(n) + self.raw[o + n :]
        return hmac.compare_digest(user.digest(key, zeroed), self.auth_params)

    def plaintext(self, priv_key: bytes, protocol: str) -> bytes:
        """The ScopedPDU TLV, decrypted with ``protocol`` when the message is encrypted (BerError if it cannot be).

        The protocol is the user's, always: the key octets and the cipher depend on it (an AES-256 key cut to
        AES-128's 16 octets decrypts to noise).
        """
        if not self.flags & FLAG_PRIV:
            return self.scoped
        if not priv_key:
            raise BerError("bad privacy parameters")
        return decrypt(protocol, priv_key, self.boots, self.engine_time, self.priv_params, self.scoped)


def parse_message(data: bytes) -> Message:
    """A v3 message (USM); BerError when it is not one."""
    rt, ri = ber.read_tlv, ber.read_int
    tag, pos, end = rt(data, 0, len(data))
    if tag != 0x30:
        raise BerError(f"not an SNMP message (first tag 0x{tag:02x})")
    version, pos = ri(data, pos, end)
    if version != 3:
        raise BerError(f"not SNMPv3 (version {version})")
    tag, g, pos = rt(data, pos, end)
    if tag != 0x30:
        raise BerError("no msgGlobalData")
    msg_id, g = ri(data, g, pos)
    max_size, g = ri(data, g, pos)
    tag, fs, g = rt(data, g, pos)
    if tag != ber.OCTET_STRING or g - fs != 1:
        raise BerError("bad msgFlags")
    flags = data[fs]
    model, g = ri(data, g, pos)
    if model != USM:
        raise BerError(f"security model {model} is not USM")
    tag, sp, pos = rt(data, pos, end)
    if tag != ber.OCTET_STRING:
        raise BerError("no msgSecurityParameters")
    tag, s, send = rt(data, sp, pos)
    if tag != 0x30:
        raise BerError("bad UsmSecurityParameters")
    fields: list[bytes] = []
    auth_offset = 0
    for i in range(6):
        if i in (1, 2):
            n, s = ri(data, s, send)
            fields.append(n.to_bytes(8, "big", signed=True))
            continue
        tag, vs, s = rt(data, s, send)
        if tag != ber.OCTET_STRING:
            raise BerError("bad UsmSecurityParameters field")
        if i == 4:
            auth_offset = vs
        fields.append(data[vs:s])
    tag, ms, mend = rt(data, pos, end)
    if tag == ber.OCTET_STRING:
        scoped = data[ms:mend]
    elif tag == 0x30:
        scoped = data[pos:mend]
    else:
        raise BerError("no ScopedPDU")
    return Message(
        msg_id=msg_id,
        max_size=max_size,
        flags=flags,
        engine_id=fields[0],
        boots=int.from_bytes(fields[1], "big", signed=True),
        engine_time=int.from_bytes(fields[2], "big", signed=True),
        user=fields[3],
        auth_params=fields[4],
        auth_offset=auth_offset,
        priv_params=fields[5],
        scoped=scoped,
        raw=data,
    )


def parse_scoped(scoped: bytes) -> tuple[bytes, bytes, int, int]:
    """A ScopedPDU TLV: (contextEngineID, contextName, where the PDU starts, where it ends)."""
    tag, pos, end = ber.read_tlv(scoped, 0, len(scoped))
    if tag != 0x30:
        raise BerError("ScopedPDU is not a SEQUENCE (wrong privacy password?)")
    tag, s, pos = ber.read_tlv(scoped, pos, end)
    if tag != ber.OCTET_STRING:
        raise BerError("no contextEngineID")
    context_engine = scoped[s:pos]
    tag, s, pos = ber.read_tlv(scoped, pos, end)
    if tag != ber.OCTET_STRING:
        raise BerError("no contextName")
    return context_engine, scoped[s:pos], pos, end


def scoped_pdu(context_engine: bytes, context_name: bytes, pdu: bytes) -> bytes:
    return tlv(0x30, tlv(ber.OCTET_STRING, context_engine) + tlv(ber.OCTET_STRING, context_name) + pdu)


def pdu(tag: int, request_id: int, varbind_list: bytes, status: int = 0, index: int = 0) -> bytes:
    """A PDU of the v2 layout around an already encoded varbind-list TLV."""
    return tlv(tag, enc_int(request_id) + enc_int(status) + enc_int(index) + varbind_list)


def counter_varbinds(oid: str, value: int) -> bytes:
    """A varbind list holding one Counter32 (what a Report carries)."""
    return tlv(0x30, tlv(0x30, tlv(ber.OBJECT_ID, ber.encode_oid(oid)) + ber.enc_uint(ber.COUNTER32, value)))


class _Salt:
    """The AES salt: a 64-bit counter from a random start (RFC 3826 3.1.1.1.2), locked for threads."""

    def __init__(self) -> None:
        self._n = int.from_bytes(os.urandom(8), "big")
        self._lock = threading.Lock()

    def next(self) -> bytes:
        with self._lock:
            self._n = (self._n + 1) & 0xFFFFFFFFFFFFFFFF
            return self._n.to_bytes(8, "big")


_salt = _Salt()


def build_message(
    msg_id: int,
    engine_id: bytes,
    boots: int,
    engine_time: int,
    user_name: bytes,
    scoped: bytes,
    user: User | None = None,
    level: int = 0,
    max_size: int = 65507,
    reportable: bool = False,
) -> bytes:
    """A v3 message from ``engine_id`` as authoritative engine; ``level`` (FLAG_AUTH|FLAG_PRIV) uses ``user``'s keys.

    The receiver sends Responses and Reports (never reportable); tests also build notifications with it.
    """
    auth_key = priv_key = b""
    if level and user is not None:
        auth_key, priv_key = user.keys(engine_id)
    if level & FLAG_PRIV and user is not None:
        salt, secret = encrypt(user.priv_protocol or "AES", priv_key, boots, engine_time, scoped)
        msg_data = tlv(ber.OCTET_STRING, secret)
    else:
        salt, msg_data = b"", scoped
    n = AUTH_PROTOCOLS[user.auth_protocol][1] if level & FLAG_AUTH and user and user.auth_protocol else 0
    head = (
        tlv(ber.OCTET_STRING, engine_id)
        + enc_int(boots)
        + enc_int(engine_time)
        + tlv(ber.OCTET_STRING, user_name)
        + tlv(ber.OCTET_STRING, bytes(n))
    )
    sec = tlv(0x30, head + tlv(ber.OCTET_STRING, salt))
    glob = tlv(
        0x30,
        enc_int(msg_id)
        + enc_int(max_size)
        + tlv(ber.OCTET_STRING, bytes((level | (FLAG_REPORTABLE if reportable else 0),)))
        + enc_int(USM),
    )
    inner = enc_int(3) + glob + tlv(ber.OCTET_STRING, sec) + msg_data
    message = tlv(0x30, inner)
    if not n or user is None:
        return message
    # The auth parameters' content sits right after the security parameters' head: find it by length.
    sec_at = len(message) - len(inner) + len(enc_int(3)) + len(glob)
    sec_content = sec_at + (len(tlv(ber.OCTET_STRING, sec)) - len(sec))
    auth_at = sec_content + (len(sec) - len(head) - len(tlv(ber.OCTET_STRING, salt))) + len(head) - n
    digest = user.digest(auth_key, message)
    return message[:auth_at] + digest + message[auth_at + n :]
