"""Run a local consortium on loopback: Prosody servers, bridges and sample incidents (``make demo``)."""
