"""Models and data by name: ``lrphase probe torchvision:resnet18 --data fake:3x224x224:1000`` needs no model file.

A target ``LIBRARY:NAME[:TASK][:KEY=VALUE,...]`` (:func:`is_named`) names a model, built with
random initialization and K outputs, K the number of classes of the data:

* ``torchvision:NAME`` — ``torchvision.models.get_model(NAME, weights=None, num_classes=K)``;
* ``timm:NAME`` — ``timm.create_model(NAME, pretrained=False, num_classes=K)`` (``pip install timm``);
* ``hf:TYPE`` — ``AutoModelForSequenceClassification.from_config(AutoConfig.for_model(TYPE, num_labels=K))``,
  the default configuration of that Hugging Face model type (``pip install transformers``);
  ``hf:TYPE:causal-lm`` — ``AutoModelForCausalLM`` instead, trained on next-token cross-entropy.

``KEY=VALUE`` pairs go to the constructor (for ``hf``: the config), e.g.
``timm:vit_tiny_patch16_224:img_size=32`` or ``hf:bert:num_hidden_layers=2``; a value is read as a
Python literal (``32``, ``0.1``, ``True``, ``None``) where it is one, else as a string.

``--data`` names the data (:func:`load_data`):

* ``fake:CxHxW:N[:K]`` — N Gaussian images of shape C×H×W and labels in [0, K) (K default 10),
  drawn in that order from a ``torch.Generator`` seeded with ``--seed``;
* ``imagefolder:PATH[:SIZE]`` — torchvision's ``ImageFolder``: resized to SIZE·256/224, centre crop
  SIZE (default 224), ImageNet normalization; K is the number of class folders;
* ``fake-tokens:T:N[:V[:K]]`` — for ``hf``: N sequences of T token ids in [0, V) (V default 1000)
  and labels in [0, K) (K default 10), drawn like ``fake``, as items ``{"input_ids",
  "attention_mask", "labels"}``; for ``causal-lm`` the labels are the token ids themselves.

The model is built under the global RNG seeded with ``--seed`` (the caller's state is restored)
and left in train mode; the loss is cross-entropy and the batch size 32 unless the command line
or the config set them.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ..curvature.isolation import preserved_rng
from ..errors import InputError
from .model_file import ModelSpec

LIBRARIES = ("torchvision", "timm", "hf")
HF_TASKS = ("sequence-classification", "causal-lm")
DATA_FORMS = {
    "fake": "fake:CxHxW:N[:K]",
    "imagefolder": "imagefolder:PATH[:SIZE]",
    "fake-tokens": "fake-tokens:T:N[:V[:K]]",
}
DATA_EXAMPLES = {"fake": "fake:3x32x32:256:10", "imagefolder": "imagefolder:data/train:224", "fake-tokens": "fake-tokens:128:256"}
DATA_FOR_LIBRARY = {"torchvision": "fake:3x224x224:256", "timm": "fake:3x224x224:256", "hf": "fake-tokens:128:256"}
DEFAULT_CLASSES = 10
DEFAULT_VOCAB = 1000
DEFAULT_BATCH_SIZE = 32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
T = TypeVar("T")


def is_named(target: str) -> bool:
    """Whether ``target`` is ``LIBRARY:NAME…`` with a known library, not a path such as ``model.py:build`` or ``C:/m.py``."""
    library, sep, name = target.partition(":")
    return bool(sep) and library in LIBRARIES and bool(name)


@dataclass(frozen=True)
class NamedData:
    """Data given by name: the dataset, its number of classes, and the vocabulary size of token data (else None)."""

    data: Any
    classes: int
    vocab: int | None = None


class TokenDataset(Dataset[dict[str, torch.Tensor]]):
    """Token sequences and their labels, as Hugging Face style items ``{"input_ids", "attention_mask", "labels"}``."""

    def __init__(self, ids: torch.Tensor, labels: torch.Tensor):
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[index]}

    def for_language_modelling(self) -> TokenDataset:
        """The same sequences labelled with themselves, as a causal language model learns them."""
        return TokenDataset(self.ids, self.ids)


def load_named(target: str, data: str | None, *, seed: int) -> ModelSpec:
    """The :class:`ModelSpec` of the model named by ``target`` on the data named by ``data``, see the module doc."""
    library, name, task, options = _parse_target(target)
    if data is None:
        raise InputError(f"{target} is a model by name, so it needs data: e.g. `--data {DATA_FOR_LIBRARY[library]}`")
    named = load_data(data, seed=seed)
    if (library == "hf") != isinstance(named.data, TokenDataset):
        wanted = DATA_FORMS["fake-tokens"] if library == "hf" else f"{DATA_FORMS['fake']} or {DATA_FORMS['imagefolder']}"
        raise InputError(f"--data '{data}' does not fit {library} models: give {wanted}")
    with preserved_rng():
        torch.manual_seed(seed)
        if library == "hf":
            model = _hf(name, task, options, named)
        else:
            model = (_torchvision if library == "torchvision" else _timm)(name, options, named.classes)
    causal = task == "causal-lm"
    return ModelSpec(
        model=model.train(),
        data=named.data.for_language_modelling() if causal else named.data,
        loss="causal_lm" if causal else "cross_entropy",
        defaults={"batch_size": DEFAULT_BATCH_SIZE},
        source=target,
    )


def load_data(spec: str, *, seed: int) -> NamedData:
    """The data named by ``spec`` (``fake:…``, ``imagefolder:…``, ``fake-tokens:…``), see the module doc."""
    kind, _, rest = spec.partition(":")
    if kind not in DATA_FORMS:
        raise InputError(f"--data '{spec}' is not a known form: give {', '.join(DATA_FORMS.values())}")
    if kind == "imagefolder":
        return _image_folder(spec, rest)
    fields = rest.split(":")
    generator = torch.Generator().manual_seed(seed)
    if kind == "fake":
        if not 2 <= len(fields) <= 3:
            raise _bad_data(spec, kind, "it needs a shape and a sample count")
        shape = [_positive(part, "each dimension", spec, kind) for part in fields[0].split("x")]
        samples = _positive(fields[1], "N", spec, kind)
        classes = _classes(fields[2:], spec, kind)
        images = torch.randn(samples, *shape, generator=generator)
        return NamedData((images, torch.randint(0, classes, (samples,), generator=generator)), classes)
    if not 2 <= len(fields) <= 4:
        raise _bad_data(spec, kind, "it needs a sequence length and a sample count")
    length, samples = _positive(fields[0], "T", spec, kind), _positive(fields[1], "N", spec, kind)
    vocab = _positive(fields[2], "V", spec, kind) if len(fields) > 2 else DEFAULT_VOCAB
    classes = _classes(fields[3:], spec, kind)
    ids = torch.randint(0, vocab, (samples, length), generator=generator)
    return NamedData(TokenDataset(ids, torch.randint(0, classes, (samples,), generator=generator)), classes, vocab)


def _parse_target(target: str) -> tuple[str, str, str | None, dict[str, Any]]:
    """``LIBRARY:NAME[:TASK][:KEY=VALUE,...]`` as the library, the name, the task (hf only) and the options."""
    library, name, *fields = target.split(":")
    task = fields.pop(0) if fields and "=" not in fields[0] else None
    if task is not None and (library != "hf" or task not in HF_TASKS):
        where = f"one of {', '.join(HF_TASKS)}" if library == "hf" else "only for hf models"
        raise InputError(f"'{task}' in {target} is not a task ({where}); options are KEY=VALUE,...")
    options: dict[str, Any] = {}
    for pair in filter(None, ",".join(fields).split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InputError(f"'{pair}' in {target} is not KEY=VALUE: write e.g. {library}:{name}:key=1,other=2")
        options[key] = _literal(value)
    reserved = {"num_classes", "num_labels"} & set(options)
    if reserved:
        raise InputError(f"{target} sets {', '.join(sorted(reserved))}: the number of classes comes from --data, drop it")
    return library, name, task, options


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):
        return text


def _build(target: str, build: Callable[[], T]) -> T:
    """``build()``, any failure (a wrong option, say) as a one-line :class:`InputError`."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - library constructors raise anything
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        raise InputError(f"building {target} failed with {type(exc).__name__}: {first}; check its KEY=VALUE options") from exc


def _unknown_name(library: str, name: str, known: Iterable[str], listing: str) -> InputError:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return InputError(f"{library} has no model '{name}': {hint}{listing} lists them")


def _torchvision(name: str, options: dict[str, Any], classes: int) -> nn.Module:
    from torchvision import models

    known = models.list_models()
    if name not in known:
        raise _unknown_name("torchvision", name, known, "`torchvision.models.list_models()`")
    return _build(f"torchvision:{name}", lambda: models.get_model(name, weights=None, num_classes=classes, **options))


def _timm(name: str, options: dict[str, Any], classes: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise InputError(f"timm:{name} needs timm: pip install timm (or pip install 'lrphase[timm]')") from None
    known = timm.list_models()
    if name not in known:
        raise _unknown_name("timm", name, known, "`timm.list_models()`")
    return _build(f"timm:{name}", lambda: timm.create_model(name, pretrained=False, num_classes=classes, **options))


def _hf(name: str, task: str | None, options: dict[str, Any], data: NamedData) -> nn.Module:
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except ImportError:
        raise InputError(f"hf:{name} needs transformers: pip install transformers (or pip install 'lrphase[hf]')") from None
    if name not in CONFIG_MAPPING:
        raise _unknown_name("hf", name, CONFIG_MAPPING.keys(), "`transformers.CONFIG_MAPPING.keys()`")
    unknown = [key for key in options if not hasattr(AutoConfig.for_model(name), key)]
    if unknown:
        raise InputError(f"hf:{name} has no config keys {', '.join(unknown)}: see the model's config class for its keys")
    causal = task == "causal-lm"
    labels = {} if causal else {"num_labels": data.classes}
    config = _build(f"hf:{name}", lambda: AutoConfig.for_model(name, **labels, **options))
    vocab_size = getattr(config, "vocab_size", None)
    if data.vocab is not None and vocab_size is not None and data.vocab > vocab_size:
        raise InputError(
            f"--data draws token ids in [0, {data.vocab}), but hf:{name} has {vocab_size} tokens: lower V in fake-tokens:T:N:V"
        )
    if not causal and getattr(config, "pad_token_id", None) is None:  # a decoder classifies by its last non-padding token
        config.pad_token_id = getattr(config, "eos_token_id", None)
    auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    return _build(f"hf:{name}", lambda: auto.from_config(config))


def _image_folder(spec: str, rest: str) -> NamedData:
    from torchvision import datasets, transforms

    path, sep, size_text = rest.rpartition(":")
    if not (sep and size_text.isdigit()):  # no SIZE; PATH may hold a colon (C:\images)
        path, size_text = rest, "224"
    size = _positive(size_text, "SIZE", spec, "imagefolder")
    if not path or not Path(path).is_dir():
        raise _bad_data(spec, "imagefolder", f"'{path}' is not a folder")
    transform = transforms.Compose(
        [
            transforms.Resize(size * 256 // 224),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    try:
        folder = datasets.ImageFolder(path, transform=transform)
    except OSError as exc:  # no class folders, or no images in them
        raise InputError(f"--data '{spec}': {exc}; give a folder with one subfolder of images per class") from None
    return NamedData(folder, len(folder.classes))


def _classes(fields: list[str], spec: str, kind: str) -> int:
    classes = _positive(fields[0], "K", spec, kind) if fields else DEFAULT_CLASSES
    if classes < 2:
        raise _bad_data(spec, kind, "K must be at least 2 classes")
    return classes


def _positive(text: str, what: str, spec: str, kind: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise _bad_data(spec, kind, f"{what} must be a positive integer, got '{text}'")
    return int(text)


def _bad_data(spec: str, kind: str, why: str) -> InputError:
    return InputError(f"--data '{spec}' is not {DATA_FORMS[kind]}: {why}; e.g. {DATA_EXAMPLES[kind]}")
