"""Layer 2, backbone: build SAM (vit_b / vit_l / vit_h from a checkpoint, the tiny family, the
shipped tiny foundation model) and prompt it with boxes and points.

Imports only from cobot_lib.files.
"""
