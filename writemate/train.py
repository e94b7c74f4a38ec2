"""One generic trainer for every Writemate network.

A *task* knows its data and loss; the trainer owns everything else:
optimiser, gradient clipping, weight noise, validation, checkpoints and exact
resume, the metrics CSV, and progress events (the CLI draws the progress bar).

Exact resume: the batches of an epoch are a pure function of (seed, epoch),
so a checkpoint stores the model, the optimiser, the weight-noise parameters,
the torch RNG state, the step, the epoch and how many batches of it were
done. Resuming rebuilds the epoch's batch list and skips the finished ones.

Weight noise (Graves 2011, "Practical variational inference"; used in Graves
2013 sections 3 and 4): each step samples weights w = mu + sigma * eps.
Fixed noise keeps sigma at ``weight_noise``. Adaptive noise learns a sigma per
weight, starting at ``weight_noise``, and adds the complexity cost
L_C = sum_i [log(sigma_p / sigma_i) + ((mu_i - mu_p)^2 + sigma_i^2 - sigma_p^2) / (2 sigma_p^2)]
under a single Gaussian prior with its optimal mean and variance, spread
over the training set in proportion to the sequences in each batch.
"""

from __future__ import annotations

import csv
import ctypes
import json
import math
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn
from torch.func import functional_call

from writemate import checkpoint
from writemate.errors import Diverged, Interrupted

_STOP = threading.Event()  # set by stop_on_signals(); every running fit() checks it after each step


@contextmanager
def stop_on_signals():
    """Within this block, SIGINT or SIGTERM makes a running :meth:`Trainer.fit` finish
    its current step, save a checkpoint and raise :class:`Interrupted`, so stopping a
    run loses no work. A second signal interrupts at once."""

    def request_stop(signum, frame):
        if _STOP.is_set():
            raise KeyboardInterrupt
        _STOP.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _STOP.clear()


def network_config(model_config: dict) -> dict:
    """What a checkpoint's model config must match to be resumed: all but its "training" part (how the
    network is trained, e.g. input noise or the initial weight range), which a resume may change."""
    return {k: v for k, v in model_config.items() if k != "training"}


OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam")
NOISE = ("none", "fixed", "adaptive")


@dataclass
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # for "momentum" and "rmsprop"
    batch_size: int = 32
    clip_norm: float = 3.0  # global gradient norm; 0 disables
    noise: str = "none"  # none | fixed | adaptive
    weight_noise: float = 0.075  # std of fixed noise, initial std of adaptive noise
    epochs: int = 10
    max_minutes: float = 0.0  # stop after this much training time (0: no limit)
    checkpoint_minutes: float = 5.0
    eval_every: int = 0  # also validate every N steps (0: once per epoch)
    keep_evaluated: bool = False  # also save every validated model as evaluated/step-N (to choose by other measures)
    bf16: bool = False  # bfloat16 autocast for forward passes
    lr_decay: float = 1.0  # multiply the learning rate by this after every epoch
    decay_after: int = 0  # epochs at the full rate before lr_decay starts (Zaremba et al. 2014: 4)
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.noise not in NOISE:
            raise ValueError(f"unknown noise {self.noise!r}; choose from {', '.join(NOISE)}")
        if not 0 < self.lr < math.inf or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("lr must be a positive number, batch_size and epochs at least 1")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), not {self.momentum}")
        if self.noise != "none" and not 0 < self.weight_noise < math.inf:
            raise ValueError(f"weight noise std must be a positive number, not {self.weight_noise}")
        if not 0 <= self.clip_norm < math.inf:
            raise ValueError(f"clip_norm must be 0 (off) or a positive number, not {self.clip_norm}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError("lr_decay must be in (0, 1]")
        if self.decay_after < 0:
            raise ValueError("decay_after must be 0 or more epochs")


@dataclass
class LossResult:
    nats: torch.Tensor  # summed negative log-likelihood of the batch (scalar)
    units: int  # what the objective is averaged over (points, characters, ...)
    sequences: int  # sequences in the batch, for spreading the complexity cost


class Task(Protocol):
    """What a network family gives the trainer.

    A task may also define ``state_tensors() -> dict`` and
    ``load_state_tensors(dict)`` for state it carries between batches (the
    hidden state of truncated back-propagation through time); the trainer
    saves them in checkpoints so that resuming stays exact.
    """

    model: nn.Module
    train_sequences: int  # size of the training set in sequences (for adaptive noise)

    def batches(self, epoch: int, seed: int, batch_size: int) -> list[Any]: ...

    def loss(self, forward: Callable, batch: Any) -> LossResult: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    # the validation metric to minimise, e.g. "val_nll"
    metric: str


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    train_seconds: float = 0.0
    best: float = math.inf
    history: list[dict] = field(default_factory=list)


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (its malloc tuning calls are used below), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back.

    Every training step allocates and frees the same large activations (hundreds of
    MB for a synthesis batch). By default glibc maps blocks over 32 MB afresh and
    returns freed heap to the system, so each step pays again for faulting its pages
    in: 1.7 million page faults and 5 s of system time over a few synthesis steps.
    Keeping them cut a synthesis batch (32 x 637 points, 2 threads) from ~5.6 s to
    ~4.3-5.0 s (benchmarks/synthesis_speed.py --data DIR). Returns False where the C library
    is not glibc, and changes nothing there.
    """
    libc = _glibc()
    if libc is None:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # from glibc's malloc.h
    most = 2**31 - 1  # mallopt takes a C int
    return all(
        libc.mallopt(option, value) == 1
        for option, value in ((m_trim_threshold, most), (m_top_pad, 2**30), (m_mmap_threshold, most))
    )


def release_freed_memory() -> bool:
    """Hand the memory :func:`keep_freed_memory` kept back to the system (glibc's malloc_trim).

    Kept memory is never reused perfectly: batches of other lengths need blocks of
    other sizes, and the heap grows. A synthesis run's resident memory reached 17.5 GB
    in 1.5 hours and the kernel killed it, though one step of its longest batch (32
    lines of 1,940 points) peaks at ~5-6 GB. Trimming takes ~0.5 s and makes the next
    step fault its pages in again (~1 s), so the trainer does it at each checkpoint.
    Returns False where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


# Checkpoints alone do not bound the kept memory: a prediction step takes about 1 s, and its
# run's resident memory grew by ~100 MB a step to 24 GB, 220 steps after a checkpoint, where
# the kernel killed it. So the trainer also trims whenever the process holds more than this.
TRIM_ABOVE_FRACTION = 1 / 3  # of the machine's memory


def resident_bytes() -> int | None:
    """This process's resident memory, or None where /proc is not available."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def trim_limit() -> int | None:
    """Resident bytes above which :meth:`Trainer.fit` releases kept memory, or None if unknown."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * TRIM_ABOVE_FRACTION)
    except (ValueError, OSError):
        return None


def release_if_above(limit: int | None) -> bool:
    """Release kept memory if the process holds more than ``limit`` bytes; True if it did."""
    held = resident_bytes()
    if limit is None or held is None or held <= limit:
        return False
    return release_freed_memory()


CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"


def read_checkpoint(run_dir: Path) -> dict | None:
    """The description of the checkpoint in ``run_dir`` (family, model and training configs, optimiser
    groups, progress), or None if there is none; raises CheckpointError if it is damaged.

    It is read from the tensors file itself, where it is saved in the same atomic write as the tensors,
    so a kill between that write and the checkpoint.json beside it (a copy for people) cannot pair new
    tensors with an old step. Checkpoints written before that have only checkpoint.json.
    """
    tensors, described = Path(run_dir) / CHECKPOINT_TENSORS, Path(run_dir) / CHECKPOINT_JSON
    if not tensors.exists():
        return None
    try:
        text = checkpoint.read_metadata(tensors).get("checkpoint") or described.read_text()
        meta = json.loads(text)
        missing = [k for k in ("family", "model_config", "train_config", "param_groups", "state") if k not in meta]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{run_dir}: damaged checkpoint ({e!r}); use a new run folder") from e
    return meta


def saved_train_config(run_dir: Path) -> dict:
    """The training settings stored with the checkpoint in ``run_dir`` ({} if none or unreadable;
    :meth:`Trainer.load_checkpoint` reports a broken checkpoint)."""
    return _saved(run_dir, "train_config")


def saved_model_config(run_dir: Path) -> dict:
    """The model config stored with the checkpoint in ``run_dir``, as :func:`saved_train_config`."""
    return _saved(run_dir, "model_config")


def _saved(run_dir: Path, key: str) -> dict:
    try:
        return (read_checkpoint(run_dir) or {}).get(key, {})
    except checkpoint.CheckpointError:
        return {}


def make_optimizer(name: str, params, lr: float, momentum: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    if name == "rmsprop":  # Graves (2013) eqs. 38-41: centred, with momentum
        return torch.optim.RMSprop(params, lr=lr, alpha=0.95, eps=1e-4, momentum=momentum, centered=True)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


class Trainer:
    """Trains ``task.model`` into ``run_dir``; call :meth:`fit`.

    ``run_dir`` receives ``checkpoint.safetensors`` + ``checkpoint.json`` (resume),
    ``best/`` (the best model so far, as a loadable model folder), and
    ``metrics.csv``. An existing checkpoint in ``run_dir`` is resumed.
    """

    def __init__(self, task: Task, config: TrainConfig, run_dir: Path, family: str, model_config: dict):
        self.task, self.config, self.run_dir = task, config, Path(run_dir)
        self.family, self.model_config = family, model_config
        self.model = task.model
        self.names = [n for n, _ in self.model.named_parameters()]
        self.log_sigma: dict[str, nn.Parameter] = {}
        if config.noise == "adaptive":
            self.log_sigma = {
                n: nn.Parameter(torch.full_like(p, math.log(config.weight_noise)))
                for n, p in self.model.named_parameters()
            }
        params = list(self.model.parameters()) + list(self.log_sigma.values())
        self.optimizer = make_optimizer(config.optimizer, params, config.lr, config.momentum)
        self.state = TrainState()
        self._params = params

    # -- checkpoints -----------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_TENSORS

    def save_checkpoint(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"log_sigma.{k}": v for k, v in self.log_sigma.items()})
        opt = self.optimizer.state_dict()
        for pid, slots in opt["state"].items():
            for key, value in slots.items():
                tensors[f"optim.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng.torch"] = torch.get_rng_state()
        if hasattr(self.task, "state_tensors"):  # e.g. the hidden state a language model carries across batches
            tensors.update({f"task.{k}": v for k, v in self.task.state_tensors().items()})
        meta = {
            "family": self.family,
            "model_config": self.model_config,
            "train_config": asdict(self.config),
            "param_groups": opt["param_groups"],
            "state": asdict(self.state),
        }
        # The description travels inside the tensors file (one atomic replace, see read_checkpoint);
        # checkpoint.json is a copy to read.
        metadata = {"step": str(self.state.step), "checkpoint": json.dumps(meta)}
        checkpoint.save_tensors(self.checkpoint_path, tensors, metadata=metadata)
        checkpoint.atomic_write_json(self.run_dir / CHECKPOINT_JSON, meta)
        release_freed_memory()  # bounds the growth of the memory keep_freed_memory() keeps

    def load_checkpoint(self) -> bool:
        meta = read_checkpoint(self.run_dir)
        if meta is None:
            return False
        stored, current = network_config(meta["model_config"]), network_config(self.model_config)
        if meta["family"] != self.family or stored != current:
            changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
            raise checkpoint.CheckpointError(
                f"{self.run_dir} holds a checkpoint of another model ({meta['family']}; differs in: "
                f"{', '.join(changed) or 'family'}); use a new run folder"
            )
        before = meta["train_config"]
        for key in ("optimizer", "noise"):  # their state in the checkpoint belongs to the stored setting
            if key in before and before[key] != getattr(self.config, key):
                raise checkpoint.CheckpointError(
                    f"{self.run_dir} was trained with {key} {before[key]!r}, not {getattr(self.config, key)!r}; "
                    "a resumed run keeps its optimizer and weight noise (use a new run folder to change them)"
                )
        tensors = checkpoint.load_tensors(self.checkpoint_path)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for k, p in self.log_sigma.items():
            with torch.no_grad():
                p.copy_(tensors[f"log_sigma.{k}"])
        opt_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, slot = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[slot] = value
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        if hasattr(self.task, "load_state_tensors"):
            self.task.load_state_tensors({k[5:]: v for k, v in tensors.items() if k.startswith("task.")})
        self.state = TrainState(**meta["state"])
        self._set_lr()  # from this run's config, so a resume may change --lr, --lr-decay or --decay-after
        return True

    def _set_lr(self) -> None:
        lr = self.config.lr * self.config.lr_decay ** max(0, self.state.epoch - self.config.decay_after)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- one step ----------------------------------------------------------------

    def _noisy_forward(self) -> tuple[Callable, torch.Tensor | None]:
        """A forward function with sampled weights, and the complexity cost (adaptive noise)."""
        cfg = self.config
        if cfg.noise == "none":
            return self.model, None
        params = dict(self.model.named_parameters())
        if cfg.noise == "fixed":
            sampled = {n: p + cfg.weight_noise * torch.randn_like(p) for n, p in params.items()}
            complexity = None
        else:
            sampled = {n: p + self.log_sigma[n].exp() * torch.randn_like(p) for n, p in params.items()}
            mu = torch.cat([p.flatten() for p in params.values()])
            var = torch.cat([(2 * s).exp().flatten() for s in self.log_sigma.values()])
            mu_p = mu.mean().detach()
            var_p = (var + (mu - mu_p) ** 2).mean().detach()
            complexity = (0.5 * torch.log(var_p / var) + ((mu - mu_p) ** 2 + var - var_p) / (2 * var_p)).sum()
        return (lambda *args, **kw: functional_call(self.model, sampled, args, kw)), complexity

    def train_step(self, batch) -> float:
        """One optimiser step; returns the batch's mean loss per unit (without complexity)."""
        self.model.train()
        forward, complexity = self._noisy_forward()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.config.bf16 else nullcontext()
        with autocast:
            result = self.task.loss(forward, batch)
        objective = result.nats.float()
        if complexity is not None:
            objective = objective + complexity * result.sequences / self.task.train_sequences
        objective = objective / result.units
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self._params, self.config.clip_norm)
        self.optimizer.step()
        return float(result.nats.detach()) / result.units

    # -- the loop ------------------------------------------------------------------

    def _log(self, split: str, metrics: dict[str, float]) -> None:
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "epoch", "train_seconds", "split", "metric", "value"])
            for name, value in metrics.items():
                writer.writerow([self.state.step, self.state.epoch, round(self.state.train_seconds, 1), split, name, value])

    def validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            metrics = self.task.evaluate(self.model)
        self.model.train()
        self._log("val", metrics)
        self.state.history.append({"step": self.state.step, **metrics})
        value = metrics[self.task.metric]
        if value < self.state.best:
            self.state.best = value
            self._save_model(self.run_dir / "best", metrics)
        if self.config.keep_evaluated:
            self._save_model(self.run_dir / "evaluated" / f"step-{self.state.step}", metrics)
        return metrics

    def _save_model(self, folder: Path, metrics: dict[str, float]) -> None:
        checkpoint.save_model(
            folder,
            self.model,
            self.family,
            self.model_config,
            train_config=asdict(self.config),
            step=self.state.step,
            train_seconds=round(self.state.train_seconds),
            metrics=metrics,
            metric=self.task.metric,  # the one `best` is chosen by, lower is better
        )

    def fit(self, progress: Callable[[dict], None] | None = None) -> TrainState:
        """Train until ``epochs`` or ``max_minutes``; resumes from ``run_dir`` if a checkpoint is there."""
        cfg = self.config
        keep_freed_memory()
        memory_limit = trim_limit()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.load_checkpoint()
        emit = progress or (lambda event: None)
        last_save = time.monotonic()
        running, running_n = 0.0, 0
        lr = self.optimizer.param_groups[0]["lr"]
        emit({"event": "start", "resumed": resumed, "step": self.state.step, "epoch": self.state.epoch, "lr": lr})
        while self.state.epoch < cfg.epochs:
            batches = self.task.batches(self.state.epoch, cfg.seed, cfg.batch_size)
            emit({"event": "epoch", "epoch": self.state.epoch, "batches": len(batches), "done": self.state.batch_in_epoch})
            while self.state.batch_in_epoch < len(batches):
                t0 = time.monotonic()
                loss = self.train_step(batches[self.state.batch_in_epoch])
                if not math.isfinite(loss):
                    raise Diverged(
                        f"the loss became {loss} at step {self.state.step}; the last checkpoint is kept "
                        "(try a lower --lr or a --clip-norm)"
                    )
                self.state.train_seconds += time.monotonic() - t0
                release_if_above(memory_limit)
                self.state.step += 1
                self.state.batch_in_epoch += 1
                running += loss
                running_n += 1
                if self.state.step % 20 == 0:
                    self._log("train", {"loss": running / running_n})
                    running, running_n = 0.0, 0
                emit({"event": "step", "step": self.state.step, "loss": loss, "train_seconds": self.state.train_seconds})
                if cfg.eval_every and self.state.step % cfg.eval_every == 0:
                    emit({"event": "val", **self.validate()})
                if _STOP.is_set():
                    self.save_checkpoint()
                    emit({"event": "stop", "reason": "signal"})
                    raise Interrupted(
                        f"stopped at step {self.state.step}; checkpoint saved in {self.run_dir}, "
                        "the same command resumes it"
                    )
                out_of_time = cfg.max_minutes and self.state.train_seconds >= cfg.max_minutes * 60
                if time.monotonic() - last_save >= cfg.checkpoint_minutes * 60:
                    self.save_checkpoint()
                    last_save = time.monotonic()
                if out_of_time:
                    emit({"event": "val", **self.validate()})  # so best/ sees the last partial epoch
                    self.save_checkpoint()
                    emit({"event": "stop", "reason": "max_minutes"})
                    return self.state
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self._set_lr()
            emit({"event": "val", **self.validate()})
            self.save_checkpoint()
            last_save = time.monotonic()
        emit({"event": "stop", "reason": "epochs"})
        return self.state
