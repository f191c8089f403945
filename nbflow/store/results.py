"""Result storage under ``<home>/results``: each result a file, checked before it is trusted.

Plain values that JSON holds exactly are JSON (small ones also travel inline in their
ResultRef, so a cache hit reads one file); pandas DataFrames are Parquet that DuckDB can
query; everything else is cloudpickle signed with HMAC-SHA256 under a key kept in
``<home>/hmac.key``, because loading a pickle runs code and anyone who can write the
results folder could plant one. Files are content-addressed
(``<root>/<digest[:2]>/<digest>.<format>``, so equal results share a file) unless the
caller names them, and written atomically.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import lzma
import math
import os
import re
import secrets
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from nbflow import settings
from nbflow.errors import ResultIntegrityError, SerializationError
from nbflow.store.files import atomic_write
from nbflow.store.serializers import standard_format

logger = logging.getLogger(__name__)

FORMATS = ("json", "parquet", "pickle", "compressed/json", "compressed/pickle", "custom")
_SUFFIX = {"json": ".json", "parquet": ".parquet", "pickle": ".pkl", "compressed/json": ".json.xz",
           "compressed/pickle": ".pkl.xz", "custom": ".bin"}
#: Formats whose loading can run code: their bytes are signed (HMAC) with the home's key, not just
#: checksummed (the others' digest is their sha256, the same in every home).
SIGNED_FORMATS = frozenset({"pickle", "compressed/pickle", "custom"})
#: JSON texts up to this size also travel inside their ResultRef.
INLINE_LIMIT = 1024
#: Signed along with each pickle, so a signature made for something else never verifies one.
_PICKLE_DOMAIN = b"nbflow-result-pickle-v1\0"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class ResultRef:
    """Where a result is and how to check it: enough to load it without the database."""

    #: "json", "parquet" or "pickle".
    format: str
    #: Absolute path of the result file.
    path: str
    #: Hex HMAC-SHA256 of a pickle file, sha256 of any other.
    digest: str
    #: The JSON text of a small JSON result, so a cache hit needs no second file read.
    inline: str | None = None

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready dict (the cache index stores it)."""
        data = {"format": self.format, "path": self.path, "digest": self.digest}
        if self.inline is not None:
            data["inline"] = self.inline
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRef:
        """The ref a ``to_dict()`` came from; ValueError if it is not one."""
        ref = cls(data["format"], data["path"], data["digest"], data.get("inline"))
        if ref.format not in FORMATS or not all(isinstance(v, str) for v in (ref.path, ref.digest)) \
                or not (ref.inline is None or isinstance(ref.inline, str)):
            raise ValueError(f"not a result reference: {data!r}")
        return ref


class ResultStore:
    """Writes results to files under ``root`` and reads them back, verified."""

    def __init__(self, root: Path, *, key_path: Path | None = None) -> None:
        self.root = Path(root).absolute()
        #: The HMAC key that signs pickles; created on the first pickle.
        self.key_path = Path(key_path) if key_path is not None else settings.home() / "hmac.key"
        self._key: bytes | None = None

    def write(self, value: Any, name: str | None = None, *, serializer: Any = None,
              path: str | None = None) -> ResultRef:
        """Persist ``value`` and return its ref; ``name`` (letters, digits, ``._-``) fixes
        the file's name, ``path`` (relative, ``/`` allowed) its exact place under the root,
        else the file is named by its digest. ``serializer`` (see ``nbflow.store.serializers``)
        overrides the format chosen per value.

        Raises SerializationError when the value cannot be serialized.
        """
        if name is not None and not _NAME.fullmatch(name):
            raise ValueError(f"Result name {name!r} is not a plain file name: use letters, digits, '.', '_', '-'.")
        exact = path is not None
        if exact:
            name = self._relative(path)
        if serializer is not None:
            return self._write_serialized(value, serializer, name, exact=exact)
        fmt, data, digest, inline = self.encode(value)
        return ResultRef(fmt, self._place(data, fmt, digest, name, exact=exact), digest, inline)

    def encode(self, value: Any) -> tuple[str, Any, str, str | None]:
        """``(format, bytes, digest, inline JSON text or None)`` of ``value``, nothing written:
        for callers that weigh the bytes before writing them (debug data under a size cap)."""
        text = _json_text(value)
        if text is not None:
            data = text.encode()
            return "json", data, hashlib.sha256(data).hexdigest(), text if len(data) <= INLINE_LIMIT else None
        if _is_dataframe(value):
            from nbflow.store.parquet import frame_to_parquet

            data, why_not = frame_to_parquet(value)
            if data is not None:
                return "parquet", data, hashlib.sha256(data).hexdigest(), None
            logger.debug("Pickling a DataFrame instead of writing Parquet: %s", why_not)
        data = _pickle(value)
        return "pickle", data, self._sign(data), None

    def place(self, data: Any, fmt: str, digest: str, name: str) -> str:
        """Write bytes made by ``encode`` to the file ``name`` (plus the format's suffix)."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"Result name {name!r} is not a plain file name: use letters, digits, '.', '_', '-'.")
        return self._place(data, fmt, digest, name)

    def _write_serialized(self, value: Any, serializer: Any, name: str | None, exact: bool) -> ResultRef:
        fmt = standard_format(serializer) or "custom"
        try:
            data = serializer.dumps(value)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"The result serializer {serializer!r} could not serialize a result of type "
                f"{type(value).__module__}.{type(value).__qualname__}: {type(exc).__name__}: {exc}") from None
        if not isinstance(data, (bytes, bytearray)):
            raise SerializationError(f"The result serializer {serializer!r} returned {type(data).__name__}, "
                                     "not bytes: its dumps() must return bytes.")
        data = bytes(data)
        digest = self._sign(data) if fmt in SIGNED_FORMATS else hashlib.sha256(data).hexdigest()
        inline = data.decode() if fmt == "json" and len(data) <= INLINE_LIMIT and _is_utf8(data) else None
        return ResultRef(fmt, self._place(data, fmt, digest, name, exact=exact), digest, inline)

    def _relative(self, path: str) -> str:
        """``path`` checked to stay under the root: relative, no ``..``, no empty parts."""
        parts = path.replace("\\", "/").split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"Result storage key {path!r} must be a relative path inside the result "
                             "storage (no leading '/', no '..' or empty parts), e.g. 'reports/{parameters[day]}.pkl'.")
        return "/".join(parts)

    def read(self, ref: ResultRef, serializer: Any = None) -> Any:
        """The value ``ref`` points to, after checking its digest (its signature, for a
        pickle, before unpickling). A "custom" result needs the ``serializer`` that wrote
        it. Raises ResultIntegrityError when the check fails or the file is missing."""
        if ref.format not in FORMATS:
            raise ResultIntegrityError(f"Result {ref.path} has an unknown format {ref.format!r}; "
                                       f"it will not be loaded, and the task will be recomputed.")
        if ref.format == "custom" and serializer is None:
            raise ResultIntegrityError(f"Result {ref.path} was written by a custom result serializer, "
                                       "which this read was not given; it will not be loaded.")
        if ref.format == "json" and ref.inline is not None:
            data = ref.inline.encode()
            self._verify(ref, hashlib.sha256(data).hexdigest(), "sha256 of its inline JSON copy")
            return json.loads(data)
        try:
            with open(ref.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ResultIntegrityError(
                f"Result file {ref.path} is missing (it was deleted after it was written); it will "
                f"not be loaded, and the task will be recomputed.") from None
        if ref.format in SIGNED_FORMATS:
            self._verify(ref, self._sign(data), "HMAC signature of its bytes")
        else:
            self._verify(ref, hashlib.sha256(data).hexdigest(), "sha256 of its bytes")
        try:
            if ref.format == "json":
                return json.loads(data)
            if ref.format == "parquet":
                from nbflow.store.parquet import parquet_to_frame

                return parquet_to_frame(data)
            if ref.format == "custom":
                return serializer.loads(data)
            if ref.format.startswith("compressed/"):
                data = lzma.decompress(data)
                if ref.format == "compressed/json":
                    return json.loads(data)
            import cloudpickle

            return cloudpickle.loads(data)
        except Exception as exc:
            raise ResultIntegrityError(
                f"Result file {ref.path} passed its check but could not be loaded "
                f"({type(exc).__name__}: {exc}); the task will be recomputed.") from exc

    def _place(self, data: bytes, fmt: str, digest: str, name: str | None, *, exact: bool = False) -> str:
        """Write ``data`` atomically to its file and return the absolute path."""
        if exact and name:
            path = self.root / name
        else:
            path = self.root / (name + _SUFFIX[fmt] if name else f"{digest[:2]}/{digest}{_SUFFIX[fmt]}")
        atomic_write(path, data)
        return str(path)

    def _verify(self, ref: ResultRef, actual: str, what: str) -> None:
        if not hmac.compare_digest(actual.encode(), ref.digest.encode("utf-8", "replace")):
            raise ResultIntegrityError(
                f"Result file {ref.path} was modified after it was written: the {what} "
                f"is not the one recorded with it. It will not be loaded, and the task will be "
                f"recomputed.")

    def _sign(self, data: bytes) -> str:
        return self.sign(data, _PICKLE_DOMAIN)

    def digests(self, fmt: str, blocks: Iterable[bytes]) -> tuple[str, str]:
        """(the digest a ref of format ``fmt`` records for these bytes: this home's signature for a
        signed format, else the sha256; their sha256), in one pass over ``blocks``."""
        sha256 = hashlib.sha256()
        signature = self._mac(_PICKLE_DOMAIN) if fmt in SIGNED_FORMATS else None
        for block in blocks:
            sha256.update(block)
            if signature is not None:
                signature.update(block)
        return (signature or sha256).hexdigest(), sha256.hexdigest()

    def sign(self, data: bytes, domain: bytes) -> str:
        """Hex HMAC-SHA256 of ``data`` under the home's key, for one ``domain`` (a purpose)."""
        signature = self._mac(domain)
        signature.update(data)
        return signature.hexdigest()

    def _mac(self, domain: bytes) -> "hmac.HMAC":
        if self._key is None:
            self._key = load_or_create_key(self.key_path)
        return hmac.new(self._key, domain, hashlib.sha256)


def file_blocks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of a file in blocks of ``size``, for hashing a large file without holding it."""
    with open(path, "rb") as f:
        while block := f.read(size):
            yield block


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte HMAC key at ``path``, created with mode 0600 if there is none.

    Two processes creating it at once agree on one key: each links a complete temporary
    file into place, and the link fails for the second.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        key = path.read_bytes()
    if len(key) < 32:
        raise ResultIntegrityError(
            f"The result signing key {path} is {len(key)} bytes long, not 32: it was damaged. Delete "
            f"it and a new one is made; pickled results signed with the old key will be recomputed.")
    if os.name == "posix" and os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("The result signing key %s can be read by other users, who could then forge "
                       "results that run code when loaded; run: chmod 600 %s", path, path)
    return key


def _pickle(value: Any) -> bytes:
    import cloudpickle

    try:
        return cloudpickle.dumps(value, protocol=5)
    except Exception as exc:
        raise SerializationError(
            f"Cannot persist a result of type {type(value).__module__}.{type(value).__qualname__}: "
            f"{type(exc).__name__}: {exc}. To fix it: return a value that can be pickled (plain "
            f"data, a DataFrame, an object without open files, locks or connections), or set "
            f"persist_result=False on the task (its result is then neither stored nor cached)."
        ) from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame can exist only if pandas is imported
    # (another thread may be halfway through importing it: no DataFrame class yet)
    frame = getattr(pandas, "DataFrame", None) if pandas is not None else None
    return frame is not None and isinstance(value, frame)


def _json_text(value: Any) -> str | None:
    """JSON text of ``value`` if JSON gives back exactly this value, else None."""
    if not _json_exact(value, 0):
        return None
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (ValueError, RecursionError):  # ints beyond sys.get_int_max_str_digits(), deep nesting
        return None


def _json_exact(value: Any, depth: int) -> bool:
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return True
    if cls is float:
        return math.isfinite(value)
    if depth > 64:
        return False
    if cls is list:
        return all(_json_exact(v, depth + 1) for v in value)
    if cls is dict:
        return all(k.__class__ is str and _json_exact(v, depth + 1) for k, v in value.items())
    return False
