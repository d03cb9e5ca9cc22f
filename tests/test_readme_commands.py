"""Every ``embedlab`` command line in README.md's code blocks works as documented.

Each command is taken from the README as written (backslash continuations joined, ``[optional]``
parts included with the first of ``a|b|c``), run in a scratch folder laid out like the
README's: ``$EMBEDLAB_DATA`` holds tiny BEIR datasets under the README's names (scifact,
cranfield, npl), ``../shared/datasets`` points there, ``~`` is a scratch home with a small
``papers`` library, collections go to a scratch ``$EMBEDLAB_COLLECTIONS``.  Only the models are
substituted in the commands that run (SUBSTITUTE: the deterministic ``hashing`` encoder for the
transformer) and the placeholder ``FOLDER`` (PLACEHOLDERS), so the
syntax of every option, model spec and pipeline is the README's own.  Commands that would train
or serve (finetune, torchrun, serve) or evaluate many real models (select, pooling) are parsed by
the real parser and their specs built and checked (model specs, datasets, candidates file, the
served app created) without doing the work.  A README command this file does not know fails
the test: add it to RUN or CHECK.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from embedlab.cli.main import _parser, main
from tests.helpers import write_beir
from tests.image_library import write_image_library
from tests.library_fixtures import write_library

README = Path(__file__).resolve().parents[1] / "README.md"
REPO = README.parent

# the only substitutions: a real transformer is not run here (the word-boundary keeps
# all-MiniLM-L6-v2-int8 and the like untouched), in the commands that are run ...
SUBSTITUTE = {r"(?<![\w/-])all-MiniLM-L6-v2(?![\w-])": "hashing"}
# ... and the README's placeholders, everywhere (FOLDER: "a cross-encoder folder, or word-overlap")
PLACEHOLDERS = {r"^FOLDER$": "word-overlap"}
# commands run in-process on the tiny data, in README order, keyed by (command, action)
RUN = {
    ("eval", None),
    ("index", "build"),
    ("index", "update"),
    ("index", "info"),
    ("index", "list"),
    ("search", None),
    ("models", None),
    ("completion", None),
}
# commands parsed and checked without running them (they would train, serve or run real models)
CHECK: set[tuple[str, str | None]] = {
    ("select", None),
    ("pooling", None),
    ("finetune", None),
    ("serve", None),
    ("shrink", None),
}
CHECK |= {("monitor", "report"), ("monitor", "check")}  # need logged traffic: tests/test_monitor.py
CHECK |= {("monitor", "ab"), ("simulate", None)}  # need A/B traffic / a running server: tests/test_ab.py
CHECK |= {("tune", "fusion"), ("tune", "depth")}  # tune on 3 judged queries has no dev split: test_multistage.py
CHECK |= {("monitor", "retrain"), ("monitor", "promote"), ("monitor", "rollback")}  # test_retrain_loop.py
RUN |= {("encode", "local")}
# start Ray or need a cluster: tests/test_ray_encode.py runs them on a real local Ray
CHECK |= {("encode", "ray"), ("index", "build on ray")}
EXPECTED_COMMANDS = 43  # README command lines covered here; a new one must be added consciously


def readme_commands() -> list[str]:
    """The ``embedlab ...`` command lines of the README's code blocks, continuations joined."""
    commands = []
    for body in re.findall(r"```[a-z]*\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = line.split("  #")[0].strip()  # a trailing comment
            if re.search(r"(^|\s)embedlab\s|embedlab\.cli\.main", line) and not line.startswith("#"):
                commands.append(line)
    return commands


def to_argv(line: str, *, home: Path) -> tuple[list[str], dict[str, str]]:
    """argv for ``main`` and environment assignments, as the shell would pass them; the models
    of commands that are run are substituted (SUBSTITUTE), those only checked keep the README's."""
    env = {}
    line = re.sub(r"\$\(python -c [^)]*\)\)'?\)?", "readme-test-key-0123456789", line)  # the README's generated key
    line = re.sub(r"\[([^\]]*)\]", r"\1", line)  # optional parts are exercised too
    words = shlex.split(line)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words[0] == "torchrun":  # torchrun ... -m embedlab.cli.main ARGS: the same ARGS
        words = words[words.index("embedlab.cli.main") + 1 :]
    else:
        assert words[0] == "embedlab", line
        words = words[1:]
    run = _key(words) in RUN
    argv = []
    for word in words:
        if " " not in word and re.fullmatch(r"[\w-]+(\|[\w-]+)+", word):
            word = word.split("|")[0]  # dense|bm25|hybrid -> dense
        if word.startswith("~"):
            word = str(home / word[2:])  # the shell's tilde expansion
        for pattern, replacement in [*PLACEHOLDERS.items(), *(SUBSTITUTE.items() if run else ())]:
            word = re.sub(pattern, replacement, word)
        argv.append(word)
    return argv, env


@pytest.fixture
def readme_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "shared" / "datasets"
    for name in ("scifact", "cranfield", "npl"):
        write_beir(data / name)
        write_beir(data / name, split="train")
    home = tmp_path / "home"
    write_library(home / "papers")
    write_image_library(home / "photos")  # the README's image collection (with files it must skip)
    work = tmp_path / "work"  # ../shared/datasets from here is the folder above
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("EMBEDLAB_DATA", str(data))
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMBEDLAB_API_KEY", raising=False)
    return home


def _key(argv: list[str]) -> tuple[str, str | None]:
    engine = argv[argv.index("--engine") + 1] if "--engine" in argv else "local"
    if argv[0] == "encode":  # the engine decides: the local one runs here, Ray is checked
        return "encode", engine
    if argv[0] == "index" and engine == "ray":
        return "index", f"{argv[1]} on ray"
    return argv[0], argv[1] if argv[0] in {"index", "feedback", "monitor", "tune"} else None


def _check(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse with the real parser and build what the command would build, without the work."""
    from embedlab.data.beir import load_dataset
    from embedlab.search.pipeline import parse_retrieval

    args = _parser().parse_args(argv)
    given = getattr(args, "dataset", None) or []
    for dataset in [
        *([given] if isinstance(given, str) else given),
        *(d for d in (getattr(args, "train", None), getattr(args, "test", None)) if d),
    ]:
        load_dataset(dataset)
    if args.command == "select":
        from embedlab.select.candidates import load_candidates

        specs, _machine = load_candidates(REPO / args.candidates)  # the real file the README names
        assert specs
        for model in args.model or []:
            parse_retrieval(model)
    elif args.command == "pooling":
        from embedlab.select.run import pooling_candidates

        assert len(pooling_candidates(args.model)) == 3
    elif args.command == "finetune":
        from embedlab.encoders.resolve import resolve_model
        from embedlab.train.run import _check_out

        resolve_model(args.base)  # the bundled base model is found offline (not loaded)
        _check_out(args.out)
    elif args.command == "shrink":  # every check shrink makes before its work, on the README's model
        from embedlab.encoders.spec import parse_model_spec
        from embedlab.optimize.shrink import ShrinkSpec, plan

        spec = ShrinkSpec(
            model=parse_model_spec(args.model),
            datasets=tuple(args.dataset),
            out=args.out,
            variants=tuple(args.variants),
        )
        _, variants, _, texts = plan(spec)
        assert len(variants) == 6 and texts
    elif args.command == "serve":
        import uvicorn

        started = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
        if args.arms is not None:  # the README's arms file, as shown
            block = next(
                b for b in re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S) if "[arms." in b
            )
            Path(args.arms).write_text(block, encoding="utf-8")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("EMBEDLAB_SERVE_CONFIG", "")  # --workers hands its config to workers this way
        assert args.handler(args) == 0  # the real run_serve: options checked, the app created
        ((app, options),) = started
        assert options["host"] == args.host and options["port"] == args.port and app is not None
        if args.workers > 1:  # uvicorn imports the app in each worker, from the configuration handed over
            assert app == "embedlab.serve.app:app_from_environment" and options["workers"] == args.workers
            assert json.loads(os.environ["EMBEDLAB_SERVE_CONFIG"])["collection"] == args.collection
    elif args.command == "monitor":
        from embedlab.monitor.online import parse_duration
        from embedlab.monitor.rules import load_rules

        if args.verb == "report":
            assert parse_duration(args.window) > 0
        elif args.verb in ("retrain", "promote", "rollback"):  # the options as retrain checks them; a reason given
            from embedlab.monitor.retrain import RetrainSpec, check_spec

            if args.verb == "retrain":
                check_spec(RetrainSpec(collection=args.collection, holdout=args.holdout, stage=args.stage))
                load_dataset(args.test_dataset)
            assert args.arms is not None and (args.verb == "retrain" or args.why.strip())
        elif args.verb == "ab":
            assert args.since and args.json
        else:  # the README's monitor.toml example, as shown, is a valid rules file
            block = next(
                b for b in re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S) if "[[rule]]" in b
            )
            Path(args.rules).write_text(block, encoding="utf-8")
            assert len(load_rules(args.rules).rule) == 2
    elif args.command == "simulate":  # the stream's datasets and the click model, as the simulator checks them
        from embedlab.monitor.simulate import ClickModel, parse_stream

        for segment in parse_stream(args.stream):
            load_dataset(segment.dataset)
        ClickModel(kind=args.click_model, eta=args.eta, p_relevant=args.p_relevant, p_other=args.p_other)
    elif args.command == "tune":  # the checks tune makes before its work, on the README's models
        from embedlab.search.build import check_retrievable
        from embedlab.search.pipeline import parse_pipeline

        pipeline = parse_pipeline(args.pipeline)
        if args.mode == "depth":
            from embedlab.eval.metrics import parse_metric
            from embedlab.tune.depth import DepthTuneSpec, check_depths

            depths = tuple(int(d) for d in args.depths.split(","))
            metric = parse_metric(args.metric)
            tune = DepthTuneSpec(
                pipeline=pipeline, dataset=args.dataset, metric=metric, report_metrics=(), depths=depths
            )
            assert check_depths(tune) == depths
        else:
            check_retrievable(pipeline)
            assert len(pipeline.first) == 2 and not pipeline.rerank
    elif args.command in ("encode", "index"):
        from embedlab.cli.encode_cmd import ray_engine
        from embedlab.encoders.spec import parse_model_spec

        parse_model_spec(args.model)
        engine = ray_engine(args)
        assert engine is not None and engine.actors >= 1 and (args.command == "index" or args.out)
    else:  # pragma: no cover - CHECK and this function must agree
        raise AssertionError(f"no check for {argv}")


def test_every_readme_command_works(
    readme_world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = readme_commands()
    assert len(commands) == EXPECTED_COMMANDS, "README commands changed: cover the new ones here\n" + "\n".join(
        commands
    )
    for line in commands:
        argv, env = to_argv(line, home=readme_world)
        key = _key(argv)
        if key in RUN:
            if argv[0] == "eval":
                argv += ["--latency-queries", "2", "--no-progress"]
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 0, f"{line}\n-> {argv}\n{err}"
        else:
            assert key in CHECK, f"README command not covered by this test: {line}"
            _check(argv, env, monkeypatch)
    # the commands really ran: their documented outputs are there
    assert Path("results/run1/summary.json").is_file() and Path("results/chunks/comparisons.json").is_file()
    assert {p.name for p in Path("results/run1").iterdir()} >= {"scifact", "cranfield", "report.html"}
    collections = Path(os.environ["EMBEDLAB_COLLECTIONS"])
    assert (collections / "lib" / "CURRENT").is_file() and (collections / "scifact-256" / "CURRENT").is_file()
    assert Path("vectors/scifact/manifest.json").is_file()  # embedlab encode, local engine
    assert (collections / "photos" / "CURRENT").is_file() and (collections / "lib-milvus" / "CURRENT").is_file()


def test_the_extraction_sees_what_the_readme_shows(readme_world: Path) -> None:
    commands = readme_commands()
    assert any('"bm25:k1=1.2,b=0.75"' in c for c in commands)  # the example that once failed to parse
    argv, env = to_argv(next(c for c in commands if c.startswith("EMBEDLAB_API_KEY=")), home=readme_world)
    assert argv[:2] == ["serve", "lib"] and env == {"EMBEDLAB_API_KEY": "readme-test-key-0123456789"}
    argv, _ = to_argv(next(c for c in commands if c.startswith("embedlab search") and "--mode" in c), home=readme_world)
    assert argv[argv.index("--mode") + 1] == "dense" and argv[argv.index("--rerank") + 1] == "word-overlap"
    argv, _ = to_argv(next(c for c in commands if c.startswith("embedlab index build lib ~")), home=readme_world)
    assert argv[2:4] == ["lib", str(readme_world / "papers")] and argv[argv.index("--model") + 1] == "hashing"
