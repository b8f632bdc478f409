"""Image references as Docker parses them (pure: no root, no network)."""

from __future__ import annotations

import pytest

from boxd._images.reference import Reference, ReferenceError, matching, parse_reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected", "familiar"),
    [
        ("busybox", ("docker.io", "library/busybox", "latest", None), "busybox:latest"),
        ("busybox:1.36", ("docker.io", "library/busybox", "1.36", None), "busybox:1.36"),
        ("me/app", ("docker.io", "me/app", "latest", None), "me/app:latest"),
        ("docker.io/busybox", ("docker.io", "library/busybox", "latest", None), "busybox:latest"),
        ("index.docker.io/me/x:1", ("docker.io", "me/x", "1", None), "me/x:1"),
        ("localhost/x", ("localhost", "x", "latest", None), "localhost/x:latest"),
        ("localhost:5000/a/b:v_1.0-x", ("localhost:5000", "a/b", "v_1.0-x", None), None),
        ("127.0.0.1:5000/x", ("127.0.0.1:5000", "x", "latest", None), None),
        ("ghcr.io/o/r/deep/name:t", ("ghcr.io", "o/r/deep/name", "t", None), None),
        ("Registry/x", ("Registry", "x", "latest", None), None),
        ("[::1]:5000/x:1", ("[::1]:5000", "x", "1", None), None),
        (f"busybox@{D}", ("docker.io", "library/busybox", None, D), f"busybox@{D}"),
        (f"busybox:1@{D}", ("docker.io", "library/busybox", "1", D), f"busybox:1@{D}"),
        (f"host:1/x@{D}", ("host:1", "x", None, D), None),
        ("a__b-c---d/e.f", ("docker.io", "a__b-c---d/e.f", "latest", None), None),
    ],
)
def test_valid(
    text: str, expected: tuple[str, str, str | None, str | None], familiar: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == Reference(*expected)
    assert parse_reference(str(ref)) == ref
    if familiar is not None:
        assert ref.familiar == familiar


def test_no_default_tag() -> None:
    assert parse_reference("busybox", default_tag=False).tag is None


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "empty"),
        (" busybox", "space"),
        ("Busybox", "lowercase ('Busybox')"),
        ("docker.io/Me/x", "lowercase ('Me')"),
        ("busy box", "'busy box'"),
        ("x:bad tag", "bad tag 'bad tag'"),
        ("x:-dash", "bad tag '-dash'"),
        ("x:" + "t" * 129, "bad tag"),
        ("x@sha256:abc", "bad digest 'sha256:abc'"),
        ("x@md5:" + "a" * 32, "algorithm 'md5'"),
        ("x@sha256:" + "A" * 64, "not 64 lower-case"),
        ("a" * 64, "image ids"),
        ("x//y", "bad path component ''"),
        ("x/-y", "bad path component '-y'"),
        ("x_/y", "bad path component 'x_'"),
        ("bad-.host:5000/x", "bad registry 'bad-.host:5000'"),
        ("host:port/x", "bad registry 'host:port'"),
        ("x/" + "a" * 300, "longer than 255"),
        (":tag", "no repository name"),
        ("x/", "bad path component ''"),
    ],
)
def test_invalid_names_the_bad_part(text: str, names: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_reference(text)
    assert names in str(info.value)


def test_the_reference_filter_matches_as_dockers_familiar_match() -> None:
    refs = (
        "docker.io/library/busybox:1.36",
        "docker.io/me/app:1",
        "127.0.0.1:5000/team/app:2",
        "127.0.0.1:5000/team/app@sha256:" + "a" * 64,
    )
    assert matching(refs, ["busybox"]) == matching(refs, ["busy*:1.?6"]) == refs[:1]
    assert matching(refs, ["me/app"]) == matching(refs, ["*/app:1"]) == (refs[1],)
    assert matching(refs, ["127.0.0.1:5000/team/app"]) == refs[2:]  # the port is the name's
    assert matching(refs, ["*/app"]) == (refs[1],)  # "*" does not cross "/"
    assert matching(refs, ["*/*/app:[0-9]"]) == (refs[2],)
    assert matching(refs, ["*/*/app:[^2]"]) == ()
    assert matching(refs, ["app["]) == ()  # malformed: matches nothing
