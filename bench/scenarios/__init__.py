"""What `make bench` measures, one module per scenario."""
