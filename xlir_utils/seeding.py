"""Seeds derived from the profile's seed, one independent stream per purpose.

``derived_seed(seed, "lang", "de")`` feeds the seed and the UTF-8 bytes of every key to
:class:`numpy.random.SeedSequence`, so distinct keys never share a stream (the old
``seed + sum(map(ord, lang))`` gave ar and en, el and hi the same one).
"""
from __future__ import annotations

import numpy as np


def derived_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit seed for ``(seed, *keys)``: for ``torch.manual_seed`` or ``np.random.default_rng``."""
    entropy = [int(seed)]
    for key in keys:
        if isinstance(key, str):
            data = key.encode("utf-8")
            entropy += [len(data), *data]  # the length keeps ("ab", "c") apart from ("a", "bc")
        else:
            entropy += [1 << 16, int(key)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))
