"""qmatrix: a quantization support matrix, attempted cell by cell."""
