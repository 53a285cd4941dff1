"""Packed training: trials that share a batch stream train in one compiled step.

``planner`` (no TensorFlow) decides the packs; ``model`` holds a pack's variables and its
compiled step; ``state`` is what a checkpoint saves; ``engine`` is the epoch loop.
"""
