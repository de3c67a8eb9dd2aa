"""What a person is shown in place of a credential: one mask and one rule for request headers.

The action preview, the alert dead letters and the alert sources page all show it, so a secret
looks the same wherever it is hidden.
"""

import re
from collections.abc import Mapping

MASK = "••••••"
CREDENTIAL_HEADER = re.compile(r"auth|token|secret|signature|key|cookie|password", re.IGNORECASE)


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as a person may see them: a header whose name looks like a credential shows its
    scheme (`Bearer`, `Basic`) and the mask instead of its value; the others are as they came."""
    shown = {}
    for name, value in headers.items():
        if CREDENTIAL_HEADER.search(name):
            scheme = value.split(" ", 1)[0] + " " if " " in value else ""
            shown[name] = scheme + MASK
        else:
            shown[name] = value
    return shown
