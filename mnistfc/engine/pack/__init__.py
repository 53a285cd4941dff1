"""Packed training: trials that share a batch stream train in one compiled step.

``planner`` (no TensorFlow) decides the packs and their cost; ``math`` is each trial's
initialisation, batch order and dropout; ``model`` holds a pack's variables and its compiled
step; ``loop`` is the epoch loop, its saves and its results.
"""
