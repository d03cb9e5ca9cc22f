"""What a user asks for when naming a model: validated once, at the boundary.

On the command line a model is ``NAME`` or ``NAME:key=value,key=value``, e.g.
``all-MiniLM-L6-v2:pooling=cls,max_length=128`` or ``bm25:k1=1.2,b=0.75``; keys starting
with ``index_`` are the vector index kind's options (``index=pca,index_dim=128``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from embedlab.errors import EmbedlabError

INDEX_PREFIX = "index_"  # model-spec keys that are the index kind's options: index_dim=128 -> dim=128


class ModelSpec(BaseModel):
    """A model and its options.  The fields are the options dense encoders share (each backend
    rejects those it cannot honour, :func:`check_options`) plus the vector ``index`` kind and
    its options (``index_options``: written ``index_<name>=...``, validated against the kind's
    ``Options`` by :mod:`embedlab.search.build`, since encoders do not import the index layer);
    ``options`` holds the options of one backend only (``bm25``: k1, b, stemmer; a test
    encoder's own), validated by that model's entry in :mod:`embedlab.encoders.registry`.
    Flat input (``{"model": "bm25", "k1": 1.2}``, as on the command line and in collection
    manifests) is accepted: keys that are not fields go to ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    label: str | None = None
    backend: Literal["auto", "onnx", "torch"] = "auto"
    pooling: Literal["mean", "cls", "max"] | None = None  # None: the model's own
    max_length: int | None = Field(default=None, gt=0)
    normalize: bool | None = None  # None: the model's own
    query_prompt: str = ""
    document_prompt: str = ""
    batch_size: int = Field(default=32, gt=0)
    device: str = "auto"
    threads: int | None = Field(default=None, gt=0)
    index: str = "exact"  # a registered vector-index kind (embedlab.index)
    index_options: dict[str, Any] = Field(default_factory=dict)  # that kind's options, names unprefixed
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        extra = {k: v for k, v in data.items() if k not in cls.model_fields}
        if not extra:
            return data
        kept = {k: v for k, v in data.items() if k in cls.model_fields}
        index = {k[len(INDEX_PREFIX) :]: v for k, v in extra.items() if k.startswith(INDEX_PREFIX)}
        if index:
            kept["index_options"] = {**dict(kept.get("index_options") or {}), **index}
        rest = {k: v for k, v in extra.items() if not k.startswith(INDEX_PREFIX)}
        return {**kept, "options": {**dict(kept.get("options") or {}), **rest}} if rest else kept

    def flat(self) -> dict[str, Any]:
        """The changed options as one flat mapping (what a user wrote): for names, manifests and reports."""
        values = self.model_dump(exclude_defaults=True)
        index = {INDEX_PREFIX + k: v for k, v in self.index_options.items()}
        return {**{k: v for k, v in values.items() if k not in ("options", "index_options")}, **index, **self.options}

    @property
    def name(self) -> str:
        """A short, file-safe label: the given label, else the model plus changed options."""
        if self.label:
            return self.label
        base = self.model.rstrip("/").split("/")[-1]
        changed = [
            f"{key}={option_text(value)}"
            for key, value in self.flat().items()
            if key not in {"model", "label", "batch_size", "device", "threads"}
        ]
        return base + (f":{','.join(changed)}" if changed else "")


def option_text(value: object) -> str:
    """An option value as a user writes it: ``40`` for 40.0 (validated values are typed)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_OPTIONS = re.compile(r":(?=\s*[a-z_][a-z0-9_]*=)")  # keys are identifiers: k1, max_length


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME[:key=value,...]`` -> ModelSpec, with one clear line for any mistake.

    Options start at the first ``:`` followed by ``key=``; values are taken verbatim (a
    prompt like ``query: `` keeps its colon and trailing space) and cannot hold commas:
    use a candidates file for those.
    """
    match = _OPTIONS.search(text)
    name, options = (text[: match.start()], text[match.end() :]) if match else (text, "")
    values: dict[str, object] = {"model": name}
    for item in filter(str.strip, options.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise EmbedlabError(f"cannot read model option {item!r} in {text!r}", expected="key=value")
        values[key.strip()] = value  # not stripped: prompts such as "query: " keep their space
    return model_spec_from(values, source=repr(text))


def model_spec_from(values: dict[str, object], *, source: str) -> ModelSpec:
    """Validate the shared options here and the model's own options against its registry entry."""
    from embedlab.encoders.registry import check_model_options

    try:
        spec = ModelSpec.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "model"
        raise EmbedlabError(f"invalid model option {where!r} in {source}: {first['msg']}") from None
    try:
        options = check_model_options(spec)
    except EmbedlabError as err:
        raise EmbedlabError(f"{err.message} in {source}", hint=err.hint) from None
    return spec.model_copy(update={"options": options}) if options != spec.options else spec


# options every dense backend honours (the base class and the retriever handle them)
COMMON_OPTIONS = frozenset({"model", "label", "batch_size", "index", "query_prompt", "document_prompt"})


def check_options(spec: ModelSpec, *, accepted: set[str], what: str) -> None:
    """An option a backend cannot honour is an error, not silently ignored.

    ``accepted`` lists the options the backend reads besides ``COMMON_OPTIONS``; ``device=cpu``
    and ``backend=auto`` are always accepted, since every backend here runs on the CPU."""
    given = {k for k in spec.flat() if not k.startswith(INDEX_PREFIX)} - COMMON_OPTIONS - accepted
    if spec.device == "cpu":
        given.discard("device")
    if given:
        option = sorted(given)[0]
        usable = ", ".join(sorted((COMMON_OPTIONS - {"model"}) | accepted))
        raise EmbedlabError(
            f"option {option!r} does not apply to {what} ({spec.model!r})", hint=f"options it takes: {usable}"
        )
