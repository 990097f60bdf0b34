import pytest

from dicommove import AddressError, InputError, Node


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ORTHANC@127.0.0.1:4242", Node("ORTHANC", "127.0.0.1", 4242)),
        ("127.0.0.1:104", Node("ANY-SCP", "127.0.0.1", 104)),
        ("PACS@pacs.example.com:1045", Node("PACS", "pacs.example.com", 1045)),
        ("A@[::1]:11112", Node("A", "::1", 11112)),
        ("  STORE-SCP@localhost:11111 ", Node("STORE-SCP", "localhost", 11111)),
    ],
)
def test_parse(text: str, expected: Node) -> None:
    assert Node.parse(text) == expected


def test_str_round_trips() -> None:
    for text in ("ORTHANC@127.0.0.1:4242", "A@[::1]:11112"):
        assert str(Node.parse(text)) == text


def test_node_passes_through() -> None:
    node = Node("X", "h", 1)
    assert Node.parse(node) is node


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ORTHANC@127.0.0.1",
        "ORTHANC@:4242",
        "A@h:port",
        "A@h:0",
        "A@h:70000",
        "WAY-TOO-LONG-AE-TITLE@h:1",
        "A\\B@h:1",
        " @h:1",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(AddressError) as info:
        Node.parse(text)
    assert isinstance(info.value, InputError)
    assert isinstance(info.value, ValueError)


def test_error_says_how_to_write_it() -> None:
    with pytest.raises(AddressError, match="AE@host:port"):
        Node.parse("nonsense")


def test_frozen() -> None:
    node = Node.parse("A@h:1")
    with pytest.raises(AttributeError):
        node.port = 2  # type: ignore[misc]
