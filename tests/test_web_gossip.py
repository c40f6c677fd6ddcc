"""The HTTP API's gossip endpoints, over real nodes riding gossip on their sockets."""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.web.client import HTTPConnectionPool

from dhtkit.gossip.config import GossipConfig
from dhtkit.service import GossipService, KademliaService
from dhtkit.web import MAX_BODY, make_site
from dhtkit.web.gossip import DEFAULT_LIMIT
from tests.test_web import Api, error_of

FAST_GOSSIP = GossipConfig(period=0.05, jitter=0.5)
T = TypeVar("T")


@attrs.define
class Node:
    service: KademliaService
    gossip: GossipService | None
    api: Api


@attrs.define
class Nodes:
    """Kademlia nodes with gossip riding on them and their APIs; :meth:`close` stops all."""

    tmp_path: Path
    nodes: list[Node] = attrs.Factory(list)
    ports: list[Any] = attrs.Factory(list)
    pool: HTTPConnectionPool = attrs.Factory(lambda: HTTPConnectionPool(reactor, persistent=False))

    async def add(self, gossip: bool = True, config: GossipConfig = FAST_GOSSIP) -> Node:
        n = len(self.nodes)
        bootstrap = [self.nodes[0].service.address] if self.nodes else []
        svc = KademliaService(
            0,
            "127.0.0.1",
            self.tmp_path / "node{}".format(n),
            bootstrap,
            rpc_options={"timeout": 0.5},
            rng=random.Random(n),
        )
        svc.startService()
        rider = None
        if gossip:
            rider = GossipService.riding_on(svc, svc.overlay.contacts, config=config)
            rider.startService()
        node = Node(svc, rider, Api(0, self.pool))
        self.nodes.append(node)
        await svc.when_joined()
        port = reactor.listenTCP(0, make_site(svc, gossip=rider), interface="127.0.0.1")
        self.ports.append(port)
        node.api.port = port.getHost().port
        return node

    async def close(self) -> None:
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        # The riders first: they use their hosts' sockets.
        riders = [n.gossip for n in self.nodes if n.gossip is not None and n.gossip.running]
        await defer.gatherResults([r.stopService() for r in riders])
        await defer.gatherResults([n.service.stopService() for n in self.nodes])
        await self.pool.closeCachedConnections()


@pytest_twisted.async_yield_fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    started = Nodes(tmp_path)
    try:
        yield started
    finally:
        await started.close()


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """``check()``'s first true result, polled every 20 ms (for at most 10 s)."""
    for _ in range(500):
        found = await check()
        if found:
            return found
        await task.deferLater(reactor, 0.02, lambda: None)
    pytest.fail("never happened: {}".format(what))


async def listed(api: Api, topic_path: str) -> list[dict[str, Any]]:
    answer = await api.call("GET", "/v1/gossip/" + topic_path)
    assert answer.code == 200, answer.body
    updates: list[dict[str, Any]] = answer.json()["updates"]
    return updates


async def publish(api: Api, topic_path: str, data: bytes) -> dict[str, Any]:
    answer = await api.call("POST", "/v1/gossip/" + topic_path, data)
    assert answer.code == 200, answer.body
    reply: dict[str, Any] = answer.json()
    return reply


# -- spreading and deleting --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_update_published_on_one_node_reaches_another_and_its_deletion_too(
    nodes: Nodes,
) -> None:
    a, _, c = [await nodes.add() for _ in range(3)]
    assert a.gossip is not None
    before = reactor.seconds()
    answer = await a.api.call("POST", "/v1/gossip/news%2Fen?ttl=600", b"hello\x00world")
    assert answer.code == 200
    reply = answer.json()
    assert set(reply) == {"update_id", "topic", "origin", "seq", "expires"}
    assert reply["topic"] == "news/en"
    assert reply["origin"] == a.service.identity.public_key.hex()
    assert before + 600 <= reply["expires"] <= reactor.seconds() + 601
    assert len(reply["update_id"]) == 40

    async def on_c() -> list[dict[str, Any]]:
        return await listed(c.api, "news%2Fen")

    found = await eventually(on_c, "node C lists the update")
    assert found == [dict(reply, data=base64.b64encode(b"hello\x00world").decode())]

    deleted = await a.api.call("DELETE", "/v1/gossip/news%2Fen/" + reply["update_id"].upper())
    assert deleted.code == 200
    certificate = deleted.json()
    assert certificate["deletes"] == reply["update_id"]
    assert certificate["update_id"] != reply["update_id"]
    assert a.gossip.gossip.state.knows(bytes.fromhex(certificate["update_id"]))
    assert await listed(a.api, "news%2Fen") == []

    async def gone_from_c() -> bool:
        return await listed(c.api, "news%2Fen") == []

    await eventually(gone_from_c, "node C forgets the deleted update")


@pytest_twisted.ensureDeferred
async def test_updates_are_listed_newest_first_and_only_those_of_the_topic(
    nodes: Nodes,
) -> None:
    node = await nodes.add()  # alone: publishing needs no contacts
    published = [await publish(node.api, "t", bytes([n]) * 3) for n in range(3)]
    await publish(node.api, "other", b"elsewhere")
    found = await listed(node.api, "t")
    assert [u["update_id"] for u in found] == [p["update_id"] for p in reversed(published)]
    assert [base64.b64decode(u["data"]) for u in found] == [b"\2\2\2", b"\1\1\1", b"\0\0\0"]
    assert [u["seq"] for u in found] == sorted((u["seq"] for u in found), reverse=True)
    assert await listed(node.api, "nobody") == []


@pytest_twisted.ensureDeferred
async def test_expired_updates_are_not_listed(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await nodes.add()
    assert node.gossip is not None
    short = await publish(node.api, "t?ttl=5", b"short")
    long = await publish(node.api, "t?ttl=500", b"long")
    # The state's clock is moved past the first expiry, not the test's.
    later = task.Clock()
    later.advance(short["expires"])
    monkeypatch.setattr(node.gossip.gossip.state, "clock", later)
    assert [u["update_id"] for u in await listed(node.api, "t")] == [long["update_id"]]


@pytest_twisted.ensureDeferred
async def test_only_the_origin_can_delete_an_update(nodes: Nodes) -> None:
    a, b = await nodes.add(), await nodes.add()
    reply = await publish(b.api, "t", b"b's own")

    async def on_a() -> list[dict[str, Any]]:
        return await listed(a.api, "t")

    await eventually(on_a, "node A holds B's update")
    refused = await a.api.call("DELETE", "/v1/gossip/t/" + reply["update_id"])
    message = error_of(refused, 403)
    assert message.startswith("only the node that published an update can delete it")
    assert b.service.identity.public_key.hex() in message
    assert [u["update_id"] for u in await listed(a.api, "t")] == [reply["update_id"]]


@pytest_twisted.ensureDeferred
async def test_deleting_an_update_not_held_is_404(nodes: Nodes) -> None:
    node = await nodes.add()
    reply = await publish(node.api, "t", b"x")
    unknown = "ab" * 20
    assert unknown in error_of(await node.api.call("DELETE", "/v1/gossip/t/" + unknown), 404)
    # Held, but under another topic.
    error_of(await node.api.call("DELETE", "/v1/gossip/u/" + reply["update_id"]), 404)
    deleted = await node.api.call("DELETE", "/v1/gossip/t/" + reply["update_id"])
    assert deleted.code == 200
    # A death certificate is held, but it is no update to delete.
    certificate = deleted.json()["update_id"]
    error_of(await node.api.call("DELETE", "/v1/gossip/t/" + certificate), 404)
    again = await node.api.call("DELETE", "/v1/gossip/t/" + reply["update_id"])
    assert "holds no update" in error_of(again, 404)


@pytest_twisted.ensureDeferred
async def test_the_api_also_serves_a_bare_gossip_protocol(nodes: Nodes) -> None:
    node = await nodes.add()
    assert node.gossip is not None
    site = make_site(node.service, gossip=node.gossip.gossip)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    nodes.ports.append(port)
    api = Api(port.getHost().port, nodes.pool)
    reply = await publish(api, "t", b"x")
    assert [u["update_id"] for u in await listed(node.api, "t")] == [reply["update_id"]]


# -- refusals ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_refuses_bad_topics_ttls_and_update_ids(nodes: Nodes) -> None:
    node = await nodes.add()
    assert node.gossip is not None
    long_topic = "é" * 33  # 66 bytes
    cases = [
        ("POST", "/v1/gossip/", "topic is 0 bytes"),
        ("GET", "/v1/gossip/", "topic is 0 bytes"),
        ("GET", "/v1/gossip/" + long_topic, "topic is 66 bytes"),
        ("POST", "/v1/gossip/%FF", "not valid UTF-8"),
        ("DELETE", "/v1/gossip//" + "ab" * 20, "topic is 0 bytes"),
        ("POST", "/v1/gossip/t?ttl=0", "ttl must be"),
        ("POST", "/v1/gossip/t?ttl=-1", "ttl must be"),
        ("POST", "/v1/gossip/t?ttl=soon", "ttl must be"),
        ("POST", "/v1/gossip/t?ttl=nan", "ttl must be"),
        ("POST", "/v1/gossip/t?ttl=inf", "ttl must be"),
        ("POST", "/v1/gossip/t?ttl=1&ttl=2", "ttl must be"),
        ("POST", "/v1/gossip/t?ttl=604801", "ttl must be in (0, 604800"),
        ("POST", "/v1/gossip/t?ttl=" + "9" * 5000, "ttl must be"),
        ("POST", "/v1/gossip/t?ttl=0." + "0" * 4999 + "1", "ttl must be"),
        ("DELETE", "/v1/gossip/t/xyz", "40 hex digits"),
        ("DELETE", "/v1/gossip/t/" + "ab" * 19, "40 hex digits"),
    ]
    for method, path, expected in cases:
        assert expected in error_of(await node.api.call(method, path, b"data"), 400), path
    assert node.gossip.stats()["published"] == 0


@pytest_twisted.ensureDeferred
async def test_refuses_data_larger_than_an_update_takes(nodes: Nodes) -> None:
    node = await nodes.add()
    assert node.gossip is not None
    fits = await node.api.call("POST", "/v1/gossip/t", b"x" * 1000)
    assert fits.code == 200
    too_large = await node.api.call("POST", "/v1/gossip/t", b"x" * 1150)
    assert "the limit is 1200" in error_of(too_large, 413)
    declared = await node.api.call("POST", "/v1/gossip/t", b"x" * 5000)
    assert "larger than the 1200 bytes" in error_of(declared, 413)
    huge = await node.api.call("POST", "/v1/gossip/t", b"x" * (MAX_BODY + 1))
    error_of(huge, 413)
    assert node.gossip.stats()["published"] == 1


@pytest_twisted.ensureDeferred
async def test_a_full_gossip_store_is_503(nodes: Nodes) -> None:
    node = await nodes.add(config=GossipConfig(period=0.05, max_updates=1))
    await publish(node.api, "t", b"first")
    message = error_of(await node.api.call("POST", "/v1/gossip/t", b"second"), 503)
    assert "as many gossip updates as it may (1)" in message
    assert len(await listed(node.api, "t")) == 1


@pytest_twisted.ensureDeferred
async def test_gossip_paths_are_404_on_a_node_without_gossip(nodes: Nodes) -> None:
    node = await nodes.add(gossip=False)
    for method, path in [
        ("POST", "/v1/gossip/t"),
        ("GET", "/v1/gossip/t"),
        ("DELETE", "/v1/gossip/t/" + "ab" * 20),
    ]:
        message = error_of(await node.api.call(method, path, b"x"), 404)
        assert message == "this node does not run gossip: start it with --gossip"


@pytest_twisted.ensureDeferred
async def test_a_stopped_gossip_is_503(nodes: Nodes) -> None:
    node = await nodes.add()
    assert node.gossip is not None
    await node.gossip.stopService()
    assert "not running" in error_of(await node.api.call("GET", "/v1/gossip/t"), 503)


@pytest_twisted.ensureDeferred
async def test_a_wrong_method_on_a_gossip_path_is_405_with_allow(nodes: Nodes) -> None:
    node = await nodes.add()
    cases = [
        ("PUT", "/v1/gossip/t", "GET, HEAD, POST"),
        ("DELETE", "/v1/gossip/t", "GET, HEAD, POST"),
        ("GET", "/v1/gossip/t/" + "ab" * 20, "DELETE"),
        ("POST", "/v1/gossip/t/" + "ab" * 20, "DELETE"),
    ]
    for method, path, allow in cases:
        answer = await node.api.call(method, path, b"")
        error_of(answer, 405)
        assert answer.header("allow") == allow


# -- bounded listings ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_listing_is_bounded_by_limit_and_filtered_by_since(nodes: Nodes) -> None:
    node = await nodes.add()
    assert node.gossip is not None
    state = node.gossip.gossip.state
    published = [state.publish("t", b"%d" % n) for n in range(DEFAULT_LIMIT + 5)]
    newest_first = [u.update_id.hex() for u in reversed(published)]
    answer = await node.api.call("GET", "/v1/gossip/t")
    reply = answer.json()
    assert [u["update_id"] for u in reply["updates"]] == newest_first[:DEFAULT_LIMIT]
    assert reply["more"] is True
    three = (await node.api.call("GET", "/v1/gossip/t?limit=3")).json()
    assert [u["update_id"] for u in three["updates"]] == newest_first[:3]
    since = three["updates"][2]["seq"]
    later = (await node.api.call("GET", "/v1/gossip/t?since={}".format(since))).json()
    assert [u["update_id"] for u in later["updates"]] == newest_first[:2]
    assert later["more"] is False
    everything = (await node.api.call("GET", "/v1/gossip/t?limit=1000&since=0")).json()
    assert len(everything["updates"]) == DEFAULT_LIMIT + 5 and everything["more"] is False


@pytest_twisted.ensureDeferred
async def test_bad_limits_and_sinces_are_400(nodes: Nodes) -> None:
    node = await nodes.add()
    cases = [
        ("limit=0", "limit must be a whole number from 1 to 1000"),
        ("limit=1001", "limit must be a whole number from 1 to 1000"),
        ("limit=-1", "limit must be given once"),
        ("limit=ten", "limit must be given once"),
        ("limit=1&limit=2", "limit must be given once"),
        ("limit=" + "9" * 5000, "limit must be given once"),
        ("since=1.5", "since must be given once"),
        ("since=-3", "since must be given once"),
        ("since=" + "9" * 20, "since must be a sequence number"),
    ]
    for query, expected in cases:
        answer = await node.api.call("GET", "/v1/gossip/t?" + query)
        assert expected in error_of(answer, 400), query
