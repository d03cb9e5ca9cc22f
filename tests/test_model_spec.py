"""``NAME:key=value,...`` model specs: option keys are identifiers (``k1``, ``max_length``), so the
README's own ``bm25:k1=1.2,b=0.75`` parses whatever the order of its options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.encoders.spec import parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.index.lexical import BM25Options


@pytest.mark.parametrize("text", ["bm25:k1=1.2,b=0.75", "bm25:b=0.75,k1=1.2", "bm25: k1=1.2, b=0.75"])
def test_option_keys_may_hold_digits(text: str) -> None:
    spec = parse_model_spec(text)
    assert spec.model == "bm25"
    options = BM25Options.model_validate(spec.options)
    assert (options.k1, options.b) == (1.2, 0.75)


def test_options_start_at_the_first_colon_followed_by_an_identifier_key() -> None:
    spec = parse_model_spec("all-MiniLM-L6-v2:max_length=128,pooling=cls,query_prompt=query: ")
    assert (spec.model, spec.max_length, spec.pooling) == ("all-MiniLM-L6-v2", 128, "cls")
    assert spec.query_prompt == "query: "  # values are verbatim: the prompt keeps its colon and space
    # a colon followed by something that is no identifier key stays part of the name
    assert parse_model_spec("models/run:2024").model == "models/run:2024"
    assert parse_model_spec("models/v:1k=2").model == "models/v:1k=2"  # keys cannot start with a digit


def test_a_wrong_option_still_says_which() -> None:
    with pytest.raises(EmbedlabError, match="k2"):
        parse_model_spec("bm25:k2=1.2")
    with pytest.raises(EmbedlabError, match="'b'"):
        parse_model_spec("bm25:k1=1.2,b=7")


def test_readme_bm25_example_evaluates(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            "bm25:k1=1.2,b=0.75",
            "--out",
            str(out),
            "--no-cache",
            "--latency-queries",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    written = list((out / "tiny").glob("bm25*.json"))
    assert written, sorted(p.name for p in (out / "tiny").iterdir())
    result = json.loads(next(p for p in written if not p.name.endswith("per_query.json")).read_text())
    assert "k1=1.2" in result["embedlab"]["model"] and "b=0.75" in result["embedlab"]["model"]
