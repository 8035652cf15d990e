"""Hot-path kernels in Numba and NumPy: letterbox packing, box decoding and NMS."""
