"""The Azure regions a stack may name, with their availability zones and short names.

Kept as data (no pulumi_azure_native import) so settings validate offline and fast. Only
regions with three availability zones: every block of a region spreads over at least two.
"""

from __future__ import annotations

_ZONES = ("1", "2", "3")

# Short names keep resource names inside Azure's length limits (Key Vault: 24 characters).
AZURE_SHORT_NAMES: dict[str, str] = {
    "westeurope": "weu",
    "northeurope": "neu",
    "uksouth": "uks",
    "francecentral": "frc",
    "germanywestcentral": "gwc",
    "swedencentral": "sec",
    "eastus": "eus",
    "eastus2": "eus2",
    "centralus": "cus",
    "westus2": "wus2",
    "westus3": "wus3",
    "canadacentral": "cac",
    "brazilsouth": "brs",
    "southeastasia": "sea",
    "japaneast": "jpe",
    "australiaeast": "aue",
    "centralindia": "inc",
}

AZURE_REGIONS: dict[str, tuple[str, ...]] = dict.fromkeys(AZURE_SHORT_NAMES, _ZONES)
