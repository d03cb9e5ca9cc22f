"""The Python API (``embedlab.load_model``, ``evaluate``, ``select_model``, collections, ``finetune``).

- README.md's "Python API" ```python blocks run as written, in order and in one namespace, in a scratch
  folder laid out like the README's: ``$EMBEDLAB_DATA`` holds tiny BEIR datasets under the
  README's names, ``~`` is a scratch home with a small ``papers`` library.  Only the fine-tune's
  training is not run (minutes of work): ``run_finetune`` is replaced by a check of the spec the
  real ``embedlab.finetune`` built (as tests/test_readme_commands.py does for the command).
- The docstring examples run as doctests in a similar scratch world.
- Unit tests: mistakes are one-line ``EmbedlabError`` s, options are validated as on the CLI,
  ``encode`` gives the registry encoder's vectors, ``evaluate`` gives ``embedlab eval``'s scores.
"""

from __future__ import annotations

import doctest
import importlib
import io
import json
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import embedlab
from embedlab.cli.main import main
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import parse_model_spec
from embedlab.errors import EmbedlabError
from tests.helpers import write_beir
from tests.library_fixtures import write_library

README = Path(__file__).resolve().parents[1] / "README.md"
EXPECTED_BLOCKS = 6  # README ```python blocks; a new one must be added consciously


def readme_python_blocks() -> list[str]:
    """The ```python blocks of README.md's "Python API" section (other sections' Python, e.g. an
    HTTP client talking to ``embedlab serve``, is not this file's business)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Python API\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)


def _data(root: Path) -> Path:
    data = root / "datasets"
    for name in ("scifact", "cranfield"):
        write_beir(data / name)
        write_beir(data / name, split="train")
    return data


@pytest.fixture
def api_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The README's layout: named datasets, ``~/papers``, collections and results in scratch folders."""
    monkeypatch.setenv("EMBEDLAB_DATA", str(_data(tmp_path)))
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    home = tmp_path / "home"
    write_library(home / "papers")
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _one_line(err: pytest.ExceptionInfo[EmbedlabError]) -> str:
    text = str(err.value)
    assert "\n" not in text and text == err.value.one_line()
    return text


# --- README ------------------------------------------------------------------------------------


@pytest.mark.model
def test_readme_python_blocks_run(api_world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import embedlab.api.training as training
    from embedlab.data.beir import load_dataset
    from embedlab.encoders.resolve import resolve_model
    from embedlab.train.run import FinetuneSpec, _check_out

    blocks = readme_python_blocks()
    assert len(blocks) == EXPECTED_BLOCKS, "README Python blocks changed: check this test still covers them"
    specs: list[FinetuneSpec] = []

    def check_spec(spec: FinetuneSpec) -> None:  # everything run_finetune checks before training
        resolve_model(spec.base)
        load_dataset(spec.train, split=spec.train_split)
        load_dataset(spec.test, split=spec.test_split)
        spec.training.check()
        spec.mining.check()
        _check_out(spec.out)
        specs.append(spec)

    monkeypatch.setattr(training, "run_finetune", check_spec)
    namespace: dict[str, object] = {"__name__": "readme"}
    printed = io.StringIO()
    with redirect_stdout(printed):
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    out = printed.getvalue()
    # what the blocks say they print, and the work they say they do, happened
    assert "all-MiniLM-L6-v2 384 (2, 384) (384,)" in out
    assert "query:  128" in out
    assert "Did you mean 'pooling'?" in out and "embedlab.EmbedlabError" not in out
    docs, query = namespace["docs"], namespace["query"]
    assert isinstance(docs, np.ndarray) and isinstance(query, np.ndarray)
    # 384 float32 products: rounding scales with 384 x eps (about 2e-5 here)
    assert (docs @ query)[0] > (docs @ query)[1]  # the password passage is the nearer one
    assert Path("results/api/summary.json").is_file() and Path("results/api/scifact/bm25.json").is_file()
    both = namespace["both"]
    assert [(e.dataset, e.model) for e in both.evaluations] == [  # type: ignore[attr-defined]
        ("scifact", "bm25"),
        ("scifact", "all-MiniLM-L6-v2"),
        ("cranfield", "bm25"),
        ("cranfield", "all-MiniLM-L6-v2"),
    ]
    assert namespace["choice"].recommended in ("all-MiniLM-L6-v2", "bm25")  # type: ignore[attr-defined]
    assert namespace["report"].files == 4 and namespace["response"].hits  # type: ignore[attr-defined]
    assert Path(api_world.parent / "collections" / "lib" / "CURRENT").is_file()
    (spec,) = specs
    assert spec.base == "all-MiniLM-L6-v2" and spec.drop_leaked and spec.out == Path("models/scifact-ft")
    assert namespace["tuned"] is None  # the stand-in for the training returns nothing


def test_readme_blocks_are_found() -> None:
    blocks = readme_python_blocks()
    assert len(blocks) == EXPECTED_BLOCKS
    assert all("import embedlab" in blocks[0] or "embedlab." in b for b in blocks)
    text = "".join(blocks)
    assert "hashing" not in text  # README examples use names a user has


# --- doctests ----------------------------------------------------------------------------------


@pytest.fixture
def doctest_world(api_world: Path) -> Path:
    """``papers`` in the working folder and a collection ``lib`` of it (built with the test encoder)."""
    from embedlab.collection import build

    write_library(api_world / "papers")
    build(api_world / "papers", "lib", model_spec="hashing", max_tokens=40, overlap=8)
    return api_world


@pytest.mark.parametrize(
    "module",
    [
        "embedlab.api.evaluation",
        "embedlab.api.selection",
        pytest.param("embedlab.api.model", marks=pytest.mark.model),
        pytest.param("embedlab.api.collections", marks=pytest.mark.model),
        "embedlab.collection.collection",
    ],
)
def test_docstring_examples(module: str, doctest_world: Path) -> None:
    results = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert results.failed == 0
    assert results.attempted >= 1  # the module has examples, and they ran


# --- import and names --------------------------------------------------------------------------


def test_import_is_cheap_and_names_resolve() -> None:
    heavy = "{'numpy', 'torch', 'pydantic', 'embedlab'}"
    code = f"import sys, embedlab; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['embedlab']"
    assert set(embedlab.__all__) == {"__version__", *embedlab._API}
    for name in embedlab._API:
        assert getattr(embedlab, name) is not None and name in dir(embedlab)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        embedlab.nope  # noqa: B018
    select_run = importlib.import_module("embedlab.select.run")  # the subpackage keeps its name
    assert (
        select_run.__name__ == "embedlab.select.run"
        and embedlab.select.__name__ == "embedlab.select"
        and callable(embedlab.select_model)
    )
    assert (Path(embedlab.__file__).parent / "py.typed").is_file()


# --- load_model and encode ---------------------------------------------------------------------


def test_encode_equals_the_registry_encoder_and_roles_apply_prompts() -> None:
    texts = ["Reset your password", "Bake bread with flour", "reset PASSWORD link"]
    model = embedlab.load_model("hashing", dim=32, query_prompt="find ")
    assert (model.name, model.dim) == ("hashing:query_prompt=find ,dim=32", 32)
    encoder = load_encoder(parse_model_spec("hashing:dim=32,query_prompt=find "))
    assert model.fingerprint == encoder.fingerprint
    for role in ("query", "document"):
        np.testing.assert_array_equal(model.encode(texts, role=role), encoder.encode(texts, role=role))
    plain = embedlab.load_model("hashing:dim=32")
    np.testing.assert_array_equal(model.encode(texts, role="query"), plain.encode(["find " + t for t in texts]))
    np.testing.assert_array_equal(model.encode(texts), plain.encode(texts))  # documents get no query prompt
    single = model.encode(texts[0], role="query")
    assert single.shape == (32,) and single.dtype == np.float32
    np.testing.assert_array_equal(single, model.encode(texts, role="query")[0])
    assert model.encode([]).shape == (0, 32)


def test_options_are_validated_as_on_the_cli() -> None:
    model = embedlab.load_model("hashing:dim=16", dim="24", normalize=False)  # keywords override the string
    assert model.dim == 24 and model.fingerprint.normalize is False
    vectors = model.encode(["a a b"])
    assert np.linalg.norm(vectors[0]) > 1.5  # not normalised: two hits in one bucket and one in another
    spec = parse_model_spec("hashing:dim=24")
    assert embedlab.load_model(spec).fingerprint == load_encoder(spec).fingerprint


def test_encode_through_the_cache(tmp_path: Path) -> None:
    model = embedlab.load_model("hashing")
    first = model.encode(["one text", "two texts"], cache=tmp_path / "c")
    assert (tmp_path / "c" / "embeddings.sqlite").is_file()
    np.testing.assert_array_equal(model.encode(["one text", "two texts"], cache=str(tmp_path / "c")), first)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: embedlab.load_model("hashing", dimm=3), "unknown model option 'dimm'.*Did you mean 'dim'"),
        (lambda: embedlab.load_model("hashing", dim=0), "invalid model option 'dim'"),
        (lambda: embedlab.load_model("hashing", pooling="avg"), "invalid model option 'pooling'"),
        (lambda: embedlab.load_model("hashng"), "Did you mean 'hashing'"),
        (lambda: embedlab.load_model("bm25"), "'bm25' is not an embedding model"),
        (lambda: embedlab.load_model(7), "a model is named by a string, found int"),
        (lambda: embedlab.load_model("hashing").encode(["a"], role="passage"), "unknown role 'passage'"),
        (lambda: embedlab.load_model("hashing").encode(["a", 3]), "text 1 is a int, not a string"),
        (lambda: embedlab.load_model("hashing").encode(5), "cannot encode a int"),
        (lambda: embedlab.load_model("hashing").encode("a", cache=3), "invalid cache option 3"),
        (lambda: embedlab.evaluate("bm25", "no-such-dataset-here"), "no-such-dataset-here"),
        (lambda: embedlab.evaluate(["bm25"], "x"), "evaluate takes one model and one dataset"),
        (lambda: embedlab.evaluate(3.5, "x"), "cannot use a float as a model"),
        (lambda: embedlab.evaluate_all([], "x"), "no model given"),
        (lambda: embedlab.select_model([], "x"), "no candidates"),
        (lambda: embedlab.select_model(["bm25"], "x", alpha=2), "alpha must be between 0 and 1"),
        (lambda: embedlab.select_model(["bm25"], "x", max_p95_ms=-1), "invalid max_p95_ms"),
        (lambda: embedlab.select_model(["bm25", "bm25"], "x"), "candidate 'bm25' is listed twice"),
        (lambda: embedlab.finetune("all-MiniLM-L6-v2", "x", "y", "z", mine_ranks=(1,)), "invalid mine_ranks"),
        (lambda: embedlab.open_collection("no-such-collection"), "no-such-collection"),
    ],
)
def test_mistakes_are_one_line_errors(call, message: str, tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    with pytest.raises(EmbedlabError) as err:
        call()
    assert re.search(message, _one_line(err)), _one_line(err)


def test_evaluate_checks_metrics_and_models_before_work(tiny_dataset: Path) -> None:
    with pytest.raises(EmbedlabError) as err:
        embedlab.evaluate("bm25", tiny_dataset, metrics="ndcg@0")
    assert "metric cutoff must be >= 1" in _one_line(err)
    with pytest.raises(EmbedlabError) as err:
        embedlab.evaluate("bm25:k1=x", tiny_dataset)
    assert "invalid model option 'k1'" in _one_line(err)


# --- evaluate equals embedlab eval -------------------------------------------------------------


def test_evaluate_gives_the_scores_of_embedlab_eval(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    metrics = ["ndcg@10", "mrr@10", "recall@100", "map@100"]
    out = tmp_path / "out"
    argv = ["eval", "-d", str(tiny_dataset), "-m", "bm25", "-m", "hashing:dim=32", "--out", str(out)]
    argv += [f"--metric={m}" for m in metrics] + ["--latency-queries", "2", "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    for name, model in (("bm25", "bm25"), ("hashing_dim=32", embedlab.load_model("hashing", dim=32))):
        result = embedlab.evaluate(model, tiny_dataset, metrics=metrics, latency_queries=2)
        cli = json.loads((out / "tiny" / f"{name}.json").read_text())["scores"]["test"][0]
        cli_per_query = json.loads((out / "tiny" / f"{name}.per_query.json").read_text())
        # the same code on the same data: equal up to float64 rounding of the mean (values are <= 1)
        for key, value in result.scores.items():
            assert value == pytest.approx(cli[key], abs=1e-12)
        for key, values in result.per_query.items():
            assert values == pytest.approx(cli_per_query[key], abs=1e-12)
        assert result.dataset == "tiny" and result.measurements["latency"]["samples"] == 2
        assert result["ndcg@10"] == result.scores["ndcg_at_10"]
        assert result.run.query_ids and result.fingerprint
    saved = result.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "summary.json") in saved


def test_evaluate_all_reports_a_failing_model_and_runs_the_rest(tiny_dataset: Path, monkeypatch) -> None:
    from embedlab.encoders import fake

    def broken(self, texts):
        raise EmbedlabError("the model broke")

    monkeypatch.setattr(fake.HashingEncoder, "encode_batch", broken)
    report = embedlab.evaluate_all(["bm25", "hashing"], [tiny_dataset], metrics="ndcg@10", latency_queries=0)
    assert [e.model for e in report.evaluations] == ["bm25"] and not report.ok
    assert [f.model for f in report.failures] == ["hashing"] and "the model broke" in (report.failures[0].error or "")
    with pytest.raises(EmbedlabError) as err:
        embedlab.evaluate("hashing", tiny_dataset, metrics="ndcg@10", latency_queries=0)
    assert _one_line(err) == "hashing on tiny failed: the model broke"


# --- select_model, collections, finetune -------------------------------------------------------


def test_select_model_recommends_as_embedlab_select(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    candidates = ["bm25", "bm25:k1=1.2,b=0.75", "hashing"]
    argv = ["select", "-d", str(tiny_dataset), "--out", str(tmp_path / "cli"), "--latency-queries", "2"]
    code = main(argv + [arg for c in candidates for arg in ("-m", c)] + ["--no-progress"])
    capsys.readouterr()
    cli = json.loads((tmp_path / "cli" / "selection.json").read_text())
    choice = embedlab.select_model(candidates, tiny_dataset, latency_queries=2, out=tmp_path / "api")
    assert code == 0 and choice.recommended is not None and tmp_path / "api" / "selection.json" in choice.files
    # quality and the best are deterministic; the recommendation is the fastest of the best and its
    # statistical ties, and latency is measured anew in each run, so it may be another of those
    assert choice.best == cli["best"]
    quality = {s["model"]: s["mean_quality"] for s in cli["summaries"]}
    assert {s.model: s.mean_quality for s in choice.selection.summaries} == pytest.approx(quality, abs=1e-12)
    tied = {cli["best"]} | {c["model"] for c in cli["comparisons"] if c["tied"]}
    assert choice.recommended in tied and cli["recommended"] in tied


def test_collections_from_python(tmp_path: Path, capsys) -> None:
    library = write_library(tmp_path / "library")
    root = tmp_path / "collections"
    report = embedlab.build_collection(library, "docs", model="hashing", root=root, chunk_tokens=40, overlap=8)
    assert (report.generation, report.files, report.skipped) == (1, 4, ())
    with embedlab.Collection.open("docs", root=root) as docs:
        api = docs.search("reset password", k=3, mode="bm25", reranker="word-overlap")
    assert main(["search", "docs", "reset password", "--k", "3", "--mode", "bm25", "--rerank", "word-overlap",
                 "--root", str(root), "--json"]) == 0  # fmt: skip
    cli = json.loads(capsys.readouterr().out)
    assert [h.chunk_id for h in api.hits] == [h["chunk_id"] for h in cli["hits"]]
    assert api.reranker == cli["reranker"] == "word-overlap"
    (library / "recipes" / "soup.txt").unlink()
    assert embedlab.update_collection("docs", root=root).files_removed == 1
    with pytest.raises(EmbedlabError) as err:
        embedlab.open_collection("docs", root=root, model="hashing:dim=32")
    assert "built with a different encoder" in _one_line(err)


def test_finetune_checks_its_options_before_any_work(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    with pytest.raises(EmbedlabError) as err:
        embedlab.finetune("all-MiniLM-L6-v2", tiny_dataset, tiny_dataset, out, epochs=0)
    assert "--epochs must be >= 1" in _one_line(err)
    with pytest.raises(EmbedlabError) as err:  # the tiny dataset's train and test queries are the same
        embedlab.finetune("all-MiniLM-L6-v2", write_beir(tmp_path / "t", split="train"), tiny_dataset, out)
    assert _one_line(err).startswith("leakage: ")
