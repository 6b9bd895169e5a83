"""Atom validation independent of our code: RFC 4287's own RELAX NG schema
(tests/fixtures/rfc4287.rnc, Appendix B) with lxml, plus its two Schematron rules."""
from __future__ import annotations

import pathlib

import rnc2rng
from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"
SCHEMA_FILE = pathlib.Path(__file__).parent.parent / "fixtures" / "rfc4287.rnc"
_schema = None


def schema() -> etree.RelaxNG:
    global _schema
    if _schema is None:
        rng = rnc2rng.dumps(rnc2rng.loads(SCHEMA_FILE.read_text()))
        # rnc2rng declares the empty "local" prefix, which XML 1.0 forbids
        _schema = etree.RelaxNG(etree.fromstring(rng.replace(' xmlns:local=""', "")
                                                 .encode()))
    return _schema


def validate(body: bytes) -> etree._Element:
    """The parsed document if it is a valid Atom feed: RFC 4287's schema, plus its
    two Schematron rules; AssertionError naming what is wrong otherwise."""
    doc = etree.fromstring(body)
    assert schema().validate(doc), schema().error_log
    assert doc.tag == ATOM + "feed"
    entries = doc.findall(ATOM + "entry")
    if doc.find(ATOM + "author") is None:
        assert all(e.find(ATOM + "author") is not None for e in entries), \
            "an atom:feed must have an atom:author unless all its entries have one"
    for e in entries:
        assert e.find(ATOM + "content") is not None or any(
            link.get("rel", "alternate") == "alternate" for link in e.findall(ATOM + "link")
        ), "an atom:entry must have atom:content or an alternate link"
    ids = [e.findtext(ATOM + "id") for e in entries]
    assert len(ids) == len(set(ids)), "two entries with one atom:id"
    return doc
