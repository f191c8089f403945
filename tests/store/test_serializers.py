"""Result serializers (Prefect's result_serializer): each format round trips, signed formats refuse
tampering before loading, and a storage key cannot leave the result folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from nbflow.errors import ResultIntegrityError, SerializationError
from nbflow.serializers import (
    CompressedJSONSerializer, CompressedPickleSerializer, JSONSerializer, PickleSerializer, Serializer,
    resolve_serializer,
)
from nbflow.store.results import ResultStore


@pytest.fixture
def store(tmp_path: Path, nbflow_home: Path) -> ResultStore:
    return ResultStore(tmp_path / "results")


class Marker:
    """Unpickling this creates a directory: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


FORMATS = [
    ("pickle", "pickle", ".pkl", {"a": (1, 2)}),
    ("json", "json", ".json", {"a": [1, 2]}),
    ("compressed/pickle", "compressed/pickle", ".pkl.xz", {3, 4}),
    ("compressed/json", "compressed/json", ".json.xz", ["x"] * 50),
    (PickleSerializer(picklelib="pickle"), "custom", ".bin", {"a": 1}),
    (JSONSerializer(dumps_kwargs={"indent": 2}), "custom", ".bin", {"a": [1]}),
]


@pytest.mark.parametrize("name, fmt, suffix, value", FORMATS, ids=[str(f[0]) for f in FORMATS])
def test_each_serializer_round_trips_in_its_format(store: ResultStore, name: Any, fmt: str, suffix: str,
                                                   value: Any) -> None:
    serializer = resolve_serializer(name)
    ref = store.write(value, serializer=serializer)
    assert ref.format == fmt and ref.path.endswith(suffix)
    assert store.read(ref, serializer=serializer) == value
    if fmt == "custom":
        with pytest.raises(ResultIntegrityError, match="custom result serializer"):
            store.read(ref)


@pytest.mark.parametrize("serializer", [CompressedPickleSerializer(), PickleSerializer()])
def test_signed_formats_refuse_tampering_before_loading(store: ResultStore, tmp_path: Path,
                                                        serializer: Serializer) -> None:
    ref = store.write([1], serializer=serializer)
    planted = tmp_path / "planted"
    Path(ref.path).write_bytes(serializer.dumps(Marker(planted)))
    with pytest.raises(ResultIntegrityError, match="modified after it was written"):
        store.read(ref)
    assert not planted.exists()


def test_a_value_json_cannot_write_is_a_serialization_error(store: ResultStore) -> None:
    with pytest.raises(SerializationError, match="as JSON.*result_serializer='pickle'"):
        store.write({"f": len}, serializer=JSONSerializer())
    with pytest.raises(SerializationError, match="could not serialize"):
        store.write(1, serializer=type("Bad", (Serializer,), {"dumps": lambda self, o: 1 / 0})())


def test_a_storage_key_names_the_file_and_stays_inside_the_folder(store: ResultStore) -> None:
    ref = store.write({"a": 1}, path="reports/2024/day.json")
    assert ref.path == str(store.root / "reports" / "2024" / "day.json")
    assert store.read(ref) == {"a": 1}
    for bad in ("../escape.json", "/etc/passwd", "a//b", "./x"):
        with pytest.raises(ValueError, match="relative path inside the result storage"):
            store.write(1, path=bad)


def test_unknown_serializers_are_named() -> None:
    with pytest.raises(ValueError, match="Unknown result_serializer 'compressed/yaml'"):
        resolve_serializer("compressed/yaml")
    assert resolve_serializer("compressed/json") == CompressedJSONSerializer()
