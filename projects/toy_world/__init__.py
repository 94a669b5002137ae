"""mmti's toy world: a synthetic text-to-image world, pretrained by mmti itself,
in which Textual Inversion can be shown to learn a held-out concept on a CPU.

A project that uses mmti, not part of it: the library never imports it.
Pretraining configs are in ``configs/``; the pretrained weights it produced
ship in ``data/toy``.
"""
