"""The conventional training loop of peer code, kept only as the benchmarks' baseline.

A per-sample ``torch.utils.data.Dataset`` returns one (response, image features) pair at a time,
a ``DataLoader`` shuffles and collates them into batches, and each batch is copied to the device.
It trains the very same model as :func:`eegbench.training.fit_contrastive` (a stack of one), so
the two differ only in how data reaches the model.
"""

from __future__ import annotations

import numpy as np
import torch

from eegbench.training import AlignmentStack, TrainingConfig


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, brain: np.ndarray, targets: np.ndarray, image_index: np.ndarray) -> None:
        self.brain, self.targets, self.image_index = brain, targets, image_index

    def __len__(self) -> int:
        return len(self.brain)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(np.asarray(self.brain[i], dtype=np.float32)),
                torch.from_numpy(np.asarray(self.targets[self.image_index[i]], dtype=np.float32)))


def dataloader(brain: np.ndarray, targets: np.ndarray, image_index: np.ndarray, batch_size: int,
               seed: int) -> torch.utils.data.DataLoader:
    """Shuffled batches of (response, image features), collated from one sample at a time."""
    return torch.utils.data.DataLoader(PairDataset(brain, targets, image_index), batch_size=batch_size, shuffle=True,
                                       drop_last=True, generator=torch.Generator().manual_seed(seed))


def fit_with_dataloader(brain: np.ndarray, targets: np.ndarray, image_index: np.ndarray, config: TrainingConfig,
                        *, seed: int, device: torch.device) -> AlignmentStack:
    """Train one model for ``config.epochs`` epochs the way peer code does."""
    model = AlignmentStack(config, 1, brain.shape[1], brain.shape[2], [[targets.shape[1]]], [seed], device).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = dataloader(brain, targets, image_index, config.batch_size, seed)
    model.train()
    for _ in range(config.epochs):
        for x, y in loader:
            loss = model.loss(x.to(device)[None], [y.to(device)[None]]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model
