"""ESeg (Meng et al., arXiv 2203.12683): a timm backbone, a pyramid up to P9, BiFPN, a per-pixel head.

``config`` and ``variants`` are torch-free; ``model``, ``bifpn`` and ``head`` hold the network.
"""
