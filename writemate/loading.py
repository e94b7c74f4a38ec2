"""One entry point to a ready model: ``writemate.load(name_or_folder)``.

A bundled model is a folder under ``writemate/weights/<name>/`` holding
``model.safetensors``, ``config.json`` and ``MODEL_CARD.md``; a trained run's
``best/`` folder (or any folder with those two files) loads the same way. The
``family`` field of ``config.json`` says which class makes it ready.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from writemate.checkpoint import CheckpointError, read_config

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT = "synthesis"

# family -> "module:callable" taking the model folder and returning a ready object.
LOADERS = {
    "synthesis": "writemate.api:Writer.from_folder",
    "prediction": "writemate.scribble:Scribbler.from_folder",
    "classifier": "writemate.models.classifier:Classifier.from_folder",
    "language-model": "writemate.models.language:TextPredictor.from_folder",
    "recognizer": "writemate.recognize:Recognizer.from_folder",
}


def bundled() -> list[str]:
    """Names of the models shipped with the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    # hidden folders are bundles being staged by tools/export_model.py
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if not p.name.startswith(".") and (p / "config.json").exists())


def resolve(name_or_folder: str | Path) -> Path:
    """A bundled name or a folder path to the model folder; raises CheckpointError if neither."""
    text = str(name_or_folder)
    if (WEIGHTS_DIR / text / "config.json").exists():
        return WEIGHTS_DIR / text
    folder = Path(name_or_folder)
    if folder.is_file():  # allow pointing at model.safetensors or config.json
        folder = folder.parent
    if (folder / "config.json").exists():
        return folder
    if (folder / "best" / "config.json").exists():  # a training run folder
        return folder / "best"
    names = ", ".join(bundled()) or "none installed"
    raise CheckpointError(f"{text!r} is neither a bundled model ({names}) nor a model folder with config.json")


def _kind(family: str | None) -> str:
    """The family as words: "a synthesis model", "a language model"."""
    name = str(family).replace("-", " ")
    return f"a {name}" if name.endswith("model") else f"a {name} model"


def load(name_or_folder: str | Path = DEFAULT, family: str | None = None):
    """A ready-to-use model: a bundled name (see :func:`bundled`) or a model folder.

    ``family`` ("synthesis", "recognizer", ...): refuse any other kind of model with a clear error.
    """
    if family and str(name_or_folder) == family and family not in bundled() and not Path(family).exists():
        raise CheckpointError(
            f"the bundled {family} model is not installed in this copy of Writemate (its weights are still being "
            f"trained); train one with `writemate train {family} --data DIR --run RUN` and pass --model RUN"
        )
    folder = resolve(name_or_folder)
    found = read_config(folder).get("family")
    if family and found != family:
        raise CheckpointError(f"{str(name_or_folder)!r} is {_kind(found)}, not {_kind(family)}")
    family = found
    if family not in LOADERS:
        raise CheckpointError(f"{folder}: unknown model family {family!r}")
    module, _, attr = LOADERS[family].partition(":")
    target = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target(folder)
