"""The ``<env>-global`` stack: DNS across regions, the private network between them."""
