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


def evaluate_stream(
    model: LanguageModel,
    stream: Stream,
    streams: int = 16,
    bptt: int = 100,
    context: int = 200,
    dynamic_lr: float = 0.0,
) -> Score:
    """Score every token of ``stream``, reading it as ``streams`` pieces side by side.

    Every piece but the first starts by reading the ``context`` tokens before
    it without scoring them, so its state is warm when scoring begins; with
    ``streams=1`` the text is read in one go. With ``dynamic_lr`` > 0 (dynamic
    evaluation, Graves 2013 section 3) a copy of the model takes an SGD step
    on every window after scoring it; pieces then start cold (no context), so
    no token is ever trained on before it has been scored.
    """
    dynamic = dynamic_lr > 0
    if dynamic:
        model = copy.deepcopy(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=dynamic_lr)
    model.eval()
    n = stream.tokens
    per = math.ceil(n / max(1, min(streams, n)))
    starts = np.arange(0, n, per)  # first prediction of each piece: target ids[start + 1]
    ends = np.minimum(starts + per, n)
    origin = starts - (0 if dynamic else np.minimum(context, starts))  # first input of each row
    length = int((ends - origin).max())
    nats, errors = 0.0, 0
    state = None
    with torch.enable_grad() if dynamic else torch.inference_mode():
        for t0 in range(0, length, bptt):
            pos = origin[:, None] + np.arange(t0, min(t0 + bptt, length))[None, :]  # (S, W) input positions
            scored = torch.from_numpy((pos >= starts[:, None]) & (pos < ends[:, None]))
            pos = np.minimum(pos, n - 1)  # rows that have ended read junk that is not scored
            x = torch.from_numpy(stream.ids[pos].astype(np.int64))
            y = torch.from_numpy(stream.ids[pos + 1].astype(np.int64))
            logits, state = model(x, state)  # (S, W, V)
            nll = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none") * scored  # (S, W)
            nats += float(nll.detach().sum())
            errors += int(((logits.argmax(-1) != y) & scored).sum())
            if dynamic and scored.any():
                optimizer.zero_grad(set_to_none=True)
                (nll.sum() / scored.sum()).backward()
                optimizer.step()
            state = detach(state)
    return Score(nats, n, stream.characters, stream.words, errors)


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
):
    """Train on a text file or folder (see :func:`writemate.data.text.find_splits`) into ``run_dir``.

    ``init_scale`` > 0 starts every weight uniform in [-init_scale, init_scale] instead of PyTorch's
    initialisation (see :meth:`LanguageModel.init_uniform`).
    """
    if init_scale < 0:
        raise ValueError(f"init_scale must be 0 (PyTorch's initialisation) or more, not {init_scale}")
    corpus = text.load_corpus(data, model_config.level, max_vocab=max_vocab, valid_fraction=valid_fraction)
    model_config = replace(model_config, vocab_size=len(corpus.vocab))
    torch.manual_seed(train_config.seed)
    model = LanguageModel(model_config)
    if init_scale:
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
        dynamic_lr: float = 0.0,
        max_tokens: int = 0,
        window: int = 0,
    ) -> dict:
        """BPC, perplexity, error (%) and counts on a file, or on the test file of a folder.

        ``window`` tokens are read per step (0: the training BPTT length); dynamic evaluation
        updates the model after each window, so shorter windows adapt more often.
        """
        if window < 0:
            raise ValueError("window must be 0 (the training BPTT length) or more")
        path = text.find_test(data, self.level)
        stream = text.encode_file(path, self.vocab).head(max_tokens)
        window = window or self.bptt
        score = evaluate_stream(self.model, stream, streams, window, context, dynamic_lr)
        return {**score.metrics(self.level), "file": str(path), "dynamic": dynamic_lr > 0, "window": window}

    def sample(self, prime: str = "", length: int = 200, temperature: float = 1.0, seed: int = 0) -> str:
        """``prime`` and a continuation of ``length`` tokens (characters or words)."""
        if temperature < 0:
            raise ValueError("temperature must not be negative")
        continuation = self.vocab.decode(sample(self.model, self.vocab, prime, length, temperature, seed))
        if self.level == "word" and prime and not prime[-1].isspace() and continuation[:1] != "\n":
            return prime + " " + continuation
        return prime + continuation
