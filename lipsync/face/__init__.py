"""Face stage: detect, 68-point landmarks, track, smooth, choose."""
