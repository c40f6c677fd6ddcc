"""Bounds of the HTTP API that its clients need too, in a module that loads nothing.

The ``dhtkit`` command checks its ``--limit`` against them before it sends
anything; importing them must not load the site, the gossip service or the
node (every command would pay for it at start-up).
"""

#: Updates a gossip listing answers unless ``?limit=`` asks for another number.
DEFAULT_LIMIT = 100
#: The most updates one gossip listing answers: about 1.7 MB of JSON at the
#: largest update size, where a topic's whole store could reach ~16 MB.
MAX_LIMIT = 1000
