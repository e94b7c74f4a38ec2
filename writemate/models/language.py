"""LSTM language models over characters or words (Graves 2013, section 3).

The network predicts the next token from the ones before it: an embedding,
one or more LSTM layers (eqs. 7-11), dropout, and a softmax over the
vocabulary, trained on the log-loss of eq. 6. Graves used one hidden layer of
1000 LSTM units for both the character and the word networks on the Penn
Treebank.

Training is truncated back-propagation through time: the training text is
cut into ``batch_size`` contiguous streams read side by side, ``bptt`` tokens
at a time, and the hidden state is carried from one window to the next
(detached, so gradients stop at the window's start).

Metrics (Graves 2013, Table 1): bits per character (BPC) counts every
character, spaces and line ends included; perplexity is per word, the
end-of-sentence token included. The two are related through the text's
characters per word c (line ends counted, end-of-sentence tokens not:
442,423 / 78,669 = 5.62 on the Penn Treebank test set, rounded to 5.6 in
the paper): perplexity = 2^(c * BPC). The character model reports its exact
BPC and the perplexity that implies; the word model its exact perplexity and
the BPC that implies.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from writemate import checkpoint
from writemate.data import text
from writemate.data.text import Stream, Vocabulary
from writemate.train import LossResult, Trainer, TrainConfig

FAMILY = "language-model"

State = tuple[torch.Tensor, torch.Tensor]  # h and c, each (L, B, H)


@dataclass
class LanguageModelConfig:
    vocab_size: int = 0  # set from the training text's vocabulary
    level: str = "char"  # char | word
    embedding: int = 256
    hidden: int = 1000
    layers: int = 1
    dropout: float = 0.0  # on the embedding, between layers and before the softmax

    def __post_init__(self):
        if self.level not in text.LEVELS:
            raise ValueError(f"unknown level {self.level!r}; choose from {', '.join(text.LEVELS)}")
        if self.embedding < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError("embedding, hidden and layers must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


class LanguageModel(nn.Module):
    def __init__(self, config: LanguageModelConfig):
        super().__init__()
        self.config = config
        v, e, h, n = config.vocab_size, config.embedding, config.hidden, config.layers
        self.embedding = nn.Embedding(v, e)
        self.lstm = nn.LSTM(e, h, num_layers=n, dropout=config.dropout if n > 1 else 0.0, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(h, v)
        self._forget_bias_one()

    def _forget_bias_one(self) -> None:
        """Forget-gate bias 1: keeps memory early in training."""
        h = self.config.hidden
        with torch.no_grad():
            for layer in range(self.config.layers):
                getattr(self.lstm, f"bias_ih_l{layer}")[h : 2 * h].fill_(1.0)

    def init_uniform(self, scale: float) -> None:
        """Every weight uniform in [-scale, scale] (Zaremba et al. 2014), the forget-gate bias then 1 again.
        PyTorch's default embedding is N(0, 1), large for plain SGD at rate 1."""
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-scale, scale)
        self._forget_bias_one()

    def initial_state(self, batch: int) -> State:
        shape = (self.config.layers, batch, self.config.hidden)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """tokens (B, T) ids -> logits (B, T, V) of the next token, and the state after the last step."""
        state = state if state is not None else self.initial_state(tokens.shape[0])
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        y, state = self.lstm(x, state)  # (B, T, H)
        return self.output(self.dropout(y)), state  # (B, T, V); softmax is in the loss


def detach(state: State) -> State:
    return tuple(s.detach().float() for s in state)


# -- evaluation --------------------------------------------------------------------


@dataclass
class Score:
    """Sums over an evaluated text; :meth:`metrics` turns them into BPC and perplexity."""

    nats: float
    tokens: int
    characters: int
    words: int
    errors: int  # predictions whose most likely token was wrong

    def metrics(self, level: str) -> dict:
        bits = self.nats / math.log(2)
        chars_per_word = self.characters / max(self.words, 1)
        if level == "char":
            bpc = bits / self.characters
            perplexity = 2 ** (bpc * chars_per_word)
        else:
            perplexity = 2 ** (bits / self.tokens)
            bpc = math.log2(perplexity) / chars_per_word
        return {
            "bpc": bpc,
            "perplexity": perplexity,
            "nats_per_token": self.nats / self.tokens,
            "error": 100.0 * self.errors / self.tokens,
            "tokens": self.tokens,
            "characters": self.characters,
            "words": self.words,
        }


@dataclass
class DynamicEvaluation:
    """How a model keeps learning from the text it has just scored (dynamic evaluation).

    ``rule="sgd"`` is Graves' (2013, section 3) plain gradient step at rate
    ``lr``. ``rule="rms"`` is Krause et al.'s (2018) "RMS with decay": each
    weight's step is divided by the root mean square of its gradient on the
    training text (``rms``, from :func:`gradient_rms`), so rarely moved
    weights are not over-stepped. ``decay`` (lambda) pulls every weight back
    towards its trained value after each step; under the rms rule the pull is
    scaled by the weight's RMS over the mean RMS, capped at 1.
    """

    lr: float
    rule: str = "sgd"
    decay: float = 0.0
    rms: list[torch.Tensor] | None = None  # one per parameter, as model.parameters()
    epsilon: float = 1e-5  # added to the RMS, Krause et al.'s epsilon

    def __post_init__(self):
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the dynamic evaluation rate must be positive, not {self.lr}")
        if self.rule not in ("sgd", "rms"):
            raise ValueError(f"dynamic evaluation rule must be sgd or rms, not {self.rule!r}")
        if not 0 <= self.decay < 1:
            raise ValueError(f"dynamic evaluation decay must be in [0, 1), not {self.decay}")
        if self.rule == "rms" and self.rms is None:
            raise ValueError("the rms rule needs the gradient RMS of the training text")
        # Each weight's step size and pull, fixed for the whole text: computed once, not every step.
        if self.rule == "sgd":
            self._rates = self._pulls = None
        else:
            mean_rms = float(sum(r.sum() for r in self.rms) / sum(r.numel() for r in self.rms))
            self._rates = [self.lr / (r + self.epsilon) for r in self.rms]
            self._pulls = [(self.decay * r / mean_rms).clamp(max=1.0) for r in self.rms]

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], trained: list[torch.Tensor]) -> None:
        """One update of ``params`` from their ``.grad``; ``trained`` are the weights before evaluation."""
        for i, (p, p0) in enumerate(zip(params, trained)):
            if self.rule == "sgd":
                p.sub_(p.grad, alpha=self.lr)
                pull = self.decay
            else:
                p.addcmul_(p.grad, self._rates[i], value=-1.0)
                pull = self._pulls[i]
            if self.decay:
                p.lerp_(p0, pull)  # p + pull * (p0 - p)


def _windows(model: LanguageModel, stream: Stream, streams: int, bptt: int, context: int, cold: bool):
    """Read ``stream`` as ``streams`` pieces side by side, ``bptt`` tokens at a time.

    Yields (logits (S, W, V), targets (S, W), scored (S, W) bool) and carries
    the state from one window to the next, detached once the caller is done
    with the window. Every piece but the first starts by reading the
    ``context`` tokens before it without scoring them, unless ``cold``.
    """
    n = stream.tokens
    per = math.ceil(n / max(1, min(streams, n)))
    starts = np.arange(0, n, per)  # first prediction of each piece: target ids[start + 1]
    ends = np.minimum(starts + per, n)
    origin = starts - (0 if cold else np.minimum(context, starts))  # first input of each row
    length = int((ends - origin).max())
    state = None
    for t0 in range(0, length, bptt):
        pos = origin[:, None] + np.arange(t0, min(t0 + bptt, length))[None, :]  # (S, W) input positions
        scored = torch.from_numpy((pos >= starts[:, None]) & (pos < ends[:, None]))
        pos = np.minimum(pos, n - 1)  # rows that have ended read junk that is not scored
        x = torch.from_numpy(stream.ids[pos].astype(np.int64))
        y = torch.from_numpy(stream.ids[pos + 1].astype(np.int64))
        logits, state = model(x, state)  # (S, W, V)
        yield logits, y, scored
        state = detach(state)


def _window_nll(logits: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Nats of each scored prediction, 0 elsewhere: (S, W)."""
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none") * scored


def gradient_rms(
    model: LanguageModel, stream: Stream, streams: int = 16, bptt: int = 20, max_tokens: int = 200_000
) -> list[torch.Tensor]:
    """Root mean square, over windows of the training text, of the gradient of each window's mean
    loss (Krause et al. 2018's sqrt(MS_g)); one tensor per parameter. The model is not changed."""
    model = copy.deepcopy(model)
    model.eval()
    params = list(model.parameters())
    squares = [torch.zeros_like(p) for p in params]
    windows = 0
    with torch.enable_grad():
        for logits, y, scored in _windows(model, stream.head(max_tokens), streams, bptt, 0, cold=True):
            if not scored.any():
                continue
            model.zero_grad(set_to_none=True)
            (_window_nll(logits, y, scored).sum() / scored.sum()).backward()
            for s, p in zip(squares, params):
                s += p.grad.square()
            windows += 1
    if windows == 0:
        raise text.TextDataError("the training text is too short to measure gradients on")
    return [(s / windows).sqrt() for s in squares]


def evaluate_stream(
    model: LanguageModel,
    stream: Stream,
    streams: int = 16,
    bptt: int = 100,
    context: int = 200,
    dynamic: DynamicEvaluation | None = None,
) -> Score:
    """Score every token of ``stream``, reading it as ``streams`` pieces side by side.

    Every piece but the first starts by reading the ``context`` tokens before
    it without scoring them, so its state is warm when scoring begins; with
    ``streams=1`` the text is read in one go. With ``dynamic`` (dynamic
    evaluation) a copy of the model is updated on every window after scoring
    it; pieces then start cold (no context), so no token is ever trained on
    before it has been scored.
    """
    if dynamic is not None:
        model = copy.deepcopy(model)
        params = list(model.parameters())
        trained = [p.detach().clone() for p in params]
    model.eval()
    nats, errors = 0.0, 0
    with torch.enable_grad() if dynamic is not None else torch.inference_mode():
        for logits, y, scored in _windows(model, stream, streams, bptt, context, cold=dynamic is not None):
            nll = _window_nll(logits, y, scored)  # (S, W)
            nats += float(nll.detach().sum())
            errors += int(((logits.argmax(-1) != y) & scored).sum())
            if dynamic is not None and scored.any():
                model.zero_grad(set_to_none=True)
                (nll.sum() / scored.sum()).backward()
                dynamic.step(params, trained)
    return Score(nats, stream.tokens, stream.characters, stream.words, errors)


# -- training ------------------------------------------------------------------------


class LanguageModelTask:
    """Truncated BPTT over ``batch_size`` contiguous streams with the state carried across batches."""

    def __init__(
        self,
        model: LanguageModel,
        train: Stream,
        valid: Stream,
        bptt: int = 100,
        eval_streams: int = 16,
        max_val_tokens: int = 0,
    ):
        if bptt < 1:
            raise ValueError("bptt must be at least 1")
        self.model, self.train, self.bptt, self.eval_streams = model, train, bptt, eval_streams
        self.valid = valid.head(max_val_tokens)
        self.level = model.config.level
        self.metric = "val_bpc" if self.level == "char" else "val_perplexity"
        self.train_sequences = train.tokens  # adaptive noise: complexity spread per predicted token
        self.state: State | None = None
        self._inputs = self._targets = None

    def batches(self, epoch: int, seed: int, batch_size: int) -> list[int]:
        """Window starts along the streams; the same every epoch (the text is read in order)."""
        per_stream = self.train.tokens // batch_size
        if per_stream < 1:
            raise text.TextDataError(f"the training text ({self.train.tokens} tokens) is shorter than the batch size")
        ids = self.train.ids
        self._inputs = ids[: batch_size * per_stream].reshape(batch_size, per_stream)  # (B, N) views, no copy
        self._targets = ids[1 : batch_size * per_stream + 1].reshape(batch_size, per_stream)
        return list(range(0, per_stream, self.bptt))

    def loss(self, forward: Callable, start: int) -> LossResult:
        x = torch.from_numpy(self._inputs[:, start : start + self.bptt].astype(np.int64))  # (B, W)
        y = torch.from_numpy(self._targets[:, start : start + self.bptt].astype(np.int64))  # (B, W)
        state = self.state
        if start == 0 or (state is not None and state[0].shape[1] != x.shape[0]):
            state = None  # streams restart at the epoch's start (or the batch size changed)
        logits, state = forward(x, state)
        self.state = detach(state)
        nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        return LossResult(nats=nats, units=y.numel(), sequences=y.numel())

    def evaluate(self, model: LanguageModel) -> dict[str, float]:
        score = evaluate_stream(model, self.valid, streams=self.eval_streams, bptt=self.bptt)
        metrics = score.metrics(self.level)
        return {f"val_{k}": metrics[k] for k in ("bpc", "perplexity", "error")}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.state is None else {"h": self.state[0], "c": self.state[1]}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.state = (tensors["h"], tensors["c"]) if "h" in tensors else None


def train_language_model(
    data: Path,
    run_dir: Path,
    model_config: LanguageModelConfig,
    train_config: TrainConfig,
    progress: Callable[[dict], None] | None = None,
    bptt: int = 100,
    max_vocab: int = 0,
    valid_fraction: float = 0.05,
    max_val_tokens: int = 0,
    init_scale: float = 0.0,
    init: TextPredictor | None = None,
):
    """Train on a text file or folder (see :func:`writemate.data.text.find_splits`) into ``run_dir``.

    ``init_scale`` > 0 starts every weight uniform in [-init_scale, init_scale] instead of PyTorch's
    initialisation (see :meth:`LanguageModel.init_uniform`). ``init``, a trained model, starts the run
    from its weights and vocabulary instead (fine-tuning, or more training with a fresh optimiser);
    ``model_config`` must then be its config, with any dropout.
    """
    if init_scale < 0:
        raise ValueError(f"init_scale must be 0 (PyTorch's initialisation) or more, not {init_scale}")
    if init is not None and init_scale:
        raise ValueError("a run starts either from a trained model or from init_scale, not both")
    if init is not None and replace(model_config, dropout=0.0) != replace(init.model.config, dropout=0.0):
        raise ValueError("a run started from a trained model keeps its network and vocabulary")
    vocab = init.vocab if init is not None else None
    corpus = text.load_corpus(data, model_config.level, max_vocab, valid_fraction=valid_fraction, vocab=vocab)
    model_config = replace(model_config, vocab_size=len(corpus.vocab))
    torch.manual_seed(train_config.seed)
    model = LanguageModel(model_config)
    if init is not None:
        model.load_state_dict(init.model.state_dict())
    elif init_scale:
        model.init_uniform(init_scale)
    task = LanguageModelTask(model, corpus.train, corpus.valid, bptt=bptt, max_val_tokens=max_val_tokens)
    config = {"model": model_config.to_dict(), "vocabulary": corpus.vocab.to_dict(), "bptt": bptt}
    if init_scale:
        config["training"] = {"init_scale": init_scale}
    trainer = Trainer(task, train_config, run_dir, family=FAMILY, model_config=config)
    return trainer.fit(progress)


# -- sampling ----------------------------------------------------------------------------


@torch.inference_mode()
def sample(
    model: LanguageModel, vocab: Vocabulary, prime: str = "", length: int = 200, temperature: float = 1.0, seed: int = 0
) -> list[int]:
    """Ids of ``length`` tokens continuing ``prime`` (temperature 0: always the most likely token)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    ids = [vocab.eol] + vocab.encode(text.text_tokens(prime, vocab.level))  # the text starts after a line end
    logits, state = model(torch.tensor([ids]))
    out = []
    for _ in range(length):
        last = logits[0, -1].float()  # (V,)
        if temperature == 0:
            token = int(last.argmax())
        else:
            token = int(torch.multinomial(torch.softmax(last / temperature, dim=-1), 1, generator=generator))
        out.append(token)
        logits, state = model(torch.tensor([[token]]), state)
    return out


# -- a ready model ---------------------------------------------------------------------------


class TextPredictor:
    """A trained language model, ready to evaluate and sample: ``writemate.load("ptb-char")``."""

    def __init__(self, model: LanguageModel, vocab: Vocabulary, bptt: int = 100, info: dict | None = None):
        self.model, self.vocab, self.bptt, self.info = model.eval(), vocab, bptt, info or {}

    @classmethod
    def from_folder(cls, folder: Path) -> "TextPredictor":
        meta = checkpoint.read_config(folder)
        try:
            config = LanguageModelConfig(**meta["config"]["model"])
            vocab = Vocabulary.from_dict(meta["config"]["vocabulary"])
            bptt = int(meta["config"].get("bptt", 100))
        except (KeyError, TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{folder}: not a language model config ({e})") from e
        model = LanguageModel(config)
        checkpoint.load_weights(model, folder)
        return cls(model, vocab, bptt, {k: v for k, v in meta.items() if k != "config"})

    @property
    def level(self) -> str:
        return self.vocab.level

    def evaluate(
        self,
        data: Path,
        streams: int = 16,
        context: int = 200,
        max_tokens: int = 0,
        window: int = 0,
        dynamic_lr: float = 0.0,
        rule: str = "sgd",
        decay: float = 0.0,
        train_text: Path | None = None,
        gradient_tokens: int = 200_000,
    ) -> dict:
        """BPC, perplexity, error (%) and counts on a file, or on the test file of a folder.

        ``window`` tokens are read per step (0: the training BPTT length). With
        ``dynamic_lr`` > 0 the model adapts after each window (see
        :class:`DynamicEvaluation` for ``rule`` and ``decay``), so shorter
        windows adapt more often. The rms rule measures gradients on the first
        ``gradient_tokens`` of ``train_text``, by default the train split
        beside the test file in the ``data`` folder.
        """
        if window < 0:
            raise ValueError("window must be 0 (the training BPTT length) or more")
        path = text.find_test(data, self.level)
        stream = text.encode_file(path, self.vocab).head(max_tokens)
        window = window or self.bptt
        dynamic = None
        if dynamic_lr > 0:
            rms = None
            if rule == "rms":
                if train_text is None and not Path(data).is_dir():
                    raise text.TextDataError("the rms rule needs the training text: give it, or a data folder")
                train = text.find_split_file(data, self.level, "train") if train_text is None else train_text
                rms = gradient_rms(self.model, text.encode_file(train, self.vocab), bptt=window, max_tokens=gradient_tokens)
            dynamic = DynamicEvaluation(dynamic_lr, rule, decay, rms)
        score = evaluate_stream(self.model, stream, streams, window, context, dynamic)
        result = {**score.metrics(self.level), "file": str(path), "dynamic": dynamic is not None, "window": window}
        if dynamic is not None:
            result.update(dynamic_lr=dynamic_lr, rule=rule, decay=decay)
        return result

    def sample(self, prime: str = "", length: int = 200, temperature: float = 1.0, seed: int = 0) -> str:
        """``prime`` and a continuation of ``length`` tokens (characters or words)."""
        if temperature < 0:
            raise ValueError("temperature must not be negative")
        continuation = self.vocab.decode(sample(self.model, self.vocab, prime, length, temperature, seed))
        if self.level == "word" and prime and not prime[-1].isspace() and continuation[:1] != "\n":
            return prime + " " + continuation
        return prime + continuation
