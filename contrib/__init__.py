"""Optional plugins whose dependencies come with extras (``pip install flowkernel[...]``)."""
