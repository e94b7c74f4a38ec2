"""WAV recordings to MFCC feature sequences, with librosa.

A recording becomes one row per 10 ms frame: ``n_mfcc`` mel-frequency
cepstral coefficients of a 25 ms Hamming window, then (with ``deltas``) their
first and second differences over time, 39 features for 13 coefficients.
Coefficient 0, the frame's log energy, says mostly how loud the speaker was
recorded (FSDD speakers differ tenfold); it is left out unless ``c0`` is set,
while its first and second differences stay (38 features).
Cepstral mean and variance normalisation per recording (``cmvn``) is off by
default: for isolated words the mean spectrum of a recording is part of the
word, and a GRU tested on an unseen FSDD speaker lost 8 to 10 points of
accuracy with it (theo 94 % -> 84 %, jackson 88 % -> 80 %). The classifier
standardises every feature with the training set's statistics instead.

Free Spoken Digit Dataset file names carry the label and the speaker:
``{digit}_{speaker}_{take}.wav`` (see :func:`fsdd_name`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from writemate.errors import WritemateError

_FSDD_NAME = re.compile(r"^(?P<label>\d)_(?P<speaker>[A-Za-z0-9-]+)_(?P<take>\d+)\.wav$", re.IGNORECASE)


class AudioError(WritemateError):
    """A recording cannot be read."""


@dataclass
class MfccConfig:
    sample_rate: int = 8000  # recordings are resampled to this rate
    n_mfcc: int = 13
    n_mels: int = 40
    frame_ms: float = 25.0
    hop_ms: float = 10.0
    deltas: bool = True  # append first and second differences: 3 * n_mfcc features
    cmvn: bool = False  # normalise each coefficient to zero mean and unit variance per recording
    c0: bool = False  # keep coefficient 0 (the log energy: loudness, which differs between recordings)

    @property
    def size(self) -> int:
        return self.n_mfcc * (3 if self.deltas else 1) - (0 if self.c0 else 1)

    def to_dict(self) -> dict:
        return asdict(self)


def load_wav(path: str | Path, sample_rate: int) -> np.ndarray:
    """A recording as mono float32 samples at ``sample_rate`` (channels averaged, resampled if needed)."""
    import soundfile  # librosa's reader: WAV, FLAC and Ogg through libsndfile

    try:
        signal, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except (OSError, RuntimeError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(f"{path}: not a readable audio file ({e})") from e
    signal = signal.mean(axis=1)
    if signal.size == 0:
        raise AudioError(f"{path}: the recording is empty")
    if rate != sample_rate:
        import librosa  # imported here: it takes a second and only audio needs it

        signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate)
    return signal


def mfcc(signal: np.ndarray, config: MfccConfig) -> np.ndarray:
    """MFCC features ``(frames, config.size)`` float32 of a mono signal at ``config.sample_rate``."""
    import librosa

    win = int(round(config.sample_rate * config.frame_ms / 1000))
    hop = int(round(config.sample_rate * config.hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()  # next power of two
    signal = np.asarray(signal, dtype=np.float32)
    if len(signal) < n_fft:  # very short clips: pad so that at least one frame exists
        signal = np.pad(signal, (0, n_fft - len(signal)))
    coeffs = librosa.feature.mfcc(
        y=signal,
        sr=config.sample_rate,
        n_mfcc=config.n_mfcc,
        n_fft=n_fft,
        win_length=win,
        hop_length=hop,
        window="hamming",
        n_mels=config.n_mels,
    )  # (n_mfcc, frames)
    if config.deltas:
        coeffs = np.concatenate(
            [
                coeffs,
                librosa.feature.delta(coeffs, mode="nearest"),
                librosa.feature.delta(coeffs, order=2, mode="nearest"),
            ]
        )  # (3 n_mfcc, frames)
    if not config.c0:  # the energy's changes over time (in the deltas) stay
        coeffs = coeffs[1:]
    frames = coeffs.T.astype(np.float32)  # (frames, features)
    if config.cmvn:
        frames = (frames - frames.mean(axis=0)) / (frames.std(axis=0) + 1e-5)
    return frames


def wav_features(path: str | Path, config: MfccConfig) -> np.ndarray:
    return mfcc(load_wav(path, config.sample_rate), config)


def fsdd_name(path: str | Path) -> tuple[str, str, int] | None:
    """``(label, speaker, take)`` from an FSDD file name such as ``7_theo_12.wav``, else None."""
    match = _FSDD_NAME.match(Path(path).name)
    if not match:
        return None
    return match["label"], match["speaker"], int(match["take"])
