"""Below the graph IR: kernels as loop nests over buffers (loopir), and how graph nodes become them."""
