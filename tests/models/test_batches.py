"""The batched-forward iterator against brute force: every row once, grouped by length, padded on the left, order restored."""

from __future__ import annotations

import random

import pytest
import torch

from alignscope.errors import InputError
from alignscope.models.batches import gather, padded_batches


def cases(n: int) -> list[tuple[list[list[int]], int, bool]]:
    """Seeded random inputs: 1-25 sequences of 1-9 tokens, batch sizes 1-7, sorted or not."""
    rng = random.Random(0)
    return [([[rng.randint(1, 50) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(1, 25))], rng.randint(1, 7), rng.random() < 0.5)
            for _ in range(n)]


@pytest.mark.parametrize(("sequences", "size", "sort"), cases(60))
def test_batches_cover_every_row_left_padded(sequences: list[list[int]], size: int, sort: bool) -> None:
    batches = padded_batches(sequences, size, pad=0, sort=sort)
    index = [i for b in batches for i in b.index]
    assert sorted(index) == list(range(len(sequences)))
    if sort:  # stable sort by length: brute force
        assert index == sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
    else:
        assert index == list(range(len(sequences)))
    for b in batches:
        assert 1 <= len(b.index) <= size
        width = max(len(sequences[i]) for i in b.index)
        for row, i in enumerate(b.index):
            n = len(sequences[i])
            assert b.input_ids[row].tolist() == [0] * (width - n) + sequences[i]
            assert b.attention_mask[row].tolist() == [0] * (width - n) + [1] * n


@pytest.mark.parametrize(("sequences", "size", "_sort"), cases(30))
def test_gather_restores_input_order(sequences: list[list[int]], size: int, _sort: bool) -> None:
    batches = padded_batches(sequences, size, pad=0)
    # each row's value: the sum of its real tokens, computed per batch from the padded tensors
    got = gather(len(sequences), ((b.index, (b.input_ids * b.attention_mask).sum(1)) for b in batches))
    assert got.tolist() == [sum(s) for s in sequences]


def test_bad_batch_size_and_incomplete_gather() -> None:
    with pytest.raises(InputError, match="batch size must be at least 1"):
        padded_batches([[1]], 0, pad=0)
    with pytest.raises(ValueError, match="expected each of 0..2 once"):
        gather(3, [([0, 1], torch.zeros(2))])
