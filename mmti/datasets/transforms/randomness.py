"""Where a transform gets its random numbers."""
import numpy as np


def sample_rng(results: dict) -> np.random.Generator:
    """The sample's own generator if the dataset gave one, else a global draw.

    The dataset keys each sample's generator by (seed, index), which makes
    augmentation reproducible across workers, processes and resumes.
    """
    rng = results.get('rng')
    if rng is None:
        rng = np.random.default_rng(np.random.randint(2**31))
        results['rng'] = rng
    return rng
