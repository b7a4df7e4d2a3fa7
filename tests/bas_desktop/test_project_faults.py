"""Damaged project files: truncated at every section of the zip, sections missing or malformed,
unknown versions. Each gets a ProjectError naming the file, never another exception."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bas_desktop.model.document import Document, Layer
from bas_desktop.model.project import ProjectError, read_project, save_project


def _project(tmp_path: Path) -> Path:
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    a = np.zeros((48, 64), np.uint8)
    a[5:20, 5:30] = 255
    b = np.zeros((48, 64), np.uint8)
    b[25:40, 30:60] = 255
    return save_project(Document(img, [Layer("cup", (230, 25, 75), a), Layer("ball", (60, 180, 75), b)]),
                        tmp_path / "good.basproj", settings={"preset": "quick"})


def _cut_points(data: bytes) -> dict[str, int]:
    """Offsets that end the file inside each section: every member's header and data, the central
    directory and its end record."""
    z = zipfile.ZipFile(io.BytesIO(data))
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x05\x06"))
    first_cd = data.find(b"PK\x01\x02")
    points = {"empty file": 0, "inside the first header": 10}
    for info in z.infolist():
        start = info.header_offset
        data_start = start + 30 + len(info.filename.encode()) + len(info.extra)
        points[f"{info.filename}: header only"] = data_start
        points[f"{info.filename}: half its data"] = data_start + info.compress_size // 2
        points[f"{info.filename}: one byte short"] = data_start + info.compress_size - 1
    points["before the central directory"] = first_cd
    points["inside the central directory"] = (first_cd + cd) // 2
    points["inside the end record"] = len(data) - 10
    points["one byte short"] = len(data) - 1
    return points


def test_truncated_at_every_section_is_a_clear_error(tmp_path: Path) -> None:
    good = _project(tmp_path)
    doc, saved = read_project(good)
    assert len(doc.layers) == 2 and saved == {"preset": "quick"}
    data = good.read_bytes()
    points = _cut_points(data)
    assert len(points) >= 12
    for what, cut in points.items():
        bad = tmp_path / f"cut-{cut}.basproj"
        bad.write_bytes(data[:cut])
        with pytest.raises(ProjectError) as e:
            read_project(bad)
        assert str(bad) in str(e.value), what


def _rewrite(src: Path, dst: Path, meta_edit=None, drop: str | None = None, replace: dict[str, bytes] | None = None) -> Path:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(entries["project.json"])
    if meta_edit is not None:
        meta = meta_edit(meta)
        entries["project.json"] = json.dumps(meta).encode()
    if drop:
        entries.pop(drop)
    entries.update(replace or {})
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
    return dst


def _without(key: str):  # type: ignore[no-untyped-def]
    return lambda m: {k: v for k, v in m.items() if k != key}


def _set(key: str, value: object):  # type: ignore[no-untyped-def]
    return lambda m: {**m, key: value}


SECTION_CASES = [
    ("no project.json", dict(drop="project.json"), "project.json is missing"),
    ("no photo", dict(drop="photo/original.png"), "incomplete"),
    ("no mask file", dict(drop="masks/1.png"), "incomplete"),
    ("json cut short", dict(replace={"project.json": b'{"format": "bas-desktop-project", "vers'}), "damaged"),
    ("json not an object", dict(replace={"project.json": b"[1, 2, 3]"}), "unknown format"),
    ("no format", dict(meta_edit=_without("format")), "unknown format"),
    ("newer version", dict(meta_edit=_set("version", 99)), "newer version"),
    ("version not a number", dict(meta_edit=_set("version", "1.0")), "newer version"),
    ("no photo section", dict(meta_edit=_without("photo")), "incomplete"),
    ("photo section not an object", dict(meta_edit=_set("photo", "photo.png")), "malformed"),
    ("no layers section", dict(meta_edit=_without("layers")), "incomplete"),
    ("layers not a list", dict(meta_edit=_set("layers", 7)), "malformed"),
    ("layer not an object", dict(meta_edit=_set("layers", ["masks/0.png"])), "malformed"),
    ("work size wrong type", dict(meta_edit=lambda m: {**m, "photo": {**m["photo"], "work_size": "big"}}), "malformed"),
    ("colour not a triple", dict(meta_edit=lambda m: {**m, "layers": [{**m["layers"][0], "color": "red"}, m["layers"][1]]}), "malformed"),
    ("active not a number", dict(meta_edit=_set("active", "first")), "malformed"),
    ("mask not a PNG", dict(replace={"masks/0.png": b"not a png at all"}), "mask 0"),
    ("mask of another size", dict(replace={"masks/0.png": b""}), "mask 0"),
    ("photo not an image", dict(replace={"photo/original.png": b"\x89PNG\r\n\x1a\n garbage"}), "photo inside the project"),
]


@pytest.mark.parametrize("name,edit,expected", SECTION_CASES, ids=[c[0] for c in SECTION_CASES])
def test_missing_or_malformed_sections_are_clear_errors(tmp_path: Path, name: str, edit: dict, expected: str) -> None:
    good = _project(tmp_path)
    if name == "mask of another size":
        buf = io.BytesIO()
        from PIL import Image

        Image.fromarray(np.zeros((10, 10), np.uint8)).save(buf, format="PNG")
        edit = dict(replace={"masks/0.png": buf.getvalue()})
        expected = "mask 0 (cup) is 10x10, photo 64x48"
    bad = _rewrite(good, tmp_path / "bad.basproj", **edit)
    with pytest.raises(ProjectError) as e:
        read_project(bad)
    assert str(bad) in str(e.value) and expected in str(e.value), str(e.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_damage_is_a_project_error_or_a_valid_document(tmp_path: Path, data: st.DataObject) -> None:
    good = tmp_path / "good.basproj"
    if not good.exists():
        _project(tmp_path)
    raw = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    bad = tmp_path / "damaged.basproj"
    bad.write_bytes(bytes(raw[:cut]))
    try:
        doc, _ = read_project(bad)
    except ProjectError as e:
        assert str(bad) in str(e)
    else:  # damage in a part that does not matter (a timestamp, padding): the document is whole
        assert doc.image.shape == (48, 64, 3) and all(layer.mask.shape == (48, 64) for layer in doc.layers)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=12),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                     max_leaves=8)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_project_json_field_mutation_is_a_project_error_or_a_valid_document(tmp_path: Path,
                                                                                data: st.DataObject) -> None:
    """Property: any value at any depth-1/2/3 key of project.json loads or is a ProjectError naming the file."""
    good = tmp_path / "good.basproj"
    if not good.exists():
        _project(tmp_path)

    def mutate(meta: dict) -> dict:
        for _ in range(data.draw(st.integers(1, 3))):
            node: dict | list = meta
            for _depth in range(data.draw(st.integers(0, 2))):
                keys = list(range(len(node))) if isinstance(node, list) else sorted(node)
                if not keys:
                    break
                k = data.draw(st.sampled_from(keys))
                if not isinstance(node[k], (dict, list)) or not node[k]:
                    break
                node = node[k]
            keys = list(range(len(node))) if isinstance(node, list) else sorted(node)
            if keys:
                node[data.draw(st.sampled_from(keys))] = data.draw(_JSON)
        return meta

    bad = _rewrite(good, tmp_path / "mutated.basproj", meta_edit=mutate)
    try:
        doc, settings_ = read_project(bad)
    except ProjectError as e:
        assert str(bad) in str(e) and "\n" not in str(e)
    else:
        assert doc.image.ndim == 3 and all(layer.mask.shape == doc.image.shape[:2] for layer in doc.layers)
        assert isinstance(settings_, dict) and len(doc.layers) <= 8


def test_layer_count_is_capped_before_any_mask_is_read(tmp_path: Path) -> None:
    good = _project(tmp_path)
    many = _rewrite(good, tmp_path / "many.basproj",
                    meta_edit=lambda m: {**m, "layers": [m["layers"][0]] * 1000})
    with pytest.raises(ProjectError, match="1000 layers, but at most 8 concepts are supported"):
        read_project(many)


def test_oversized_and_bomb_members_are_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bas_desktop.model.project as project

    good = _project(tmp_path)
    # project.json padded past the cap (with spaces, so it is still valid JSON)
    with zipfile.ZipFile(good) as z:
        meta = z.read("project.json")
    monkeypatch.setattr(project, "MAX_META_BYTES", 64 << 10)
    big = _rewrite(good, tmp_path / "bigmeta.basproj", replace={"project.json": meta + b" " * (65 << 10)})
    with pytest.raises(ProjectError, match="project.json is .* bytes, more than such a part may be"):
        read_project(big)
    # a mask member that inflates 1000-fold (deflated zeros): refused from its declared sizes
    bomb = tmp_path / "bomb.basproj"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, src.read(n))
        dst.writestr("masks/9.png", b"\0" * (8 << 20), compress_type=zipfile.ZIP_DEFLATED)
    edited = tmp_path / "bomb2.basproj"
    with zipfile.ZipFile(edited, "w") as dst, zipfile.ZipFile(bomb) as src:
        for n in src.namelist():
            data = src.read(n)
            if n == "project.json":
                m = json.loads(data)
                m["layers"] = [{**m["layers"][0], "mask": "masks/9.png"}]
                data = json.dumps(m).encode()
            dst.writestr(n, data, compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(ProjectError, match="masks/9.png expands .*-fold"):
        read_project(edited)
