"""The HTTP API of a running node (twisted.web) and its Prometheus metrics.

The modules, one idea each, from the site down:

- :mod:`dhtkit.web.resource`: the site, its one resource and the routes;
- :mod:`dhtkit.web.guard`: per-connection and per-client limits;
- :mod:`dhtkit.web.values`, :mod:`dhtkit.web.sealed`,
  :mod:`dhtkit.web.gossip`, :mod:`dhtkit.web.listen`: the endpoints;
- :mod:`dhtkit.web.call`: what any endpoint sees and answers;
- :mod:`dhtkit.web.metrics` and :mod:`dhtkit.web.families`: ``/metrics``.

The names below are imported when first used (PEP 562), so that a command
that needs one endpoint's constant does not load the whole site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dhtkit.lazy import lazy_names

if TYPE_CHECKING:
    from dhtkit.web.call import ApiError, Reply
    from dhtkit.web.resource import (
        MAX_BODY,
        ApiRequest,
        ApiResource,
        ApiSite,
        format_address,
        make_api_factory,
        make_site,
        route,
    )

# public name -> the module that defines it
_WHERE = {
    "MAX_BODY": "dhtkit.web.resource",
    "ApiError": "dhtkit.web.call",
    "ApiRequest": "dhtkit.web.resource",
    "ApiResource": "dhtkit.web.resource",
    "ApiSite": "dhtkit.web.resource",
    "Reply": "dhtkit.web.call",
    "format_address": "dhtkit.web.resource",
    "make_api_factory": "dhtkit.web.resource",
    "make_site": "dhtkit.web.resource",
    "route": "dhtkit.web.resource",
}

__all__ = [
    "MAX_BODY",
    "ApiError",
    "ApiRequest",
    "ApiResource",
    "ApiSite",
    "Reply",
    "format_address",
    "make_api_factory",
    "make_site",
    "route",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
