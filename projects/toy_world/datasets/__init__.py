from .toy_world_dataset import ToyWorldDataset

__all__ = ['ToyWorldDataset']
