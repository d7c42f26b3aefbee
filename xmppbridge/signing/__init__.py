"""Object-level signatures: the wire form both ends agree on, signing and verification."""
