"""The node bundle: what a machine image installs to run a gateway or a media node."""
