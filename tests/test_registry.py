"""The model registry: versions, aliases, checksums and crash safety, on real files."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inkloop.documents.hashing import sha256_file
from inkloop.models.references import ModelCard, ModelError
from inkloop.models.registry import (
    ModelRegistry,
    Registry,
    default_cache_dir,
    default_registry_url,
    parse_registry_ref,
    resolve_registry_ref,
)
from inkloop.models.resolve import resolve_model

NAME = "sig"


def make_onnx(path: Path, seed: int, n: int = 64) -> Path:
    """A tiny detector-shaped ONNX model: images [1,3,32,32] float32 → output0 [1,5,n]."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((5, 3, 4, 4)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 5, n], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["conv"], strides=[4, 4]),
            helper.make_node("Reshape", ["conv", "shape"], ["output0"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, n])],
        initializer=[weight, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'signature'}", "imgsz": "[32, 32]"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def run_onnx(path: Path) -> tuple[int, ...]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"images": np.zeros((1, 3, 32, 32), dtype=np.float32)})
    return tuple(out.shape)


def card(**kw: object) -> ModelCard:
    base: dict[str, object] = {
        "name": "anything",
        "version": "dev",
        "class_names": ["signature"],
        "input_size": 32,
        "preprocessing": "stretch",
        "metrics": {"map50": 0.9},
    }
    base.update(kw)
    return ModelCard.from_dict(base)


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    pt = src / "best.pt"
    pt.write_bytes(os.urandom(2048))
    return {
        "a": make_onnx(src / "a.onnx", seed=1),
        "b": make_onnx(src / "b.onnx", seed=2),
        "c": make_onnx(src / "c.onnx", seed=3),
        "pt": pt,
    }


@pytest.fixture(params=["fsspec", "mlflow"])
def reg(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """Both implementations of the registry interface: folders via fsspec, and a real MLflow server
    (its registered models are deleted first, so each test starts from an empty registry)."""
    if request.param == "fsspec":
        return Registry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    from inkloop.models.mlflow_registry import MlflowRegistry

    url, data_dir = request.getfixturevalue("mlflow_server")
    mreg = MlflowRegistry(f"mlflow+{url}", cache_dir=tmp_path / "cache")
    mreg.test_data_dir = data_dir  # type: ignore[attr-defined]
    for rm in mreg.client.search_registered_models(max_results=1000):
        mreg.client.delete_registered_model(rm.name)
    return mreg  # type: ignore[return-value]


def stored_file(reg: object, tmp_path: Path, version: str, fname: str) -> Path:
    """Where a registered file of ``sig@version`` is stored on disk, for either backend."""
    if isinstance(reg, Registry):
        return tmp_path / "registry" / "models" / NAME / version / fname
    mv, c = reg._require_version(NAME, version)  # type: ignore[attr-defined]
    artifacts = reg.test_data_dir / "artifacts"  # type: ignore[attr-defined]
    if fname == "model.onnx":
        model_id = c.extra["mlflow"]["model_uri"].removeprefix("models:/")
        found = list(artifacts.glob(f"*/models/{model_id}/artifacts/model.onnx"))
    else:
        found = list(artifacts.glob(f"*/{mv.run_id}/artifacts/inkloop/{fname}"))
    assert len(found) == 1, (fname, found)
    return found[0]


def test_both_backends_implement_the_one_interface(reg: Registry) -> None:
    """One abstract interface: the rules are shared, every storage primitive is implemented."""
    assert isinstance(reg, ModelRegistry)
    assert not getattr(type(reg), "__abstractmethods__", None)
    with pytest.raises(TypeError, match="abstract"):
        ModelRegistry()  # type: ignore[abstract]


@pytest.fixture
def fs_reg(tmp_path: Path) -> Registry:
    """The fsspec registry alone, for tests about its files."""
    return Registry(tmp_path / "registry", cache_dir=tmp_path / "cache")


@pytest.fixture
def fs_two_versions(fs_reg: Registry, sources: dict[str, Path]) -> Registry:
    assert fs_reg.register(NAME, sources["a"], card(), pt_path=sources["pt"]) == "v1"
    assert fs_reg.register(NAME, sources["b"], card(parent_version="v1")) == "v2"
    return fs_reg


@pytest.fixture
def two_versions(reg: Registry, sources: dict[str, Path]) -> Registry:
    assert reg.register(NAME, sources["a"], card(), pt_path=sources["pt"]) == "v1"
    assert reg.register(NAME, sources["b"], card(parent_version="v1")) == "v2"
    return reg


@pytest.fixture
def memory_url() -> Iterator[str]:
    url = f"memory://inkloop-test-{uuid.uuid4().hex}"
    yield url
    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)


# ------------------------------------------------------------------ versions


def test_registering_leaves_the_process_environment_as_it_was(
    reg: Registry, sources: dict[str, Path]
) -> None:
    """MLflow's fluent API writes MLFLOW_TRACKING_URI into os.environ; left there, every later
    inkloop call in the process (and its children) would track to the registry's server. Nor may
    it change while registering: a variable removed again made another thread's HTTP request,
    which lists the environment for proxies, fail with a KeyError (a concurrent registration)."""
    before = dict(os.environ)
    stop, changed = threading.Event(), []

    def watch() -> None:  # samples the environment the whole time the registration runs
        while not stop.is_set():
            try:
                now = dict(os.environ)
            except KeyError as exc:  # a variable removed while this thread listed it
                changed.append([("removed while listed", str(exc))])
                return
            if now != before:
                changed.append(sorted(set(now.items()) ^ set(before.items())))
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert reg.register(NAME, sources["a"], card(), pt_path=sources["pt"]) == "v1"
    finally:
        stop.set()
        watcher.join()
    assert dict(os.environ) == before
    assert not changed, f"the environment changed while registering: {changed}"


def test_register_list_show(two_versions: Registry, sources: dict[str, Path], tmp_path: Path) -> None:
    reg = two_versions
    assert reg.list_models() == [NAME]
    assert reg.list_versions(NAME) == ["v1", "v2"]

    c1 = reg.show(NAME, "v1")
    assert (c1.name, c1.version, c1.model_version) == (NAME, "v1", "sig@v1")
    assert c1.sha256 == sha256_file(sources["a"])
    assert c1.extra["files"] == {
        "model.onnx": sha256_file(sources["a"]),
        "model.pt": sha256_file(sources["pt"]),
    }
    assert c1.preprocessing == "stretch" and c1.metrics == {"map50": 0.9}

    c2 = reg.show(NAME, "v2")
    assert c2.extra["files"] == {"model.onnx": sha256_file(sources["b"])}
    assert c2.parent_version == "v1"

    if not isinstance(reg, Registry):
        return
    vdir = tmp_path / "registry" / "models" / NAME / "v1"
    assert sorted(p.name for p in vdir.iterdir()) == ["card.json", "model.onnx", "model.pt"]
    assert json.loads((vdir / "card.json").read_text())["version"] == "v1"
    # The temp folder is gone once the version is committed.
    assert [p.name for p in vdir.parent.iterdir() if p.name.startswith(".")] == []


def test_register_does_not_modify_callers_card(reg: Registry, sources: dict[str, Path]) -> None:
    mine = card()
    reg.register(NAME, sources["a"], mine)
    assert (mine.name, mine.version, mine.sha256, mine.extra) == ("anything", "dev", None, {})


def test_versions_sort_numerically(fs_reg: Registry, sources: dict[str, Path]) -> None:
    reg = fs_reg  # eleven registrations; MLflow numbers versions itself
    for _ in range(11):
        reg.register(NAME, sources["a"], card())
    assert reg.list_versions(NAME)[-3:] == ["v9", "v10", "v11"]


def test_explicit_version_is_never_overwritten(reg: Registry, sources: dict[str, Path]) -> None:
    assert reg.register(NAME, sources["a"], card(), version="2024-06-01") == "2024-06-01"
    with pytest.raises(ModelError, match="already exists; versions are immutable"):
        reg.register(NAME, sources["b"], card(), version="2024-06-01")
    assert reg.show(NAME, "2024-06-01").sha256 == sha256_file(sources["a"])
    assert reg.fetch(NAME, "2024-06-01").path.read_bytes() == sources["a"].read_bytes()
    # An auto version does not collide with named ones (MLflow: auto versions are v<MLflow number>).
    assert reg.register(NAME, sources["b"], card()) == ("v1" if isinstance(reg, Registry) else "v2")


def test_card_describing_another_file_is_refused(reg: Registry, sources: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="describes another file"):
        reg.register(NAME, sources["a"], card(sha256="0" * 64))
    assert reg.list_models() == []
    # A card with the right checksum is fine.
    assert reg.register(NAME, sources["a"], card(sha256=sha256_file(sources["a"]))) == "v1"


def test_invalid_names_refused(reg: Registry, sources: dict[str, Path]) -> None:
    for bad in ("", "../x", "a/b", ".hidden", "a@b"):
        with pytest.raises(ModelError, match="invalid model name"):
            reg.register(bad, sources["a"], card())
    with pytest.raises(ModelError, match="invalid version"):
        reg.register(NAME, sources["a"], card(), version="aliases")
    with pytest.raises(ModelError, match="not a file"):
        reg.register(NAME, sources["a"].parent / "missing.onnx", card())


def test_concurrent_registrations_get_distinct_versions(reg: Registry, sources: dict[str, Path]) -> None:
    barrier = threading.Barrier(4)
    got: list[str] = []

    def work(key: str) -> None:
        barrier.wait()
        got.append(reg.register(NAME, sources[key], card()))

    threads = [threading.Thread(target=work, args=(k,)) for k in ("a", "b", "c", "a")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == ["v1", "v2", "v3", "v4"]
    assert reg.list_versions(NAME) == ["v1", "v2", "v3", "v4"]
    for v in got:
        reg.verify(NAME, v)


# ------------------------------------------------------------------- aliases


def test_promote_and_rollback(two_versions: Registry, tmp_path: Path) -> None:
    reg = two_versions
    assert reg.alias(NAME, "production") is None
    assert reg.promote(NAME, "v1") is None
    assert reg.alias(NAME, "production") == "v1"
    assert reg.show(NAME).version == "v1"

    assert reg.promote(NAME, "v2") == "v1"
    if isinstance(reg, Registry):
        alias_file = tmp_path / "registry" / "models" / NAME / "aliases" / "production.json"
        stored = json.loads(alias_file.read_text())
        assert stored["version"] == "v2" and stored["history"] == ["v1"] and stored["updated_at"]
    assert reg.fetch(NAME, "production").card.version == "v2"

    # Promoting the current version again is a no-op, not a history entry.
    assert reg.promote(NAME, "v2") == "v2"
    assert reg.alias_record(NAME, "production").history == ["v1"]  # type: ignore[union-attr]

    assert reg.rollback(NAME) == "v1"
    assert reg.alias(NAME, "production") == "v1"
    assert reg.alias_record(NAME, "production").history == []  # type: ignore[union-attr]
    with pytest.raises(ModelError, match="no previous version to roll back to"):
        reg.rollback(NAME)
    # Rolling back moved only the alias: both versions are still there, intact.
    assert reg.list_versions(NAME) == ["v1", "v2"]
    reg.verify(NAME, "v2")


def test_other_aliases(two_versions: Registry) -> None:
    reg = two_versions
    reg.promote(NAME, "v1")
    reg.set_alias(NAME, "candidate", "v2")
    reg.promote(NAME, "v1", alias="shadow")
    assert reg.aliases(NAME) == {"candidate": "v2", "production": "v1", "shadow": "v1"}
    assert reg.fetch(NAME, "candidate").card.version == "v2"
    with pytest.raises(ModelError, match="reserved for versions"):
        reg.set_alias(NAME, "v9", "v1")
    with pytest.raises(ModelError, match="no previous version to roll back to"):
        reg.rollback(NAME, "candidate")


def test_unknown_model_alias_version_messages(two_versions: Registry) -> None:
    reg = two_versions
    reg.promote(NAME, "v1")
    with pytest.raises(ModelError, match=r"unknown model 'nope' \(known models: sig\)"):
        reg.show("nope", "v1")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        reg.fetch("nope")
    with pytest.raises(ModelError, match=r"has no version 'v7' \(versions: v1, v2\)"):
        reg.fetch(NAME, "v7")
    with pytest.raises(ModelError, match=r"has no alias or version 'staging' \(aliases: production→v1"):
        reg.fetch(NAME, "staging")
    with pytest.raises(ModelError, match="has no version 'v7'"):
        reg.promote(NAME, "v7")
    with pytest.raises(ModelError, match="unknown model"):
        reg.promote("nope", "v1")
    with pytest.raises(ModelError, match="no alias 'candidate' to roll back"):
        reg.rollback(NAME, "candidate")
    assert reg.alias(NAME, "production") == "v1"


def test_unreadable_alias_file_is_an_error_not_a_guess(fs_two_versions: Registry, tmp_path: Path) -> None:
    two_versions = fs_two_versions
    two_versions.promote(NAME, "v1")
    alias_file = tmp_path / "registry" / "models" / NAME / "aliases" / "production.json"
    alias_file.write_text('{"version": "v1", "history": "v0"}')
    with pytest.raises(ModelError, match=r"production\.json: invalid alias file"):
        two_versions.fetch(NAME)


def test_empty_registry_messages(reg: Registry) -> None:
    assert reg.list_models() == []
    with pytest.raises(ModelError, match="the registry has no models"):
        reg.list_versions(NAME)


# ----------------------------------------------------------------- checksums


def test_fetch_local_is_in_place_and_loadable(fs_two_versions: Registry, tmp_path: Path) -> None:
    two_versions = fs_two_versions
    ref = two_versions.fetch(NAME, "v1", with_pt=True)
    assert ref.path == tmp_path / "registry" / "models" / NAME / "v1" / "model.onnx"
    assert ref.path.with_name("model.pt").is_file()
    assert ref.ref == "registry://sig@v1"
    assert run_onnx(ref.path) == (1, 5, 64)
    assert not (tmp_path / "cache").exists()  # nothing copied for a local registry
    with pytest.raises(ModelError, match=r"has no model\.pt"):
        two_versions.fetch(NAME, "v2", with_pt=True)


def test_corrupt_model_refused_on_fetch_resolve_and_promote(
    two_versions: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = two_versions
    reg.promote(NAME, "v1")
    onnx_v2 = stored_file(reg, tmp_path, "v2", "model.onnx")
    flip_byte(onnx_v2)
    where = str(onnx_v2) if isinstance(reg, Registry) else "sig@v2/model.onnx"

    with pytest.raises(ModelError, match="checksum mismatch") as exc:
        reg.fetch(NAME, "v2")
    assert where in str(exc.value)

    monkeypatch.setenv(
        "INKLOOP_REGISTRY", str(tmp_path / "registry") if isinstance(reg, Registry) else reg.url
    )
    with pytest.raises(ModelError, match="checksum mismatch"):
        resolve_model("registry://sig@v2")

    with pytest.raises(ModelError, match="checksum mismatch") as exc:
        reg.promote(NAME, "v2")
    assert where in str(exc.value)
    assert reg.alias(NAME, "production") == "v1"
    assert run_onnx(resolve_model("registry://sig").path) == (1, 5, 64)


def test_corrupt_checkpoint_blocks_promotion(two_versions: Registry, tmp_path: Path) -> None:
    reg = two_versions
    flip_byte(stored_file(reg, tmp_path, "v1", "model.pt"), offset=10)
    with pytest.raises(ModelError, match=r"model\.pt: checksum mismatch"):
        reg.promote(NAME, "v1")
    assert reg.alias(NAME, "production") is None
    # Inference only needs the ONNX file, which is intact.
    assert reg.fetch(NAME, "v1").card.version == "v1"
    with pytest.raises(ModelError, match="checksum mismatch"):
        reg.fetch(NAME, "v1", with_pt=True)


def test_rollback_refuses_corrupt_target(two_versions: Registry, tmp_path: Path) -> None:
    reg = two_versions
    reg.promote(NAME, "v2", alias="candidate")
    reg.promote(NAME, "v1", alias="candidate")
    flip_byte(stored_file(reg, tmp_path, "v2", "model.onnx"))
    with pytest.raises(ModelError, match="checksum mismatch"):
        reg.rollback(NAME, "candidate")
    assert reg.alias(NAME, "candidate") == "v1"


# ------------------------------------------------------------ registry:// refs


def test_resolve_model_registry_refs(
    fs_two_versions: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_versions = fs_two_versions
    monkeypatch.setenv("INKLOOP_REGISTRY", str(tmp_path / "registry"))
    two_versions.promote(NAME, "v1")
    two_versions.set_alias(NAME, "candidate", "v2")

    prod = resolve_model("registry://sig@production")
    assert prod.card.model_version == "sig@v1" and prod.ref == "registry://sig@production"
    assert run_onnx(prod.path) == (1, 5, 64)
    assert resolve_model("registry://sig").card.version == "v1"
    assert resolve_model("registry://sig@v2").card.version == "v2"
    assert resolve_model("registry://sig@candidate").card.version == "v2"
    assert resolve_registry_ref("registry://sig@v1").path.read_bytes() == prod.path.read_bytes()

    with pytest.raises(ModelError, match="unknown model 'other'"):
        resolve_model("registry://other@production")
    with pytest.raises(ModelError, match="has no version 'v9'"):
        resolve_model("registry://sig@v9")
    with pytest.raises(ModelError, match="has no alias or version 'staging'"):
        resolve_model("registry://sig@staging")
    for bad in ("registry://", "registry://sig@", "registry://a/b@v1", "registry://sig@v1?x=1"):
        with pytest.raises(ModelError, match="bad registry reference"):
            resolve_model(bad)


def test_one_rule_for_registry_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which references name a registry version, and which registry each one opens: the rule the
    CLI, retraining, the ML backend and the re-export operator share."""
    from inkloop.models.registry import is_registry_ref
    from inkloop.models.resolve import open_registry_ref

    assert all(is_registry_ref(r) for r in ("registry://sig", "mlflow://sig@production", "models:/sig/3"))
    others = ("bundled", "triton://127.0.0.1:8000/sig", "hf://org/repo", str(tmp_path / "m.onnx"), None)
    assert not any(is_registry_ref(r) for r in others)
    reg, name, tag = open_registry_ref("registry://sig@v2", tmp_path / "registry")
    assert isinstance(reg, Registry) and (name, tag) == ("sig", "v2")
    assert open_registry_ref("registry://sig", reg)[0] is reg
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    for given in (None, tmp_path / "registry", reg, "mlflow"):  # a folder registry is not MLflow's
        mreg, name, tag = open_registry_ref("models:/sig/3", given)
        assert mreg.url == "mlflow+http://127.0.0.1:9" and (name, tag) == ("sig", "#3")
    mreg, name, tag = open_registry_ref("mlflow://sig", "mlflow+http://127.0.0.1:7")
    assert mreg.url == "mlflow+http://127.0.0.1:7" and (name, tag) == ("sig", "production")
    assert open_registry_ref("mlflow://sig@v1", mreg)[0] is mreg
    with pytest.raises(ModelError, match="not a registry reference"):
        open_registry_ref("bundled")


def test_parse_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_registry_ref("registry://sig") == ("sig", "production")
    assert parse_registry_ref("registry://sig@v7") == ("sig", "v7")
    monkeypatch.delenv("INKLOOP_REGISTRY", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("INKLOOP_REGISTRY_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_registry_url() == str(tmp_path / ".local" / "share" / "inkloop" / "registry")
    assert default_cache_dir() == tmp_path / ".cache" / "inkloop" / "registry"
    monkeypatch.setenv("INKLOOP_REGISTRY", "s3://bucket/reg")
    assert default_registry_url() == "s3://bucket/reg"


# ------------------------------------------------------------------ memory://


def test_memory_registry(memory_url: str, sources: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reg = Registry(memory_url, cache_dir=cache)
    assert not reg.is_local
    assert reg.register(NAME, sources["a"], card(), pt_path=sources["pt"]) == "v1"
    assert reg.register(NAME, sources["b"], card()) == "v2"
    assert reg.list_models() == [NAME] and reg.list_versions(NAME) == ["v1", "v2"]
    reg.promote(NAME, "v1")
    reg.promote(NAME, "v2")
    assert reg.rollback(NAME) == "v1"

    ref = reg.fetch(NAME)
    assert ref.card.version == "v1" and ref.path.is_relative_to(cache)
    assert sha256_file(ref.path) == sha256_file(sources["a"])
    assert json.loads(ref.path.with_name("card.json").read_text())["version"] == "v1"
    assert run_onnx(ref.path) == (1, 5, 64)
    pt = reg.fetch(NAME, "v1", with_pt=True).path.with_name("model.pt")
    assert pt.read_bytes() == sources["pt"].read_bytes()

    # A cached copy is reused (same inode, not re-downloaded) ...
    inode = ref.path.stat().st_ino
    assert reg.fetch(NAME, "v1").path.stat().st_ino == inode
    # ... unless it no longer matches its checksum, then it is fetched again.
    flip_byte(ref.path)
    again = reg.fetch(NAME, "v1")
    assert sha256_file(again.path) == sha256_file(sources["a"])

    # A corrupt object in the store is refused, and nothing corrupt lands in the cache.
    fs, root = fsspec.core.url_to_fs(memory_url)
    remote = f"{root}/models/{NAME}/v2/model.onnx"
    data = bytearray(fs.cat_file(remote))
    data[100] ^= 0xFF
    fs.pipe_file(remote, bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch") as exc:
        reg.fetch(NAME, "v2")
    assert reg.fs.unstrip_protocol(remote) in str(exc.value)
    with pytest.raises(ModelError, match="checksum mismatch"):
        reg.promote(NAME, "v2")
    assert reg.alias(NAME, "production") == "v1"
    assert not list(cache.rglob("v2-*/model.onnx"))


def test_memory_registry_crashed_upload_is_not_a_version(memory_url: str, sources: dict[str, Path]) -> None:
    """On object stores a crash mid-register leaves files without card.json: not a version."""
    reg = Registry(memory_url)
    reg.register(NAME, sources["a"], card())
    fs, root = fsspec.core.url_to_fs(memory_url)
    fs.pipe_file(f"{root}/models/{NAME}/v2/model.onnx", b"half an upload")
    fs.pipe_file(f"{root}/models/{NAME}/v3/card.json", b"{not json")
    assert reg.list_versions(NAME) == ["v1"]
    with pytest.raises(ModelError, match="has no version 'v2'"):
        reg.show(NAME, "v2")
    # Numbering skips the left-overs instead of writing into them.
    assert reg.register(NAME, sources["b"], card()) == "v4"
    with pytest.raises(ModelError, match="exists without a valid card"):
        reg.register(NAME, sources["b"], card(), version="v2")
    removed = reg.purge_incomplete()
    assert sorted(p.rsplit("/", 1)[-1] for p in removed) == ["v2", "v3"]
    assert reg.list_versions(NAME) == ["v1", "v4"]
    assert not fs.exists(f"{root}/models/{NAME}/v2")


def test_memory_registry_failed_upload_cleans_up(
    memory_url: str, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(memory_url)
    real_pipe = reg.fs.pipe_file

    def failing_pipe(path: str, value: bytes, **kw: object) -> None:
        if path.endswith("card.json"):
            raise OSError("connection reset")
        real_pipe(path, value, **kw)

    monkeypatch.setattr(reg.fs, "pipe_file", failing_pipe)
    with pytest.raises(OSError, match="connection reset"):
        reg.register(NAME, sources["a"], card(), pt_path=sources["pt"])
    monkeypatch.undo()
    fs, root = fsspec.core.url_to_fs(memory_url)
    assert fs.find(f"{root}/models") == []
    assert reg.list_models() == []
    assert reg.register(NAME, sources["a"], card()) == "v1"


# -------------------------------------------------------- killed mid-operation

_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import inkloop.models.registry.files as durable
    from inkloop.models.references import ModelCard
    from inkloop.models.registry import Registry

    url, op, where = sys.argv[1], sys.argv[2], sys.argv[3]

    def hang(*args, **kwargs):
        print("READY", flush=True)
        time.sleep(120)

    if where == "alias-rename":
        durable.replace_file = hang
    elif where == "version-rename":
        durable.commit_dir = hang
    elif where == "second-file":
        real, calls = durable.copy_local, []

        def copy_then_hang(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                with open(dst, "wb") as f:
                    f.write(b"partial")
                hang()
            return real(src, dst)

        durable.copy_local = copy_then_hang

    reg = Registry(url)
    if op == "promote":
        reg.promote("sig", "v2")
    else:
        card = ModelCard(name="x", version="x", class_names=["s"])
        reg.register("sig", sys.argv[4], card, pt_path=sys.argv[5])
    print("FINISHED", flush=True)
    """
)


def _run_and_kill(args: list[str]) -> None:
    """Start the operation in a child process, SIGKILL it at the hook, like a lost node would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                break
            if proc.poll() is not None:
                break
        assert line.strip() == "READY", f"child did not reach the hook: {line!r} {proc.stderr.read()}"  # type: ignore[union-attr]
        proc.kill()
        proc.wait(timeout=30)
        assert proc.returncode == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_promotion_killed_halfway_keeps_old_alias(fs_two_versions: Registry, tmp_path: Path) -> None:
    two_versions = fs_two_versions
    reg = two_versions
    reg.promote(NAME, "v1")
    _run_and_kill([str(tmp_path / "registry"), "promote", "alias-rename"])

    aliases_dir = tmp_path / "registry" / "models" / NAME / "aliases"
    leftovers = [p for p in aliases_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1, "the child should have died between writing and renaming"
    assert json.loads(leftovers[0].read_text())["version"] == "v2"

    assert reg.alias(NAME, "production") == "v1"
    assert reg.aliases(NAME) == {"production": "v1"}
    ref = reg.fetch(NAME, "production")
    assert ref.card.version == "v1" and run_onnx(ref.path) == (1, 5, 64)

    # The registry carries on: the promotion can simply be retried, and left-overs purged.
    assert reg.promote(NAME, "v2") == "v1"
    assert [Path(p).name for p in reg.purge_incomplete()] == [leftovers[0].name]
    assert reg.aliases(NAME) == {"production": "v2"}


@pytest.mark.parametrize("where", ["second-file", "version-rename"])
def test_register_killed_halfway_adds_no_version(
    fs_two_versions: Registry, sources: dict[str, Path], tmp_path: Path, where: str
) -> None:
    two_versions = fs_two_versions
    reg = two_versions
    reg.promote(NAME, "v2")
    _run_and_kill([str(tmp_path / "registry"), "register", where, str(sources["c"]), str(sources["pt"])])

    model_dir = tmp_path / "registry" / "models" / NAME
    tmp_dirs = [p for p in model_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(tmp_dirs) == 1, "the child should have died with its version half built"
    assert reg.list_versions(NAME) == ["v1", "v2"]
    assert not (model_dir / "v3").exists()
    assert reg.alias(NAME, "production") == "v2"
    assert run_onnx(reg.fetch(NAME).path) == (1, 5, 64)

    assert reg.register(NAME, sources["c"], card()) == "v3"
    assert reg.purge_incomplete(dry_run=True) == [str(tmp_dirs[0])]
    reg.purge_incomplete()
    assert not tmp_dirs[0].exists()
    assert reg.list_versions(NAME) == ["v1", "v2", "v3"]
