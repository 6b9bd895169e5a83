"""Changes as an Atom feed (RFC 4287), with RFC 5005 paging and WebSub links (pure).

One entry per change: ``id`` a tag URI (RFC 4151) of the resource and its version,
so a reader sees a new entry for each new state; ``title`` the human line;
``updated`` when the change's notification was emitted; ``content`` the envelope
every way out sends, as JSON (``type="application/json"``); ``category`` the
resource type, and the operation (``index``/``delete``).

Links: ``self`` (this page), ``hub`` (WebSub), and ``next`` to the older entries
(RFC 5005 section 3, paged feeds), absent on the last page.
"""
from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ET
from typing import Sequence
from urllib.parse import urlsplit

from searchlight_forward.model.envelope import Envelope, summary

NS = "http://www.w3.org/2005/Atom"
CONTENT_TYPE = "application/atom+xml"
ET.register_namespace("", NS)


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def rfc3339(timestamp: str | None, fallback: datetime.datetime) -> str:
    """A notification timestamp as RFC 3339 (UTC); ``fallback`` if unreadable."""
    moment = None
    if timestamp:
        try:
            moment = datetime.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
        except ValueError:
            moment = None
    moment = moment or fallback
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")


def entry_id(authority: str, envelope: Envelope) -> str:
    return (f"tag:{authority},2026:change/{envelope.resource_type}/{envelope.id}/"
            f"{envelope.version}")


def document(title: str, feed_id: str, self_url: str, hub_url: str | None,
             next_url: str | None, entries: Sequence[Envelope],
             now: datetime.datetime | None = None) -> bytes:
    """The feed document: ``entries`` newest first."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    authority = urlsplit(self_url).hostname or "localhost"
    feed = ET.Element(_q("feed"))
    ET.SubElement(feed, _q("id")).text = feed_id
    ET.SubElement(feed, _q("title")).text = title
    stamps = [rfc3339(e.timestamp, now) for e in entries]
    ET.SubElement(feed, _q("updated")).text = max(stamps) if stamps else rfc3339(None, now)
    author = ET.SubElement(feed, _q("author"))
    ET.SubElement(author, _q("name")).text = "searchlight-forward"
    ET.SubElement(feed, _q("generator")).text = "searchlight-forward"
    ET.SubElement(feed, _q("link"), rel="self", href=self_url,
                  type="application/atom+xml")
    if hub_url:
        ET.SubElement(feed, _q("link"), rel="hub", href=hub_url)
    if next_url:
        ET.SubElement(feed, _q("link"), rel="next", href=next_url,
                      type="application/atom+xml")
    for envelope, stamp in zip(entries, stamps):
        entry = ET.SubElement(feed, _q("entry"))
        ET.SubElement(entry, _q("id")).text = entry_id(authority, envelope)
        ET.SubElement(entry, _q("title")).text = summary(envelope)
        ET.SubElement(entry, _q("updated")).text = stamp
        ET.SubElement(entry, _q("category"), term=envelope.resource_type,
                      scheme="https://docs.openstack.org/resource-types")
        ET.SubElement(entry, _q("category"), term=envelope.operation,
                      scheme="urn:searchlight-forward:operation")
        content = ET.SubElement(entry, _q("content"), type="application/json")
        content.text = json.dumps(envelope.to_dict(), sort_keys=True, default=str)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
