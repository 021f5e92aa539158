"""DeepLabV3+ (Chen et al., 2018) on timm backbones: the atrous baseline of ESeg's claims.

``config`` and ``variants`` are torch-free; ``model`` holds the network.
"""
