import pytest

from dhtkit.contact import Contact, contact_at, normalize_address, shared_key
from dhtkit.identity import Identity


def test_from_key_derives_the_node_id() -> None:
    identity = Identity.generate()
    contact = Contact.from_key(identity.public_key, ("127.0.0.1", 4000))
    assert contact.node_id == identity.node_id
    assert contact.public_key == identity.public_key
    assert contact.address == ("127.0.0.1", 4000)


def test_a_process_keeps_one_contact_and_one_key_per_peer() -> None:
    # Every datagram and answer brings its own copy of a peer's key: the
    # sessions and tables of a process (a simulation's every node) share one.
    key = Identity(b"\5" * 32).public_key
    copy = bytes(bytearray(key))
    assert copy is not key
    here = contact_at(key, ("10.0.0.1", 4000))
    assert contact_at(copy, ("10.0.0.1", 4000)) is here
    assert here == Contact.from_key(key, ("10.0.0.1", 4000))
    moved = contact_at(copy, ("10.0.0.2", 4000))
    assert moved.address == ("10.0.0.2", 4000)
    assert moved.public_key is here.public_key is shared_key(copy)
    assert moved.node_id is here.node_id


def test_a_contact_keeps_an_address_tuple_as_given() -> None:
    address = ("10.0.0.1", 4000)
    assert Contact.from_key(Identity(b"\6" * 32).public_key, address).address is address
    assert Contact.from_key(Identity(b"\6" * 32).public_key, ["10.0.0.1", 4000]).address == address


def test_contacts_are_values() -> None:
    key = Identity(b"\1" * 32).public_key
    a = Contact.from_key(key, ("127.0.0.1", 4000))
    assert a == Contact.from_key(key, ("127.0.0.1", 4000))
    assert len({a, Contact.from_key(key, ("127.0.0.1", 4000))}) == 1
    assert a != Contact.from_key(key, ("127.0.0.1", 4001))
    with pytest.raises(AttributeError):
        a.address = ("127.0.0.1", 1)  # type: ignore[misc]
    assert repr(a).startswith("Contact(" + a.node_id.hex()[:12])


@pytest.mark.parametrize(
    "given, expected",
    [
        (("127.0.0.1", 1), ("127.0.0.1", 1)),
        (("0:0::1", 80), ("::1", 80)),
        (("2001:DB8::1", 65535), ("2001:db8::1", 65535)),
    ],
)
def test_normalize_address(given: tuple[str, int], expected: tuple[str, int]) -> None:
    assert normalize_address(given) == expected


@pytest.mark.parametrize(
    "bad",
    [
        ("localhost", 1),
        ("1.2.3.4", 0),
        ("1.2.3.4", 65536),
        ("1.2.3.4", "80"),
        ("1.2.3.4", True),
        ("1.2.3.4",),
        None,
        "1.2.3.4:80",
        (None, 80),
    ],
)
def test_normalize_address_refuses_what_is_not_an_ip_and_port(bad: object) -> None:
    with pytest.raises(ValueError):
        normalize_address(bad)  # type: ignore[arg-type]
