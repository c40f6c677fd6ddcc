"""What an RPC call can fail with.

These are shared by every transport (:class:`dhtkit.transport.IRPC`): the
overlays, the value layer and gossip catch them without knowing which wire
format carried the call.
"""

from __future__ import annotations


class RPCError(Exception):
    """Base class of everything a call can fail with."""


class RPCTimeout(RPCError):
    """No reply came within the timeout, after every retry."""


class RPCStopped(RPCError):
    """The protocol stopped listening while the call was waiting."""


class Unreachable(RPCError):
    """The network said nothing answers at the peer's address (an ICMP error).

    Only a hint, which anyone who knows both addresses can forge: the call
    itself goes on (see :func:`dhtkit.hedge.hinted`), and the peer is not
    to be counted as failed for it.
    """


class RemoteError(RPCError):
    """The peer answered with an error.

    Handlers raise it to send a typed error: ``code`` travels to the caller,
    who gets a ``RemoteError`` with the same code and message.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return "{}: {}".format(self.code, self.message) if self.message else self.code


#: The error code a handler answers arguments that are not in its method's format with.
MALFORMED = "malformed"


class MalformedPayload(ValueError):
    """Arguments or an answer not in the format of their method.

    The messages modules of the overlays and of gossip raise it when they
    read what came off the wire; a handler answers it with
    :func:`malformed`, a caller counts it as a bad answer.
    """


def malformed(e: Exception) -> RemoteError:
    """The error a handler answers bad arguments with."""
    return RemoteError(MALFORMED, str(e))
