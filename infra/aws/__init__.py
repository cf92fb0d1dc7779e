"""One region of the platform on AWS: a component per block, composed by ``region.py``.

Importing this package stays cheap (no pulumi_aws) so settings can validate regions offline.
"""
