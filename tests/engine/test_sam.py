"""Fast tests of engine.sam on the tiny random SAM (no real weights, no network; loopback HTTP only)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from engine.errors import BasError, ModelLoadError, ModelNotFoundError
from engine.sam.errors import Cancelled, ChecksumError, DownloadError, SamError
from engine.sam.models import ModelManager
from engine.sam.progress import ProgressEvent
from engine.sam.session import SamSession
from engine.sam.specs import SPECS, TINY, VIT_B, build_random, load_sam, read_state_dict


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[h // 4: h // 2, w // 4: w // 2] = (250, 20, 20)  # some structure, not only noise
    return img


@pytest.fixture(scope="module")
def manager(tmp_path_factory) -> ModelManager:
    return ModelManager(tmp_path_factory.mktemp("bas-cache"))


@pytest.fixture(scope="module")
def session(manager) -> SamSession:
    return SamSession.open("tiny", manager, threads=1)


def _count_encoder_calls(session: SamSession) -> list[int]:
    calls = [0]
    session.sam.image_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# --------------------------------------------------------------------------- ONNX decoder vs torch
@pytest.mark.parametrize("prompt", [
    dict(points=[(60, 40)], labels=[1], box=None, multimask=True),
    dict(points=[(60, 40), (150, 100)], labels=[1, 0], box=None, multimask=False),
    dict(points=[], labels=[], box=(20, 10, 140, 90), multimask=False),
    dict(points=[(70, 50), (10, 100)], labels=[1, 0], box=(30, 20, 120, 110), multimask=True),
])
def test_onnx_decoder_matches_torch_predictor(session, prompt):
    img = _image(120, 180, 1)
    session.set_image(img)
    ours = session.predict(prompt["points"], prompt["labels"], prompt["box"], multimask=prompt["multimask"])

    ref = SamPredictor(session.sam)
    ref.set_image(img)
    np.testing.assert_allclose(ref.features.numpy(), session.embedding, atol=1e-5)
    masks, scores, low_res = ref.predict(
        point_coords=np.array(prompt["points"], float) if prompt["points"] else None,
        point_labels=np.array(prompt["labels"]) if prompt["labels"] else None,
        box=np.array(prompt["box"], float) if prompt["box"] else None,
        multimask_output=prompt["multimask"], return_logits=True)

    np.testing.assert_allclose(ours.scores, scores, atol=1e-4)
    np.testing.assert_allclose(ours.low_res_logits, low_res, atol=1e-4)
    assert ours.index == int(np.argmax(scores))
    assert ours.mask.shape == (120, 180) and ours.mask.dtype == bool
    ref_logits = masks[ours.index]
    differ = ours.mask != (ref_logits > 0)
    # Only pixels whose logit is ~0 may land on the other side of the threshold.
    assert np.all(np.abs(ref_logits[differ]) < 1e-3)


@settings(max_examples=6, deadline=None)
@given(h=st.integers(8, 300), w=st.integers(8, 300), fx=st.floats(0, 1), fy=st.floats(0, 1),
       positive=st.booleans())
def test_click_parity_holds_for_any_aspect_ratio(session, h, w, fx, fy, positive):
    img = _image(h, w, 5)
    session.set_image(img)
    x, y = fx * (w - 1), fy * (h - 1)
    ours = session.predict([(x, y)], [int(positive)])
    ref = SamPredictor(session.sam)
    ref.features = torch.from_numpy(session.embedding)  # same embedding, torch decoder
    ref.original_size, ref.input_size, ref.is_image_set = (h, w), session._current().input_size, True
    masks, scores, _ = ref.predict(np.array([[x, y]]), np.array([int(positive)]), return_logits=True)
    np.testing.assert_allclose(ours.scores, scores, atol=1e-4)
    assert ours.mask.shape == (h, w)
    assert np.all(np.abs(masks[ours.index][ours.mask != (masks[ours.index] > 0)]) < 1e-3)


# --------------------------------------------------------------------------- prompts
@pytest.mark.parametrize("shape", [(90, 200), (200, 90), (64, 64)])
def test_positive_click_mask_has_image_shape(session, shape):
    session.set_image(_image(*shape, seed=2))
    pred = session.predict([(shape[1] // 2, shape[0] // 2)], [1])
    assert pred.mask.shape == shape and pred.mask.dtype == bool
    assert np.isfinite(pred.score) and pred.scores.shape == (3,) and pred.low_res_logits.shape == (3, 256, 256)
    assert np.array_equal(session.mask_from_logits(pred.low_res_logits[pred.index]), pred.mask)


def test_negative_points_box_and_refinement_accepted(session):
    session.set_image(_image(100, 150, 3))
    first = session.predict([(40, 30), (120, 80)], [1, 0], box=(10, 10, 100, 90))
    # Box corners in any order mean the same box.
    flipped = session.predict([(40, 30), (120, 80)], [1, 0], box=(100, 90, 10, 10))
    assert np.array_equal(first.mask, flipped.mask) and first.score == pytest.approx(flipped.score)
    prior = first.low_res_logits[first.index]
    refined = session.predict([(40, 30)], [1], multimask=False, mask_input=prior)
    assert refined.mask.shape == (100, 150) and refined.scores.shape == (1,)
    ref = SamPredictor(session.sam)
    ref.set_image(_image(100, 150, 3))
    _, scores, low_res = ref.predict(np.array([[40.0, 30.0]]), np.array([1]), mask_input=prior[None],
                                     multimask_output=False)
    np.testing.assert_allclose(refined.scores, scores, atol=1e-4)
    np.testing.assert_allclose(refined.low_res_logits, low_res, atol=1e-4)
    negative_only = session.predict([(5, 5)], [0])
    assert negative_only.mask.shape == (100, 150)
    # Default: three proposals for a lone click, SAM's single mask once the prompt is unambiguous.
    assert negative_only.scores.shape == (3,) and first.scores.shape == (1,)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(points=[(1, 1)], labels=[1, 0]), "1 points but 2 labels"),
    (dict(points=[(1, 1)], labels=[2]), "labels must be 1"),
    (dict(points=[], labels=[]), "at least one point or a box"),
    (dict(points=[], labels=[], box=(5, 5, 5, 40)), "is empty"),
    (dict(points=[(float("nan"), 1)], labels=[1]), "finite"),
])
def test_bad_prompts_raise_clear_errors(session, kwargs, fragment):
    session.set_image(_image(50, 60, 4))
    with pytest.raises(SamError, match=fragment):
        session.predict(**kwargs)


def test_bad_images_name_the_source(session):
    with pytest.raises(SamError, match=r"photo\.png: image must be uint8"):
        session.set_image(np.zeros((10, 10, 3), np.float32), source="photo.png")
    with pytest.raises(SamError, match=r"H x W x 3"):
        session.set_image(np.zeros((10, 10, 4), np.uint8))
    fresh = SamSession(session.sam, TINY, session.model_id, session.manager)
    with pytest.raises(SamError, match="no image set"):
        fresh.predict([(1, 1)], [1])


# --------------------------------------------------------------------------- embedding cache
def test_embedding_cache_avoids_re_encoding(manager):
    sess = SamSession.open("tiny", manager, seed=7, threads=1)
    calls = _count_encoder_calls(sess)
    a, b = _image(80, 100, 10), _image(80, 100, 11)
    sess.set_image(a)
    assert calls[0] == 1 and sess.encoder_runs == 1
    events: list[ProgressEvent] = []
    sess.set_image(a, progress_cb=events.append)
    assert calls[0] == 1 and events[-1].message == "cached"
    sess.set_image(b)
    sess.set_image(a)
    assert calls[0] == 2
    emb_a = sess.embedding

    # A new session (empty memory level) of the same model finds the embedding on disk.
    again = SamSession.open("tiny", manager, seed=7, threads=1)
    calls_again = _count_encoder_calls(again)
    again.set_image(a)
    assert calls_again[0] == 0
    np.testing.assert_array_equal(again.embedding, emb_a)

    # Another model id (other random seed) never reuses those embeddings.
    other = SamSession.open("tiny", manager, seed=8, threads=1)
    other.set_image(a)
    assert other.encoder_runs == 1

    # A damaged disk entry is dropped and re-encoded instead of failing.
    (again.cache.folder / f"{again.image_key}.npy").write_bytes(b"not numpy")
    third = SamSession.open("tiny", manager, seed=7, threads=1)
    third.set_image(a)
    assert third.encoder_runs == 1


def test_encoding_reports_progress_and_can_be_cancelled(manager):
    sess = SamSession.open("tiny", manager, seed=9, threads=1)
    events: list[ProgressEvent] = []
    sess.set_image(_image(64, 64, 20), progress_cb=events.append)
    blocks = len(sess.sam.image_encoder.blocks)
    assert [e.done for e in events] == list(range(blocks + 1)) + [blocks + 1]
    assert events[-1].fraction == 1.0
    before = sess.image_key
    stop = threading.Event()

    def cancel_after_first_block(event: ProgressEvent) -> None:
        if event.done >= 1:
            stop.set()

    with pytest.raises(Cancelled):
        sess.set_image(_image(64, 64, 21), progress_cb=cancel_after_first_block, cancel_flag=stop)
    assert sess.image_key == before


def test_predict_uses_previous_image_while_next_one_encodes(manager):
    sess = SamSession.open("tiny", manager, seed=11, threads=1)
    sess.set_image(_image(40, 50, 30))
    first_key = sess.image_key
    mid_encode, release = threading.Event(), threading.Event()

    def pause_in_encoder(event: ProgressEvent) -> None:
        if event.done == 1:
            mid_encode.set()
            assert release.wait(20)

    worker = threading.Thread(target=sess.set_image, args=(_image(70, 30, 31), pause_in_encoder))
    worker.start()
    try:
        assert mid_encode.wait(20)
        assert sess.image_key == first_key
        assert sess.predict([(10, 10)], [1]).mask.shape == (40, 50)
    finally:
        release.set()
        worker.join(20)
    assert sess.image_key != first_key and sess.predict([(10, 10)], [1]).mask.shape == (70, 30)


def test_corrupt_onnx_decoder_is_re_exported(manager, session):
    path = session.decoder.path
    path.write_bytes(b"garbage")
    sess = SamSession.open("tiny", manager, threads=1)
    assert sess.decoder.path == path and path.stat().st_size > 1000
    sess.set_image(_image(40, 40, 5))
    assert sess.predict([(20, 20)], [1]).mask.shape == (40, 40)


# --------------------------------------------------------------------------- suggest
def test_suggest_returns_sorted_candidates_without_re_encoding(session):
    img = _image(60, 90, 6)
    session.set_image(img)
    runs = session.encoder_runs
    events: list[ProgressEvent] = []
    # Random weights predict low IoU, so the quality filters are opened for the test.
    found = session.suggest(points_per_side=4, points_per_batch=8, pred_iou_thresh=0.0,
                            stability_score_thresh=0.0, min_area_fraction=0.0, progress_cb=events.append)
    assert found and session.encoder_runs == runs
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)
    for s in found:
        assert s.mask.shape == (60, 90) and s.mask.dtype == bool and s.area == int(s.mask.sum()) > 0
        x0, y0, x1, y1 = s.bbox
        assert s.mask[y0:y1, x0:x1].sum() == s.area
    assert events[-1] == ProgressEvent("suggest", 2, 2, "batches")

    # Same candidates as segment_anything's own generator (torch decoder, its own encoding), also when
    # the IoU filter is on (we skip upsampling masks it would drop). NMS off to compare many masks.
    every = dict(points_per_side=3, points_per_batch=8, stability_score_thresh=0.0, box_nms_thresh=1.0)
    all_scores = sorted({round(s.score, 3) for s in session.suggest(pred_iou_thresh=0.0, min_area_fraction=0.0,
                                                                     max_masks=100, **every)})
    cut = (all_scores[len(all_scores) // 2 - 1] + all_scores[len(all_scores) // 2]) / 2  # between two scores
    for thresh in (0.0, cut):
        ours = session.suggest(pred_iou_thresh=thresh, min_area_fraction=0.0, max_masks=100, **every)
        ref = SamAutomaticMaskGenerator(session.sam, pred_iou_thresh=thresh, **every).generate(img)
        ref = sorted((r for r in ref if r["area"] > 0), key=lambda r: (-r["predicted_iou"], -r["area"]))
        assert len(ours) == len(ref) > 1
        for a, r in zip(ours, ref):
            assert a.score == pytest.approx(r["predicted_iou"], abs=1e-4)
            assert (a.mask != r["segmentation"]).mean() < 1e-3

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="mask suggestion cancelled"):
        session.suggest(points_per_side=2, cancel_flag=stop)

    # Larger than work_side: computed smaller, returned at full size.
    session.set_image(_image(100, 160, 7))
    big = session.suggest(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                          min_area_fraction=0.0, work_side=64)
    assert big and all(s.mask.shape == (100, 160) for s in big)


# --------------------------------------------------------------------------- weights files
class _Payload:
    """An arbitrary object in a .pth: must be refused by weights_only loading, never unpickled."""


def test_corrupt_weights_file_error_names_it(tmp_path):
    bad = tmp_path / "sam_vit_b_01ec64.pth"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(SamError, match="not a readable PyTorch weights file") as info:
        load_sam(VIT_B, bad)
    assert str(bad) in str(info.value) and isinstance(info.value, (BasError, ModelLoadError))

    wrong = tmp_path / "wrong.pth"
    torch.save({"foo.weight": torch.zeros(2)}, wrong)
    with pytest.raises(SamError, match=r"is not a SAM tiny checkpoint: .*missing keys") as info:
        load_sam(TINY, wrong)
    assert str(wrong) in str(info.value)

    evil = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, evil)
    with pytest.raises(SamError, match="evil.pth") as info:
        read_state_dict(evil)
    assert "weights_only" not in str(info.value)  # never relay torch's advice to unpickle the file

    with pytest.raises(ModelNotFoundError, match="missing.pth: SAM weights file not found"):
        load_sam(TINY, tmp_path / "missing.pth")


def test_good_weights_load_register_and_open(tmp_path):
    sam = build_random(TINY, seed=3)
    path = tmp_path / "picked.pth"
    torch.save(sam.state_dict(), path)
    loaded = load_sam(TINY, path)
    for key, value in sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert torch.equal(loaded.pixel_mean, sam.pixel_mean) and torch.equal(loaded.pixel_std, sam.pixel_std)
    x = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    assert torch.equal(loaded.preprocess(x), sam.preprocess(x))

    mgr = ModelManager(tmp_path / "cache")
    spec = dataclasses.replace(TINY, name="tiny_file", url="http://127.0.0.1:9/none.pth",
                               filename="tiny.pth", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(ModelNotFoundError, match=r"tiny\.pth: SAM tiny_file weights are not downloaded yet"):
        SamSession.open(spec, mgr)
    assert mgr.register(spec, path) == path.resolve()
    assert mgr.weights_path(spec) == path.resolve()
    sess = SamSession.open(spec, mgr, threads=1)
    assert sess.model_id.startswith("tiny_file-" + spec.sha256[:16])
    same = SamSession(sam, TINY, "tiny-seed3-in-memory", mgr, threads=1)
    img = _image(50, 70, 12)
    sess.set_image(img)
    same.set_image(img)
    a, b = sess.predict([(30, 20)], [1]), same.predict([(30, 20)], [1])
    assert np.array_equal(a.mask, b.mask) and np.allclose(a.scores, b.scores, atol=1e-5)

    other = dataclasses.replace(spec, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="picked.pth"):
        mgr.register(other, path)
    assert mgr.register(other, path, allow_unverified=True) == path.resolve()


# --------------------------------------------------------------------------- downloader on loopback
class _Server:
    """A loopback HTTP server serving ``data`` with Range support and scripted misbehaviour."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ranges: list[str | None] = []
        self.cut_next_at: int | None = None  # send only this many bytes, then drop the connection
        self.ignore_range = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/sam.pth":
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = 0
                if rng and not outer.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(outer.data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(outer.data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.data) - 1}/{len(outer.data)}")
                else:
                    self.send_response(200)
                body = outer.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_next_at is not None:
                    body, outer.cut_next_at = body[: outer.cut_next_at], None
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sam.pth"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture()
def server():
    srv = _Server(os.urandom(2 * (1 << 20) + 12345))
    yield srv
    srv.close()


def _spec_for(srv: _Server, sha: str | None = None):
    return dataclasses.replace(TINY, name="loopback", url=srv.url, filename="loopback.pth",
                               sha256=sha or hashlib.sha256(srv.data).hexdigest())


def test_download_verifies_and_reports_progress(server, tmp_path):
    mgr = ModelManager(tmp_path)
    events: list[ProgressEvent] = []
    path = mgr.download(_spec_for(server), progress_cb=events.append, timeout_s=10)
    assert path.read_bytes() == server.data and mgr.weights_path(_spec_for(server)) == path
    done = [e.done for e in events if e.task == "download"]
    assert done == sorted(done) and done[-1] == events[-1].total == len(server.data)
    assert mgr.download(_spec_for(server), timeout_s=10) == path and len(server.ranges) == 1


def test_download_resumes_after_interruption(server, tmp_path):
    mgr = ModelManager(tmp_path)
    server.cut_next_at = 1_000_000
    with pytest.raises(DownloadError, match="resume"):
        mgr.download(_spec_for(server), timeout_s=10)
    part = mgr.default_path(_spec_for(server)).with_name("loopback.pth.part")
    assert part.stat().st_size == 1_000_000
    events: list[ProgressEvent] = []
    path = mgr.download(_spec_for(server), progress_cb=events.append, timeout_s=10)
    assert server.ranges == [None, "bytes=1000000-"]
    assert events[0].task == "verify" and events[-1] == ProgressEvent("download", len(server.data),
                                                                      len(server.data), "bytes", "loopback")
    assert [e.done for e in events if e.task == "download"][0] == 1_000_000
    assert path.read_bytes() == server.data and not part.exists()


def test_download_cancel_keeps_part_and_resumes(server, tmp_path):
    mgr = ModelManager(tmp_path)
    stop = threading.Event()

    def cancel_after_first_chunk(event: ProgressEvent) -> None:
        if event.done > 0:
            stop.set()

    with pytest.raises(Cancelled):
        mgr.download(_spec_for(server), progress_cb=cancel_after_first_chunk, cancel_flag=stop, timeout_s=10)
    part = mgr.default_path(_spec_for(server)).with_name("loopback.pth.part")
    kept = part.stat().st_size
    assert 0 < kept < len(server.data)
    path = mgr.download(_spec_for(server), timeout_s=10)
    assert server.ranges[-1] == f"bytes={kept}-" and path.read_bytes() == server.data


def test_download_server_ignoring_range_restarts_cleanly(server, tmp_path):
    mgr = ModelManager(tmp_path)
    server.cut_next_at = 500_000
    with pytest.raises(DownloadError):
        mgr.download(_spec_for(server), timeout_s=10)
    server.ignore_range = True
    assert mgr.download(_spec_for(server), timeout_s=10).read_bytes() == server.data


def test_download_with_complete_part_finishes_on_416(server, tmp_path):
    mgr = ModelManager(tmp_path)
    dest = mgr.default_path(_spec_for(server))
    dest.parent.mkdir(parents=True)
    dest.with_name("loopback.pth.part").write_bytes(server.data)
    assert mgr.download(_spec_for(server), timeout_s=10).read_bytes() == server.data
    assert server.ranges == [f"bytes={len(server.data)}-"]


def test_download_checksum_failure_deletes_part(server, tmp_path):
    mgr = ModelManager(tmp_path)
    spec = _spec_for(server, sha="f" * 64)
    with pytest.raises(ChecksumError, match="loopback.pth") as info:
        mgr.download(spec, timeout_s=10)
    assert "f" * 64 in str(info.value)
    dest = mgr.default_path(spec)
    assert not dest.exists() and not dest.with_name("loopback.pth.part").exists()


def test_download_http_error_is_clear(server, tmp_path):
    spec = dataclasses.replace(_spec_for(server), url=server.url.replace("sam.pth", "nope.pth"))
    with pytest.raises(DownloadError, match="HTTP 404"):
        ModelManager(tmp_path).download(spec, timeout_s=10)


def test_official_specs_are_consistent():
    # The hex in the official file names is the start of the file's MD5 (checked against published lists).
    for spec in (SPECS["vit_b"], SPECS["vit_l"], SPECS["vit_h"]):
        assert spec.downloadable and spec.url.endswith("/" + spec.filename)
        assert spec.filename == f"sam_{spec.name}_{spec.md5[:6]}.pth"
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
    assert not SPECS["tiny"].downloadable


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("BAS_CACHE_DIR", str(tmp_path / "c"))
    assert ModelManager().weights_dir == tmp_path / "c" / "sam" / "weights"
