"""The torch-free formats layer: reading a pack's manifest or a PNG's settings loads no tensor library."""

from __future__ import annotations

from pathlib import Path

from tests.test_architecture import loaded_after


def test_reading_a_packs_manifest_and_png_settings_loads_no_tensor_library(full_pack_dir: Path,
                                                                          tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(png)
    code = (f"from engine.formats.manifest import read_manifest, pack_entries\n"
            f"from engine.formats.png import read_png_metadata\n"
            f"from engine.formats.names import default_model, CHECKPOINT_NAME\n"
            f"from engine.formats.results import TrainResult\n"
            f"m = read_manifest({str(full_pack_dir)!r}); assert m['concepts'] and pack_entries({str(full_pack_dir)!r})\n"
            f"assert read_png_metadata({str(png)!r}) == {{}} and default_model()")
    assert loaded_after(code) == []
