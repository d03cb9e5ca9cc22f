"""Candidates files (TOML or YAML): the models to compare, validated, unknown keys rejected.

```toml
[machine]                    # optional: what compute costs
price_per_hour = 0.50        # USD per hour of the machine that runs the model

[[candidate]]
model = "all-MiniLM-L6-v2"
label = "minilm"
variants = [{ pooling = "cls", label = "minilm-cls" }, { pooling = "max", label = "minilm-max" }]

[[candidate]]
model = "bm25"
```

Each candidate takes the options of a model spec (see ``embedlab.encoders.spec.ModelSpec``);
each entry of ``variants`` is the candidate with those options changed, listed after it.
A candidate can instead be a retrieval pipeline (:mod:`embedlab.search.pipeline`), as a
string or a table, with an optional label (no variants)::

    [[candidate]]
    pipeline = "bm25 + all-MiniLM-L6-v2 >> word-overlap@50"
    label = "hybrid-reranked"

    [[candidate]]
    label = "hybrid-2x-dense"
    pipeline = { first = ["bm25", "all-MiniLM-L6-v2"], fusion = { weights = [1, 2] } }
"""

from __future__ import annotations

import codecs
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedlab.data.lines import bom_error, value_error_text
from embedlab.encoders.spec import ModelSpec, model_spec_from
from embedlab.errors import EmbedlabError, shorten
from embedlab.search.pipeline import PipelineSpec, parse_pipeline, pipeline_from_table


class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    price_per_hour: float | None = Field(default=None, ge=0)
    name: str | None = None


class CandidatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    machine: Machine = Machine()
    candidate: list[dict[str, Any]] = Field(min_length=1)


def _read(path: Path) -> dict[str, Any]:
    """The file as a table; every way it can fail to parse is one error with its line where known."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EmbedlabError("candidates file not found", path=path) from None
    except IsADirectoryError:
        raise EmbedlabError("is a folder, expected a candidates file", path=path) from None
    except OSError as err:
        raise EmbedlabError(f"cannot read the candidates file ({err.strerror or err})", path=path) from None
    if raw.startswith(codecs.BOM_UTF8):
        raise bom_error(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise EmbedlabError(
            "not UTF-8 text", path=path, line=line, found=f"byte 0x{raw[err.start]:02x}", expected="UTF-8 encoded text"
        ) from None
    suffix = path.suffix.lower()
    if suffix not in {".yaml", ".yml", ".toml"}:
        raise EmbedlabError(
            "unknown candidates file type", path=path, found=path.suffix or "no suffix", expected=".toml, .yaml or .yml"
        )
    try:
        data = _parse_yaml(text, path) if suffix in {".yaml", ".yml"} else _parse_toml(text, path)
    except RecursionError:
        raise EmbedlabError("nested too deeply", path=path, expected="a flat table of settings") from None
    if not isinstance(data, dict):
        raise EmbedlabError(
            "not a table of settings", path=path, found=type(data).__name__, expected="[[candidate]] entries"
        )
    return data


def _parse_toml(text: str, path: Path) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        where = re.search(r"\(at line (\d+), column \d+\)", str(err))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
        raise EmbedlabError(
            f"invalid TOML ({message})",
            path=path,
            line=int(where.group(1)) if where else None,
            expected="TOML (https://toml.io)",
        ) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise EmbedlabError(
            f"invalid TOML ({value_error_text(err)})", path=path, expected="numbers of ordinary size"
        ) from None


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise EmbedlabError(
            f"invalid YAML ({getattr(err, 'problem', None) or err})",
            path=path,
            line=line,
            expected="YAML mappings and lists",
        ) from None
    except (ValueError, OverflowError) as err:  # e.g. a date like 2024-13-45, which PyYAML constructs itself
        raise EmbedlabError(f"invalid YAML value ({err})", path=path, expected="valid dates and numbers") from None


def load_candidates(path: str | Path) -> tuple[list[ModelSpec | PipelineSpec], Machine]:
    path = Path(path)
    data = _read(path)
    try:
        parsed = CandidatesFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EmbedlabError(
            f"invalid candidates file at {where!r}: {first['msg']}",
            path=path,
            found=shorten(repr(first.get("input"))),
            expected="[machine] with price_per_hour, name and [[candidate]] entries",
        ) from None
    specs: list[ModelSpec | PipelineSpec] = []
    for number, entry in enumerate(parsed.candidate, start=1):
        if not isinstance(entry, dict):
            raise EmbedlabError(f"candidate #{number} is not a table", path=path)
        base = {k: v for k, v in entry.items() if k != "variants"}
        variants = entry.get("variants", [])
        if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
            raise EmbedlabError(f"candidate #{number}: 'variants' must be a list of tables", path=path)
        where = f"{path}, candidate #{number}"
        if "pipeline" in entry:
            specs.append(_pipeline_candidate(entry, where))
            continue
        specs.append(model_spec_from(base, source=where))
        for index, variant in enumerate(variants, start=1):
            specs.append(model_spec_from({**base, **variant}, source=f"{where} variant #{index}"))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EmbedlabError(
            f"two candidates are both named {duplicates[0]!r}", path=path, hint="give one of them a distinct label"
        )
    return specs, parsed.machine


def _pipeline_candidate(entry: dict[str, Any], where: str) -> PipelineSpec:
    extra = sorted(set(entry) - {"pipeline", "label"})
    if extra:
        raise EmbedlabError(
            f"{where}: a pipeline candidate takes only 'pipeline' and 'label'",
            found=repr(extra[0]),
            hint="put model options inside the pipeline (NAME:key=value)",
        )
    value, label = entry["pipeline"], entry.get("label")
    if label is not None and not isinstance(label, str):
        raise EmbedlabError(f"{where}: 'label' must be a string", found=shorten(repr(label)))
    if isinstance(value, str):
        try:
            spec = parse_pipeline(value)
        except EmbedlabError as err:
            raise EmbedlabError(f"{where}: {err.message}", found=err.found, expected=err.expected) from None
    elif isinstance(value, dict):
        spec = pipeline_from_table({**value, **({"label": label} if label else {})}, source=where)
    else:
        raise EmbedlabError(f"{where}: 'pipeline' must be a string or a table", found=shorten(repr(value)))
    return PipelineSpec(first=spec.first, fusion=spec.fusion, rerank=spec.rerank, label=label or spec.label)
