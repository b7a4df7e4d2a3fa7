"""Property tests, one per file format the engine reads: any mutation of a valid pack, scene,
checkpoint or archive is either accepted as valid or refused with the project's own error."""

from __future__ import annotations

import json
import random
import shutil
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from engine.training.checkpoint import load_checkpoint, save_checkpoint
from engine.errors import CheckpointError, PackError, SceneError
from engine.example import make_example_scene
from engine.packs.interop import format_inspection, inspect_pack
from engine.packs.pack import load_pack
from engine.packs.archive import archive_pack, extract_pack_archive
from engine.scene import is_handle, load_scene, save_scene

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=10),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                    max_leaves=8)


def mutate_json(node: Any, data: st.DataObject, depth: int = 3) -> Any:
    """Replace, drop or add a value somewhere in ``node`` (at most ``depth`` levels down)."""
    keys = list(range(len(node))) if isinstance(node, list) else sorted(node) if isinstance(node, dict) else []
    if not keys or depth == 0 or data.draw(st.integers(0, 3)) == 0:
        return data.draw(JSON)
    k = data.draw(st.sampled_from(keys))
    action = data.draw(st.sampled_from(["replace", "descend", "drop"]))
    if action == "drop":
        node.pop(k)
    elif action == "descend":
        node[k] = mutate_json(node[k], data, depth - 1)
    else:
        node[k] = data.draw(JSON)
    return node


def _fresh(tmp: Path, name: str) -> Path:
    d = tmp / name
    if d.exists():
        shutil.rmtree(d)
    return d


TENSOR_CHANGES = st.sampled_from(["nan", "inf", "int", "shape", "drop", "extra", "half", "bytes"])


def _change_tensors(path: Path, how: str, data: st.DataObject) -> None:
    if how == "bytes":
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        path.write_bytes(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
        return
    t = load_file(str(path))
    k = data.draw(st.sampled_from(sorted(t)))
    v = t[k].clone()
    if how in ("nan", "inf"):
        v.view(-1)[data.draw(st.integers(0, v.numel() - 1))] = float(how)
    elif how == "int":
        v = v.to(torch.int64)
    elif how == "shape":
        v = v.reshape(-1)[: max(1, v.numel() // 2)].reshape(-1, 1)
    elif how == "half":
        v = v.half()
    if how == "drop":
        t.pop(k)
    elif how == "extra":
        t["<extra>"] = v
    else:
        t[k] = v
    save_file(t, str(path))


@SETTINGS
@given(data=st.data())
def test_any_pack_mutation_loads_or_is_a_pack_error(lora_bg_pack_dir: Path, tmp_path: Path, data: st.DataObject) -> None:
    d = _fresh(tmp_path, "p")
    shutil.copytree(lora_bg_pack_dir, d)
    if data.draw(st.booleans()):
        manifest = json.loads((d / "pack.json").read_text())
        for _ in range(data.draw(st.integers(1, 3))):
            manifest = mutate_json(manifest, data)
        (d / "pack.json").write_text(json.dumps(manifest))
    if data.draw(st.booleans()):
        files = sorted(p.name for p in d.glob("*.safetensors"))
        _change_tensors(d / data.draw(st.sampled_from(files)), data.draw(TENSOR_CHANGES), data)
    try:
        pack = load_pack(d)
    except PackError as e:
        assert str(d) in str(e) and "\n" not in str(e)
        return
    assert pack.tokens and len({v.shape for v in pack.embeddings.values()}) == 1
    assert all(torch.isfinite(v).all() and v.is_floating_point() for v in pack.embeddings.values())
    for part in (pack.lora or {}).get("unet", {}), pack.unet_state or {}, (pack.extracted or {}).get("unet", {}):
        assert all(torch.isfinite(v).all() for v in part.values())
    assert format_inspection(inspect_pack(pack))  # everything the manifest holds is printable


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_scene(make_example_scene(size=48), tmp_path_factory.mktemp("scene") / "s")


@SETTINGS
@given(data=st.data())
def test_any_scene_json_mutation_loads_or_is_a_scene_error(scene_folder: Path, tmp_path: Path,
                                                           data: st.DataObject) -> None:
    d = _fresh(tmp_path, "s")
    shutil.copytree(scene_folder, d)
    meta: Any = json.loads((d / "scene.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        meta = mutate_json(meta, data)
    text = json.dumps(meta)
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]
    (d / "scene.json").write_text(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # overlap notices
            scene = load_scene(d)
    except SceneError as e:
        assert str(d) in str(e) and "\n" not in str(e)
        return
    assert all(is_handle(c.token) for c in scene.concepts)
    assert len(set(scene.tokens)) == len(scene.tokens)
    assert all(len(c.color) == 3 and all(0 <= x <= 255 for x in c.color) for c in scene.concepts)


def _valid_state() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    return {"global_step": 3, "phase": 2, "fingerprint": "abc", "handles": torch.randn(2, 32),
            "trainable": {"w": torch.randn(4)}, "optimizer": {"state": {}, "param_groups": []}, "scaler": {},
            "torch_rng": gen.get_state(), "py_rng": random.Random(1).getstate(), "history": [{"loss": 0.5}]}


VALUES = JSON | st.sampled_from([torch.zeros(3), torch.zeros(2, 32, dtype=torch.int64), torch.full((2, 32), float("nan")),
                                 torch.zeros(5, dtype=torch.uint8), (1, 2, 3), {"a": torch.ones(1)}])


@SETTINGS
@given(data=st.data())
def test_any_checkpoint_mutation_loads_or_is_a_checkpoint_error(tmp_path: Path, data: st.DataObject) -> None:
    d = _fresh(tmp_path, "ck")
    state = _valid_state()
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(state)))
        if data.draw(st.booleans()):
            state.pop(key)
        else:
            state[key] = data.draw(VALUES)
    save_checkpoint(d, state)
    if data.draw(st.booleans()):
        raw = bytearray((d / "checkpoint.pt").read_bytes())
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        (d / "checkpoint.pt").write_bytes(bytes(raw))
    try:
        got = load_checkpoint(d)
    except CheckpointError as e:
        assert str(d) in str(e) and "\n" not in str(e)
        return
    assert got is not None and isinstance(got["fingerprint"], str) and got["phase"] in (1, 2)
    assert got["handles"].is_floating_point() and torch.isfinite(got["handles"]).all()
    random.Random().setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in got["py_rng"]))
    torch.Generator().set_state(got["torch_rng"])


@pytest.fixture(scope="module")
def archives(lora_bg_pack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("arch")
    z = archive_pack(lora_bg_pack_dir, root / "p.zip")
    with zipfile.ZipFile(root / "deflated.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(lora_bg_pack_dir.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(lora_bg_pack_dir).as_posix())
    with tarfile.open(root / "p.tgz", "w:gz") as tf:
        tf.add(lora_bg_pack_dir, arcname="pack")
    return {".zip": z.read_bytes(), "-deflated.zip": (root / "deflated.zip").read_bytes(),
            ".tgz": (root / "p.tgz").read_bytes()}


@SETTINGS
@given(data=st.data())
def test_any_archive_damage_imports_or_is_a_pack_error(archives: dict[str, bytes], tmp_path: Path,
                                                       data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(archives)))
    raw = bytearray(archives[kind])
    for _ in range(data.draw(st.integers(1, 8))):
        # bias damage toward the headers and the central directory, where parsers are most fragile
        zone = data.draw(st.sampled_from(["start", "end", "anywhere"]))
        i = {"start": data.draw(st.integers(0, min(200, len(raw) - 1))),
             "end": data.draw(st.integers(max(0, len(raw) - 300), len(raw) - 1)),
             "anywhere": data.draw(st.integers(0, len(raw) - 1))}[zone]
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    work = _fresh(tmp_path, "w")
    work.mkdir()
    archive = work / f"damaged{kind.split('-')[-1]}"
    archive.write_bytes(bytes(raw))
    dest = work / "imported"
    try:
        extract_pack_archive(archive, dest)
    except PackError as e:
        assert str(archive) in str(e) and "\n" not in str(e)
        assert sorted(p.name for p in work.iterdir()) == [archive.name]  # nothing left behind
        return
    pack = load_pack(dest)
    assert pack.tokens and sorted(p.name for p in work.iterdir()) == sorted([archive.name, "imported"])
    assert np.isfinite(np.concatenate([v.numpy() for v in pack.embeddings.values()])).all()
