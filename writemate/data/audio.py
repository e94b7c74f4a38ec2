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

import functools
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
    speaker_cmvn: bool = False  # the same over all recordings of a speaker (see sequences.normalise_speakers)
    c0: bool = False  # keep coefficient 0 (the log energy: loudness, which differs between recordings)
    # Training only: extra copies of each training speaker as other speakers with other
    # microphones (see :func:`mfcc`), each copy with a warp drawn from 1 +- max_warp
    # and a tilt from +- max_tilt_db.
    train_copies: int = 0
    max_warp: float = 0.15
    max_tilt_db: float = 12.0

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


def _warp_matrix(bins: int, warp: float, boundary: float = 0.8) -> np.ndarray:
    """Linear interpolation (bins, bins) that stretches the frequency axis by ``warp``.

    Vocal tract length perturbation (Jaitly and Hinton 2013): frequencies up to
    ``boundary`` of Nyquist (scaled by min(warp, 1)) move by the factor ``warp``; above
    that a second straight piece keeps Nyquist in place. Row g of the matrix
    reads the input spectrum at the frequency that lands on output bin g.
    """
    top = bins - 1
    knee = boundary * top * min(warp, 1.0)  # input frequency where the first piece ends
    out = np.arange(bins, dtype=np.float64)
    source = np.where(
        out <= knee * warp,
        out / warp,
        knee + (out - knee * warp) * (top - knee) / (top - knee * warp),
    )
    lower = np.clip(np.floor(source).astype(int), 0, top - 1)
    frac = source - lower
    matrix = np.zeros((bins, bins))
    matrix[out.astype(int), lower] = 1 - frac
    matrix[out.astype(int), lower + 1] += frac
    return matrix


@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's mel filter bank (n_mels, bins), built once per shape: building it took a sixth of the time."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)


@functools.lru_cache(maxsize=8)
def _window(win: int, n_fft: int) -> np.ndarray:
    """librosa's periodic Hamming window of ``win`` samples centred in ``n_fft`` (n_fft,)."""
    from scipy.signal import get_window

    window = get_window("hamming", win, fftbins=True)
    left = (n_fft - win) // 2
    return np.pad(window, (left, n_fft - win - left)).astype(np.float32)


def _power_spectrum(signal: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """|librosa.stft(signal, center=True, window="hamming")|^2, (bins, frames), in one batched FFT
    (librosa's own call spent most of its time rebuilding the window and padding per recording)."""
    padded = np.pad(signal, n_fft // 2)  # centred frames, zeros beyond the ends (librosa's pad_mode "constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # (frames, n_fft), a view
    spectrum = np.fft.rfft(frames * _window(win, n_fft), axis=1)  # (frames, bins)
    return (spectrum.real**2 + spectrum.imag**2).T.astype(np.float32)


@functools.lru_cache(maxsize=4)
def _delta_kernel(order: int, width: int = 9) -> np.ndarray:
    """The Savitzky-Golay kernel librosa.feature.delta fits anew on every call (a fifth of the time)."""
    from scipy.signal import savgol_coeffs

    return savgol_coeffs(width, polyorder=order, deriv=order)


def _delta(coeffs: np.ndarray, order: int) -> np.ndarray:
    """librosa.feature.delta(coeffs, order=order, mode="nearest") along time, with a cached kernel."""
    from scipy.ndimage import convolve1d

    return convolve1d(coeffs, _delta_kernel(order), axis=-1, mode="nearest")


def mfcc(signal: np.ndarray, config: MfccConfig, warp: float = 1.0, tilt_db: float = 0.0) -> np.ndarray:
    """MFCC features ``(frames, config.size)`` float32 of a mono signal at ``config.sample_rate``.

    ``warp`` and ``tilt_db`` make a training copy that sounds like another
    speaker and microphone: the frequency axis stretched by ``warp`` (vocal tract
    length), and the power spectrum tilted by ``tilt_db`` from the lowest to the
    highest frequency (a brighter or duller channel).
    """
    import librosa

    win = int(round(config.sample_rate * config.frame_ms / 1000))
    hop = int(round(config.sample_rate * config.hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()  # next power of two
    signal = np.asarray(signal, dtype=np.float32)
    if len(signal) < n_fft:  # very short clips: pad so that at least one frame exists
        signal = np.pad(signal, (0, n_fft - len(signal)))
    power = _power_spectrum(signal, n_fft, hop, win)  # (bins, frames)
    if warp != 1.0:
        power = _warp_matrix(power.shape[0], warp) @ power
    if tilt_db:
        position = np.linspace(-0.5, 0.5, power.shape[0])[:, None]  # (bins, 1)
        power = power * 10.0 ** (tilt_db * position / 10)
    mel = _mel_filters(config.sample_rate, n_fft, config.n_mels) @ power  # (n_mels, frames)
    coeffs = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=config.n_mfcc)  # (n_mfcc, frames)
    if config.deltas:
        coeffs = np.concatenate([coeffs, _delta(coeffs, 1), _delta(coeffs, 2)])  # (3 n_mfcc, frames)
    if not config.c0:  # the energy's changes over time (in the deltas) stay
        coeffs = coeffs[1:]
    frames = coeffs.T.astype(np.float32)  # (frames, features)
    if config.cmvn:
        frames = (frames - frames.mean(axis=0)) / (frames.std(axis=0) + 1e-5)
    return frames


def wav_features(path: str | Path, config: MfccConfig) -> np.ndarray:
    return mfcc(load_wav(path, config.sample_rate), config)


def draw_voice(config: MfccConfig, rng: np.random.Generator) -> tuple[float, float]:
    """A random (warp, tilt_db) within the config's ranges: one imagined speaker and microphone."""
    return 1.0 + rng.uniform(-config.max_warp, config.max_warp), rng.uniform(-config.max_tilt_db, config.max_tilt_db)


def fsdd_name(path: str | Path) -> tuple[str, str, int] | None:
    """``(label, speaker, take)`` from an FSDD file name such as ``7_theo_12.wav``, else None."""
    match = _FSDD_NAME.match(Path(path).name)
    if not match:
        return None
    return match["label"], match["speaker"], int(match["take"])
