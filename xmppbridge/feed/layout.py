"""Where things live: the collections (one per restriction), their workspaces, and every URL we emit.

Pure data shared by the Atom renderer and the HTTP shell, so that a route and the link pointing to it
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urljoin

from xmppbridge.policy import RESTRICTIONS

SERVICE_PATH = ".well-known/rolie/servicedocument"
FEEDS_PATH = "feeds/"
ENTRIES_PATH = "entries/"

PUBLIC_WORKSPACE = "Public"
CONSORTIUM_WORKSPACE = "Consortium"


@dataclass(frozen=True)
class CollectionInfo:
    restriction: str  # canonical IODEF restriction = the key of the collection
    workspace: str

    @property
    def title(self) -> str:
        return f"Incidents ({self.restriction})"


# draft-ietf-mile-rolie-02 §5.9.1: public and consortium feeds live in separate workspaces.
COLLECTIONS: tuple[CollectionInfo, ...] = tuple(
    CollectionInfo(r, PUBLIC_WORKSPACE if r == "public" else CONSORTIUM_WORKSPACE) for r in RESTRICTIONS
)
WORKSPACES: tuple[str, ...] = (PUBLIC_WORKSPACE, CONSORTIUM_WORKSPACE)
COLLECTION_BY_RESTRICTION = {c.restriction: c for c in COLLECTIONS}


@dataclass(frozen=True)
class FeedUrls:
    """Absolute URLs under ``base_url`` (which gets a trailing slash if it lacks one)."""

    base_url: str

    def __post_init__(self) -> None:
        if not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")

    def _url(self, path: str) -> str:
        return urljoin(self.base_url, path)

    def service_document(self) -> str:
        return self._url(SERVICE_PATH)

    def feed(self, restriction: str, page: int | None = None) -> str:
        url = self._url(FEEDS_PATH + quote(restriction, safe=""))
        return url if page is None or page == 1 else f"{url}?page={page}"

    def entry(self, entry_id: int) -> str:
        return self._url(f"{ENTRIES_PATH}{entry_id}")

    def iodef(self, entry_id: int) -> str:
        return self._url(f"{ENTRIES_PATH}{entry_id}/iodef.xml")
