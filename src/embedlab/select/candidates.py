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
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedlab.encoders.spec import ModelSpec, model_spec_from
from embedlab.errors import EmbedlabError


class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    price_per_hour: float | None = Field(default=None, ge=0)
    name: str | None = None


class CandidatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    machine: Machine = Machine()
    candidate: list[dict[str, Any]] = Field(min_length=1)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EmbedlabError("candidates file not found", path=path) from None
    except IsADirectoryError:
        raise EmbedlabError("is a folder, expected a candidates file", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EmbedlabError("not UTF-8 text", path=path, found=f"byte 0x{raw[err.start]:02x}") from None
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            raise EmbedlabError(f"invalid YAML ({getattr(err, 'problem', err)})", path=path, line=line) from None
    elif path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise EmbedlabError(f"invalid TOML ({err})", path=path) from None
    else:
        raise EmbedlabError("unknown candidates file type", path=path, found=path.suffix or "no suffix",
                            expected=".toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise EmbedlabError("not a table of settings", path=path, expected="[[candidate]] entries")
    return data


def load_candidates(path: str | Path) -> tuple[list[ModelSpec], Machine]:
    path = Path(path)
    data = _read(path)
    try:
        parsed = CandidatesFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EmbedlabError(f"invalid candidates file at {where!r}: {first['msg']}", path=path,
                            expected="[machine] with price_per_hour, name and [[candidate]] entries") from None
    specs: list[ModelSpec] = []
    for number, entry in enumerate(parsed.candidate, start=1):
        if not isinstance(entry, dict):
            raise EmbedlabError(f"candidate #{number} is not a table", path=path)
        base = {k: v for k, v in entry.items() if k != "variants"}
        variants = entry.get("variants", [])
        if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
            raise EmbedlabError(f"candidate #{number}: 'variants' must be a list of tables", path=path)
        where = f"{path}, candidate #{number}"
        specs.append(model_spec_from(base, source=where))
        for index, variant in enumerate(variants, start=1):
            specs.append(model_spec_from({**base, **variant}, source=f"{where} variant #{index}"))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EmbedlabError(f"two candidates are both named {duplicates[0]!r}", path=path,
                            hint="give one of them a distinct label")
    return specs, parsed.machine
