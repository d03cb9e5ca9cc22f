"""``embedlab shrink``: quantized ONNX folders of a tiny random BERT that load by path everywhere,
select's analysis with retained quality and index sizes, and one line for each bad input."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from embedlab.cli.main import main
from embedlab.encoders.onnx_folder import MANIFEST, read_manifest
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.search.build import check_index
from tests.helpers import shared_dataset, write_beir
from tests.tiny_models import HIDDEN, make_tiny_sentence_transformer

MODEL_VARIANTS = ("int8-dynamic", "int8-static", "fp16")
INDEX_VARIANTS = ("int8-index", "binary-index", "pca-16", "matryoshka-16")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return make_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st") / "model")


@pytest.fixture(scope="module")
def shrunk(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shrink")
    data = write_beir(root / "tiny")
    out = root / "out"
    argv = ["shrink", "-m", str(tiny_model), "-d", str(data), "--out", str(out)]
    argv += ["--variants", ",".join(MODEL_VARIANTS + INDEX_VARIANTS), "--latency-queries", "2", "--no-progress"]
    with pytest.MonkeyPatch.context() as env:  # module scope runs before conftest's per-test isolation
        env.setenv("EMBEDLAB_CACHE", str(root / "cache"))
        env.setenv("HF_HUB_OFFLINE", "1")
        assert main(argv) == 0
    return out, data


def test_shrink_writes_each_variant_and_select_analysis(shrunk: tuple[Path, Path]) -> None:
    out, _ = shrunk
    for name in MODEL_VARIANTS:
        manifest = read_manifest(out / name)
        assert manifest is not None and manifest.precision == name and manifest.dim == HIDDEN
        validation = manifest.made_with["validation"]
        # fp16 keeps ~11 significant bits per weight (relative error 2**-11 ~ 5e-4 per value); the
        # cosine of two 32-dim unit vectors that close is above 1 - 1e-3.  int8 keeps 1/255 of each
        # range: a cosine of 0.9 would already mean a broken graph (a dropped scale or zero point)
        assert validation["cosine_to_fp32_min"] >= (0.999 if name == "fp16" else 0.9)
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no half-built folder left behind
    data = json.loads((out / "report" / "selection.json").read_text())
    summaries = {s["model"]: s for s in data["summaries"]}
    assert set(summaries) == {"original", *MODEL_VARIANTS, *INDEX_VARIANTS}
    assert summaries["original"]["retained"] == 1.0
    for name, summary in summaries.items():
        ratio = summary["mean_quality"] / summaries["original"]["mean_quality"]
        assert summary["retained"] == pytest.approx(ratio, rel=1e-12), name
    per_1m = {name: s["index_mb_per_1m"] for name, s in summaries.items()}
    # projected to 1M rows: float32 rows are 4 bytes x 32 dims; int8 is 1 byte x 32 dims a row plus its
    # per-dimension low and step (2 x 32 float32) once, not spread over this corpus's 5 rows
    assert per_1m["original"] == pytest.approx(4 * HIDDEN * 1e6 / 2**20)
    assert per_1m["int8-index"] == pytest.approx((HIDDEN * 1e6 + 2 * 4 * HIDDEN) / 2**20)
    assert per_1m["binary-index"] < per_1m["original"]
    assert per_1m["matryoshka-16"] == pytest.approx(per_1m["original"] / 2)  # no fixed part: 16 floats a row
    markdown = (out / "report" / "selection.md").read_text()
    assert "retained" in markdown and "index MB / 1M docs" in markdown
    assert "Quality vs index size" in (out / "report" / "selection.html").read_text()
    record = json.loads((out / "shrink.json").read_text())
    assert record["variants"]["int8-index"]["artefact"].endswith(":index=int8")
    assert check_index(parse_model_spec(record["variants"]["pca-16"]["artefact"])) == {"dim": 16}


def test_each_model_variant_loads_by_path_with_its_own_fingerprint(
    shrunk: tuple[Path, Path], tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, data = shrunk
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    fp32 = load_encoder(ModelSpec(model=str(tiny_model), backend="onnx")).fingerprint
    seen = {fp32.as_dict().__repr__()}
    texts = ["reset password", "bread flour water"]
    reference = load_encoder(ModelSpec(model=str(tiny_model), backend="onnx")).encode(texts, role="query")
    for name in MODEL_VARIANTS:
        encoder = load_encoder(ModelSpec(model=str(out / name)))
        assert encoder.fingerprint.precision == name and encoder.fingerprint.kind == "onnx-folder"
        seen.add(encoder.fingerprint.as_dict().__repr__())
        vectors = encoder.encode(texts, role="query")
        assert vectors.shape == reference.shape
        assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)  # the manifest's normalize
        argv = ["eval", "-m", str(out / name), "-d", str(data), "--out", str(tmp_path / name)]
        assert main([*argv, "--latency-queries", "2", "--no-progress", "--cache-dir", str(tmp_path / "c")]) == 0
        assert main(["index", "build", f"c-{name}", "--dataset", str(data), "--model", str(out / name)]) == 0
    assert len(seen) == 1 + len(MODEL_VARIANTS)  # the cache can never mix their vectors


def test_a_damaged_variant_refuses_to_load(shrunk: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = shrunk
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in (out / "int8-dynamic").iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    graph = copy / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(EmbedlabError, match="fail verification"):
        load_encoder(ModelSpec(model=str(copy)))
    (copy / MANIFEST).write_text('{"kind": "onnx", "name": "x", "surprise": 1}')
    with pytest.raises(EmbedlabError, match="not a valid embedlab model manifest"):
        load_encoder(ModelSpec(model=str(copy)))


def test_defaults_on_a_model_without_a_transformer_keep_the_index_variants(tmp_path: Path, capsys) -> None:
    data = write_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    argv = ["shrink", "-m", "hashing", "-d", str(data), "--out", str(out), "--latency-queries", "2", "--no-progress"]
    assert main([*argv, "--cache-dir", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "skipped int8-dynamic: needs a transformer folder" in printed
    record = json.loads((out / "shrink.json").read_text())
    assert set(record["variants"]) == {"int8-index", "binary-index", "pca-32", "matryoshka-32"}  # half of 64
    assert not (out / "int8-dynamic").exists()


def _no_text(folder: Path) -> Path:
    return write_beir(folder, corpus=[{"_id": f"d{i}", "title": "", "text": " " * i} for i in range(1, 6)])


@pytest.mark.parametrize(
    ("extra", "model", "needle"),
    [
        (["--variants", "int8-dynamc"], None, "Did you mean 'int8-dynamic'"),
        (["--variants", "matryoshka-64"], None, "asks for 64 dimensions of a 32-dimensional model"),
        (["--variants", "int8-static", "--calibration-size", "4"], None, "--calibration-size 4 is too small"),
        (["--variants", "int8-index"], "NO-TEXT", "the corpus has no text"),
        (["--variants", "int8-dynamic"], "hashing", "variant 'int8-dynamic' does not apply"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tiny_model: Path, tmp_path: Path, capsys, extra: list[str], model: str | None, needle: str
) -> None:
    data = _no_text(tmp_path / "empty") if model == "NO-TEXT" else write_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    name = model if model not in (None, "NO-TEXT") else str(tiny_model)
    code = main(["shrink", "-m", name, "-d", str(data), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_existing_variant_folder_is_refused_before_any_work(tiny_model: Path, tmp_path: Path, capsys) -> None:
    data = write_beir(tmp_path / "tiny")
    (tmp_path / "out" / "fp16").mkdir(parents=True)
    code = main(
        ["shrink", "-m", str(tiny_model), "-d", str(data), "--out", str(tmp_path / "out"), "--variants", "fp16"]
    )
    assert code == 2 and "already holds a 'fp16' variant" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "fp16"]


def test_an_export_failure_names_the_operator() -> None:
    torch = pytest.importorskip("torch")
    from embedlab.encoders.transformer import export_error

    class Spectral(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).real

    with pytest.raises(Exception) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Spectral(), (torch.ones(2, 8),), io.BytesIO(), opset_version=17, dynamo=False)
    message = export_error(caught.value, "spectral").one_line()
    assert "cannot export 'spectral' to ONNX (opset 17): operator aten::fft_rfft is not supported" in message
    assert "\n" not in message


@pytest.mark.model
def test_minilm_dynamic_int8_keeps_cosine_099_on_50_passages(tmp_path: Path) -> None:
    from embedlab.data.beir import load_dataset
    from embedlab.optimize.quantize import build_onnx_variant

    dataset = load_dataset(shared_dataset("scifact"))
    passages = [d.content for _, d in zip(range(50), dataset.iter_documents(), strict=False)]
    manifest = build_onnx_variant("int8-dynamic", "all-MiniLM-L6-v2", tmp_path / "q", texts=passages, label="minilm")
    fp32 = load_encoder(ModelSpec(model="all-MiniLM-L6-v2", backend="onnx")).encode(passages, role="document")
    int8 = load_encoder(ModelSpec(model=str(tmp_path / "q"))).encode(passages, role="document")
    cosine = np.sum(fp32 * int8, axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, (cosine.mean(), cosine.min())
    # the manifest keeps 6 decimals of a mean cosine (<= 1) measured in its own encode run; this test encodes
    # again in other batches (float32 noise ~1e-6 per vector), so 1e-4 is loose on purpose but still catches
    # a wrong variant (int8 vs fp32 differ by ~5e-3)
    assert manifest.made_with["validation"]["cosine_to_fp32_mean"] == pytest.approx(float(cosine.mean()), abs=1e-4)
    assert (tmp_path / "q" / "model.onnx").stat().st_size < 0.4 * 4 * 22_700_000  # int8: ~1/4 of fp32's 90 MB
