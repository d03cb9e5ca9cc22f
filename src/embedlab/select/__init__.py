"""Model selection: the accuracy / latency / size / cost trade-off and a defensible recommendation."""
