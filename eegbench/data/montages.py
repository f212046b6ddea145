"""Channel sets and electrode positions shared by the datasets.

The real loaders select channels by name (a THINGS-EEG2 variant keeps :data:`POSTERIOR_17`) and the
synthetic dataset simulates responses on the same channels, so both take them from here rather than
from each other.
"""

from __future__ import annotations

import numpy as np

#: The 17 occipital/parietal channels of the official THINGS-EEG2 preprocessed files, in their order.
POSTERIOR_17 = ("Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1", "P5", "PO7", "PO3", "POz", "PO4",
                "PO8", "P6", "P2")


def channel_positions(ch_names: tuple[str, ...]) -> np.ndarray:
    """(n_channels, 3) positions in metres from MNE's standard 10-20 montage."""
    import mne

    # MNE 1.13 renamed "standard_1020" to "colin27_1020" (same positions); support both.
    name = "colin27_1020" if "colin27_1020" in mne.channels.get_builtin_montages() else "standard_1020"
    positions = mne.channels.make_standard_montage(name).get_positions()["ch_pos"]
    return np.array([positions[name] for name in ch_names])
