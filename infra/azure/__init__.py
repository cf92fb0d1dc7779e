"""One region of the platform on Azure: a component per block, composed by ``region.py``.

Importing this package stays cheap (no pulumi_azure_native) so settings can validate offline.
"""
