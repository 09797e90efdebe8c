"""Shared by the tiny-model generators: ggml tensor records and a mel filter bank."""
import struct

import numpy as np


def mel_filter_bank(n_mels, n_fft=400, rate=16000):
    """Slaney-style triangular filters, as librosa.filters.mel (which Whisper's assets hold)."""
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        linear = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, linear)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        linear = m * (200.0 / 3)
        log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log_part, linear)

    n_bins = n_fft // 2 + 1
    bin_hz = np.linspace(0, rate / 2, n_bins)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), n_mels + 2))
    bank = np.zeros((n_mels, n_bins))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (bin_hz - lo) / (mid - lo)
        falling = (hi - bin_hz) / (hi - mid)
        bank[m] = np.maximum(0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return bank.astype(np.float32)


def write_tensor(f, name, data, f16):
    """One tensor record: i32 n_dims, i32 name length, i32 type (0 f32, 1 f16), i32 ne[n_dims]
    innermost first, the name, the data."""
    data = np.asarray(data).astype("<f2" if f16 else "<f4")
    encoded = name.encode()
    f.write(struct.pack("<iii", data.ndim, len(encoded), 1 if f16 else 0))
    f.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
    f.write(encoded)
    f.write(data.tobytes())
