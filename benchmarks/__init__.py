"""kiln's benchmarks: the model set (benchmarks.models) and, later, the runners that time kiln
against its peers."""
