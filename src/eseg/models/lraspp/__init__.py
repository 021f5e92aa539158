"""LR-ASPP (Howard et al., "Searching for MobileNetV3", 2019) on timm backbones: the light decoder
torchvision ships for MobileNetV3, rebuilt on any encoder so ESeg's claims can compare decoders on
one encoder.

``config`` and ``variants`` are torch-free; ``model`` holds the network.
"""
