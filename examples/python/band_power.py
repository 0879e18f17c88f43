#!/usr/bin/python3
"""An ACME user's script, unchanged: the band power of every channel of many trials, one call
per trial, with ACME's `ParallelMap`.

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/band_power.py [--trials 200] [--check]

With no broker configured this starts a private acme-broker and one Python worker per CPU,
and stops them at the end; after `acme-launch slurm ...` (or with ACME_BROKER set) the same
script runs on the cluster's workers. Every worker writes its trial's result to
`<output_dir>/band_power_payload/band_power_<i>.h5`; `band_power.h5` links them all (ACME's
layout). `--check` recomputes every trial here and compares.
"""
import argparse
import os
import sys
import tempfile

import h5py
import numpy as np

from acme import ParallelMap

FS = 1000.0  # sampling rate, Hz


def band_power(trial, n_channels, n_samples, band=(8.0, 12.0)):
    """Mean power in `band` (Hz) of each channel of one synthetic trial (seeded by its index)."""
    rng = np.random.default_rng(trial)
    t = np.arange(n_samples) / FS
    signal = rng.standard_normal((n_channels, n_samples))
    signal += np.sin(2 * np.pi * 10.0 * t) * (1 + trial % 5)  # an alpha rhythm, stronger in some
    spectrum = np.abs(np.fft.rfft(signal, axis=1)) ** 2 / n_samples
    freqs = np.fft.rfftfreq(n_samples, 1 / FS)
    mask = (freqs >= band[0]) & (freqs <= band[1])
    return spectrum[:, mask].mean(axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--output-dir", default=None, help="default: a new temporary folder")
    ap.add_argument("--check", action="store_true", help="compare with a serial computation")
    args = ap.parse_args()
    out = args.output_dir or tempfile.mkdtemp(prefix="acme-band-power-")

    # ACME's call: the trial indices are iterated, the sizes and the band broadcast.
    with ParallelMap(band_power, list(range(args.trials)), args.channels, args.samples,
                     band=(8.0, 12.0), output_dir=out, setup_interactive=False) as pmap:
        files = pmap.compute()
    aggregate = os.path.join(out, "band_power.h5")
    print(f"{len(files)} result files; aggregate {aggregate}")
    with h5py.File(aggregate, "r") as h5:
        powers = np.stack([h5[f"comp_{i}"]["result_0"][()] for i in range(args.trials)])
    print(f"band power: {powers.shape[0]} trials x {powers.shape[1]} channels, "
          f"mean {powers.mean():.4f}")
    if args.check:
        for i in range(args.trials):
            expected = band_power(i, args.channels, args.samples)
            if not np.allclose(powers[i], expected):
                print(f"check: trial {i} differs from the serial computation", file=sys.stderr)
                return 1
        print("check: every trial equals the serial computation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
